//! `irc://host[:port]/#channel` and `ircs://...`: where to connect and which channel to join.
//! The channel may be written `#name`, `%23name` or `name`; a key may follow as `?key=...`.

use std::fmt;

/// The port of `irc://` when the URL names none: plain IRC's by custom (RFC 7194 §1).
pub const DEFAULT_PORT: u16 = 6667;
/// The port of `ircs://` when the URL names none (RFC 7194 §2).
pub const DEFAULT_TLS_PORT: u16 = 6697;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrcTarget {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub channel: String,
    pub key: Option<String>,
}

impl IrcTarget {
    pub fn parse(url: &str) -> Result<IrcTarget, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("ircs://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("irc://") {
            (false, rest)
        } else {
            return Err(format!("{url:?}: use irc://host[:port]/#channel or ircs://..."));
        };
        let (authority, path) =
            rest.split_once('/').ok_or_else(|| format!("{url:?}: no channel after the host"))?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                let port = port.parse().map_err(|_| format!("{url:?}: {port:?} is not a port"))?;
                (host.trim_start_matches('[').trim_end_matches(']'), port)
            }
            _ => (authority, if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT }),
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let (channel, key) = match path.split_once("?key=") {
            Some((channel, key)) => (channel, Some(key.to_owned())),
            None => (path, None),
        };
        let channel = channel.replace("%23", "#");
        let channel = if channel.starts_with('#') { channel } else { format!("#{channel}") };
        if channel.len() < 2 || channel.contains([' ', ',', '\x07']) {
            return Err(format!("{url:?}: {channel:?} is not a channel name"));
        }
        Ok(IrcTarget { tls, host: host.to_owned(), port, channel, key })
    }
}

impl fmt::Display for IrcTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "ircs" } else { "irc" };
        write!(f, "{scheme}://{}:{}/{}", self.host, self.port, self.channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let plain = IrcTarget::parse("irc://127.0.0.1:6667/#MoinMaster.events").unwrap();
        assert_eq!(
            (plain.tls, plain.host.as_str(), plain.port, plain.channel.as_str()),
            (false, "127.0.0.1", 6667, "#MoinMaster.events")
        );
        let tls = IrcTarget::parse("ircs://irc.libera.chat/%23wikiwire?key=sesame").unwrap();
        assert_eq!(
            (tls.tls, tls.port, tls.channel.as_str(), tls.key.as_deref()),
            (true, 6697, "#wikiwire", Some("sesame"))
        );
        assert_eq!(IrcTarget::parse("irc://[::1]:7000/chan").unwrap().host, "::1");
        assert_eq!(IrcTarget::parse("irc://h/chan").unwrap().channel, "#chan");
        for bad in ["http://x/#c", "irc://host", "irc:///#c", "irc://h:port/#c", "irc://h/"] {
            assert!(IrcTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
