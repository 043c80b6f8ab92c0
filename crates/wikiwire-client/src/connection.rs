//! An IRC client connection, for the subscriber and the relay: TCP or TLS, registration with CAP
//! 302, SASL PLAIN or PASS or NickServ, another nick when ours is taken, JOIN with the channel's
//! topic, modes and names, and PING answered on the way. Lines are framed with the server-side
//! limits (8191 bytes of tags) and parsed like the server parses its own.
//!
//! Every method is cancel-safe, so callers may `select!` on `next()`: reading keeps partial lines
//! in its buffer, and writing goes through `outgoing`, drained with `write_buf`, which never loses
//! or repeats a byte when cancelled.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use wikiwire_irc_wire::framing::{Frame, Limits, LineReader};
use wikiwire_irc_wire::numeric::code;
use wikiwire_irc_wire::wire::{Line, Request};

use wikiwire_irc_wire::IrcTarget;

/// Connecting and registering may take this long.
const REGISTRATION: Duration = Duration::from_secs(30);
/// Nicks tried after the first is taken.
const NICK_ATTEMPTS: usize = 5;
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

    async fn register(&mut self, login: &Login, wanted: &[&str]) -> Result<(), ClientError> {
        let mut text = String::from("CAP LS 302\r\n");
        if let Auth::Pass(password) = &login.auth {
            text.push_str(&format!("PASS {password}\r\n"));
        }
        text.push_str(&format!("NICK {}\r\nUSER {} 0 * :{}\r\n", login.nick, login.user, login.realname));
        self.write_text(&text).await?;
        let sasl = matches!(login.auth, Auth::Sasl { .. });
        let mut offered: Vec<String> = Vec::new();
        let mut attempts = 0;
        loop {
            let message = self.read().await?;
            match message.verb.as_str() {
                "CAP" => match message.param(1).unwrap_or("") {
                    "LS" => {
                        let more = message.params.len() > 3 && message.param(2) == Some("*");
                        let list = message.params.last().cloned().unwrap_or_default();
                        offered.extend(
                            list.split(' ')
                                .filter(|cap| !cap.is_empty())
                                .map(|cap| cap.split('=').next().unwrap_or(cap).to_owned()),
                        );
                        if more {
                            continue;
                        }
                        let mut request: Vec<&str> = wanted
                            .iter()
                            .copied()
                            .filter(|cap| offered.iter().any(|offer| offer == cap))
                            .collect();
                        if sasl {
                            if !offered.iter().any(|offer| offer == "sasl") {
                                return Err(ClientError::Auth("the server offers no SASL".into()));
                            }
                            request.push("sasl");
                        }
                        if request.is_empty() {
                            self.write_text("CAP END\r\n").await?;
                        } else {
                            self.writer
                                .write_all(format!("CAP REQ :{}\r\n", request.join(" ")).as_bytes())
                                .await?;
                        }
                    }
                    "ACK" => {
                        self.caps = message
                            .params
                            .last()
                            .map(|list| list.split(' ').map(str::to_owned).collect())
                            .unwrap_or_default();
                        if sasl && self.caps.iter().any(|cap| cap == "sasl") {
                            self.write_text("AUTHENTICATE PLAIN\r\n").await?;
                        } else {
                            self.write_text("CAP END\r\n").await?;
                        }
                    }
                    "NAK" => {
                        if sasl {
                            return Err(ClientError::Auth("the server refused the SASL capability".into()));
                        }
                        self.write_text("CAP END\r\n").await?;
                    }
                    _ => {}
                },
                "AUTHENTICATE" if message.param(0) == Some("+") => {
                    if let Auth::Sasl { account, password } = &login.auth {
                        let payload = base64::engine::general_purpose::STANDARD
                            .encode(format!("{account}\0{account}\0{password}"));
                        let mut text = String::new();
                        for chunk in payload.as_bytes().chunks(400) {
                            text.push_str(&format!(
                                "AUTHENTICATE {}\r\n",
                                std::str::from_utf8(chunk).unwrap_or("")
                            ));
                        }
                        if payload.len() % 400 == 0 {
                            text.push_str("AUTHENTICATE +\r\n");
                        }
                        self.write_text(&text).await?;
                    }
                }
                code::RPL_SASLSUCCESS => self.write_text("CAP END\r\n").await?,
                code::ERR_NICKLOCKED
                | code::ERR_SASLFAIL
                | code::ERR_SASLTOOLONG
                | code::ERR_SASLABORTED
                | code::RPL_SASLMECHS => {
                    return Err(ClientError::Auth(message.params.last().cloned().unwrap_or_default()));
                }
                code::ERR_PASSWDMISMATCH => return Err(ClientError::Auth("password incorrect".into())),
                code::ERR_NICKNAMEINUSE | code::ERR_NICKCOLLISION => {
                    attempts += 1;
                    if attempts > NICK_ATTEMPTS {
                        return Err(ClientError::Nick(format!(
                            "{} and {NICK_ATTEMPTS} variants are taken",
                            login.nick
                        )));
                    }
                    self.nick = alternative_nick(&login.nick, attempts, false);
                    self.write_text(&format!("NICK {}\r\n", self.nick)).await?;
                }
                // Our own nick is invalid; an alternative may only be too long (NICKLEN comes
                // after registration), so shorter ones are tried.
                code::ERR_ERRONEUSNICKNAME if attempts > 0 && attempts <= NICK_ATTEMPTS => {
                    self.nick = alternative_nick(&login.nick, attempts, true);
                    self.write_text(&format!("NICK {}\r\n", self.nick)).await?;
                }
                // Services hold a registered nick for a while after renaming an impostor (InspIRCd
                // answers 432 "Services reserved nickname"): an account holder logs in under
                // another nick, and trust by account still holds.
                code::ERR_ERRONEUSNICKNAME
                    if attempts == 0 && !matches!(login.auth, Auth::None | Auth::Pass(_)) =>
                {
                    attempts += 1;
                    self.nick = alternative_nick(&login.nick, attempts, false);
                    self.write_text(&format!("NICK {}\r\n", self.nick)).await?;
                }
                code::ERR_ERRONEUSNICKNAME => {
                    return Err(ClientError::Nick(format!("{:?} is not a valid nick here", self.nick)));
                }
                code::RPL_WELCOME => {
                    if let Some(nick) = message.param(0) {
                        self.nick = nick.to_owned();
                    }
                }
                code::RPL_MYINFO => self.version = message.param(2).unwrap_or("").to_owned(),
                code::RPL_ISUPPORT => {
                    let tokens = message.params.iter().skip(1).take(message.params.len().saturating_sub(2));
                    self.isupport.extend(tokens.cloned());
                }
                code::RPL_ENDOFMOTD | code::ERR_NOMOTD => break,
                _ => {}
            }
        }
        if let Auth::NickServ { account, password } = &login.auth {
            self.writer
                .write_all(format!("PRIVMSG NickServ :IDENTIFY {account} {password}\r\n").as_bytes())
                .await?;
        }
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

    async fn write_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.outgoing.extend_from_slice(text.as_bytes());
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

/// The `attempt`-th other nick: `nick_`, `nick__`, ...; `short`, for networks whose NICKLEN the
/// nick already fills: `nic1`, `nic2`, ... (one character replaced by a digit).
fn alternative_nick(nick: &str, attempt: usize, short: bool) -> String {
    if !short {
        return format!("{nick}{}", "_".repeat(attempt));
    }
    let mut base: String = nick.chars().collect();
    base.pop();
    format!("{base}{}", attempt % 10)
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

#[cfg(test)]
mod tests {
    use super::alternative_nick;

    #[test]
    fn alternative_nicks_fit_short_limits_too() {
        assert_eq!(alternative_nick("wikirelay", 1, false), "wikirelay_");
        assert_eq!(alternative_nick("wikirelay", 2, false), "wikirelay__");
        assert_eq!(alternative_nick("wikirelay", 1, true), "wikirela1");
        assert_eq!(alternative_nick("wikirelay", 3, true).len(), 9);
    }
}
