//! The configuration file (TOML). The keys SPEC §7 fixes keep their names; everything has a safe
//! default so `wikiwire serve` runs with no file at all. `Config::check` finds every mistake at
//! once and says where, for `wikiwire config check`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wikiwire_event::fields::check_wiki_name;
use wikiwire_event::{Engine, Filter, Format, LinkTemplates};

use crate::token;

mod cluster;
pub use cluster::{ClusterConfig, DEFAULT_LEASE_TTL};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default, rename = "publisher")]
    pub publishers: Vec<PublisherConfig>,
    #[serde(default)]
    pub irc: IrcConfig,
    #[serde(default, rename = "channel")]
    pub channels: Vec<ChannelConfig>,
    #[serde(default, rename = "relay")]
    pub relays: Vec<RelayConfig>,
    /// MediaWiki RCFeed listeners (UDP, `JSONRCFeedFormatter`).
    #[serde(default, rename = "rcfeed")]
    pub rcfeeds: Vec<RcFeedConfig>,
    /// The Jabber notification bot (SPEC §5); absent: no bot.
    pub xmpp: Option<XmppConfig>,
    /// The bot's XML-RPC API for wikis (MoinMoin's `notification_bot_uri`).
    pub xmlrpc: Option<XmlRpcConfig>,
    /// The wiki the bot's commands talk to.
    pub wiki: Option<WikiConfig>,
    /// Present: the log lives in NATS JetStream, shared with other hub nodes.
    pub cluster: Option<ClusterConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppConfig {
    /// The bot's account, e.g. `wikibot@example.org`.
    pub jid: String,
    pub password: String,
    /// Host to connect to (default: the JID's domain).
    pub server: Option<String>,
    #[serde(default = "default_xmpp_port")]
    pub port: u16,
    /// Extra CA certificates (PEM) to verify a private server's certificate.
    pub ca_file: Option<PathBuf>,
    /// What to do when someone asks to see the bot's presence: `accept`, `reject`, or `known`
    /// (only JIDs the wiki added or that subscribed to a wiki here).
    #[serde(default)]
    pub subscription_policy: SubscriptionPolicy,
    /// Language of the bot's texts when the user's is not known.
    #[serde(default = "default_language")]
    pub language: String,
    /// Idle time after which the connection is checked.
    #[serde(default = "default_keepalive", deserialize_with = "duration")]
    pub keepalive: Duration,
    /// Multi-user chat rooms (XEP-0045) that receive the text lines of a filter.
    #[serde(default)]
    pub rooms: Vec<RoomConfig>,
    /// How long the bot waits before it tries a room that refused it (or put it out) again.
    #[serde(default = "default_room_retry", deserialize_with = "duration")]
    pub room_retry: Duration,
}

