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

use super::Inner;
use crate::{Applied, ClusterStatus, Store as _, StoreError};

/// Events stored in the replica per transaction at most.
const APPLY_GROUP: usize = 2000;
/// With events waiting in the stream and nothing arriving for this long, the consumer is made anew.
const STALL: Duration = Duration::from_secs(3);
/// How often the stream's bounds and identity are checked.
const POLL: Duration = Duration::from_secs(1);
/// A node whose last answer from the stream is older than this is not ready.
const STALE: Duration = Duration::from_secs(5);
/// A node this far behind the stream is not ready (it still serves what it has).
const MAX_LAG: u64 = 1000;

/// A stream message's payload (the draft's canonical JSON) as the event stored under `id`.
pub fn event_from_message(payload: &[u8], id: u64) -> Result<Event, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { id, reason };
    // The payload is the draft, numbered by the stream: the id goes in before validation.
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(payload).map_err(|error| corrupt(format!("not a JSON object: {error}")))?;
    fields.insert("id".into(), id.into());
    Event::from_json(&serde_json::Value::Object(fields).to_string())
        .map_err(|error| corrupt(error.to_string()))
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

/// Follows the stream from the replica's last id until an error.
async fn follow(inner: &Arc<Inner>) -> Result<(), String> {
    let mut applied = *inner.applied.borrow();
    let config = pull::OrderedConfig {
        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: applied + 1 },
        max_expires: Duration::from_secs(5),
        ..Default::default()
    };
    let consumer = inner.stream.create_consumer(config).await.map_err(|error| error.to_string())?;
    let mut messages = consumer.messages().await.map_err(|error| error.to_string())?;
    let mut tick = tokio::time::interval(POLL);
    let mut last_message = Instant::now();
    loop {
        let first = tokio::select! {
            message = messages.next() => message,
            _ = tick.tick() => {
                applied = prune_to_stream(inner, applied).await?;
                let behind = inner.stream_last.load(Ordering::Acquire) > applied;
                if behind && last_message.elapsed() > STALL {
                    return Err(format!("no message for {STALL:?} while the stream is ahead ({applied})"));
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
        let mut pruned_through = None;
        let mut failure = None;
        for message in batch {
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    failure = Some(error.to_string());
                    break;
                }
                None => {
                    failure = Some("the consumer ended".into());
                    break;
                }
            };
            let sequence = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(error) => {
                    failure = Some(format!("a message without stream metadata: {error}"));
                    break;
                }
            };
            if sequence <= applied {
                continue;
            }
            if sequence > applied + 1 {
                // Store what came before the jump first: a prune applies to the whole transaction.
                if !events.is_empty() {
                    store(inner, std::mem::take(&mut events), pruned_through.take()).await?;
                }
                check_jump(inner, applied, sequence).await?;
                pruned_through = Some(sequence - 1);
            }
            applied = sequence;
            match event_from_message(&message.payload, sequence) {
                Ok(event) => events.push(Arc::new(event)),
                Err(error) => {
                    // Nobody but wikiwire writes these subjects (NATS permissions); a message that
                    // does not read is skipped loudly rather than stopping every node.
                    tracing::error!(%error, sequence, "skipping a stream message that is not an event");
                }
            }
        }
        if !events.is_empty() || pruned_through.is_some() {
            store(inner, events, pruned_through).await?;
        }
        // Also past messages that were skipped: they are not events, and never will be.
        inner.applied.send_replace(applied);
        if let Some(failure) = failure {
            return Err(failure);
        }
    }
}

/// Stores in the replica (which announces on the bus). Moving the `applied` watch is the
/// caller's: only `follow` knows how far it has read.
async fn store(inner: &Inner, events: Vec<Arc<Event>>, pruned_through: Option<u64>) -> Result<(), String> {
    inner.replica.apply(Applied { events, pruned_through }).await.map_err(|error| {
        let reason = format!("the local replica cannot store events: {error}");
        inner.set_fatal(reason.clone());
        reason
    })
}

/// The ids between `applied` and `sequence` must be ones retention removed.
async fn check_jump(inner: &Inner, applied: u64, sequence: u64) -> Result<(), String> {
    let info = inner.stream.get_info().await.map_err(|error| error.to_string())?;
    inner.stream_first.store(info.state.first_sequence, Ordering::Release);
    if sequence > info.state.first_sequence {
        let reason = format!(
            "the stream skipped from {applied} to {sequence}, but it starts at {}: ids are missing that \
             retention did not remove",
            info.state.first_sequence
        );
        inner.set_fatal(reason.clone());
        return Err(reason);
    }
    tracing::info!(
        from = applied + 1,
        to = sequence - 1,
        "events removed by retention before this node read them"
    );
    Ok(())
}

/// Removes from the replica what retention removed from the stream.
async fn prune_to_stream(inner: &Inner, applied: u64) -> Result<u64, String> {
    let first = inner.stream_first.load(Ordering::Acquire);
    let through = first.saturating_sub(1);
    let pruned = inner.replica.bounds().await.map_err(|error| error.to_string())?.pruned_through;
    if through <= pruned {
        return Ok(applied);
    }
    // Past what was applied, the consumer will jump there by itself; never prune ahead of it.
    let through = through.min(applied);
    if through > pruned {
        store(inner, Vec::new(), Some(through)).await?;
    }
    Ok(applied)
}

/// Asks the stream for its bounds and identity every second, for readiness, gaps and `get`.
pub async fn watch_stream(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = inner.stop.cancelled() => return,
        }
        if inner.is_closed() {
            return;
        }
        let info = match tokio::time::timeout(STALE, inner.stream.get_info()).await {
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
        if info.state.last_sequence < applied {
            inner.set_fatal(format!(
                "stream {} ends at {} but this node applied {applied}: the log went backwards",
                inner.options.stream, info.state.last_sequence
            ));
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
    }
}
