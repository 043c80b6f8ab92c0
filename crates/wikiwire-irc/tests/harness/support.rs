//! A server without a socket: the shared state over a real SQLite store in a temporary folder,
//! and clients served by `connection::run` over an in-memory duplex stream, as the listener
//! serves a TCP one. Tests drive a client line by line and, under tokio's paused clock, move
//! time to cross the server's timers.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wikiwire_hub::Config;
use wikiwire_hub::{Hub, Publishers, token};
use wikiwire_irc::{Config as IrcConfig, Server};
use wikiwire_store::{SqliteOptions, SqliteStore, Store};

/// The publisher's token (PASS `moin:<token>`), for the wiki `MoinMaster`.
pub const TOKEN: &str = "wwt_moin-publisher-token-for-the-harness";
pub const SERVER_NAME: &str = "irc.harness.example";
/// What a client's in-memory stream holds in each direction before the writer waits, as a
/// socket's buffers would.
const STREAM_BUFFER: usize = 16 * 1024;

pub struct TestServer {
    pub server: Arc<Server>,
    pub hub: Arc<Hub>,
    _directory: tempfile::TempDir,
}

impl TestServer {
    /// A server with the default `[irc]` limits.
    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    /// A server whose `[irc]` section `change` adjusts; one publisher, `moin`, speaks for
    /// `MoinMaster` (`#MoinMaster` and `#MoinMaster.events`).
    pub fn with(change: impl FnOnce(&mut IrcConfig)) -> TestServer {
        let directory = tempfile::tempdir().expect("a temporary folder");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(SqliteOptions::new(directory.path().join("events.sqlite")))
                .expect("a new store opens"),
        );
        let hash = token::format_hash(&token::hash(TOKEN));
        let text = format!(
            "[[publisher]]\nname = \"moin\"\ntoken_hash = \"{hash}\"\nwikis = [\"MoinMaster\"]\n\
             base_url = \"https://master.example/\"\nengine = \"moin\"\n"
        );
        let config = Config::parse(&text).expect("the harness's configuration parses");
        let mut irc = IrcConfig { server_name: SERVER_NAME.into(), ..IrcConfig::default() };
        change(&mut irc);
        let url = "http://hub.harness.example";
        let publishers = Publishers::new(&config.publishers, &config.limits).expect("publishers");
        let channels = wikiwire_hub::channels::directory(&publishers, &config.channels, irc.wiki_format, url)
            .expect("the channel directory");
        let hub = Hub::new(store, publishers, channels, url.into(), CancellationToken::new());
        let server = Server::new(Arc::clone(&hub), &irc, &config.rcfeeds);
        TestServer { server, hub, _directory: directory }
    }

    /// A client connected from 192.0.2.1, served as the listener serves an accepted one.
    pub fn connect(&self) -> Peer {
        self.connect_buffered(STREAM_BUFFER)
    }

    /// A client whose stream holds `buffer` bytes in each direction: what the server may have
    /// written that the client has not read yet.
    pub fn connect_buffered(&self, buffer: usize) -> Peer {
        let ip = IpAddr::from([192, 0, 2, 1]);
        let admission = self.server.admit(ip).expect("room for a connection");
        let (ours, theirs) = tokio::io::duplex(buffer);
        let local = IpAddr::from([192, 0, 2, 254]);
        let served = self.server.tracker.spawn(wikiwire_irc::connection::run(
            Arc::clone(&self.server),
            theirs,
            admission,
            ip,
            local,
        ));
        let (reader, writer) = tokio::io::split(ours);
        Peer { reader: BufReader::new(reader), writer, partial: String::new(), served }
    }
}

/// The client's end of one connection.
pub struct Peer {
    reader: BufReader<ReadHalf<DuplexStream>>,
    writer: WriteHalf<DuplexStream>,
    /// What a read cut short by a timeout had already taken of a line.
    partial: String,
    /// The server's task for this connection: finished once the connection has ended.
    pub served: JoinHandle<()>,
}

impl Peer {
    /// Writes lines, each ended by CRLF, in one write.
    pub async fn send(&mut self, lines: &[&str]) {
        let text: String = lines.iter().map(|line| format!("{line}\r\n")).collect();
        self.writer.write_all(text.as_bytes()).await.expect("the server's end is open");
    }

    /// The next line without its CRLF; `None` at the end of the stream. Waits as long as it
    /// takes: under the paused clock that moves time on to the server's next timer.
    pub async fn line(&mut self) -> Option<String> {
        let read = self.reader.read_line(&mut self.partial).await.expect("reading the stream");
        if read == 0 && self.partial.is_empty() {
            return None;
        }
        let line = std::mem::take(&mut self.partial);
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// The next line if one comes within `wait` (which a paused clock passes at once when
    /// nothing else is due).
    pub async fn line_within(&mut self, wait: Duration) -> Option<String> {
        tokio::time::timeout(wait, self.line()).await.ok().flatten()
    }

    /// Asserts that nothing arrives within a millisecond.
    pub async fn quiet(&mut self) {
        if let Some(line) = self.line_within(Duration::from_millis(1)).await {
            panic!("expected nothing, got {line:?}");
        }
    }

    /// Reads lines until one contains `needle`, and returns it.
    pub async fn expect(&mut self, needle: &str) -> String {
        let mut seen = Vec::new();
        loop {
            match self.line().await {
                Some(line) if line.contains(needle) => return line,
                Some(line) => seen.push(line),
                None => panic!("the stream ended before {needle:?}; read {seen:#?}"),
            }
        }
    }

    /// Asserts that the stream ends now, and that the server's task is done.
    pub async fn ends(mut self) {
        if let Some(line) = self.line().await {
            panic!("expected the end of the stream, got {line:?}");
        }
        self.served.await.expect("the connection's task ends without a panic");
    }

    /// Registers as a listener with `caps` (none: no CAP negotiation); returns after the
    /// welcome, which ends with the MOTD's numeric.
    pub async fn register(&mut self, nick: &str, caps: &[&str]) {
        let mut lines = Vec::new();
        let request = format!("CAP REQ :{}", caps.join(" "));
        if !caps.is_empty() {
            lines.extend(["CAP LS 302", request.as_str()]);
        }
        let nick_line = format!("NICK {nick}");
        let user_line = format!("USER {nick} 0 * :{nick}");
        lines.extend([nick_line.as_str(), user_line.as_str()]);
        if !caps.is_empty() {
            lines.push("CAP END");
        }
        self.send(&lines).await;
        if !caps.is_empty() {
            let ack = self.expect(" CAP ").await;
            let ack = if ack.contains(" LS ") { self.expect(" CAP ").await } else { ack };
            assert!(ack.contains(" ACK "), "capabilities {caps:?} refused: {ack}");
        }
        self.expect(" 422 ").await;
    }

    /// Logs in as the publisher `moin` by PASS, with `caps`; returns after the welcome and the
    /// notice that says where to publish.
    pub async fn register_publisher(&mut self, caps: &[&str]) {
        self.send(&[&format!("PASS moin:{TOKEN}")]).await;
        self.register("moin", caps).await;
        self.expect("You speak for MoinMaster").await;
    }
}
