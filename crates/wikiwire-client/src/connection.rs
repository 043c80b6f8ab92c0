//! An IRC client connection, for the subscriber and the relay: TCP or TLS, registration (the
//! lines of [`crate::registration`]: CAP 302, SASL PLAIN or PASS or NickServ, another nick when
//! ours is taken), JOIN with the channel's topic, modes and names, and PING answered on the way. Lines are framed with the server-side
//! limits (8191 bytes of tags) and parsed like the server parses its own.
//!
//! Every method is cancel-safe, so callers may `select!` on `next()`: reading keeps partial lines
//! in its buffer, and writing goes through `outgoing`, drained with `write_buf`, which never loses
//! or repeats a byte when cancelled.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use wikiwire_irc_wire::framing::{Frame, Limits, LineReader};
use wikiwire_irc_wire::numeric::code;
use wikiwire_irc_wire::wire::{Line, Request};

use crate::registration::Registration;

use wikiwire_irc_wire::IrcTarget;

/// Connecting and registering may take this long.
const REGISTRATION: Duration = Duration::from_secs(30);
/// Channel membership prefixes that may speak in a moderated channel.
pub const SPEAKING_PREFIXES: &str = "~&@%+";

/// How to prove who we are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    /// SASL PLAIN (IRCv3 sasl).
    Sasl {
        account: String,
        password: String,
    },
    /// The server password (`PASS`).
    Pass(String),
    /// `PRIVMSG NickServ :IDENTIFY <account> <password>` after registration.
    NickServ {
        account: String,
        password: String,
    },
}

#[derive(Clone, Debug)]
pub struct Login {
    pub nick: String,
    pub user: String,
    pub realname: String,
    pub auth: Auth,
}

