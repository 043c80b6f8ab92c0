//! The Jabber bot's durable state, in bytes (the bot owns the meaning): one trait, [`Outbox`],
//! kept by both backends ([`crate::sqlite::SqliteOutbox`], one file beside the log;
//! [`crate::jetstream::outbox::SharedOutbox`], NATS, shared by every node) and checked against
//! both by `tests/conformance/outbox.rs`.
//!
//! It must never decode an item or a value: what an item says, and how the bot names its keys,
//! belongs to `wikiwire-xmpp`.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use crate::StoreError;

/// The bot's outbox, its positions in the log, and a small fenced table.
///
/// * **Items** are stored durably before `enqueue` returns, all or none (JetStream: in atomic
///   batches of up to 1000), and read back oldest first, each with an id that only grows while
///   the outbox holds items. An item leaves only through `done`; `done` of an item already gone
///   is no error (a retry, or a takeover that removed it twice).
/// * **Positions** move only together with the items they produced (`enqueue_at`, one
///   transaction or one atomic batch), and only from the revision this handle last read or wrote:
///   a handle that did not see the last move (a node that lost the bot's lease) gets
///   `StoreError::Conflict` and nothing is stored.
/// * **The table** holds values under keys of `[A-Za-z0-9_=/.-]` (not starting or ending with a
///   dot), each with a revision; a write names the revision it replaces (0: the key must not
///   exist), a mismatch is `StoreError::Conflict`. Revisions never come back for a key, also
///   after it was deleted and written again.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Stores items durably, all or none.
    async fn enqueue(&self, items: Vec<Bytes>) -> Result<(), StoreError>;

    /// Stores items and moves the position `name` to `id` together, from the revision this
    /// handle last saw (none: the position must not exist yet); `StoreError::Conflict` when
    /// another handle moved it since, and then nothing is stored.
    async fn enqueue_at(&self, items: Vec<Bytes>, name: &str, id: u64) -> Result<(), StoreError>;

    /// Where the position `name` stands; the handle remembers the revision it read.
    async fn position(&self, name: &str) -> Result<Option<u64>, StoreError>;

    /// Items with an id above `after`, oldest first, at most `limit`, each with its id.
    async fn pending(&self, after: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, StoreError>;

    /// An item was delivered.
    async fn done(&self, id: u64) -> Result<(), StoreError> {
        self.done_many(vec![id]).await
    }

    /// Items were delivered: removed in one go where the backend can (one transaction on one
    /// node); an id already gone is no error.
    async fn done_many(&self, ids: Vec<u64>) -> Result<(), StoreError>;

    /// Items stored and not done.
    async fn waiting(&self) -> Result<u64, StoreError>;

    /// Wakes `wake` whenever an item is stored: through this handle (SQLite), or by any node
    /// (JetStream).
    async fn notify_on_items(&self, wake: Arc<Notify>) -> Result<(), StoreError>;

    /// Whether a reading that begins after a removal returned never lists the removed item. One
    /// node's SQLite file: yes (the same connection). A cluster: a reading may be served by a
    /// replica a moment behind. On both, an id is never given to another item.
    fn reads_its_removals(&self) -> bool;

    /// A value and its revision.
    async fn table_get(&self, key: &str) -> Result<Option<(Bytes, u64)>, StoreError>;

    /// Writes `value` if the key is still at `revision` (0: absent) and returns the new
    /// revision; `StoreError::Conflict` otherwise, and nothing changes.
    async fn table_put(&self, key: &str, value: Bytes, revision: u64) -> Result<u64, StoreError>;

    /// Removes a key; a key that is not there is no error.
    async fn table_delete(&self, key: &str) -> Result<(), StoreError>;

    /// Keys starting with `prefix`, sorted.
    async fn table_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
}

/// The key back when it is one every backend takes (NATS KV's rule), the same refusal from
/// every backend otherwise (before NATS is asked).
pub(crate) fn check_key(key: &str) -> Result<&str, StoreError> {
    let valid = !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && key.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_=/.-".contains(&byte));
    match valid {
        true => Ok(key),
        false => Err(StoreError::backend_msg(format!("{key:?} is not a valid key for the bot's table"))),
    }
}
