//! `[http]`: the HTTP API, feeds and the live page.

use std::net::SocketAddr;
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
    /// Open HTTP connections at most, in total and from one address.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
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

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            max_body: 1024 * 1024,
            heartbeat: Duration::from_secs(15),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
        }
    }
}

impl HttpConfig {
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        if let Some(Err(reason)) = self.public_url.as_deref().map(check_url) {
            problems.push(format!("http.public_url: {reason}"));
        }
        if self.max_body < 1024 {
            problems.push("http.max_body: at least 1024 bytes".into());
        }
    }
}