#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// Extra trusted certificates (PEM), e.g. of a private network's own CA.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {target}: {error}")]
    Connect { target: String, error: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the server closed the link: {0}")]
    Closed(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("no nick could be had: {0}")]
    Nick(String),
    #[error("timed out while {0}")]
    Timeout(&'static str),
    #[error("cannot join {channel}: {reason}")]
    Join { channel: String, reason: String },
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// What JOIN told us about the channel.
#[derive(Clone, Debug, Default)]
pub struct Joined {
    pub topic: Option<String>,
    /// Channel modes, e.g. `+mnt`.
    pub modes: String,
    /// Members with their prefixes, e.g. `("+", "moin")`.
    pub members: Vec<(String, String)>,
    /// How the server shows us (`nick!user@host`), from our own JOIN.
    pub mask: Option<String>,
}

pub struct Connection {
    reader: LineReader<ReadHalf<Box<dyn Io>>>,
    writer: WriteHalf<Box<dyn Io>>,
    /// Bytes not yet written.
    outgoing: BytesMut,
    /// Lines read while waiting for something else, handed out by `next` first.
    pending: VecDeque<Request>,
    pub nick: String,
    pub caps: Vec<String>,
    /// The server's software (004), e.g. `wikiwire-0.1.0` or `ngircd-26.1`.
    pub version: String,
    pub isupport: Vec<String>,
}

impl Connection {
    /// Connects, registers and authenticates.
    pub async fn open(
        target: &IrcTarget,
        login: &Login,
        wanted: &[&str],
        tls: &TlsSettings,
    ) -> Result<Connection, ClientError> {
        tokio::time::timeout(REGISTRATION, Connection::open_inner(target, login, wanted, tls))
            .await
            .map_err(|_| ClientError::Timeout("registering"))?
    }

    async fn open_inner(
        target: &IrcTarget,
        login: &Login,
        wanted: &[&str],
        tls: &TlsSettings,
    ) -> Result<Connection, ClientError> {
        let address = format!("{}:{}", target.host, target.port);
        let stream = TcpStream::connect(&address)
            .await
            .map_err(|error| ClientError::Connect { target: address.clone(), error })?;
        let _ = stream.set_nodelay(true);
        let stream: Box<dyn Io> = if target.tls {
            Box::new(tls_connect(stream, &target.host, tls).await?)
        } else {
            Box::new(stream)
        };
        let (read, write) = tokio::io::split(stream);
        let mut connection = Connection {
            reader: LineReader::with_limits(read, Limits::FROM_SERVER),
            writer: write,
            outgoing: BytesMut::new(),
            pending: VecDeque::new(),
            nick: login.nick.clone(),
            caps: Vec::new(),
            version: String::new(),
            isupport: Vec::new(),
        };
        connection.register(login, wanted).await?;
        Ok(connection)
    }

    /// Registers: the lines of [`Registration`] carried both ways until it says it is done.
    async fn register(&mut self, login: &Login, wanted: &[&str]) -> Result<(), ClientError> {
        let mut registration = Registration::new(login, wanted);
        self.write_lines(&registration.start()).await?;
        loop {
            let message = self.read().await?;
            let step = registration.feed(&message)?;
            self.write_lines(&step.send).await?;
            if step.registered {
                break;
            }
        }
        self.nick = registration.nick;
        self.caps = registration.caps;
        self.version = registration.version;
        self.isupport = registration.isupport;
        Ok(())
    }

    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|held| held == cap)
    }

    /// The server is wikiwire itself (so it takes events, not only text, from a publisher).
    pub fn is_wikiwire(&self) -> bool {
        self.version.starts_with("wikiwire")
    }

    pub async fn send(&mut self, line: &Line) -> Result<(), ClientError> {
        line.write_into(&mut self.outgoing);
        self.flush().await
    }

    async fn write_lines(&mut self, lines: &[String]) -> Result<(), ClientError> {
        for line in lines {
            self.outgoing.extend_from_slice(line.as_bytes());
            self.outgoing.extend_from_slice(b"\r\n");
        }
        self.flush().await
    }

    /// Writes what is queued; cancelled part-way, the rest stays queued.
    async fn flush(&mut self) -> Result<(), ClientError> {
        while !self.outgoing.is_empty() {
            if self.writer.write_buf(&mut self.outgoing).await? == 0 {
                return Err(ClientError::Closed("the connection stopped taking data".into()));
            }
        }
        Ok(())
    }

    /// The next line from the server; PING is answered here and not returned.
    pub async fn next(&mut self) -> Result<Request, ClientError> {
        if let Some(message) = self.pending.pop_front() {
            return Ok(message);
        }
        self.read().await
    }

    async fn read(&mut self) -> Result<Request, ClientError> {
        self.flush().await?;
        loop {
            let frame =
                self.reader.next().await?.ok_or_else(|| ClientError::Closed("end of stream".into()))?;
            let Frame::Line(text) = frame else { continue };
            let Some(message) = Request::parse(&text) else { continue };
            match message.verb.as_str() {
                "PING" => {
                    let token = message.params.last().cloned().unwrap_or_default();
                    Line::new("PONG").text(token).write_into(&mut self.outgoing);
                    self.flush().await?;
                }
                "ERROR" => {
                    return Err(ClientError::Closed(message.params.last().cloned().unwrap_or_default()));
                }
                _ => return Ok(message),
            }
        }
    }

    /// Joins and reports the channel's topic, modes and members.
    pub async fn join(&mut self, channel: &str, key: Option<&str>) -> Result<Joined, ClientError> {
        tokio::time::timeout(REGISTRATION, self.join_inner(channel, key))
            .await
            .map_err(|_| ClientError::Timeout("joining"))?
    }

    async fn join_inner(&mut self, channel: &str, key: Option<&str>) -> Result<Joined, ClientError> {
        let mut join = Line::new("JOIN").param(channel);
        if let Some(key) = key {
            join = join.param(key);
        }
        self.send(&join).await?;
        self.send(&Line::new("MODE").param(channel)).await?;
        let mut joined = Joined::default();
        let (mut names_done, mut modes_done) = (false, false);
        let mut held = Vec::new();
        while !(names_done && modes_done) {
            let message = self.read().await?;
            let about_channel =
                |index: usize| message.param(index).is_some_and(|name| name.eq_ignore_ascii_case(channel));
            match message.verb.as_str() {
                "JOIN"
                    if about_channel(0)
                        && message
                            .source_nick()
                            .is_some_and(|nick| nick.eq_ignore_ascii_case(&self.nick)) =>
                {
                    joined.mask = message.source.clone();
                }
                code::RPL_TOPIC if about_channel(1) => joined.topic = message.params.last().cloned(),
                code::RPL_NAMREPLY if about_channel(2) => {
                    for entry in message
                        .params
                        .last()
                        .map(String::as_str)
                        .unwrap_or("")
                        .split(' ')
                        .filter(|entry| !entry.is_empty())
                    {
                        let split = entry
                            .find(|c: char| !SPEAKING_PREFIXES.contains(c) && c != '!')
                            .unwrap_or(entry.len());
                        joined.members.push((entry[..split].to_owned(), entry[split..].to_owned()));
                    }
                }
                code::RPL_ENDOFNAMES if about_channel(1) => names_done = true,
                code::RPL_CHANNELMODEIS if about_channel(1) => {
                    joined.modes = message.param(2).unwrap_or("+").to_owned();
                    modes_done = true;
                }
                code::ERR_NOSUCHCHANNEL
                | code::ERR_TOOMANYCHANNELS
                | code::ERR_CHANNELISFULL
                | code::ERR_INVITEONLYCHAN
                | code::ERR_BANNEDFROMCHAN
                | code::ERR_BADCHANNELKEY
                | code::ERR_NEEDREGGEDNICK
                | code::ERR_TOOMANYJOINS
                    if about_channel(1) =>
                {
                    let reason = message.params.last().cloned().unwrap_or_default();
                    return Err(ClientError::Join {
                        channel: channel.to_owned(),
                        reason: format!("{} {reason}", message.verb),
                    });
                }
                _ => held.push(message),
            }
        }
        self.pending.extend(held);
        Ok(joined)
    }
}

/// TLS with the aws-lc-rs provider, trusting the Mozilla roots and any configured CA file.
async fn tls_connect(
    stream: TcpStream,
    host: &str,
    settings: &TlsSettings,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &settings.ca_file {
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|error| ClientError::Tls(format!("{}: {error}", path.display())))?;
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|error| ClientError::Tls(format!("{}: {error}", path.display())))?;
        }
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| ClientError::Tls(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned())
        .map_err(|error| ClientError::Tls(format!("{host}: {error}")))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|error| ClientError::Tls(format!("handshake with {host}: {error}")))
}
