//! The configuration file (TOML). The keys SPEC §7 fixes keep their names; everything has a safe
//! default so `wikiwire serve` runs with no file at all. `Config::check` finds every mistake at
//! once and says where, for `wikiwire config check`.
//!
//! One module per section, each with its types, its one `Default` and its own check:
//!
//! | module | sections |
//! |---|---|
//! | `http` | `[http]` |
//! | `store` | `[store]`, `[limits]` |
//! | `publisher` | `[[publisher]]`, `[[rcfeed]]` |
//! | `irc` | `[irc]`, `[[channel]]` (nick and channel-name rules are `wikiwire-irc-wire`'s) |
//! | `relay` | `[[relay]]` |
//! | `xmpp` | `[xmpp]`, `[xmlrpc]`, `[wiki]` |
//! | `cluster` | `[cluster]` |
//! | `stream` | `[[stream]]` (more streams for `/v2/stream`) |

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::token;

mod cluster;
mod http;
mod irc;
mod publisher;
mod relay;
mod store;
mod stream;
mod xmpp;

pub use cluster::{ClusterConfig, DEFAULT_LEASE_TTL};
pub use http::HttpConfig;
pub use irc::{ChannelConfig, IrcConfig, PortRange};
pub use publisher::{PublisherConfig, RcFeedChannels, RcFeedConfig};
pub use relay::{RelayAuth, RelayConfig};
pub use store::{LimitsConfig, StoreConfig, Synchronous};
pub use stream::StreamConfig;
pub use wikiwire_irc_wire::names::{check_channel_name, check_nick};
pub use xmpp::{RoomConfig, SubscriptionPolicy, WikiConfig, WikiDialect, XmlRpcConfig, XmppConfig};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub limits: LimitsConfig,
    #[serde(rename = "publisher")]
    pub publishers: Vec<PublisherConfig>,
    pub irc: IrcConfig,
    #[serde(rename = "channel")]
    pub channels: Vec<ChannelConfig>,
    #[serde(rename = "relay")]
    pub relays: Vec<RelayConfig>,
    /// MediaWiki RCFeed listeners (UDP, `JSONRCFeedFormatter`).
    #[serde(rename = "rcfeed")]
    pub rcfeeds: Vec<RcFeedConfig>,
    /// Named streams for `/v2/stream` beside the built-in ones.
    #[serde(rename = "stream")]
    pub streams: Vec<StreamConfig>,
    /// The Jabber notification bot (SPEC §5); absent: no bot.
    pub xmpp: Option<XmppConfig>,
    /// The bot's XML-RPC API for wikis (MoinMoin's `notification_bot_uri`).
    pub xmlrpc: Option<XmlRpcConfig>,
    /// The wiki the bot's commands talk to.
    pub wiki: Option<WikiConfig>,
    /// Present: the log lives in NATS JetStream, shared with other hub nodes.
    pub cluster: Option<ClusterConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("./wikiwire-data"),
            http: HttpConfig::default(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            publishers: Vec::new(),
            irc: IrcConfig::default(),
            channels: Vec::new(),
            relays: Vec::new(),
            rcfeeds: Vec::new(),
            streams: Vec::new(),
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
    /// The reason is in the message, and not also a `source`: printed with its causes (as
    /// anyhow does) it would be said twice.
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {}", problems.join("\n  "))]
    Invalid { path: PathBuf, problems: Vec<String> },
}

/// A check of the configuration that lives with a protocol: adds one line per problem.
pub type ProtocolCheck = fn(&Config, &mut Vec<String>);

impl Config {
    /// Reads and checks a file: the hub's rules (`check`), then the rules of the protocol crates
    /// that are not the hub's to know (the bot's JIDs and languages: `wikiwire_xmpp::check_config`).
    pub fn load(path: &Path, protocol_checks: &[ProtocolCheck]) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|reason| ConfigError::Read { path: path.to_owned(), reason })?;
        let config =
            Config::parse(&text).map_err(|message| ConfigError::Syntax { path: path.to_owned(), message })?;
        let mut problems = config.check();
        for check in protocol_checks {
            check(&config, &mut problems);
        }
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
                && publisher.allow_weak_token
                && token.len() >= token::MIN_LENGTH
                && let Some(weakness) = token::weakness(token)
            {
                warnings.push(format!(
                    "publisher[{index}] ({:?}): token: easy to guess ({weakness}), allowed by \
                     allow_weak_token; make a strong one with `wikiwire token --name {}` and keep only its \
                     token_hash here",
                    publisher.name, publisher.name
                ));
            }
        }
        if let Some(cluster) = &self.cluster {
            cluster.warnings(&mut warnings);
        }
        warnings
    }

    /// Everything wrong with the meaning of the file, each as one readable sentence: each section
    /// checks itself.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.http.check(&mut problems);
        self.limits.check(&mut problems);
        self.store.check(&mut problems);
        let wikis = PublisherConfig::check_all(&self.publishers, &mut problems);
        self.irc.check(&self.channels, &wikis, &mut problems);
        RelayConfig::check_all(&self.relays, &mut problems);
        RcFeedConfig::check_all(&self.rcfeeds, &self.publishers, &mut problems);
        StreamConfig::check_all(&self.streams, &mut problems);
        XmppConfig::check_all(self.xmpp.as_ref(), self.xmlrpc.as_ref(), self.wiki.as_ref(), &mut problems);
        if let Some(cluster) = &self.cluster {
            cluster.check(&mut problems);
        }
        problems
    }

    /// `http.public_url` without a trailing slash, or the listen address.
    pub fn public_url(&self) -> String {
        match &self.http.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.http.listen),
        }
    }
}

pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !url.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!("{url:?} is not an http:// or https:// URL")),
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

pub(crate) fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    match DurationText::deserialize(deserializer)? {
        DurationText::Seconds(seconds) => Ok(Duration::from_secs(seconds)),
        DurationText::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
    }
}

pub(crate) fn optional_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wikiwire_event::Format;

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
            [publisher.links]
            diff = "{base}{page}?rev={revison}"
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
            "publisher[2] (\"DUP\"): links.diff: unknown placeholder {revison}",
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
            token = "wwt_abcdefghijklmnopqrstuvwxyz0123456789"
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