fn default_room_retry() -> Duration {
    Duration::from_secs(60)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionPolicy {
    #[default]
    Accept,
    Reject,
    Known,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomConfig {
    /// The room, e.g. `changes@conference.example.org`.
    pub jid: String,
    #[serde(default = "default_room_nick")]
    pub nick: String,
    pub password: Option<String>,
    #[serde(default)]
    pub filter: String,
}

/// A UDP listener for MediaWiki's `$wgRCFeeds` (SPEC §7 `[[rcfeed]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RcFeedConfig {
    /// The UDP address, e.g. `127.0.0.1:9390`.
    pub listen: SocketAddr,
    /// Whose events these are: the datagram's `wiki` (or `server_name`, or the host of a wiki's
    /// `base_url`) must name one of this publisher's wikis.
    pub publisher: String,
    /// Source addresses (IPs) whose datagrams are taken; default loopback only.
    #[serde(default = "default_rcfeed_allow")]
    pub allow: Vec<std::net::IpAddr>,
}

fn default_rcfeed_allow() -> Vec<std::net::IpAddr> {
    vec![std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()]
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmlRpcConfig {
    #[serde(default = "default_xmlrpc_listen")]
    pub listen: SocketAddr,
    /// Shared with the wiki; every call's first argument.
    pub secret: String,
    #[serde(default = "default_max_body")]
    pub max_body: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WikiConfig {
    /// The wiki's address: for `moin`, the front page (`?action=xmlrpc2` is added); for
    /// `wikirpc2`, the XML-RPC endpoint (DokuWiki: `.../lib/exe/xmlrpc.php`).
    pub url: String,
    #[serde(default)]
    pub dialect: WikiDialect,
    /// `moin`: the secret for `getJabberAuthToken`.
    pub secret: Option<String>,
    /// `wikirpc2`: the account the bot uses (HTTP basic authentication).
    pub user: Option<String>,
    pub password: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WikiDialect {
    #[default]
    Moin,
    Wikirpc2,
}

/// Events posted to a channel on another IRC network (SPEC §6 "Relay").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// `irc://host[:port]/#channel` or `ircs://...` (a channel key may follow as `?key=...`).
    pub url: String,
    pub nick: String,
    pub password: Option<String>,
    /// How to use the password: `sasl` (default with a password), `pass`, `nickserv`; `none`.
    pub auth: Option<RelayAuth>,
    /// The account name for SASL or NickServ, if it is not the nick.
    pub account: Option<String>,
    #[serde(default)]
    pub format: Format,
    /// Which events, in the filter language; all when empty.
    #[serde(default)]
    pub filter: String,
    /// Lines per second (default 1, as networks expect of a bot).
    #[serde(default = "default_relay_rate")]
    pub rate: f64,
    /// Extra CA certificates (PEM) for `ircs://` to a private network.
    pub ca_file: Option<PathBuf>,
    /// Names the relay's position in the store; default: the URL.
    pub name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayAuth {
    Sasl,
    Pass,
    Nickserv,
    None,
}

impl RelayConfig {
    /// The name under which the relay keeps its position.
    pub fn cursor_name(&self) -> String {
        format!("relay:{}", self.name.as_deref().unwrap_or(&self.url))
    }

    /// The authentication actually used: SASL when a password is given and nothing else is said.
    pub fn auth(&self) -> RelayAuth {
        match (self.auth, &self.password) {
            (Some(auth), _) => auth,
            (None, Some(_)) => RelayAuth::Sasl,
            (None, None) => RelayAuth::None,
        }
    }
}

/// The embedded IRC server (SPEC §3).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IrcConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_irc_listen")]
    pub listen: SocketAddr,
    /// The server's name in replies and message sources.
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// ISUPPORT NETWORK.
    #[serde(default = "default_network")]
    pub network: String,
    /// A TLS listener, used when `tls_cert` and `tls_key` are set.
    #[serde(default = "default_tls_listen")]
    pub tls_listen: SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Message of the day; without it, 422.
    pub motd: Option<String>,
    /// How `#<wiki>` shows events (`#<wiki>.events` is always packed).
    #[serde(default)]
    pub wiki_format: Format,
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Connections one address may hold (0: no limit).
    #[serde(default = "default_max_per_ip")]
    pub max_per_ip: usize,
    /// Bytes queued for one client before it is disconnected (SendQ exceeded).
    #[serde(default = "default_sendq")]
    pub sendq: usize,
    #[serde(default = "default_registration_timeout", deserialize_with = "duration")]
    pub registration_timeout: Duration,
    /// Idle time before the server sends PING.
    #[serde(default = "default_ping_interval", deserialize_with = "duration")]
    pub ping_interval: Duration,
    /// Time to answer that PING.
    #[serde(default = "default_ping_timeout", deserialize_with = "duration")]
    pub ping_timeout: Duration,
    /// Lines a listener may send at once, and per second after that; faster input waits.
    #[serde(default = "default_flood_burst")]
    pub flood_burst: f64,
    #[serde(default = "default_flood_rate")]
    pub flood_rate: f64,
    /// Most events one CHATHISTORY request returns (ISUPPORT CHATHISTORY).
    #[serde(default = "default_history_limit")]
    pub history_limit: usize,
    /// Ports HistServ offers DCC transfers on (`"6800-6809"`, or one port); none: no DCC.
    #[serde(default)]
    pub dcc_ports: Option<PortRange>,
    /// The address DCC offers name, for a hub behind NAT; default: the address the client
    /// reached (its connection's local address).
    #[serde(default)]
    pub dcc_address: Option<std::net::IpAddr>,
    /// How long a DCC offer waits for its client to connect.
    #[serde(default = "default_dcc_timeout", deserialize_with = "duration")]
    pub dcc_timeout: Duration,
    /// Most events one DCC file holds (the rest: ask again from where it ends).
    #[serde(default = "default_dcc_max_events")]
    pub dcc_max_events: usize,
}

/// An inclusive range of TCP ports, written `"first-last"` or as one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let (first, last) = text.split_once('-').unwrap_or((text, text));
        let port =
            |text: &str| {
                text.trim().parse::<u16>().ok().filter(|port| *port > 0).ok_or_else(|| {
                    format!("{text:?} is not a port (1 to 65535); write a range as \"6800-6809\"")
                })
            };
        let range = PortRange { first: port(first)?, last: port(last)? };
        if range.first > range.last {
            return Err(format!("{text:?}: the first port comes after the last"));
        }
        Ok(range)
    }

    pub fn ports(self) -> std::ops::RangeInclusive<u16> {
        self.first..=self.last
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<PortRange, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Port(u16),
            Range(String),
        }
        match Text::deserialize(deserializer)? {
            Text::Port(port) => PortRange::parse(&port.to_string()),
            Text::Range(text) => PortRange::parse(&text),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// A channel from the configuration: a name, a format and a filter (SPEC §3), e.g. one
/// `#antispam` shared by several wikis.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub name: String,
    #[serde(default)]
    pub format: Format,
    /// The filter in its query-string form, e.g. `wiki=A,B&action=antispam_updated`.
    #[serde(default)]
    pub filter: String,
    pub topic: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// How clients reach the hub (behind a proxy it differs from `listen`); links, feeds and
    /// channel topics use it. Default: `http://<listen>`.
    pub public_url: Option<String>,
    /// Largest request body, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    /// Seconds between SSE heartbeats.
    #[serde(default = "default_heartbeat", deserialize_with = "duration")]
    pub heartbeat: Duration,
    /// Open HTTP connections at most, in total and from one address.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_http_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Time a client has to send a request's headers (also the idle time of a kept-alive
    /// connection before its next request).
    #[serde(default = "default_http_header_timeout", deserialize_with = "duration")]
    pub header_timeout: Duration,
    /// Time a response (an SSE stream too) may wait for a client that reads nothing.
    #[serde(default = "default_http_write_timeout", deserialize_with = "duration")]
    pub write_timeout: Duration,
    /// Time a client has to send a request body.
    #[serde(default = "default_http_body_timeout", deserialize_with = "duration")]
    pub body_timeout: Duration,
}

fn default_http_max_connections() -> usize {
    10_000
}
fn default_http_max_connections_per_ip() -> usize {
    256
}
fn default_http_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_http_write_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_http_body_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Keep events this long (`90d`, `12h`, or seconds); unset keeps them forever.
    #[serde(default, deserialize_with = "optional_duration")]
    pub max_age: Option<Duration>,
    /// Keep at most this many events.
    pub max_events: Option<u64>,
    /// `full` (default): a commit survives power loss. `normal`: only a crash of the process.
    #[serde(default)]
    pub synchronous: Synchronous,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Events per second one publisher may announce, sustained.
    #[serde(default = "default_publish_rate")]
    pub publish_rate: f64,
    /// Events one publisher may announce in a burst.
    #[serde(default = "default_publish_burst")]
    pub publish_burst: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherConfig {
    pub name: String,
    /// The token itself; prefer `token_hash` so the file holds no secret.
    pub token: Option<String>,
    /// `sha256:<hex>`, as printed by `wikiwire token`.
    pub token_hash: Option<String>,
    pub wikis: Vec<String>,
    /// May contain `{wiki}` for a wiki farm.
    pub base_url: Option<String>,
    #[serde(default)]
    pub engine: Engine,
    /// Link templates replacing the engine's.
    #[serde(default)]
    pub links: LinkTemplates,
}

fn yes() -> bool {
    true
}
fn default_irc_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6667))
}
fn default_tls_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6697))
}
fn default_server_name() -> String {
    "irc.wikiwire.localhost".into()
}
fn default_network() -> String {
    "wikiwire".into()
}
fn default_max_clients() -> usize {
    20_000
}
fn default_max_per_ip() -> usize {
    64
}
/// One publish batch (1000 events) of typical lines with their JSON tag fits, so a client that
/// reads at full speed is never cut off by a burst; only a stalled client fills it.
fn default_sendq() -> usize {
    4 * 1024 * 1024
}
fn default_registration_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_ping_interval() -> Duration {
    Duration::from_secs(120)
}
fn default_ping_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_flood_burst() -> f64 {
    20.0
}
fn default_flood_rate() -> f64 {
    5.0
}
fn default_history_limit() -> usize {
    100
}
fn default_dcc_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_dcc_max_events() -> usize {
    10_000
}

