//! `[xmpp]`, `[xmlrpc]` and `[wiki]`: the Jabber notification bot (SPEC §5), its XML-RPC API for
//! wikis, and the wiki its commands talk to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use wikiwire_event::Filter;

use super::check_url;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppConfig {
    /// The bot's account, e.g. `wikibot@example.org`.
    pub jid: String,
    pub password: String,
    /// Host to connect to (default: the JID's domain).
    pub server: Option<String>,
    #[serde(default = "default_xmpp_port")]
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
    #[serde(default = "default_keepalive", deserialize_with = "super::duration")]
    pub keepalive: Duration,
    /// Multi-user chat rooms (XEP-0045) that receive the text lines of a filter.
    #[serde(default)]
    pub rooms: Vec<RoomConfig>,
    /// How long the bot waits before it tries a room that refused it (or put it out) again.
    #[serde(default = "default_room_retry", deserialize_with = "super::duration")]
    pub room_retry: Duration,
}

fn default_room_retry() -> Duration {
    Duration::from_secs(60)
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
    #[serde(default = "default_max_body")]
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

fn default_xmpp_port() -> u16 {
    5222
}
fn default_language() -> String {
    "en".into()
}
fn default_keepalive() -> Duration {
    Duration::from_secs(60)
}
fn default_room_nick() -> String {
    "wikiwire".into()
}
fn default_xmlrpc_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}
fn default_max_body() -> usize {
    1024 * 1024
}

impl XmppConfig {
    pub(super) fn check_all(
        xmpp: Option<&XmppConfig>,
        xmlrpc: Option<&XmlRpcConfig>,
        wiki: Option<&WikiConfig>,
        problems: &mut Vec<String>,
    ) {
        // JIDs and languages are the bot's own rules: `wikiwire_xmpp::check_config` checks them.
        if let Some(xmpp) = xmpp {
            if xmpp.password.is_empty() {
                problems.push("xmpp.password: required".into());
            }
            for (index, room) in xmpp.rooms.iter().enumerate() {
                if let Err(error) = Filter::parse(&room.filter) {
                    problems.push(format!("xmpp.rooms[{index}].filter: {error}"));
                }
            }
        }
        if let Some(xmlrpc) = xmlrpc {
            if xmpp.is_none() {
                problems.push("xmlrpc: the XML-RPC API needs the bot: configure [xmpp]".into());
            }
            if xmlrpc.secret.len() < 8 {
                problems.push("xmlrpc.secret: at least 8 characters".into());
            }
        }
        if let Some(wiki) = wiki {
            if let Err(reason) = check_url(&wiki.url) {
                problems.push(format!("wiki.url: {reason}"));
            }
            match wiki.dialect {
                WikiDialect::Moin if wiki.secret.is_none() => {
                    problems.push("wiki.secret: required for the moin dialect (getJabberAuthToken)".into())
                }
                WikiDialect::Wikirpc2 if wiki.user.is_some() != wiki.password.is_some() => {
                    problems.push("wiki: give both user and password, or neither".into())
                }
                WikiDialect::Moin2
                    if wiki.secret.is_some() || wiki.user.is_some() || wiki.password.is_some() =>
                {
                    problems.push(
                        "wiki: the moin2 dialect reads as an anonymous visitor: no secret, user or password"
                            .into(),
                    )
                }
                _ => {}
            }
        }
    }
}
