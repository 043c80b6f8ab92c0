//! Stream → replica → bus. One ordered consumer per node reads the stream from the replica's
//! last id; each run of messages is stored in the replica with the stream's sequences as ids and
//! then announced, so "committed, then announced, in id order" holds on every node as on one.
//!
//! A jump in the sequence is legal only below the stream's first sequence (retention removed
//! those events): the replica records it as pruned and followers report a gap. Any other jump, a
//! stream made again, or a stream that went backwards stops the node from serving: it would
//! otherwise hand out or show ids twice.
//!
//! Every loop here retries forever with a short backoff: a NATS restart, a leader change or a
//! consumer the server forgot must never stop a node for good (Dendrite's #3177 is the warning).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::{FutureExt, StreamExt};
use wikiwire_event::Event;

use super::{Inner, subjects};
use crate::{Applied, ClusterStatus, Store as _, StoreError};

/// Events stored in the replica per transaction at most.
const APPLY_GROUP: usize = 2000;
/// With events waiting in the stream and nothing arriving for this long, the consumer is made anew.
const STALL: Duration = Duration::from_secs(3);
/// How often the stream's bounds and identity are checked.
const POLL: Duration = Duration::from_secs(1);
/// A node whose last answer from the stream is older than this is not ready.
const STALE: Duration = Duration::from_secs(5);
/// How long the stream may report ending before what this node applied before the node stops
/// serving: right after a leader change the new leader can report its state before it has
/// applied the entries it already holds committed (seen once in a SIGSTOP partition test: "ends
/// at 323" with 324 applied, for a moment). A log that really went backwards stays so.
const BACKWARDS_GRACE: Duration = Duration::from_secs(15);
/// A node this far behind the stream is not ready (it still serves what it has).
const MAX_LAG: u64 = 1000;
/// Unreadable stream messages logged one by one; past this, one line in every thousand (each is
/// counted in `wikiwire_cluster_unreadable_total` and is a gap for followers anyway).
const LOGGED_UNREADABLE: u64 = 100;
/// Past `LOGGED_UNREADABLE`, one log line per this many unreadable messages.
const LOG_UNREADABLE_EVERY: u64 = 1000;
/// Bytes of a refusal's reason kept in the replica (it quotes the subject).
const MAX_REASON: usize = 500;

/// A stream message's payload (the draft's canonical JSON) as the event stored under `id`, if the
/// subject it was published on is the one its wiki and key make: a message on another wiki's
/// subject was not written by a node for that wiki (a hub publishes only after
/// checking that the publisher owns the wiki), so it is refused, never served.
pub fn event_from_message(prefix: &str, subject: &str, payload: &[u8], id: u64) -> Result<Event, StoreError> {
    let corrupt = |reason: String, cause: Option<crate::Cause>| StoreError::Corrupt { id, reason, cause };
    // The payload is the draft, numbered by the stream: the id goes in before validation.
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(payload).map_err(|error| {
            let (reason, cause) = crate::with_cause(Some(&"not a JSON object"), error);
            corrupt(reason, cause)
        })?;
    fields.insert("id".into(), id.into());
    let event = Event::from_json(&serde_json::Value::Object(fields).to_string()).map_err(|error| {
        let (reason, cause) = crate::with_cause(None, error);
        corrupt(reason, cause)
    })?;
    let expected = subjects::event_subject(prefix, &event.wiki, event.key.as_deref());
    if subject != expected {
        return Err(corrupt(
            format!(
                "refused: published on {subject:?}, but an event of wiki {:?} belongs on {expected:?}",
                event.wiki
            ),
            None,
        ));
    }
    Ok(event)
}

