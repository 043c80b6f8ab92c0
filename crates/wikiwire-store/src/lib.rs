//! The log: every event is appended here, numbered, committed, and only then announced.
//!
//! | module | owns |
//! |---|---|
//! | this file | the [`Store`] trait and the types every implementation shares |
//! | [`bus`] | the in-process broadcast of committed events, in id order |
//! | [`sqlite`] | the embedded store: one SQLite file in WAL mode, one writer with group commit |
//!
//! A store never renders, filters for output, or knows a protocol; it must never announce an event
//! before its transaction committed, and must announce committed events in id order.

pub mod bus;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wikiwire_event::{Draft, Event, Filter, Timestamp};

pub use bus::Bus;
pub use sqlite::{SqliteOptions, SqliteStore};

/// Most events one history page may hold.
pub const MAX_PAGE: usize = 1000;

/// What the store did with one draft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The committed event; for a duplicate key, the one stored first.
    pub event: Arc<Event>,
    /// True when `(wiki, key)` was already in the log and nothing was stored.
    pub duplicate: bool,
}

/// A history query: events between two ids, optionally in a time range, passing a filter.
#[derive(Clone, Debug)]
pub struct Query {
    /// Only events with a larger id (0: from the start).
    pub after: u64,
    /// Only events with a smaller id (`None`: to the end).
    pub before: Option<u64>,
    /// Newest first: the page ends at `before` and `next` continues downwards.
    pub descending: bool,
    pub from: Option<Timestamp>,
    /// Inclusive.
    pub to: Option<Timestamp>,
    pub filter: Filter,
    /// At most this many events (capped at [`MAX_PAGE`]).
    pub limit: usize,
}

impl Query {
    pub fn after(after: u64, limit: usize) -> Query {
        Query { after, before: None, descending: false, from: None, to: None, filter: Filter::all(), limit }
    }

    /// The newest events before `before` (`None`: the newest of all), newest first.
    pub fn latest(before: Option<u64>, limit: usize) -> Query {
        Query { before, descending: true, ..Query::after(0, limit) }
    }
}

/// A page of history, in the query's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub events: Vec<Event>,
    /// Where to continue (`Query::after`, or `Query::before` when descending) when the log may
    /// hold more; `None` at the end. It can be past the last event returned: rows the filter
    /// refused were read too.
    pub next: Option<u64>,
}

/// Where the log starts and ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bounds {
    /// The last id ever assigned (0 for an empty log).
    pub last_id: u64,
    /// Every id up to here was removed by retention; a cursor below it has missed events.
    pub pruned_through: u64,
}

/// How long events are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_events: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Backend(String),
    #[error("the store is closed")]
    Closed,
    #[error("the store was written by a newer wikiwire (schema {found}, this one knows up to {supported})")]
    NewerSchema { found: i64, supported: i64 },
    #[error("stored event {id} cannot be read: {reason}")]
    Corrupt { id: u64, reason: String },
}

/// The log's contract. Implementations: [`SqliteStore`]; a JetStream store fits the same shape
/// (the stream sequence is the id, a KV bucket holds the cursors).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends in order, all or nothing, and returns only after the commit. Committed events are
    /// then announced on the bus in id order.
    async fn append(&self, drafts: Vec<Draft>) -> Result<Vec<Appended>, StoreError>;

    async fn get(&self, id: u64) -> Result<Option<Event>, StoreError>;

    async fn query(&self, query: Query) -> Result<Page, StoreError>;

    async fn bounds(&self) -> Result<Bounds, StoreError>;

    /// The bus this store announces on.
    fn bus(&self) -> &Bus;

    /// A named position, e.g. the last event a relay delivered.
    async fn cursor(&self, name: &str) -> Result<Option<u64>, StoreError>;

    async fn set_cursor(&self, name: &str, id: u64) -> Result<(), StoreError>;

    /// Removes events past retention, a bounded chunk per call; returns how many were removed.
    async fn prune(&self, retention: Retention) -> Result<u64, StoreError>;

    /// Finishes pending writes and closes; later calls get `StoreError::Closed`.
    async fn close(&self);
}
