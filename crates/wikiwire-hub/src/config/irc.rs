//! `[irc]` and `[[channel]]`: the embedded IRC server (SPEC §3) and channels of one's own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use wikiwire_event::{Filter, Format};
use wikiwire_irc_wire::names::{check_channel_name, check_server_name};

/// Events a publisher's connection may have read and not yet committed; past it the connection
/// is not read (TCP pushes back on the publisher) until the store catches up.
pub const DEFAULT_PUBLISH_QUEUE: usize = 1000;
/// Most events in one DCC file.
pub const DEFAULT_DCC_MAX_EVENTS: usize = 10_000;
/// Most bytes in one DCC file (the file then ends early and says where to ask again): with
/// `dcc_max_transfers` it bounds the memory DCC holds.
pub const DEFAULT_DCC_MAX_BYTES: usize = 8 * 1024 * 1024;
/// DCC offers and transfers open at once, on the whole server.
pub const DEFAULT_DCC_MAX_TRANSFERS: usize = 10;
/// DCC offers and transfers open at once for one client address.
pub const DEFAULT_DCC_MAX_PER_IP: usize = 2;
/// Channels made from RCFeed prefixes (`[[rcfeed]] channels = "from-prefix"`) at most: a farm
/// as large as Wikimedia's has about a thousand wikis.
pub const DEFAULT_MAX_PREFIX_CHANNELS: usize = 2048;
/// The largest `max_prefix_channels` accepted: room for each is kept from the start.
pub const MAX_PREFIX_CHANNELS: usize = 100_000;

/// The embedded IRC server (SPEC §3).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IrcConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// The server's name in replies and message sources.
    pub server_name: String,
    /// ISUPPORT NETWORK.
    pub network: String,
    /// A TLS listener, used when `tls_cert` and `tls_key` are set.
    pub tls_listen: SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Message of the day; without it, 422.
    pub motd: Option<String>,
    /// How `#<wiki>` shows events (`#<wiki>.events` is always packed).
    pub wiki_format: Format,
    pub max_clients: usize,
    /// Connections one address may hold (0: no limit).
    pub max_per_ip: usize,
    /// Bytes queued for one client before it is disconnected (SendQ exceeded).
    pub sendq: usize,
    #[serde(deserialize_with = "super::duration")]
    pub registration_timeout: Duration,
    /// Idle time before the server sends PING.
    #[serde(deserialize_with = "super::duration")]
    pub ping_interval: Duration,
    /// Time to answer that PING.
    #[serde(deserialize_with = "super::duration")]
    pub ping_timeout: Duration,
    /// Lines a listener may send at once, and per second after that; faster input waits.
    pub flood_burst: f64,
    pub flood_rate: f64,
    /// Most events one CHATHISTORY request returns (ISUPPORT CHATHISTORY).
    pub history_limit: usize,
    /// Ports HistServ offers DCC transfers on (`"6800-6809"`, or one port); none: no DCC.
    pub dcc_ports: Option<PortRange>,
    /// The address DCC offers name, for a hub behind NAT; default: the address the client
    /// reached (its connection's local address).
    pub dcc_address: Option<std::net::IpAddr>,
    /// How long a DCC offer waits for its client to connect.
    #[serde(deserialize_with = "super::duration")]
    pub dcc_timeout: Duration,
    /// Most events one DCC file holds (the rest: ask again from where it ends).
    pub dcc_max_events: usize,
    /// Most bytes one DCC file holds; it ends early past this (the rest: ask again).
    pub dcc_max_bytes: usize,
    /// DCC offers and transfers open at once on the server.
    pub dcc_max_transfers: usize,
    /// DCC offers and transfers open at once for one client address.
    pub dcc_max_per_ip: usize,
    /// Events one publisher connection may have read but not yet committed; more input waits.
    pub publish_queue: usize,
    /// irc.wikimedia.org's ways, for the bots written for it: `mediawiki` channels are spoken
    /// by `rc-pmtpa`, and listeners may share a nick (they cannot see each other).
    pub wikimedia_compat: bool,
    /// Most channels made from RCFeed prefixes; past it a new prefix is counted and not made.
    pub max_prefix_channels: usize,
}

