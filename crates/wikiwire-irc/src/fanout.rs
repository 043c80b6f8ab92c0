//! Fan-out: one task follows the log and puts each event into every matching channel. Lines are
//! rendered once per (event, channel, tag set) and shared; pushing into a listener's queue never
//! waits, so one slow listener cannot hold up the others (it is cut off at its SendQ).

use std::sync::Arc;
use std::time::Duration;

use wikiwire_event::{Event, Filter};
use wikiwire_hub::{FollowError, Item, Lag};
use wikiwire_store::{MAX_PAGE, Query};

use crate::render::{Variants, speaker};
use crate::server::Server;

/// Changes read back at start to make again the channels earlier runs made from RCFeed
/// prefixes, so bots that rejoin at once after a restart find them (irc.wikimedia.org's own
/// channels only came back with each wiki's next change).
const PREFIX_RESTORE_EVENTS: usize = 10_000;

/// Follows the log after `after` (from now: `None`; see [`restore_prefix_channels`]) until
/// shutdown. The follower resumes from the store if this task ever falls behind the bus, so no
/// channel misses an event.
pub async fn run(server: Arc<Server>, mut after: Option<u64>) {
    let shutdown = server.hub.shutdown().clone();
    loop {
        let mut follower = match server.hub.follow(after, Filter::all(), Lag::Resume).await {
            Ok(follower) => follower,
            Err(error) => {
                tracing::error!(%error, "IRC fan-out cannot follow the log; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let item = tokio::select! {
                _ = shutdown.cancelled() => return,
                item = follower.next() => item,
            };
            match item {
                Ok(Item::Event(event)) => {
                    deliver(&server, &event);
                    after = Some(event.id);
                }
                Ok(Item::Gap { to, .. }) => after = Some(to),
                Err(FollowError::Closed) => return,
                Err(error) => {
                    tracing::error!(%error, "IRC fan-out lost the log; resuming");
                    break;
                }
            }
        }
    }
}

/// Makes the prefix channels of the last [`PREFIX_RESTORE_EVENTS`] changes, a page at a time
/// (pages newest first, each oldest first), before the listener accepts anyone. Returns the id
/// [`run`] continues after, so nothing committed meanwhile is missed; `None` (from now) when no
/// feed makes channels.
pub async fn restore_prefix_channels(server: &Server) -> Option<u64> {
    if !server.makes_prefix_channels() {
        return None;
    }
    let store = server.hub.store();
    let last = match store.bounds().await {
        Ok(bounds) => bounds.last_id,
        Err(error) => {
            tracing::warn!(%error, "IRC: cannot read the log to make prefix channels again");
            return None;
        }
    };
    let (mut before, mut read) = (last.checked_add(1), 0);
    while read < PREFIX_RESTORE_EVENTS {
        let page = match store.query(Query::latest(before, MAX_PAGE)).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "IRC: cannot read the log to make prefix channels again");
                break;
            }
        };
        for event in page.events.iter().rev() {
            server.prefix_channel(event);
        }
        read += page.events.len();
        match page.next {
            Some(next) if !page.events.is_empty() => before = Some(next),
            _ => break,
        }
    }
    tracing::info!(channels = server.channels.made(), read, "IRC: channels made from RCFeed prefixes again");
    Some(last)
}

/// Puts one event into every channel that carries it (`Channel::carries`). The publisher's own connection is
/// the speaker and does not hear itself (its acknowledgement is the echo-message).
pub fn deliver(server: &Server, event: &Event) {
    let speaker_session =
        speaker(server, event).and_then(|publisher| server.session(publisher)).map(|client| client.id);
    let mut delivered = 0u64;
    // A change whose RCFeed prefix names a channel not made yet makes it (it then carries the
    // wiki's changes like a declared channel).
    server.prefix_channel(event);
    for channel in server.channels.all() {
        if !channel.carries(event) {
            continue;
        }
        let mut variants = Variants::new(server, channel, event);
        let members = channel.members();
        for member in members.values() {
            if Some(member.id) != speaker_session && member.send(variants.get(member.caps())) {
                delivered += 1;
            }
        }
    }
    server.hub.metrics().irc_lines_delivered.add(delivered);
}
