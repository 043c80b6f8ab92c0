//! `[irc]`: the embedded IRC server's section of the configuration (SPEC §3), its one `Default`
//! and its check. The binary composes it into the whole file; `[[channel]]` is the hub's (the
//! HTTP API lists those channels too), and nick and channel-name rules are `wikiwire-irc-wire`'s.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use wikiwire_event::Format;
use wikiwire_hub::config::duration;
use wikiwire_irc_wire::names::check_server_name;
use wikiwire_irc_wire::target::{DEFAULT_PORT, DEFAULT_TLS_PORT};

/// `irc.listen`: loopback, so that a hub is not open to the world until it is asked to be.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, DEFAULT_PORT));
/// `irc.tls_listen`, used when `tls_cert` and `tls_key` are set.
pub const DEFAULT_TLS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, DEFAULT_TLS_PORT));
pub const DEFAULT_SERVER_NAME: &str = "irc.wikiwire.localhost";
pub const DEFAULT_NETWORK: &str = "wikiwire";
pub const DEFAULT_MAX_CLIENTS: usize = 20_000;
pub const DEFAULT_MAX_PER_IP: usize = 64;
/// One publish batch (1000 events) of typical lines with their JSON tag fits, so a client that
/// reads at full speed is never cut off by a burst; only a stalled one.
pub const DEFAULT_SENDQ: usize = 4 * 1024 * 1024;
pub const DEFAULT_REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(120);
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_FLOOD_BURST: f64 = 20.0;
pub const DEFAULT_FLOOD_RATE: f64 = 5.0;
/// Most events one CHATHISTORY request returns.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;
/// How long a DCC offer waits for its client to connect.
pub const DEFAULT_DCC_TIMEOUT: Duration = Duration::from_secs(60);
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
/// The least `sendq` and `dcc_max_bytes`: below it not even a few lines fit.
pub const MIN_BUFFER: usize = 4096;

/// The embedded IRC server (SPEC §3).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
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
    #[serde(deserialize_with = "duration")]
    pub registration_timeout: Duration,
    /// Idle time before the server sends PING.
    #[serde(deserialize_with = "duration")]
    pub ping_interval: Duration,
    /// Time to answer that PING.
    #[serde(deserialize_with = "duration")]
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
    pub dcc_address: Option<IpAddr>,
    /// How long a DCC offer waits for its client to connect.
    #[serde(deserialize_with = "duration")]
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

impl Default for Config {
    fn default() -> Config {
        Config {
            enabled: true,
            listen: DEFAULT_LISTEN,
            server_name: DEFAULT_SERVER_NAME.into(),
            network: DEFAULT_NETWORK.into(),
            tls_listen: DEFAULT_TLS_LISTEN,
            tls_cert: None,
            tls_key: None,
            motd: None,
            wiki_format: Format::default(),
            max_clients: DEFAULT_MAX_CLIENTS,
            max_per_ip: DEFAULT_MAX_PER_IP,
            sendq: DEFAULT_SENDQ,
            registration_timeout: DEFAULT_REGISTRATION_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            flood_burst: DEFAULT_FLOOD_BURST,
            flood_rate: DEFAULT_FLOOD_RATE,
            history_limit: DEFAULT_HISTORY_LIMIT,
            dcc_ports: None,
            dcc_address: None,
            dcc_timeout: DEFAULT_DCC_TIMEOUT,
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

impl Config {
    /// Every problem of the section, each as one sentence starting with the key.
    pub fn check(&self, problems: &mut Vec<String>) {
        if let Err(reason) = check_server_name(&self.server_name) {
            problems.push(format!("irc.server_name: {reason}"));
        }
        if self.network.is_empty() || !self.network.bytes().all(|b| b.is_ascii_graphic()) {
            problems.push("irc.network: one word of visible ASCII characters".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            problems.push("irc: give both tls_cert and tls_key for the TLS listener".into());
        }
        if self.sendq < MIN_BUFFER {
            problems.push(format!("irc.sendq: at least {MIN_BUFFER} bytes"));
        }
        if !(self.flood_rate > 0.0 && self.flood_burst >= 1.0) {
            problems.push("irc: flood_rate must be above 0 and flood_burst at least 1".into());
        }
        if !(1..=1000).contains(&self.history_limit) {
            problems.push("irc.history_limit: between 1 and 1000".into());
        }
        if !(1..=1_000_000).contains(&self.dcc_max_events) {
            problems.push("irc.dcc_max_events: between 1 and 1000000".into());
        }
        if self.dcc_max_bytes < MIN_BUFFER {
            problems.push(format!("irc.dcc_max_bytes: at least {MIN_BUFFER} bytes"));
        }
        if self.dcc_max_transfers == 0 || self.dcc_max_per_ip == 0 {
            problems.push("irc: dcc_max_transfers and dcc_max_per_ip must be at least 1".into());
        }
        if !(1..=1_000_000).contains(&self.publish_queue) {
            problems.push("irc.publish_queue: between 1 and 1000000".into());
        }
        if self.dcc_timeout.is_zero() {
            problems.push("irc.dcc_timeout: more than 0 seconds".into());
        }
        if self.max_clients == 0 {
            problems.push("irc.max_clients: at least 1".into());
        }
        if self.max_prefix_channels > MAX_PREFIX_CHANNELS {
            problems.push(format!("irc.max_prefix_channels: at most {MAX_PREFIX_CHANNELS}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The section as the binary reads it from the whole file.
    fn parse(section: &str) -> Result<Config, String> {
        toml::from_str(section).map_err(|error| error.to_string())
    }

    fn problems(config: &Config) -> Vec<String> {
        let mut problems = Vec::new();
        config.check(&mut problems);
        problems
    }

    #[test]
    fn the_default_is_on_loopback_and_passes_its_check() {
        let config = parse("").unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:6667");
        assert_eq!(config.tls_listen.to_string(), "127.0.0.1:6697");
        assert!(problems(&config).is_empty());
    }

    #[test]
    fn dcc_ports_are_a_range_or_one_port() {
        let config = parse("dcc_ports = \"6800-6809\"").unwrap();
        assert_eq!(config.dcc_ports, Some(PortRange { first: 6800, last: 6809 }));
        let config = parse("dcc_ports = 6800").unwrap();
        assert_eq!(config.dcc_ports.map(PortRange::ports), Some(6800..=6800));
        for wrong in ["\"6809-6800\"", "\"0-3\"", "\"ten\"", "70000"] {
            assert!(parse(&format!("dcc_ports = {wrong}")).is_err(), "{wrong}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = parse("listen = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert!(error.contains("line 2") && error.contains("lisen"), "{error}");
    }

    #[test]
    fn every_mistake_is_reported() {
        let config = parse("server_name = \"no dots\"\ntls_cert = \"/x.pem\"\nsendq = 10\n").unwrap();
        assert_eq!(
            problems(&config),
            [
                "irc.server_name: a host name with a dot, like irc.example.org",
                "irc: give both tls_cert and tls_key for the TLS listener",
                "irc.sendq: at least 4096 bytes",
            ]
        );
    }

    #[test]
    fn wikimedia_compatibility_is_asked_for_and_bounded() {
        let plain = parse("").unwrap();
        assert!(!plain.wikimedia_compat);
        assert_eq!(plain.max_prefix_channels, DEFAULT_MAX_PREFIX_CHANNELS);
        let config = parse("wikimedia_compat = true\nmax_prefix_channels = 100001").unwrap();
        assert!(config.wikimedia_compat);
        assert_eq!(problems(&config), ["irc.max_prefix_channels: at most 100000"]);
    }
}