impl Default for IrcConfig {
    fn default() -> IrcConfig {
        IrcConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 6667)),
            server_name: "irc.wikiwire.localhost".into(),
            network: "wikiwire".into(),
            tls_listen: SocketAddr::from(([127, 0, 0, 1], 6697)),
            tls_cert: None,
            tls_key: None,
            motd: None,
            wiki_format: Format::default(),
            max_clients: 20_000,
            max_per_ip: 64,
            // One publish batch (1000 events) of typical lines with their JSON tag fits, so a
            // client that reads at full speed is never cut off by a burst; only a stalled one.
            sendq: 4 * 1024 * 1024,
            registration_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(120),
            ping_timeout: Duration::from_secs(60),
            flood_burst: 20.0,
            flood_rate: 5.0,
            history_limit: 100,
            dcc_ports: None,
            dcc_address: None,
            dcc_timeout: Duration::from_secs(60),
            dcc_max_events: DEFAULT_DCC_MAX_EVENTS,
            dcc_max_bytes: DEFAULT_DCC_MAX_BYTES,
            dcc_max_transfers: DEFAULT_DCC_MAX_TRANSFERS,
            dcc_max_per_ip: DEFAULT_DCC_MAX_PER_IP,
            publish_queue: DEFAULT_PUBLISH_QUEUE,
            wikimedia_compat: false,
            max_prefix_channels: DEFAULT_MAX_PREFIX_CHANNELS,
        }
    }
}

impl IrcConfig {
    /// `wikis`: every configured wiki (each has `#<wiki>` and `#<wiki>.events`).
    pub(super) fn check(
        &self,
        channels: &[ChannelConfig],
        wikis: &[(String, String)],
        problems: &mut Vec<String>,
    ) {
        let irc = self;
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
        if irc.dcc_max_bytes < 4096 {
            problems.push("irc.dcc_max_bytes: at least 4096 bytes".into());
        }
        if irc.dcc_max_transfers == 0 || irc.dcc_max_per_ip == 0 {
            problems.push("irc: dcc_max_transfers and dcc_max_per_ip must be at least 1".into());
        }
        if !(1..=1_000_000).contains(&irc.publish_queue) {
            problems.push("irc.publish_queue: between 1 and 1000000".into());
        }
        if irc.dcc_timeout.is_zero() {
            problems.push("irc.dcc_timeout: more than 0 seconds".into());
        }
        if irc.max_clients == 0 {
            problems.push("irc.max_clients: at least 1".into());
        }
        if irc.max_prefix_channels > MAX_PREFIX_CHANNELS {
            problems.push(format!("irc.max_prefix_channels: at most {MAX_PREFIX_CHANNELS}"));
        }
        let mut names: Vec<String> =
            wikis.iter().flat_map(|(wiki, _)| [format!("#{wiki}"), format!("#{wiki}.events")]).collect();
        for (index, channel) in channels.iter().enumerate() {
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

#[cfg(test)]
mod tests {
    use crate::config::{Config, RcFeedChannels};

    #[test]
    fn wikimedia_compatibility_is_asked_for_and_bounded() {
        let plain = Config::parse("").unwrap();
        assert!(!plain.irc.wikimedia_compat);
        assert_eq!(plain.irc.max_prefix_channels, super::DEFAULT_MAX_PREFIX_CHANNELS);
        let config = Config::parse(
            r#"
            [irc]
            wikimedia_compat = true
            max_prefix_channels = 100001
            [[publisher]]
            name = "wmf"
            token = "wwt_abcdefghijklmnopqrstuvwxyz0123456789"
            wikis = ["enwiki"]
            [[rcfeed]]
            listen = "127.0.0.1:9390"
            publisher = "wmf"
            channels = "from-prefix"
            "#,
        )
        .unwrap();
        assert!(config.irc.wikimedia_compat);
        assert_eq!(config.rcfeeds[0].channels, RcFeedChannels::FromPrefix);
        assert_eq!(config.check(), ["irc.max_prefix_channels: at most 100000"]);
        let wrong = "[[rcfeed]]\nlisten = \"127.0.0.1:9390\"\npublisher = \"w\"\nchannels = \"all\"";
        assert!(Config::parse(wrong).unwrap_err().contains("from-prefix"));
    }
}