impl Default for IrcConfig {
    fn default() -> IrcConfig {
        IrcConfig {
            enabled: true,
            listen: default_irc_listen(),
            server_name: default_server_name(),
            network: default_network(),
            tls_listen: default_tls_listen(),
            tls_cert: None,
            tls_key: None,
            motd: None,
            wiki_format: Format::default(),
            max_clients: default_max_clients(),
            max_per_ip: default_max_per_ip(),
            sendq: default_sendq(),
            registration_timeout: default_registration_timeout(),
            ping_interval: default_ping_interval(),
            ping_timeout: default_ping_timeout(),
            flood_burst: default_flood_burst(),
            flood_rate: default_flood_rate(),
            history_limit: default_history_limit(),
            dcc_ports: None,
            dcc_address: None,
            dcc_timeout: default_dcc_timeout(),
            dcc_max_events: default_dcc_max_events(),
        }
    }
}

fn default_xmpp_port() -> u16 {
    5222
}
fn default_language() -> String {
    "en".into()
}
fn default_keepalive() -> Duration {
    Duration::from_secs(60)
}
fn default_room_nick() -> String {
    "wikiwire".into()
}
fn default_xmlrpc_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}

fn default_relay_rate() -> f64 {
    1.0
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./wikiwire-data")
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(15)
}
fn default_publish_rate() -> f64 {
    1000.0
}
fn default_publish_burst() -> f64 {
    20_000.0
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            listen: default_http_listen(),
            public_url: None,
            max_body: default_max_body(),
            heartbeat: default_heartbeat(),
            max_connections: default_http_max_connections(),
            max_connections_per_ip: default_http_max_connections_per_ip(),
            header_timeout: default_http_header_timeout(),
            write_timeout: default_http_write_timeout(),
            body_timeout: default_http_body_timeout(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig { publish_rate: default_publish_rate(), publish_burst: default_publish_burst() }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: default_data_dir(),
            http: HttpConfig::default(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            publishers: Vec::new(),
            irc: IrcConfig::default(),
            channels: Vec::new(),
            relays: Vec::new(),
            rcfeeds: Vec::new(),
            xmpp: None,
            xmlrpc: None,
            wiki: None,
            cluster: None,
        }
    }
}

