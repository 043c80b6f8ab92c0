//! Fan-out: one task follows the log and puts each event into every matching channel. Lines are
//! rendered once per (event, channel, tag set) and shared; pushing into a listener's queue never
//! waits, so one slow listener cannot hold up the others (it is cut off at its SendQ).

use std::sync::Arc;
use std::time::Duration;

use wikiwire_event::{Event, Filter};
use wikiwire_hub::{FollowError, Item, Lag};

use crate::render::{Variants, speaker};
use crate::server::Server;

/// Follows the log from now until shutdown. The follower resumes from the store if this task
/// ever falls behind the bus, so no channel misses an event.
pub async fn run(server: Arc<Server>) {
    let shutdown = server.hub.shutdown().clone();
    let mut after: Option<u64> = None;
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
