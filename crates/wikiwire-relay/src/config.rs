//! `[[relay]]`: the relays' section of the configuration (SPEC §6), its defaults and its check.
//! The binary composes it into the whole file.

use std::path::PathBuf;

use serde::Deserialize;
use wikiwire_event::{Filter, Format};
use wikiwire_irc_wire::names::check_nick;

/// Events posted to a channel on another IRC network (SPEC §6 "Relay").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
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
    /// Lines per second.
    #[serde(default = "default_rate")]
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

impl Config {
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

/// `rate`: one line per second, as networks expect of a bot.
pub const DEFAULT_RATE: f64 = 1.0;
/// The fastest `rate` accepted, in lines per second.
pub const MAX_RATE: f64 = 100.0;

fn default_rate() -> f64 {
    DEFAULT_RATE
}

impl Config {
    /// Every problem of every relay, each as one sentence starting with where it is.
    pub fn check_all(relays: &[Config], problems: &mut Vec<String>) {
        let mut names: Vec<String> = Vec::new();
        for (index, relay) in relays.iter().enumerate() {
            let at = format!("relay[{index}] ({:?})", relay.url);
            if let Err(reason) = wikiwire_irc_wire::IrcTarget::parse(&relay.url) {
                problems.push(format!("{at}: url: {reason}"));
            }
            if let Err(reason) = check_nick(&relay.nick) {
                problems.push(format!("{at}: nick: {reason}"));
            }
            if !(relay.rate > 0.0 && relay.rate <= MAX_RATE) {
                problems.push(format!("{at}: rate: lines per second, above 0 and at most {MAX_RATE}"));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        relay: Vec<Config>,
    }

    #[test]
    fn relays_are_checked() {
        let file: File = toml::from_str(
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
        let relays = file.relay;
        assert_eq!(relays[0].auth(), RelayAuth::Sasl);
        assert_eq!(relays[0].rate, DEFAULT_RATE);
        assert_eq!(relays[2].auth(), RelayAuth::None);
        let mut problems = Vec::new();
        Config::check_all(&relays, &mut problems);
        let problems = problems.join("\n");
        for expected in
            ["url: ", "nick: ", "rate: ", "filter: colour", "auth needs a password", "share the position"]
        {
            assert!(problems.contains(expected), "missing {expected:?} in:\n{problems}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error =
            toml::from_str::<File>("[[relay]]\nurl = \"irc://x/#y\"\nnick = \"n\"\nrte = 2\n").unwrap_err();
        assert!(error.to_string().contains("rte"), "{error}");
    }
}
