//! `[xmpp]`, `[xmlrpc]` and `[wiki]`: the bot's part of the configuration (SPEC §5) — the Jabber
//! account and rooms, the XML-RPC API for wikis, and the wiki its commands talk to — with their
//! defaults and their one check. The binary composes this part into the whole file.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio_xmpp::jid::{BareJid, Jid};
use wikiwire_event::Filter;
use wikiwire_hub::config::{check_url, duration};

use crate::i18n;

/// `xmpp.port`: client-to-server XMPP (RFC 6120 §14.7).
pub const DEFAULT_PORT: u16 = 5222;
/// `xmpp.language`, for users whose language is not known.
pub const DEFAULT_LANGUAGE: &str = "en";
/// `xmpp.keepalive`: idle time after which the connection is checked.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);
/// `xmpp.room_retry`: the wait before a room that refused the bot is tried again.
pub const DEFAULT_ROOM_RETRY: Duration = Duration::from_secs(60);
/// `xmpp.rooms[].nick`.
pub const DEFAULT_ROOM_NICK: &str = "wikiwire";
/// `xmlrpc.listen`: MoinMoin's notification bot listened on port 8000.
pub const DEFAULT_XMLRPC_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8000));
/// `xmlrpc.max_body`, in bytes.
pub const DEFAULT_XMLRPC_MAX_BODY: usize = 1024 * 1024;
/// The shortest `xmlrpc.secret`.
pub const MIN_SECRET: usize = 8;

