//! `[http]`: the HTTP API, feeds and the live page.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use serde::Deserialize;

use super::check_url;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// How clients reach the hub (behind a proxy it differs from `listen`); links, feeds and
    /// channel topics use it. Default: `http://<listen>`.
    pub public_url: Option<String>,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Seconds between SSE heartbeats.
    #[serde(deserialize_with = "super::duration")]
    pub heartbeat: Duration,
    /// Open HTTP connections at most, in total and from one address; past either a new
    /// connection is answered 503 and closed at once (counted), never left in the backlog.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// The last this many of `max_connections` go only to addresses that hold no connection yet,
    /// so a few addresses that fill the rest cannot lock everyone else out (0: no reserve).
    /// Default: `max_connections / DEFAULT_RESERVED_DIVISOR`.
    pub reserved_connections: Option<usize>,
    /// Time a client has to send a request's headers (also the idle time of a kept-alive
    /// connection before its next request).
    #[serde(deserialize_with = "super::duration")]
    pub header_timeout: Duration,
    /// Time a response (an SSE stream too) may wait for a client that reads nothing.
    #[serde(deserialize_with = "super::duration")]
    pub write_timeout: Duration,
    /// Time a client has to send a request body.
    #[serde(deserialize_with = "super::duration")]
    pub body_timeout: Duration,
}

/// `http.listen`: loopback, so that a hub is not open to the world until it is asked to be.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// `http.max_body`, in bytes.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// `http.heartbeat`.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// `http.header_timeout`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `http.write_timeout`.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// `http.body_timeout`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// `http.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// `http.max_connections_per_ip`.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// `http.reserved_connections` is by default this fraction (1/n) of `max_connections`.
pub const DEFAULT_RESERVED_DIVISOR: usize = 10;

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            listen: DEFAULT_LISTEN,
            public_url: None,
            max_body: DEFAULT_MAX_BODY,
            heartbeat: DEFAULT_HEARTBEAT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            reserved_connections: None,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

impl HttpConfig {
    /// Connections kept for addresses that hold none: as configured, or a tenth of the total.
    pub fn reserved_connections(&self) -> usize {
        self.reserved_connections.unwrap_or(self.max_connections / DEFAULT_RESERVED_DIVISOR)
    }

    pub(super) fn check(&self, problems: &mut Vec<String>) {
        if let Some(Err(reason)) = self.public_url.as_deref().map(check_url) {
            problems.push(format!("http.public_url: {reason}"));
        }
        if self.max_body < 1024 {
            problems.push("http.max_body: at least 1024 bytes".into());
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            problems.push("http.max_connections, max_connections_per_ip: at least 1".into());
        }
        if let Some(reserved) = self.reserved_connections
            && reserved >= self.max_connections
        {
            problems.push(format!(
                "http.reserved_connections: {reserved} must be less than max_connections ({}), or no \
                 address that already holds a connection could open another",
                self.max_connections
            ));
        }
    }
}