/// A configuration that cannot be used, with every reason found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {}", problems.join("\n  "))]
    Invalid { path: PathBuf, problems: Vec<String> },
}

impl Config {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config =
            Config::parse(&text).map_err(|message| ConfigError::Syntax { path: path.to_owned(), message })?;
        let problems = config.check();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { path: path.to_owned(), problems })
        }
    }

    /// Parses TOML; unknown keys and wrong types are errors with line and column.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|error| error.to_string().trim_end().to_owned())
    }

    /// What works but should not be left so, each as one readable sentence (printed by
    /// `config check` and logged at start, never fatal).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (index, publisher) in self.publishers.iter().enumerate() {
            if let Some(token) = &publisher.token
                && token.len() >= token::MIN_LENGTH
                && token.len() < token::STRONG_LENGTH
            {
                warnings.push(format!(
                    "publisher[{index}] ({:?}): token: only {} characters, easy to guess; make a strong one with                      `wikiwire token --name {}` and keep only its token_hash here",
                    publisher.name,
                    token.len(),
                    publisher.name
                ));
            }
        }
        warnings
    }

    /// Everything wrong with the meaning of the file, each as one readable sentence.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(Err(reason)) = self.http.public_url.as_deref().map(check_url) {
            problems.push(format!("http.public_url: {reason}"));
        }
        if self.http.max_body < 1024 {
            problems.push("http.max_body: at least 1024 bytes".into());
        }
        if !(self.limits.publish_rate > 0.0 && self.limits.publish_burst >= 1.0) {
            problems.push("limits: publish_rate must be above 0 and publish_burst at least 1".into());
        }
        if self.store.max_events == Some(0) {
            problems.push("store.max_events: at least 1 (leave it out to keep every event)".into());
        }
        let mut names: Vec<String> = Vec::new();
        let mut wikis: Vec<(String, String)> = Vec::new();
        for (index, publisher) in self.publishers.iter().enumerate() {
            let at = format!("publisher[{index}] ({:?})", publisher.name);
            if let Err(reason) = check_nick(&publisher.name) {
                problems.push(format!("{at}: name: {reason}"));
            }
            if names.iter().any(|name| name.eq_ignore_ascii_case(&publisher.name)) {
                problems.push(format!("{at}: name: used by another publisher"));
            }
            names.push(publisher.name.clone());
            match (&publisher.token, &publisher.token_hash) {
                (Some(_), Some(_)) => problems.push(format!("{at}: give token or token_hash, not both")),
                (None, None) => {
                    problems.push(format!("{at}: token_hash missing (make one with `wikiwire token`)"))
                }
                (Some(token), None) if token.len() < token::MIN_LENGTH => problems.push(format!(
                    "{at}: token: at least {} characters (make one with `wikiwire token`)",
                    token::MIN_LENGTH
                )),
                (None, Some(hash)) => {
                    if let Err(reason) = token::parse_hash(hash) {
                        problems.push(format!("{at}: token_hash: {reason}"));
                    }
                }
                _ => {}
            }
            if publisher.wikis.is_empty() {
                problems.push(format!("{at}: wikis: name at least one wiki"));
            }
            for wiki in &publisher.wikis {
                if let Err(reason) = check_wiki_name(wiki) {
                    problems.push(format!("{at}: wikis: {wiki:?}: {reason}"));
                }
                if let Some((_, owner)) = wikis.iter().find(|(known, _)| known.eq_ignore_ascii_case(wiki)) {
                    problems.push(format!("{at}: wikis: {wiki:?} already belongs to publisher {owner:?}"));
                }
                wikis.push((wiki.clone(), publisher.name.clone()));
            }
            if let Some(Err(reason)) = publisher.base_url.as_deref().map(check_url) {
                problems.push(format!("{at}: base_url: {reason}"));
            }
        }
        self.check_irc(&wikis, &mut problems);
        self.check_relays(&mut problems);
        self.check_rcfeeds(&mut problems);
        self.check_xmpp(&mut problems);
        if let Some(cluster) = &self.cluster {
            cluster.check(&mut problems);
        }
        problems
    }

    fn check_xmpp(&self, problems: &mut Vec<String>) {
        // `local@domain`; a domain needs no dot (Prosody's default host is `localhost`).
        let bare_jid = |text: &str| {
            let (local, domain) = text.split_once('@').unwrap_or(("", text));
            !local.is_empty() && !domain.is_empty() && !text.contains(['/', ' '])
        };
        if let Some(xmpp) = &self.xmpp {
            // The bot's account may name the resource to bind: `bot@example.org/wikiwire`.
            let (account, resource) = xmpp.jid.split_once('/').unwrap_or((&xmpp.jid, "x"));
            if !bare_jid(account) || resource.is_empty() || resource.contains(char::is_whitespace) {
                problems.push(format!(
                    "xmpp.jid: {:?} is not a JID like bot@example.org (or bot@example.org/resource)",
                    xmpp.jid
                ));
            }
            if xmpp.password.is_empty() {
                problems.push("xmpp.password: required".into());
            }
            if !crate::i18n_languages().contains(&xmpp.language.as_str()) {
                problems.push(format!("xmpp.language: one of {}", crate::i18n_languages().join(", ")));
            }
            for (index, room) in xmpp.rooms.iter().enumerate() {
                if !bare_jid(&room.jid) {
                    problems.push(format!(
                        "xmpp.rooms[{index}].jid: {:?} is not a room JID like changes@conference.example.org",
                        room.jid
                    ));
                }
                if let Err(error) = Filter::parse(&room.filter) {
                    problems.push(format!("xmpp.rooms[{index}].filter: {error}"));
                }
            }
        }
        if let Some(xmlrpc) = &self.xmlrpc {
            if self.xmpp.is_none() {
                problems.push("xmlrpc: the XML-RPC API needs the bot: configure [xmpp]".into());
            }
            if xmlrpc.secret.len() < 8 {
                problems.push("xmlrpc.secret: at least 8 characters".into());
            }
        }
        if let Some(wiki) = &self.wiki {
            if let Err(reason) = check_url(&wiki.url) {
                problems.push(format!("wiki.url: {reason}"));
            }
            match wiki.dialect {
                WikiDialect::Moin if wiki.secret.is_none() => {
                    problems.push("wiki.secret: required for the moin dialect (getJabberAuthToken)".into())
                }
                WikiDialect::Wikirpc2 if wiki.user.is_some() != wiki.password.is_some() => {
                    problems.push("wiki: give both user and password, or neither".into())
                }
                _ => {}
            }
        }
    }

    fn check_rcfeeds(&self, problems: &mut Vec<String>) {
        for (index, feed) in self.rcfeeds.iter().enumerate() {
            let at = format!("rcfeed[{index}] ({})", feed.listen);
            if !self.publishers.is_empty()
                && !self
                    .publishers
                    .iter()
                    .any(|publisher| publisher.name.eq_ignore_ascii_case(&feed.publisher))
            {
                problems.push(format!("{at}: publisher: no [[publisher]] named {:?}", feed.publisher));
            }
            if self.rcfeeds[..index].iter().any(|other| other.listen == feed.listen) {
                problems.push(format!("{at}: listen: another rcfeed listens there"));
            }
        }
    }

    fn check_relays(&self, problems: &mut Vec<String>) {
        let mut names: Vec<String> = Vec::new();
        for (index, relay) in self.relays.iter().enumerate() {
            let at = format!("relay[{index}] ({:?})", relay.url);
            if let Err(reason) = wikiwire_irc_wire::IrcTarget::parse(&relay.url) {
                problems.push(format!("{at}: url: {reason}"));
            }
            if let Err(reason) = check_nick(&relay.nick) {
                problems.push(format!("{at}: nick: {reason}"));
            }
            if !(relay.rate > 0.0 && relay.rate <= 100.0) {
                problems.push(format!("{at}: rate: lines per second, above 0 and at most 100"));
            }
            if let Err(error) = Filter::parse(&relay.filter) {
                problems.push(format!("{at}: filter: {error}"));
            }
            if relay.auth() != RelayAuth::None && relay.password.is_none() {
                problems.push(format!("{at}: auth needs a password"));
            }
            let name = relay.cursor_name();
            if names.contains(&name) {
                problems.push(format!("{at}: two relays share the position {name:?}; give one a name"));
            }
            names.push(name);
        }
    }

    fn check_irc(&self, wikis: &[(String, String)], problems: &mut Vec<String>) {
        let irc = &self.irc;
        if let Err(reason) = check_server_name(&irc.server_name) {
            problems.push(format!("irc.server_name: {reason}"));
        }
        if irc.network.is_empty() || !irc.network.bytes().all(|b| b.is_ascii_graphic()) {
            problems.push("irc.network: one word of visible ASCII characters".into());
        }
        if irc.tls_cert.is_some() != irc.tls_key.is_some() {
            problems.push("irc: give both tls_cert and tls_key for the TLS listener".into());
        }
        if irc.sendq < 4096 {
            problems.push("irc.sendq: at least 4096 bytes".into());
        }
        if !(irc.flood_rate > 0.0 && irc.flood_burst >= 1.0) {
            problems.push("irc: flood_rate must be above 0 and flood_burst at least 1".into());
        }
        if !(1..=1000).contains(&irc.history_limit) {
            problems.push("irc.history_limit: between 1 and 1000".into());
        }
        if !(1..=1_000_000).contains(&irc.dcc_max_events) {
            problems.push("irc.dcc_max_events: between 1 and 1000000".into());
        }
        if irc.dcc_timeout.is_zero() {
            problems.push("irc.dcc_timeout: more than 0 seconds".into());
        }
        if irc.max_clients == 0 {
            problems.push("irc.max_clients: at least 1".into());
        }
        let mut names: Vec<String> =
            wikis.iter().flat_map(|(wiki, _)| [format!("#{wiki}"), format!("#{wiki}.events")]).collect();
        for (index, channel) in self.channels.iter().enumerate() {
            let at = format!("channel[{index}] ({:?})", channel.name);
            if let Err(reason) = check_channel_name(&channel.name) {
                problems.push(format!("{at}: name: {reason}"));
            }
            if names.iter().any(|name| name.eq_ignore_ascii_case(&channel.name)) {
                problems.push(format!(
                    "{at}: name: already a channel (every wiki has #<wiki> and #<wiki>.events)"
                ));
            }
            names.push(channel.name.clone());
            if let Err(error) = Filter::parse(&channel.filter) {
                problems.push(format!("{at}: filter: {error}"));
            }
        }
    }

    /// `http.public_url` without a trailing slash, or the listen address.
    pub fn public_url(&self) -> String {
        match &self.http.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.http.listen),
        }
    }
}