/// The bot's sections; each absent unless configured (no `[xmpp]`: no bot).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The Jabber notification bot (SPEC §5).
    pub xmpp: Option<XmppConfig>,
    /// The bot's XML-RPC API for wikis (MoinMoin's `notification_bot_uri`).
    pub xmlrpc: Option<XmlRpcConfig>,
    /// The wiki the bot's commands talk to.
    pub wiki: Option<WikiConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppConfig {
    /// The bot's account, e.g. `wikibot@example.org`.
    pub jid: String,
    pub password: String,
    /// Host to connect to (default: the JID's domain).
    pub server: Option<String>,
    #[serde(default = "default_port")]
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

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmlRpcConfig {
    #[serde(default = "default_xmlrpc_listen")]
    pub listen: SocketAddr,
    /// Shared with the wiki; every call's first argument.
    pub secret: String,
    #[serde(default = "default_xmlrpc_max_body")]
    pub max_body: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WikiConfig {
    /// The wiki's address: for `moin`, the front page (`?action=xmlrpc2` is added); for
    /// `wikirpc2`, the XML-RPC endpoint (DokuWiki: `.../lib/exe/xmlrpc.php`); for `moin2`, the
    /// wiki's root (its views `+get/`, `+index/`, ... are below it).
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
    /// MoinMoin 2 over its HTTP views (it has no XML-RPC), read as an anonymous visitor.
    Moin2,
}

// serde's `default = "..."` takes a function: each returns its constant above.
fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_language() -> String {
    DEFAULT_LANGUAGE.into()
}
fn default_keepalive() -> Duration {
    DEFAULT_KEEPALIVE
}
fn default_room_retry() -> Duration {
    DEFAULT_ROOM_RETRY
}
fn default_room_nick() -> String {
    DEFAULT_ROOM_NICK.into()
}
fn default_xmlrpc_listen() -> SocketAddr {
    DEFAULT_XMLRPC_LISTEN
}
fn default_xmlrpc_max_body() -> usize {
    DEFAULT_XMLRPC_MAX_BODY
}

impl Config {
    /// Every problem of the bot's sections, each as one sentence starting with the key. The
    /// account and rooms are JIDs as the XMPP address format has them (RFC 7622, the `jid`
    /// crate's parser, the one the session uses), with a local part; the language is one the bot
    /// has texts in.
    pub fn check(&self, problems: &mut Vec<String>) {
        if let Some(xmpp) = &self.xmpp {
            xmpp.check(problems);
        }
        if let Some(xmlrpc) = &self.xmlrpc {
            if self.xmpp.is_none() {
                problems.push("xmlrpc: the XML-RPC API needs the bot: configure [xmpp]".into());
            }
            if xmlrpc.secret.len() < MIN_SECRET {
                problems.push(format!("xmlrpc.secret: at least {MIN_SECRET} characters"));
            }
        }
        if let Some(wiki) = &self.wiki {
            wiki.check(problems);
        }
    }
}

impl XmppConfig {
    fn check(&self, problems: &mut Vec<String>) {
        // A domain needs no dot (Prosody's default host is `localhost`); the account may name the
        // resource to bind: `bot@example.org/wikiwire`.
        let account = Jid::new(&self.jid).ok().filter(|jid| jid.node().is_some());
        if account.is_none() {
            problems.push(format!(
                "xmpp.jid: {:?} is not a JID like bot@example.org (or bot@example.org/resource)",
                self.jid
            ));
        }
        if self.password.is_empty() {
            problems.push("xmpp.password: required".into());
        }
        if !i18n::LANGUAGES.contains(&self.language.as_str()) {
            problems.push(format!("xmpp.language: one of {}", i18n::LANGUAGES.join(", ")));
        }
        for (index, room) in self.rooms.iter().enumerate() {
            let bare = BareJid::new(&room.jid).ok().filter(|jid| jid.node().is_some());
            if bare.is_none() {
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
}

impl WikiConfig {
    fn check(&self, problems: &mut Vec<String>) {
        if let Err(reason) = check_url(&self.url) {
            problems.push(format!("wiki.url: {reason}"));
        }
        match self.dialect {
            WikiDialect::Moin if self.secret.is_none() => {
                problems.push("wiki.secret: required for the moin dialect (getJabberAuthToken)".into())
            }
            WikiDialect::Wikirpc2 if self.user.is_some() != self.password.is_some() => {
                problems.push("wiki: give both user and password, or neither".into())
            }
            WikiDialect::Moin2 if self.secret.is_some() || self.user.is_some() || self.password.is_some() => {
                problems.push(
                    "wiki: the moin2 dialect reads as an anonymous visitor: no secret, user or password"
                        .into(),
                )
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let config: Config = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        config.check(&mut problems);
        problems
    }

    #[test]
    fn the_bot_account_may_be_on_a_dotless_domain_and_name_its_resource() {
        let jid_problems = |jid: &str| problems(&format!("[xmpp]\njid = {jid:?}\npassword = \"pw\"\n")).len();
        assert_eq!(jid_problems("bot@localhost"), 0);
        assert_eq!(jid_problems("bot@example.org/wikiwire"), 0);
        assert_eq!(jid_problems("bot@example.org"), 0);
        for wrong in ["example.org", "@example.org", "bot@", "bot@example.org/", "bot@exa mple.org"] {
            assert_eq!(jid_problems(wrong), 1, "{wrong}");
        }
    }

    #[test]
    fn rooms_are_bare_jids_and_the_language_is_one_the_bot_speaks() {
        let found = problems(
            "[xmpp]\njid = \"bot@example.org\"\npassword = \"pw\"\nlanguage = \"fr\"\n\
             [[xmpp.rooms]]\njid = \"changes@conference.example.org\"\n\
             [[xmpp.rooms]]\njid = \"conference.example.org\"\n\
             [[xmpp.rooms]]\njid = \"changes@conference.example.org/nick\"\nfilter = \"colour=red\"\n",
        );
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[0].starts_with("xmpp.language: one of en, de"), "{found:?}");
        assert!(found[1].starts_with("xmpp.rooms[1].jid"), "{found:?}");
        assert!(found[2].starts_with("xmpp.rooms[2].jid"), "{found:?}");
        assert!(found[3].starts_with("xmpp.rooms[2].filter: colour"), "{found:?}");
    }

    #[test]
    fn the_api_needs_the_bot_and_the_wiki_its_dialects_credentials() {
        let found = problems(
            "[xmlrpc]\nsecret = \"short\"\n[wiki]\nurl = \"wiki.example\"\ndialect = \"moin2\"\nuser = \"u\"\n",
        );
        assert_eq!(
            found,
            [
                "xmlrpc: the XML-RPC API needs the bot: configure [xmpp]",
                "xmlrpc.secret: at least 8 characters",
                "wiki.url: \"wiki.example\" is not an http:// or https:// URL",
                "wiki: the moin2 dialect reads as an anonymous visitor: no secret, user or password",
            ]
        );
        let defaults: Config = toml::from_str("[xmlrpc]\nsecret = \"a long secret\"\n").unwrap();
        assert_eq!(defaults.xmlrpc.unwrap().listen.to_string(), "127.0.0.1:8000");
    }
}
