//! A publisher's events, pipelined: the connection reads on while earlier lines are being
//! committed, and every event queued meanwhile goes into the store in one append (one group
//! commit, ids in the order sent). Replies stay in the order of the lines: each event's echo or
//! `FAIL` is sent when its turn comes, and a line that is not a queued event waits until the
//! events before it are answered ([`Pipeline::settle`]).
//!
//! One per publisher connection, made when the publisher first sends an event; its task ends
//! when the connection's reader drops it, after answering what is queued.
//!
//! The queue holds at most `irc.publish_queue` lines: past it the reader waits for room and
//! reads nothing meanwhile, so TCP pushes back on a publisher that sends faster than the store
//! commits (as flood control does for listeners), instead of the hub buffering its input.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wikiwire_event::Draft;
use wikiwire_hub::{Metrics, PublishError, Publisher};
use wikiwire_store::groups::Groups;
use wikiwire_store::{Appended, StoreError};

use crate::caps;
use crate::channels::Channel;
use crate::client::Client;
use crate::render::{TagSet, event_line};
use crate::respond::Context;
use crate::server::Server;

/// Most events committed in one append.
const MOST: usize = 500;

/// An event waiting for its turn, with what its reply needs.
pub struct Pending {
    pub channel: Arc<Channel>,
    pub publisher: Arc<Publisher>,
    pub draft: Draft,
    pub label: Option<String>,
}

enum Item {
    Publish(Box<Pending>),
    /// Answered once everything queued before it is.
    Settle(oneshot::Sender<()>),
}

pub struct Pipeline {
    queue: mpsc::Sender<Item>,
    outstanding: Arc<AtomicUsize>,
    /// The connection's: a reader waiting for room stops waiting when it closes.
    closing: CancellationToken,
    metrics: Arc<Metrics>,
}

impl Pipeline {
    pub fn start(server: Arc<Server>, client: Arc<Client>) -> Pipeline {
        let (queue, items) = mpsc::channel(server.settings.limits.publish_queue.max(1));
        let outstanding = Arc::new(AtomicUsize::new(0));
        let closing = client.closing.clone();
        let metrics = Arc::clone(server.hub.metrics());
        tokio::spawn(run(server, client, items, Arc::clone(&outstanding)));
        Pipeline { queue, outstanding, closing, metrics }
    }

    /// Queues an event, waiting for room while the queue is full; its reply comes in its turn.
    pub async fn publish(&self, pending: Pending) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        if !self.enqueue(Item::Publish(Box::new(pending))).await {
            self.outstanding.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Waits until every queued event is answered (at once when none is).
    pub async fn settle(&self) {
        if self.outstanding.load(Ordering::Acquire) == 0 {
            return;
        }
        let (done, settled) = oneshot::channel();
        if self.enqueue(Item::Settle(done)).await {
            let _ = settled.await;
        }
    }

    /// False when the item could not be queued: the connection is closing.
    async fn enqueue(&self, item: Item) -> bool {
        match self.queue.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Closed(_)) => false,
            Err(TrySendError::Full(item)) => {
                self.metrics.irc_publish_waits.inc();
                tokio::select! {
                    sent = self.queue.send(item) => sent.is_ok(),
                    _ = self.closing.cancelled() => false,
                }
            }
        }
    }
}

async fn run(
    server: Arc<Server>,
    client: Arc<Client>,
    items: mpsc::Receiver<Item>,
    outstanding: Arc<AtomicUsize>,
) {
    let mut items = Groups::new(items);
    while let Some(item) = items.first().await {
        let first = match item {
            Item::Settle(done) => {
                let _ = done.send(());
                continue;
            }
            Item::Publish(pending) => *pending,
        };
        // Whatever the same publisher queued meanwhile joins this append.
        let batch = items.gather(
            first,
            MOST,
            |_| 1,
            |batch, _, item| match item {
                Item::Publish(pending) if Arc::ptr_eq(&pending.publisher, &batch[0].publisher) => {
                    Ok(*pending)
                }
                other => Err(other),
            },
        );
        let count = batch.len();
        commit(&server, &client, batch).await;
        outstanding.fetch_sub(count, Ordering::AcqRel);
    }
}

/// One append for the batch; when it is refused as a whole (a wiki not the publisher's, the rate
/// limit, the store), each event is tried alone so that each line gets its own answer.
pub(crate) async fn commit(server: &Arc<Server>, client: &Arc<Client>, batch: Vec<Pending>) {
    let publisher = Arc::clone(&batch[0].publisher);
    let drafts = batch.iter().map(|pending| pending.draft.clone()).collect();
    match server.hub.publish(&publisher, drafts).await {
        Ok(appended) => {
            for (pending, appended) in batch.into_iter().zip(appended) {
                reply(server, client, pending, Ok(appended));
            }
        }
        Err(error) if batch.len() == 1 => {
            let pending = batch.into_iter().next().expect("one");
            reply(server, client, pending, Err(error));
        }
        Err(_) => {
            for pending in batch {
                let result = server
                    .hub
                    .publish(&pending.publisher, vec![pending.draft.clone()])
                    .await
                    .map(|mut appended| appended.remove(0));
                reply(server, client, pending, result);
            }
        }
    }
}

/// The acknowledgement (the echo with the assigned msgid) or the `FAIL`, labelled like the line.
fn reply(
    server: &Arc<Server>,
    client: &Arc<Client>,
    pending: Pending,
    result: Result<Appended, PublishError>,
) {
    let mut context = Context::new(server, client);
    let channel = &pending.channel.spec.name;
    match result {
        Ok(appended) => {
            server.hub.metrics().irc_published.inc();
            let caps = client.caps();
            if caps.has(caps::ECHO_MESSAGE) {
                let mut echo = event_line(server, &pending.channel, &appended.event, TagSet::of(caps));
                // The echo comes from the publisher itself, even where `rc-pmtpa` says it to others.
                echo.source = Some(server.settings.publisher_mask(&pending.publisher.name));
                context.push(echo);
            }
        }
        Err(error @ PublishError::NotYourWiki { .. }) => {
            context.fail("PRIVMSG", "INVALID_EVENT", &[channel], &error.to_string());
        }
        Err(error @ PublishError::RateLimited { .. }) => {
            context.fail("PRIVMSG", "RATE_LIMITED", &[channel], &error.to_string());
        }
        Err(PublishError::Store(StoreError::Damaged { .. })) => {
            // The store said so in the log when it found the damage; each refusal is counted.
            context.fail(
                "PRIVMSG",
                "TEMPORARILY_UNAVAILABLE",
                &[channel],
                "The event store is damaged: nothing was stored until the hub's operator repairs it",
            );
        }
        Err(PublishError::Store(error)) => {
            tracing::error!(%error, "store failure publishing from IRC");
            context.fail(
                "PRIVMSG",
                "TEMPORARILY_UNAVAILABLE",
                &[channel],
                "The event store is unavailable; try again",
            );
        }
    }
    context.finish(pending.label.as_deref());
}
