//! `[[relay]]`: events posted to a channel on another IRC network (SPEC §6).

use std::path::PathBuf;

use serde::Deserialize;
use wikiwire_event::{Filter, Format};
use wikiwire_irc_wire::names::check_nick;

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
    #[serde(default = "one_line_per_second")]
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

fn one_line_per_second() -> f64 {
    1.0
}

impl RelayConfig {
    pub(super) fn check_all(relays: &[RelayConfig], problems: &mut Vec<String>) {
        let mut names: Vec<String> = Vec::new();
        for (index, relay) in relays.iter().enumerate() {
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
}