/// Channel names: `#`, then at most 63 bytes without spaces, commas, colons or control characters.
pub fn check_channel_name(name: &str) -> Result<(), &'static str> {
    let Some(rest) = name.strip_prefix('#') else { return Err("must start with #") };
    if rest.is_empty() || name.len() > 64 {
        return Err("1 to 63 characters after #");
    }
    if rest.chars().any(|c| c.is_control() || c.is_whitespace() || c == ',' || c == ':') {
        return Err("no spaces, commas, colons or control characters");
    }
    Ok(())
}

fn check_server_name(name: &str) -> Result<(), &'static str> {
    let well_formed = !name.is_empty()
        && name.len() <= 63
        && name.contains('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if well_formed { Ok(()) } else { Err("a host name with a dot, like irc.example.org") }
}

fn check_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !url.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!("{url:?} is not an http:// or https:// URL")),
    }
}

/// Publisher names are IRC nicks (RFC 2812 §2.3.1, NICKLEN 32).
pub fn check_nick(nick: &str) -> Result<(), &'static str> {
    let special = |b: u8| b"[]\\`^{}_|".contains(&b);
    let bytes = nick.as_bytes();
    match bytes.first() {
        None => Err("required"),
        Some(_) if bytes.len() > 32 => Err("at most 32 characters (it is an IRC nick)"),
        Some(&first) if !(first.is_ascii_alphabetic() || special(first)) => {
            Err("must start with a letter or one of []\\`^{}_| (it is an IRC nick)")
        }
        Some(_) if !bytes.iter().all(|&b| b.is_ascii_alphanumeric() || special(b) || b == b'-') => {
            Err("use letters, digits, '-' and []\\`^{}_| (it is an IRC nick)")
        }
        Some(_) => Ok(()),
    }
}