pub async fn run(inner: Arc<Inner>) {
    let mut delay = Duration::from_millis(100);
    loop {
        if inner.is_closed() || inner.fatal().is_some() {
            return;
        }
        let started = Instant::now();
        let stopped = tokio::select! {
            result = follow(&inner) => result,
            () = inner.stop.cancelled() => return,
        };
        match stopped {
            Ok(()) => return,
            Err(error) => {
                if started.elapsed() > Duration::from_secs(10) {
                    delay = Duration::from_millis(100);
                }
                tracing::warn!(%error, "following the stream stopped; starting again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Why following the stream stopped: it starts again after a pause, unless the node is fenced
/// (its fatal reason is then kept too).
#[derive(Debug, thiserror::Error)]
enum FollowError {
    /// NATS's own error, said as it says itself.
    #[error(transparent)]
    Nats(crate::Cause),
    #[error("a message without stream metadata: {0}")]
    Metadata(#[source] crate::Cause),
    /// The replica's error, as reading it says.
    #[error(transparent)]
    Replica(#[from] StoreError),
    /// The replica cannot store what the stream holds: the node stops serving.
    #[error("the local replica cannot store events: {0}")]
    Store(#[source] StoreError),
    /// Said in words: the stream stalled, the consumer ended, or a jump retention does not explain.
    #[error("{0}")]
    Stopped(String),
}

impl FollowError {
    fn nats<E: std::error::Error + Send + Sync + 'static>(error: E) -> FollowError {
        FollowError::Nats(Arc::new(error))
    }
}

/// Follows the stream from the replica's last id until an error.
async fn follow(inner: &Arc<Inner>) -> Result<(), FollowError> {
    let mut applied = *inner.applied.borrow();
    let config = pull::OrderedConfig {
        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: applied + 1 },
        max_expires: Duration::from_secs(5),
        ..Default::default()
    };
    let consumer = inner.stream.create_consumer(config).await.map_err(FollowError::nats)?;
    let mut messages = consumer.messages().await.map_err(FollowError::nats)?;
    let mut tick = tokio::time::interval(POLL);
    let mut last_message = Instant::now();
    loop {
        let first = tokio::select! {
            message = messages.next() => message,
            _ = tick.tick() => {
                applied = prune_to_stream(inner, applied).await?;
                let behind = inner.stream_last.load(Ordering::Acquire) > applied;
                if behind && last_message.elapsed() > STALL {
                    return Err(FollowError::Stopped(format!(
                        "no message for {STALL:?} while the stream is ahead ({applied})"
                    )));
                }
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < APPLY_GROUP {
            match messages.next().now_or_never() {
                Some(message) => batch.push(message),
                None => break,
            }
        }
        last_message = Instant::now();
        let mut events = Vec::with_capacity(batch.len());
        let mut unreadable = Vec::new();
        let mut pruned_through = None;
        let mut failure = None;
        for message in batch {
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    failure = Some(FollowError::nats(error));
                    break;
                }
                None => {
                    failure = Some(FollowError::Stopped("the consumer ended".into()));
                    break;
                }
            };
            let sequence = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(error) => {
                    failure = Some(FollowError::Metadata(error.into()));
                    break;
                }
            };
            if sequence <= applied {
                continue;
            }
            if sequence > applied + 1 {
                // Store what came before the jump first: a prune applies to the whole transaction.
                if !events.is_empty() || !unreadable.is_empty() {
                    let applied = Applied {
                        events: std::mem::take(&mut events),
                        pruned_through: pruned_through.take(),
                        unreadable: std::mem::take(&mut unreadable),
                    };
                    store(inner, applied).await?;
                }
                check_jump(inner, applied, sequence).await?;
                pruned_through = Some(sequence - 1);
            }
            applied = sequence;
            let prefix = &inner.options.subject_prefix;
            match event_from_message(prefix, &message.subject, &message.payload, sequence) {
                Ok(event) => events.push(Arc::new(event)),
                Err(error) => {
                    // Only hub nodes may write these subjects (NATS permissions, docs/deploy/
                    // nats.conf); a message that is not an event of its subject's wiki is kept
                    // as unreadable, a gap every follower sees, rather than stopping every node.
                    let count = inner.unreadable.fetch_add(1, Ordering::Relaxed) + 1;
                    if count <= LOGGED_UNREADABLE || count.is_multiple_of(LOG_UNREADABLE_EVERY) {
                        tracing::error!(
                            %error,
                            sequence,
                            subject = %message.subject,
                            count,
                            "a stream message is not an event: followers get a gap at its id"
                        );
                    }
                    unreadable.push((sequence, unreadable_reason(error)));
                }
            }
        }
        if !events.is_empty() || !unreadable.is_empty() || pruned_through.is_some() {
            store(inner, Applied { events, pruned_through, unreadable }).await?;
        }
        inner.applied.send_replace(applied);
        if let Some(failure) = failure {
            return Err(failure);
        }
    }
}

/// Why a message is not an event, as the replica keeps it (bounded: a reason quotes the subject).
fn unreadable_reason(error: StoreError) -> String {
    let reason = match error {
        StoreError::Corrupt { reason, .. } => reason,
        other => other.to_string(),
    };
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("a stream message that is not an event: {}", &reason[..end])
}

/// Stores in the replica (which announces on the bus). Moving the `applied` watch is the
/// caller's: only `follow` knows how far it has read.
async fn store(inner: &Inner, applied: Applied) -> Result<(), FollowError> {
    inner.replica.apply(applied).await.map_err(|error| {
        let error = FollowError::Store(error);
        inner.set_fatal(error.to_string());
        error
    })
}

/// The ids between `applied` and `sequence` must be ones retention removed.
async fn check_jump(inner: &Inner, applied: u64, sequence: u64) -> Result<(), FollowError> {
    let info = inner.stream.get_info().await.map_err(FollowError::nats)?;
    inner.stream_first.store(info.state.first_sequence, Ordering::Release);
    if sequence > info.state.first_sequence {
        let reason = format!(
            "the stream skipped from {applied} to {sequence}, but it starts at {}: ids are missing that \
             retention did not remove",
            info.state.first_sequence
        );
        inner.set_fatal(reason.clone());
        return Err(FollowError::Stopped(reason));
    }
    tracing::info!(
        from = applied + 1,
        to = sequence - 1,
        "events removed by retention before this node read them"
    );
    Ok(())
}

/// Removes from the replica what retention removed from the stream.
async fn prune_to_stream(inner: &Inner, applied: u64) -> Result<u64, FollowError> {
    let first = inner.stream_first.load(Ordering::Acquire);
    let through = first.saturating_sub(1);
    let pruned = inner.replica.bounds().await?.pruned_through;
    if through <= pruned {
        return Ok(applied);
    }
    // Past what was applied, the consumer will jump there by itself; never prune ahead of it.
    let through = through.min(applied);
    if through > pruned {
        store(inner, Applied { pruned_through: Some(through), ..Applied::default() }).await?;
    }
    Ok(applied)
}

/// Asks the stream for its bounds and identity every second, for readiness, gaps and `get`.
pub async fn watch_stream(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(POLL);
    // Since when the stream has reported ending before what this node applied.
    let mut behind_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = inner.stop.cancelled() => return,
        }
        if inner.is_closed() {
            return;
        }
        let asked = tokio::select! {
            asked = tokio::time::timeout(STALE, inner.stream.get_info()) => asked,
            () = inner.stop.cancelled() => return,
        };
        let info = match asked {
            Ok(Ok(info)) => info,
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot ask the stream for its state");
                continue;
            }
            Err(_) => continue,
        };
        inner.stream_first.store(info.state.first_sequence, Ordering::Release);
        inner.stream_last.store(info.state.last_sequence, Ordering::Release);
        if let Ok(mut last_poll) = inner.last_poll.lock() {
            *last_poll = Some(Instant::now());
        }
        if super::created_micros(&info) != inner.created {
            inner.set_fatal(format!(
                "stream {} was deleted and made again (created {}): serving it would hand out ids twice",
                inner.options.stream, info.created
            ));
        }
        let applied = *inner.applied.borrow();
        if info.state.last_sequence >= applied {
            behind_since = None;
        } else {
            let since = *behind_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= BACKWARDS_GRACE {
                inner.set_fatal(format!(
                    "stream {} ends at {} but this node applied {applied}: the log went backwards",
                    inner.options.stream, info.state.last_sequence
                ));
            } else {
                tracing::warn!(
                    stream_last = info.state.last_sequence,
                    applied,
                    "the stream reports ending before what this node applied (a leader change?): waiting"
                );
            }
        }
    }
}

pub fn status(inner: &Inner) -> ClusterStatus {
    let applied = *inner.applied.borrow();
    let stream_last = inner.stream_last.load(Ordering::Acquire);
    let connected = inner.client.connection_state() == async_nats::connection::State::Connected;
    let fresh = inner.last_poll.lock().ok().and_then(|last| *last).is_some_and(|last| last.elapsed() < STALE);
    let unready = if let Some(reason) = inner.fatal() {
        Some(reason)
    } else if let Some(fault) = inner.replica.fault() {
        Some(format!(
            "the local replica is damaged ({fault}): restart this node, it sets the replica aside and rebuilds it"
        ))
    } else if !connected {
        Some("not connected to NATS".to_owned())
    } else if !fresh {
        Some(format!("the stream has not answered for {STALE:?}"))
    } else if applied < inner.rebuild_target {
        Some(format!("rebuilding the local replica: {applied} of {}", inner.rebuild_target))
    } else if stream_last.saturating_sub(applied) > MAX_LAG {
        Some(format!("the local replica is {} events behind the stream", stream_last - applied))
    } else {
        None
    };
    ClusterStatus {
        node: inner.options.node.clone(),
        connected,
        stream_last_id: stream_last,
        applied_id: applied,
        unready,
        publish_retries: inner.retries.load(Ordering::Relaxed),
        publish_resolved: inner.resolved.load(Ordering::Relaxed),
        apply_wait_timeouts: inner.apply_wait_timeouts.load(Ordering::Relaxed),
        unreadable: inner.unreadable.load(Ordering::Relaxed),
    }
}
