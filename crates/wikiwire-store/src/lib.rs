//! The log: every event is appended here, numbered, committed, and only then announced.
//!
//! | module | owns |
//! |---|---|
//! | this file | the [`Store`] trait and the types every implementation shares |
//! | [`bus`] | the in-process broadcast of committed events, in id order |
//! | [`sqlite`] | the embedded store: one SQLite file in WAL mode, one writer with group commit |
//! | [`jetstream`] | the cluster store: one NATS JetStream stream shared by every hub node, read through a local SQLite replica |
//! | [`groups`] | a queue read in groups for group commit (the JetStream writer, the IRC publish pipeline) |
//! | [`lease`] | which process runs a job that must run once (relays, the bot): local, or in NATS |
//! | [`outbox`] | the Jabber bot's durable state in bytes ([`Outbox`]): a SQLite file beside the log, or NATS |
//!
//! A store never renders, filters for output, or knows a protocol; it must never announce an event
//! before its transaction committed, and must announce committed events in id order.

pub mod bus;
pub mod groups;
pub mod jetstream;
pub mod lease;
pub mod outbox;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wikiwire_event::{Draft, Event, Filter, Timestamp};

pub use bus::Bus;
pub use jetstream::{JetStreamOptions, JetStreamStore};
pub use lease::{Lease, Leases, LocalLeases};
pub use outbox::Outbox;
pub use sqlite::{Applied, Salvage, SqliteOptions, SqliteStore, create_private_dir, salvage, verify};

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
    /// Ids in the page's range whose stored row cannot be read (a damaged file), in the query's
    /// order: passed over so that one bad row does not stop every reader, and reported.
    pub unreadable: Vec<u64>,
}

/// A named position and the revision a fenced move must name (see [`Store::set_cursor`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub id: u64,
    pub revision: u64,
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

/// What failed underneath a store error, kept as its `source()`. Shared (`Arc`), so that one
/// failed group commit answers every request of the group with the same cause; the `source()` is
/// this `Arc` (it says what the cause says: downcast it to `Cause`, then to the cause's type).
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Why a store call failed. A variant that wraps a failure underneath keeps it as its `source()`
/// and also says it in its own words (`reason`), as logs, HTTP answers and IRC replies show only
/// this error's message; a printer of the whole chain should not say such a cause again.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure: {reason}")]
    Backend {
        reason: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("the store is closed")]
    Closed,
    #[error("the store was written by a newer wikiwire (schema {found}, this one knows up to {supported})")]
    NewerSchema { found: i64, supported: i64 },
    #[error("stored event {id} cannot be read: {reason}")]
    Corrupt {
        id: u64,
        reason: String,
        /// The JSON or field error, when that is why.
        #[source]
        cause: Option<Cause>,
    },
    /// The store's files are damaged: retrying will not help, the operator must repair them.
    #[error("the event store is damaged: {reason}")]
    Damaged {
        reason: String,
        #[source]
        cause: Option<Cause>,
    },
    /// A fenced write lost: someone else wrote since the revision it named (a job's lease was
    /// taken over).
    #[error("{0}")]
    Conflict(String),
    /// The log cannot be reached or refuses to serve for now; nothing was stored by this call
    /// (or, for an append that timed out, its outcome is unknown). Worth retrying later.
    #[error("the event log is unavailable: {reason}")]
    Unavailable {
        reason: String,
        #[source]
        cause: Option<Cause>,
    },
}

/// `context: cause` as the reason, and the cause kept.
pub(crate) fn with_cause<E>(context: Option<&dyn std::fmt::Display>, cause: E) -> (String, Option<Cause>)
where
    E: std::error::Error + Send + Sync + 'static,
{
    with_shared_cause(context, Arc::new(cause))
}

/// [`with_cause`] for a cause already shared (or boxed: a `Box<dyn Error>` is no `Error` itself).
pub(crate) fn with_shared_cause(
    context: Option<&dyn std::fmt::Display>,
    cause: Cause,
) -> (String, Option<Cause>) {
    let reason = match context {
        Some(context) => format!("{context}: {cause}"),
        None => cause.to_string(),
    };
    (reason, Some(cause))
}

impl StoreError {
    /// `Backend`, said as the cause says itself.
    pub fn backend<E: std::error::Error + Send + Sync + 'static>(cause: E) -> StoreError {
        let (reason, cause) = with_cause(None, cause);
        StoreError::Backend { reason, cause }
    }

    /// `Backend`, said as `context: cause`.
    pub fn backend_in<E>(context: impl std::fmt::Display, cause: E) -> StoreError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let (reason, cause) = with_cause(Some(&context), cause);
        StoreError::Backend { reason, cause }
    }

    /// `Backend` with nothing underneath: the reason is all there is.
    pub fn backend_msg(reason: impl Into<String>) -> StoreError {
        StoreError::Backend { reason: reason.into(), cause: None }
    }

    /// `Damaged`, said as the cause says itself.
    pub fn damaged<E: std::error::Error + Send + Sync + 'static>(cause: E) -> StoreError {
        let (reason, cause) = with_cause(None, cause);
        StoreError::Damaged { reason, cause }
    }

    /// `Damaged` with nothing underneath.
    pub fn damaged_msg(reason: impl Into<String>) -> StoreError {
        StoreError::Damaged { reason: reason.into(), cause: None }
    }

    /// `Unavailable`, said as the cause says itself.
    pub fn unavailable<E: std::error::Error + Send + Sync + 'static>(cause: E) -> StoreError {
        let (reason, cause) = with_cause(None, cause);
        StoreError::Unavailable { reason, cause }
    }

    /// `Unavailable`, said as `context: cause`.
    pub fn unavailable_in<E>(context: impl std::fmt::Display, cause: E) -> StoreError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let (reason, cause) = with_cause(Some(&context), cause);
        StoreError::Unavailable { reason, cause }
    }

    /// `Unavailable` with nothing underneath.
    pub fn unavailable_msg(reason: impl Into<String>) -> StoreError {
        StoreError::Unavailable { reason: reason.into(), cause: None }
    }
}

