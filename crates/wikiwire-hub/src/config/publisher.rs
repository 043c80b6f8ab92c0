//! `[[publisher]]` and `[[rcfeed]]`: who may speak for which wikis, and MediaWiki's UDP feeds.

use std::net::SocketAddr;

use serde::Deserialize;
use wikiwire_event::fields::check_wiki_name;
use wikiwire_event::{Engine, LinkTemplates};
use wikiwire_irc_wire::names::check_nick;

use super::check_url;
use crate::token;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherConfig {
    pub name: String,
    /// The token itself; prefer `token_hash` so the file holds no secret.
    pub token: Option<String>,
    /// `sha256:<hex>`, as printed by `wikiwire token`.
    pub token_hash: Option<String>,
    pub wikis: Vec<String>,
    /// May contain `{wiki}` for a wiki farm.
    pub base_url: Option<String>,
    #[serde(default)]
    pub engine: Engine,
    /// Link templates replacing the engine's.
    #[serde(default)]
    pub links: LinkTemplates,
    /// Accept a plaintext `token` that is easy to guess (see `token::weakness`); otherwise such
    /// a token is an error. Meant for tests and demos, never for a hub others can reach.
    #[serde(default)]
    pub allow_weak_token: bool,
}

impl PublisherConfig {
    /// Checks every publisher; returns each wiki with its publisher's name.
    pub(super) fn check_all(
        publishers: &[PublisherConfig],
        problems: &mut Vec<String>,
    ) -> Vec<(String, String)> {
        let mut names: Vec<String> = Vec::new();
        let mut wikis: Vec<(String, String)> = Vec::new();
        for (index, publisher) in publishers.iter().enumerate() {
            let at = format!("publisher[{index}] ({:?})", publisher.name);
            if let Err(reason) = check_nick(&publisher.name) {
                problems.push(format!("{at}: name: {reason}"));
            }
            if names.iter().any(|name| name.eq_ignore_ascii_case(&publisher.name)) {
                problems.push(format!("{at}: name: used by another publisher"));
            }
            names.push(publisher.name.clone());
            match (&publisher.token, &publisher.token_hash) {
                (Some(_), Some(_)) => problems.push(format!("{at}: give token or token_hash, not both")),
                (None, None) => {
                    problems.push(format!("{at}: token_hash missing (make one with `wikiwire token`)"))
                }
                (Some(token), None) if token.len() < token::MIN_LENGTH => problems.push(format!(
                    "{at}: token: at least {} characters (make one with `wikiwire token`)",
                    token::MIN_LENGTH
                )),
                (Some(token), None) if !publisher.allow_weak_token => {
                    if let Some(weakness) = token::weakness(token) {
                        problems.push(format!(
                            "{at}: token: easy to guess: {weakness}; make a strong one with `wikiwire token \
                             --name {}` and keep only its token_hash here (or set allow_weak_token = true)",
                            publisher.name
                        ));
                    }
                }
                (None, Some(hash)) => {
                    if let Err(reason) = token::parse_hash(hash) {
                        problems.push(format!("{at}: token_hash: {reason}"));
                    }
                }
                _ => {}
            }
            if publisher.wikis.is_empty() {
                problems.push(format!("{at}: wikis: name at least one wiki"));
            }
            for wiki in &publisher.wikis {
                if let Err(reason) = check_wiki_name(wiki) {
                    problems.push(format!("{at}: wikis: {wiki:?}: {reason}"));
                }
                if let Some((_, owner)) = wikis.iter().find(|(known, _)| known.eq_ignore_ascii_case(wiki)) {
                    problems.push(format!("{at}: wikis: {wiki:?} already belongs to publisher {owner:?}"));
                }
                wikis.push((wiki.clone(), publisher.name.clone()));
            }
            if let Some(Err(reason)) = publisher.base_url.as_deref().map(check_url) {
                problems.push(format!("{at}: base_url: {reason}"));
            }
            for problem in publisher.links.problems() {
                problems.push(format!("{at}: {problem}"));
            }
        }
        wikis
    }
}

/// A UDP listener for MediaWiki's `$wgRCFeeds` (SPEC §7 `[[rcfeed]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RcFeedConfig {
    /// The UDP address, e.g. `127.0.0.1:9390`.
    pub listen: SocketAddr,
    /// Whose events these are: the datagram's `wiki` (or `server_name`, or the host of a wiki's
    /// `base_url`) must name one of this publisher's wikis.
    pub publisher: String,
    /// Source addresses (IPs) whose datagrams are taken; default loopback only.
    #[serde(default = "default_rcfeed_allow")]
    pub allow: Vec<std::net::IpAddr>,
    /// Which IRC channels carry these changes: the declared ones only, or also a `mediawiki`
    /// channel named by each datagram's prefix (`udp://host:port/#en.wikipedia` in `$wgRCFeeds`),
    /// made on its first change, as irc.wikimedia.org does.
    #[serde(default)]
    pub channels: RcFeedChannels,
}

/// `[[rcfeed]] channels`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RcFeedChannels {
    /// The configured channels and each wiki's own, by their filters.
    #[default]
    Declared,
    /// Also `#<prefix>` for each datagram with a prefix that is a channel name; the prefix is
    /// kept with the event (`extra.mw_channel`).
    FromPrefix,
}

fn default_rcfeed_allow() -> Vec<std::net::IpAddr> {
    vec![std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()]
}

impl RcFeedConfig {
    pub(super) fn check_all(
        feeds: &[RcFeedConfig],
        publishers: &[PublisherConfig],
        problems: &mut Vec<String>,
    ) {
        for (index, feed) in feeds.iter().enumerate() {
            let at = format!("rcfeed[{index}] ({})", feed.listen);
            if !publishers.is_empty()
                && !publishers.iter().any(|publisher| publisher.name.eq_ignore_ascii_case(&feed.publisher))
            {
                problems.push(format!("{at}: publisher: no [[publisher]] named {:?}", feed.publisher));
            }
            if feeds[..index].iter().any(|other| other.listen == feed.listen) {
                problems.push(format!("{at}: listen: another rcfeed listens there"));
            }
        }
    }
}