/// Durations as seconds or `<number><s|m|h|d>`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) =
        text.split_at(text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len()));
    let value: f64 =
        number.parse().map_err(|_| format!("{text:?} is not a duration like 30s, 15m, 12h or 90d"))?;
    let seconds = match unit {
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is out of range"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(u64),
    Text(String),
}

fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    match DurationText::deserialize(deserializer)? {
        DurationText::Seconds(seconds) => Ok(Duration::from_secs(seconds)),
        DurationText::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
    }
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcc_ports_are_a_range_or_one_port() {
        let config = Config::parse("[irc]\ndcc_ports = \"6800-6809\"").unwrap();
        assert_eq!(config.irc.dcc_ports, Some(PortRange { first: 6800, last: 6809 }));
        let config = Config::parse("[irc]\ndcc_ports = 6800").unwrap();
        assert_eq!(config.irc.dcc_ports.map(PortRange::ports), Some(6800..=6800));
        for wrong in ["\"6809-6800\"", "\"0-3\"", "\"ten\"", "70000"] {
            assert!(Config::parse(&format!("[irc]\ndcc_ports = {wrong}")).is_err(), "{wrong}");
        }
    }

    #[test]
    fn an_empty_file_is_the_embedded_default() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_url(), "http://127.0.0.1:8080");
        assert!(config.check().is_empty());
    }

    #[test]
    fn the_bot_account_may_be_on_a_dotless_domain_and_name_its_resource() {
        let jid_problems = |jid: &str| {
            let config = Config::parse(&format!("[xmpp]\njid = {jid:?}\npassword = \"pw\"\n")).unwrap();
            config.check().into_iter().filter(|problem| problem.starts_with("xmpp.jid")).count()
        };
        assert_eq!(jid_problems("bot@localhost"), 0);
        assert_eq!(jid_problems("bot@example.org/wikiwire"), 0);
        assert_eq!(jid_problems("bot@example.org"), 0);
        for wrong in ["example.org", "@example.org", "bot@", "bot@example.org/", "bot@exa mple.org"] {
            assert_eq!(jid_problems(wrong), 1, "{wrong}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_types_say_where() {
        let error = Config::parse("[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert!(error.contains("line 3") && error.contains("lisen"), "{error}");
        let error = Config::parse("[store]\nmax_age = \"ten days\"\n").unwrap_err();
        assert!(error.contains("ten days"), "{error}");
    }

    #[test]
    fn every_mistake_is_reported() {
        let config = Config::parse(
            r#"
            [http]
            public_url = "ftp://x"
            [[publisher]]
            name = "9moin"
            token = "short"
            wikis = ["Moin Master"]
            [[publisher]]
            name = "dup"
            token_hash = "sha256:zz"
            wikis = []
            [[publisher]]
            name = "DUP"
            token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            token = "abcdefghijklmnopqrstuvwxyz"
            wikis = ["A", "a"]
            base_url = "wiki.example"
            "#,
        )
        .unwrap();
        let problems = config.check().join("\n");
        for expected in [
            "http.public_url",
            "name: must start with a letter",
            "token: at least",
            "\"Moin Master\"",
            "token_hash: ",
            "wikis: name at least one wiki",
            "name: used by another publisher",
            "token or token_hash, not both",
            "\"a\" already belongs",
            "base_url",
        ] {
            assert!(problems.contains(expected), "missing {expected:?} in:\n{problems}");
        }
    }

    #[test]
    fn channels_are_checked() {
        let config = Config::parse(
            r##"
            [irc]
            server_name = "no dots"
            tls_cert = "/x.pem"
            [[publisher]]
            name = "moin"
            token = "abcdefghijklmnopqrstuvwxyz"
            wikis = ["Moin"]
            [[channel]]
            name = "antispam"
            [[channel]]
            name = "#moin.EVENTS"
            [[channel]]
            name = "#spam"
            filter = "colour=red"
            format = "packed"
            [[channel]]
            name = "#ok"
            format = "color"
            filter = "wiki=Moin&action=antispam_updated"
            "##,
        )
        .unwrap();
        let problems = config.check().join("\n");
        for expected in [
            "irc.server_name",
            "tls_cert and tls_key",
            "must start with #",
            "already a channel",
            "filter: colour",
        ] {
            assert!(problems.contains(expected), "missing {expected:?} in:\n{problems}");
        }
        assert_eq!(config.check().len(), 5, "{problems}");
        assert_eq!(config.channels[3].format, Format::Colour);
    }

    #[test]
    fn rcfeeds_are_checked() {
        let config = Config::parse(
            r##"
            [[publisher]]
            name = "mediawiki"
            token = "wwt_a-token-long-enough-for-the-check"
            wikis = ["enwiki"]
            [[rcfeed]]
            listen = "127.0.0.1:9390"
            publisher = "mediawiki"
            [[rcfeed]]
            listen = "127.0.0.1:9390"
            publisher = "nobody"
            allow = ["192.0.2.7"]
            "##,
        )
        .unwrap();
        assert_eq!(
            config.rcfeeds[0].allow,
            vec![
                std::net::IpAddr::from([127, 0, 0, 1]),
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
            ],
            "loopback only unless told"
        );
        let problems = config.check();
        assert_eq!(
            problems,
            vec![
                "rcfeed[1] (127.0.0.1:9390): publisher: no [[publisher]] named \"nobody\"".to_owned(),
                "rcfeed[1] (127.0.0.1:9390): listen: another rcfeed listens there".to_owned(),
            ]
        );
        assert!(Config::parse("[[rcfeed]]\nlisten = \"not an address\"\npublisher = \"x\"").is_err());
    }

    #[test]
    fn relays_are_checked() {
        let config = Config::parse(
            r##"
            [[relay]]
            url = "irc://irc.example.org/#wiki"
            nick = "wikirelay"
            password = "secret"
            [[relay]]
            url = "http://nope"
            nick = "9bad"
            rate = 0
            filter = "colour=red"
            auth = "nickserv"
            [[relay]]
            url = "irc://irc.example.org/#wiki"
            nick = "again"
            "##,
        )
        .unwrap();
        assert_eq!(config.relays[0].auth(), RelayAuth::Sasl);
        assert_eq!(config.relays[2].auth(), RelayAuth::None);
        let problems = config.check().join("\n");
        for expected in
            ["url: ", "nick: ", "rate: ", "filter: colour", "auth needs a password", "share the position"]
        {
            assert!(problems.contains(expected), "missing {expected:?} in:\n{problems}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d").unwrap(), Duration::from_secs(90 * 86_400));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("3 weeks").is_err());
        let config = Config::parse("[store]\nmax_age = \"12h\"\n[http]\nheartbeat = 5\n").unwrap();
        assert_eq!(config.store.max_age, Some(Duration::from_secs(43_200)));
        assert_eq!(config.http.heartbeat, Duration::from_secs(5));
    }
}
