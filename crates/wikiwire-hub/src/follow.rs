//! Following the log: history from a cursor, then live events, with no gap and no duplicate.
//!
//! The bus receiver is taken *before* the first store read, so every event committed after that
//! read is on the bus; events already read are skipped by id. A follower that lags behind the
//! bus either resumes from the store (internal outputs) or ends (network clients, which resume
//! themselves with their cursor), as its `Lag` policy says. When the cursor is older than
//! retention, a `Gap` comes first, naming the ids that are gone; a stored event that cannot be
//! read (a damaged file, or in a cluster a stream message that is not an event) is a `Gap` of its
//! own id, in its place, so that followers go on; a live follower that sees the ids on the bus
//! jump reads the hole from the store to say so.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};
use wikiwire_event::{Event, Filter};
use wikiwire_store::{Query, Store, StoreError};

use crate::metrics::Metrics;

/// Events read from the store per catch-up query.
const CATCH_UP_PAGE: usize = 500;

/// What a follower yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Event(Arc<Event>),
    /// Ids `from..=to` cannot be delivered: removed by retention before this follower read them,
    /// or (one id) unreadable in a damaged store, which the store logged.
    Gap {
        from: u64,
        to: u64,
    },
}

/// What to do when the bus has moved on without this follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lag {
    /// Read the missed events from the store and go on.
    Resume,
    /// End with `FollowError::Lagged`; the client reconnects with its cursor.
    End,
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("fell behind the live stream")]
    Lagged,
    #[error("the hub is shutting down")]
    Closed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Follower {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    filter: Filter,
    /// Every id up to here has been read: queued in the backlog, delivered, or refused by the
    /// filter. Consumers keep their own cursor: the id of the last event they handled.
    scanned: u64,
    live: broadcast::Receiver<Arc<Event>>,
    backlog: VecDeque<Item>,
    catching_up: bool,
    lag: Lag,
}

impl Follower {
    /// Starts after `after`; `None` starts at the end of the log (live only).
    pub async fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        after: Option<u64>,
        filter: Filter,
        lag: Lag,
    ) -> Result<Follower, StoreError> {
        let live = store.bus().subscribe();
        let (scanned, catching_up) = match after {
            Some(after) => (after, true),
            None => (store.bounds().await?.last_id, false),
        };
        Ok(Follower { store, metrics, filter, scanned, live, backlog: VecDeque::new(), catching_up, lag })
    }

    pub async fn next(&mut self) -> Result<Item, FollowError> {
        loop {
            if let Some(item) = self.backlog.pop_front() {
                return Ok(item);
            }
            if self.catching_up {
                if let Some(gap) = self.catch_up().await? {
                    return Ok(gap);
                }
                continue;
            }
            match self.live.recv().await {
                Ok(event) => {
                    if event.id <= self.scanned {
                        continue;
                    }
                    if event.id > self.scanned + 1 {
                        // Ids the store holds but never announced: in a cluster, stream messages
                        // that are not events, or what retention removed before this node read
                        // it. The store says Gap for each; this event follows from there.
                        self.catching_up = true;
                        continue;
                    }
                    self.scanned = event.id;
                    if self.filter.matches(&event) {
                        return Ok(Item::Event(event));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    self.metrics.followers_lagged.inc();
                    tracing::debug!(missed, scanned = self.scanned, "follower lagged behind the bus");
                    match self.lag {
                        Lag::End => return Err(FollowError::Lagged),
                        Lag::Resume => {
                            // A fresh receiver first, then the store: nothing falls between.
                            self.live = self.live.resubscribe();
                            self.catching_up = true;
                        }
                    }
                }
                Err(RecvError::Closed) => return Err(FollowError::Closed),
            }
        }
    }

    /// Reads the next page of history into the backlog, or reports a gap.
    async fn catch_up(&mut self) -> Result<Option<Item>, FollowError> {
        let bounds = self.store.bounds().await?;
        if self.scanned < bounds.pruned_through {
            let gap = Item::Gap { from: self.scanned + 1, to: bounds.pruned_through };
            self.scanned = bounds.pruned_through;
            return Ok(Some(gap));
        }
        let query = Query { filter: self.filter.clone(), ..Query::after(self.scanned, CATCH_UP_PAGE) };
        let page = self.store.query(query).await?;
        if let Some(last) = page.events.last() {
            self.scanned = self.scanned.max(last.id);
        }
        match page.next {
            Some(next) => self.scanned = self.scanned.max(next),
            // The store had nothing more when read; all later events are on the bus.
            None => self.catching_up = false,
        }
        // Events and unreadable ids, both in id order, merged.
        let mut unreadable = page.unreadable.into_iter().peekable();
        for event in page.events {
            while let Some(id) = unreadable.next_if(|&id| id < event.id) {
                self.backlog.push_back(Item::Gap { from: id, to: id });
            }
            self.backlog.push_back(Item::Event(Arc::new(event)));
        }
        self.backlog.extend(unreadable.map(|id| Item::Gap { from: id, to: id }));
        if let Some(Item::Gap { to, .. }) = self.backlog.back() {
            self.scanned = self.scanned.max(*to);
        }
        Ok(None)
    }
}
