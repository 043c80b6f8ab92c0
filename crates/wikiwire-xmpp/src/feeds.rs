//! The bot as a reader of the hub's log: one follower for users' subscriptions and one per
//! configured room. Each writes what an event means for XMPP into the outbox and moves its
//! cursor in the same transaction, so a crash neither loses an event nor sends one twice. A
//! follower without a cursor starts at the end of the log: a new bot does not replay history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wikiwire_event::Filter;
use wikiwire_hub::follow::{FollowError, Item as FollowItem, Lag};

use crate::bot::Bot;
use crate::config::RoomConfig;
use crate::state::Item;

/// The cursor of the subscriptions follower.
const SUBSCRIPTIONS: &str = "subscriptions";
/// A cursor that only skips events is written at most this often.
const CURSOR_EVERY: Duration = Duration::from_secs(2);

/// Why a follower stopped reading (it starts again after a pause), said as what failed says it.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Store(#[from] wikiwire_store::StoreError),
    #[error(transparent)]
    Follow(#[from] FollowError),
}

/// Turns events into outbox items for subscribed users.
pub async fn subscriptions(bot: Arc<Bot>) {
    bot.load_subscriptions().await;
    follow(&bot, SUBSCRIPTIONS, Filter::all(), |bot, event| {
        let json = event.to_json();
        bot.subscribers(event).into_iter().map(|to| Item::Event { to, event: json.clone() }).collect()
    })
    .await;
}

/// Turns the events of a room's filter into lines for it.
pub async fn room(bot: Arc<Bot>, room: RoomConfig) {
    let filter = match Filter::parse(&room.filter) {
        Ok(filter) => filter,
        Err(error) => {
            tracing::error!(room = %room.jid, %error, "room filter refused");
            return;
        }
    };
    let cursor = format!("room:{}", room.jid);
    let line_filter = filter.clone();
    follow(&bot, &cursor, filter, move |bot, event| {
        vec![Item::Room { room: room.jid.clone(), text: bot.room_line(event, &line_filter) }]
    })
    .await;
}

async fn follow(
    bot: &Arc<Bot>,
    cursor: &str,
    filter: Filter,
    items_for: impl Fn(&Bot, &wikiwire_event::Event) -> Vec<Item>,
) {
    let shutdown = bot.stop.clone();
    let mut delay = Duration::from_secs(1);
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = follow_once(bot, cursor, filter.clone(), &items_for) => result,
        };
        match result {
            Ok(()) => return,
            Err(error) => {
                tracing::error!(cursor, %error, "the bot stopped reading the log; trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn follow_once(
    bot: &Arc<Bot>,
    cursor: &str,
    filter: Filter,
    items_for: &impl Fn(&Bot, &wikiwire_event::Event) -> Vec<Item>,
) -> Result<(), FeedError> {
    let after = match bot.state.cursor(cursor).await? {
        Some(after) => {
            // Claimed: a node that ran the bot before cannot move this position any more.
            bot.state.enqueue_at(Vec::new(), cursor, after).await?;
            after
        }
        None => {
            let last = bot.hub.store().bounds().await?.last_id;
            bot.state.enqueue_at(Vec::new(), cursor, last).await?;
            last
        }
    };
    let mut follower = bot.hub.follow(Some(after), filter, Lag::Resume).await?;
    let mut written = Instant::now();
    let mut unwritten: Option<u64> = None;
    loop {
        // A cursor that only skipped events is written when the log goes quiet or now and then.
        let next = if unwritten.is_some() {
            match tokio::time::timeout(CURSOR_EVERY, follower.next()).await {
                Ok(next) => next,
                Err(_) => {
                    if let Some(id) = unwritten.take() {
                        bot.state.enqueue_at(Vec::new(), cursor, id).await?;
                        written = Instant::now();
                    }
                    continue;
                }
            }
        } else {
            follower.next().await
        };
        let event = match next {
            Ok(FollowItem::Event(event)) => event,
            Ok(FollowItem::Gap { from, to }) => {
                tracing::warn!(cursor, from, to, "events were pruned before the bot read them");
                continue;
            }
            Err(FollowError::Closed) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        let items = items_for(bot, &event);
        if items.is_empty() && written.elapsed() < CURSOR_EVERY {
            unwritten = Some(event.id);
            continue;
        }
        let any = !items.is_empty();
        bot.state.enqueue_at(items, cursor, event.id).await?;
        unwritten = None;
        written = Instant::now();
        if any {
            bot.wake.notify_one();
        }
    }
}
