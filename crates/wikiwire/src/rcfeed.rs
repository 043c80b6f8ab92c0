//! MediaWiki's RCFeed over UDP (SPEC §7 `[[rcfeed]]`): an ingest adapter like HTTP and IRC. A
//! MediaWiki sends each change as a `JSONRCFeedFormatter` datagram (`$wgRCFeeds` with a
//! `udp://` URI); datagrams from an address not in `allow` are dropped unread. Each one is
//! mapped by `wikiwire_event::mediawiki`, must name one of the configured publisher's wikis
//! (its `wiki` id, its `server_name`, or the host of the wiki's `base_url`), is validated like
//! any submission and goes through `Hub::publish`. What is refused is counted and logged; UDP
//! has no answer to give.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use wikiwire_event::Draft;
use wikiwire_event::mediawiki::{self, MAX_DATAGRAM, RcChange, RcFeedError};
use wikiwire_hub::Hub;
use wikiwire_hub::config::RcFeedConfig;
use wikiwire_hub::publisher::Publisher;

/// Datagrams already waiting are published together, at most this many (one commit).
const BATCH: usize = 100;

pub async fn run(hub: Arc<Hub>, config: RcFeedConfig, socket: UdpSocket) {
    let Some(publisher) = hub.publishers().by_name(&config.publisher) else {
        tracing::error!(listen = %config.listen, publisher = %config.publisher, "rcfeed: no such publisher; not listening");
        return;
    };
    let shutdown = hub.shutdown().clone();
    let mut buffer = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buffer) => received,
        };
        let mut drafts = Vec::new();
        let mut received = Some(first);
        while let Some(result) = received.take() {
            match result {
                Ok((length, from)) => {
                    if let Some(draft) = read(&hub, &config, &publisher, &buffer[..length], from) {
                        drafts.push(draft);
                    }
                }
                Err(error) => tracing::warn!(listen = %config.listen, %error, "rcfeed: receiving failed"),
            }
            if drafts.len() < BATCH {
                received = match socket.try_recv_from(&mut buffer) {
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => None,
                    other => Some(other),
                };
            }
        }
        if drafts.is_empty() {
            continue;
        }
        let count = drafts.len() as u64;
        match hub.publish(&publisher, drafts).await {
            Ok(_) => hub.metrics().rcfeed_accepted.add(count),
            Err(error) => {
                hub.metrics().rcfeed_refused.add(count);
                tracing::warn!(listen = %config.listen, %error, count, "rcfeed: changes not stored");
            }
        }
    }
}

/// One datagram: a draft for the publisher's wiki, or counted and logged as refused.
fn read(
    hub: &Hub,
    config: &RcFeedConfig,
    publisher: &Publisher,
    datagram: &[u8],
    from: SocketAddr,
) -> Option<Draft> {
    let refuse = |reason: &dyn std::fmt::Display| {
        // An allowed sender with a broken formatter would otherwise log one line per edit.
        static REFUSED: wikiwire_hub::LogGate =
            wikiwire_hub::LogGate::new(std::time::Duration::from_secs(10));
        hub.metrics().rcfeed_refused.inc();
        if let Some(also) = REFUSED.admit() {
            tracing::warn!(listen = %config.listen, %from, %reason, also, "rcfeed: datagram refused (also: refused since the last such line)");
        }
    };
    if !config.allow.contains(&from.ip()) {
        // Anyone can send datagrams: counted, and logged at debug so a flood cannot fill the log.
        hub.metrics().rcfeed_refused.inc();
        tracing::debug!(listen = %config.listen, %from, "rcfeed: datagram from an address not in `allow`");
        return None;
    }
    let change = match mediawiki::parse_datagram(datagram) {
        Ok(change) => change,
        Err(RcFeedError::Skipped(kind)) => {
            tracing::debug!(%kind, "rcfeed: change type not relayed");
            return None;
        }
        Err(error) => {
            refuse(&error);
            return None;
        }
    };
    let Some(wiki) = wiki_of(hub, publisher, &change) else {
        refuse(&format!(
            "wiki {:?} (server {:?}) is not one of publisher {}'s wikis",
            change.wiki_id.as_deref().unwrap_or(""),
            change.server_name.as_deref().unwrap_or(""),
            publisher.name
        ));
        return None;
    };
    let mut event = change.event;
    event.wiki = wiki;
    match Draft::validate(event) {
        Ok(draft) => Some(draft),
        Err(error) => {
            refuse(&error);
            None
        }
    }
}

/// The publisher's wiki a change names: by `wiki` id, by `server_name` as a wiki name, or by
/// `server_name` as the host of a wiki's `base_url`. A `wiki` id that names another publisher's
/// wiki names none of this publisher's, whatever the server name says.
fn wiki_of(hub: &Hub, publisher: &Publisher, change: &RcChange) -> Option<String> {
    if let Some(id) = change.wiki_id.as_deref()
        && publisher.canonical_wiki(id).is_none()
        && hub.publishers().wiki(id).is_some()
    {
        return None;
    }
    let names = [change.wiki_id.as_deref(), change.server_name.as_deref()];
    for name in names.into_iter().flatten() {
        if let Some(wiki) = publisher.canonical_wiki(name) {
            return Some(wiki.to_owned());
        }
    }
    let server = change.server_name.as_deref()?;
    publisher.wikis.iter().find_map(|wiki| {
        let base = hub.publishers().wiki(wiki)?.base_url.as_deref()?;
        let host = base.split_once("://").map_or(base, |(_, rest)| rest);
        let host = host.split(['/', ':']).next()?;
        host.eq_ignore_ascii_case(server).then(|| wiki.clone())
    })
}