/// How a clustered store is doing, for `/healthz` and the metrics page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// This node's name.
    pub node: String,
    /// Connected to a NATS server.
    pub connected: bool,
    /// The stream's last sequence when last asked (0 before the first answer).
    pub stream_last_id: u64,
    /// The newest id this node's replica has applied and announced.
    pub applied_id: u64,
    /// Why the node is not ready; `None` when ready.
    pub unready: Option<String>,
    /// Appends retried after a timeout or a lost connection.
    pub publish_retries: u64,
    /// Appends whose outcome was resolved from the stream (acknowledgement lost, key held).
    pub publish_resolved: u64,
    /// Appends answered before this node's replica applied them (the wait was bounded).
    pub apply_wait_timeouts: u64,
    /// Stream messages this node found not to be events (unparseable, or on a subject that is
    /// not their wiki's): each is a gap at its id for followers.
    pub unreadable: u64,
}

/// The log's contract, kept by every backend ([`SqliteStore`], [`JetStreamStore`]) and checked by
/// one conformance suite (`tests/conformance.rs`) against both:
///
/// * **Ids** are assigned by the log, strictly increasing, never reused; between two retained
///   events there is no hole (only retention removes events, always the oldest).
/// * **Appends are atomic and ordered**: the drafts of one call are stored all or none, with
///   increasing ids in the order given (SQLite: one transaction; JetStream: one atomic batch, so
///   the ids of one call are also contiguous there).
/// * **Acknowledged means durable**: `append` returns only after the commit (SQLite: fsync with
///   `synchronous=full`; JetStream: the stream's quorum stored it).
/// * **Announced before acknowledged, on this process's bus**: when `append` returns, the events
///   are on this process's [`Bus`] (JetStream: this node's replica applied them; other nodes
///   announce them when their replicas catch up). Every event is announced once, in id order.
/// * **Keys**: a second draft with a `(wiki, key)` already in the log (wiki without ASCII case)
///   is not stored; the first event is returned with `duplicate: true`, also within one call.
///   A key is remembered exactly as long as its first event is retained.
/// * **No duplicate from inside**: a backend that retries (JetStream after a lost
///   acknowledgement) resolves the retry to the ids it committed, never storing a draft twice.
/// * **Bounds** name only what a reader of this process can read: `last_id` is the newest event
///   on this process's bus, never an id the process has not applied yet.
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

    /// A named position, e.g. the last event a relay delivered, with its revision.
    async fn cursor(&self, name: &str) -> Result<Option<Cursor>, StoreError>;

    /// Moves a cursor only if its revision is still `revision` (0: only if it does not exist
    /// yet) and returns the new revision; otherwise `StoreError::Conflict` and nothing changes.
    /// Writing the same id claims the cursor: a holder that was deposed cannot write it after.
    async fn set_cursor(&self, name: &str, id: u64, revision: u64) -> Result<u64, StoreError>;

    /// The Jabber bot's durable state (one handle per store, opened when first asked for): a
    /// file beside the log on one node, shared in NATS by every node of a cluster.
    async fn outbox(&self) -> Result<Arc<dyn Outbox>, StoreError>;

    /// Who runs the jobs that must run once (a relay, the bot).
    fn leases(&self) -> Arc<dyn Leases> {
        Arc::new(LocalLeases)
    }

    /// Removes events past retention, a bounded chunk per call; returns how many were removed.
    async fn prune(&self, retention: Retention) -> Result<u64, StoreError>;

    /// Finishes pending writes and closes; later calls get `StoreError::Closed`.
    async fn close(&self);

    /// Damage found in the store's files since it opened (the first report); it does not heal by
    /// retrying, so `/healthz` reports it until the operator repaired the store and restarted.
    fn fault(&self) -> Option<String> {
        None
    }

    /// The cluster's view of this node; `None` for a store that is not clustered.
    fn cluster_status(&self) -> Option<ClusterStatus> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::StoreError;

    #[test]
    fn a_store_error_says_its_cause_and_keeps_it() {
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let error = StoreError::backend_in("cannot create /x", io());
        assert_eq!(error.to_string(), "storage failure: cannot create /x: denied");
        let cause = error.source().expect("the cause is kept");
        assert_eq!(cause.to_string(), "denied");
        let shared = cause.downcast_ref::<super::Cause>().expect("the source is the shared cause");
        assert!(shared.is::<std::io::Error>());
        let error = StoreError::unavailable(io());
        assert_eq!(error.to_string(), "the event log is unavailable: denied");
        assert!(error.source().is_some());
        let error = StoreError::damaged_msg("page 3 is bad");
        assert_eq!(error.to_string(), "the event store is damaged: page 3 is bad");
        assert!(error.source().is_none());
    }
}
