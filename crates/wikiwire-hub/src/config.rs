//! The hub's part of the configuration file (TOML): what every front end shares. The keys SPEC
//! §7 fixes keep their names; everything has a safe default so `wikiwire serve` runs with no file
//! at all. Each front end owns its own sections (`[irc]`: `wikiwire_irc::Config`; `[[relay]]`:
//! `wikiwire_relay::Config`; `[xmpp]`, `[xmlrpc]`, `[wiki]`: `wikiwire_xmpp::Config`), and the
//! binary composes the whole file from the parts, refusing keys that no part knows.
//!
//! One module per section, each with its types, its one `Default` and its own check:
//!
//! | module | sections |
//! |---|---|
//! | `http` | `[http]` (its `public_url` is every front end's) |
//! | `store` | `[store]`, `[limits]` |
//! | `publisher` | `[[publisher]]`, `[[rcfeed]]` |
//! | `channel` | `[[channel]]` (nick and channel-name rules are `wikiwire-irc-wire`'s) |
//! | `cluster` | `[cluster]` |
//! | `stream` | `[[stream]]` (more streams for `/v2/stream`) |
//!
//! Here too the helpers every part's sections use: durations ([`duration`]) and URLs
//! ([`check_url`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::token;

mod channel;
mod cluster;
mod http;
mod publisher;
mod store;
mod stream;

pub use channel::ChannelConfig;
pub use cluster::{ClusterConfig, DEFAULT_LEASE_TTL};
pub use http::HttpConfig;
pub use publisher::{PublisherConfig, RcFeedChannels, RcFeedConfig};
pub use store::{LimitsConfig, StoreConfig, Synchronous};
pub use stream::StreamConfig;
pub use wikiwire_irc_wire::names::{check_channel_name, check_nick};

/// `data_dir`.
pub const DEFAULT_DATA_DIR: &str = "./wikiwire-data";

/// The hub's sections. Not `deny_unknown_fields`: the other parts' sections sit beside these in
/// the same file; the binary refuses a key no part knows (each section refuses its own unknown
/// keys).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub limits: LimitsConfig,
    #[serde(rename = "publisher")]
    pub publishers: Vec<PublisherConfig>,
    #[serde(rename = "channel")]
    pub channels: Vec<ChannelConfig>,
    /// MediaWiki RCFeed listeners (UDP, `JSONRCFeedFormatter`).
    #[serde(rename = "rcfeed")]
    pub rcfeeds: Vec<RcFeedConfig>,
    /// Named streams for `/v2/stream` beside the built-in ones.
    #[serde(rename = "stream")]
    pub streams: Vec<StreamConfig>,
    /// Present: the log lives in NATS JetStream, shared with other hub nodes.
    pub cluster: Option<ClusterConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            http: HttpConfig::default(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            publishers: Vec::new(),
            channels: Vec::new(),
            rcfeeds: Vec::new(),
            streams: Vec::new(),
            cluster: None,
        }
    }
}

impl Config {
    /// Parses TOML; wrong types and unknown keys inside the hub's sections are errors with line
    /// and column.
    pub fn parse(text: &str) -> Result<Config, SyntaxError> {
        parse(text)
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

    /// Everything wrong with the meaning of the hub's sections, each as one readable sentence:
    /// each section checks itself.
    pub fn check(&self, problems: &mut Vec<String>) {
        self.http.check(problems);
        self.limits.check(problems);
        self.store.check(problems);
        let wikis = PublisherConfig::check_all(&self.publishers, problems);
        ChannelConfig::check_all(&self.channels, &wikis, problems);
        RcFeedConfig::check_all(&self.rcfeeds, &self.publishers, problems);
        StreamConfig::check_all(&self.streams, problems);
        if let Some(cluster) = &self.cluster {
            cluster.check(problems);
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

/// Text that is not what a part reads: TOML's error, which says where (line and column, the
/// line itself) and why.
pub type SyntaxError = toml::de::Error;

/// Parses one part of the file (the hub's, or a front end's) from the whole text; wrong types
/// and unknown keys inside a section are errors with line and column.
pub fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, SyntaxError> {
    toml::from_str(text)
}

/// For a section's `url`-like keys: `http://` or `https://` and something after it.
pub fn check_url(url: &str) -> Result<(), String> {
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

/// `#[serde(deserialize_with = "duration")]`: a duration as seconds or text ([`parse_duration`]).
pub fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    match DurationText::deserialize(deserializer)? {
        DurationText::Seconds(seconds) => Ok(Duration::from_secs(seconds)),
        DurationText::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
    }
}

/// [`duration`] for an optional key.
pub fn optional_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wikiwire_event::Format;

    fn problems(config: &Config) -> Vec<String> {
        let mut problems = Vec::new();
        config.check(&mut problems);
        problems
    }

    /// What `config check` reports, one problem a line, after asserting that it says each of `expected`.
    fn reported(config: &Config, expected: &[&str]) -> String {
        let problems = problems(config).join("\n");
        for expected in expected {
            assert!(problems.contains(expected), "missing {expected:?} in:\n{problems}");
        }
        problems
    }

    #[test]
    fn an_empty_file_is_the_embedded_default() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_url(), "http://127.0.0.1:8080");
        assert!(problems(&config).is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_types_say_where() {
        let error = Config::parse("[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err().to_string();
        assert!(error.contains("line 3") && error.contains("lisen"), "{error}");
        let error = Config::parse("[store]\nmax_age = \"ten days\"\n").unwrap_err().to_string();
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
        reported(
            &config,
            &[
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
            ],
        );
    }

    #[test]
    fn channels_are_checked() {
        let config = Config::parse(
            r##"
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
        let problems = reported(&config, &["must start with #", "already a channel", "filter: colour"]);
        assert_eq!(problems.lines().count(), 3, "{problems}");
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
        assert_eq!(
            problems(&config),
            vec![
                "rcfeed[1] (127.0.0.1:9390): publisher: no [[publisher]] named \"nobody\"".to_owned(),
                "rcfeed[1] (127.0.0.1:9390): listen: another rcfeed listens there".to_owned(),
            ]
        );
        assert!(Config::parse("[[rcfeed]]\nlisten = \"not an address\"\npublisher = \"x\"").is_err());
        let prefix = "[[rcfeed]]\nlisten = \"127.0.0.1:9390\"\npublisher = \"w\"\nchannels = \"from-prefix\"";
        assert_eq!(Config::parse(prefix).unwrap().rcfeeds[0].channels, RcFeedChannels::FromPrefix);
        let wrong = prefix.replace("from-prefix", "all");
        assert!(Config::parse(&wrong).unwrap_err().to_string().contains("from-prefix"));
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
