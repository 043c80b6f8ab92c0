//! The bot's state on one node ([`Outbox`]): its own SQLite file beside the log, named
//! [`FILE`] as when the bot kept it itself, so an existing file is read on (and migrated once).
//!
//! One connection behind a mutex, used off the async threads: the bot's writes are few (an
//! XML-RPC call, an event that matched a subscription, a round of acknowledgements), and one
//! connection is what makes a reading see every removal committed before it.
//!
//! Tables: `outbox` (items; `AUTOINCREMENT`, so an id is never given to another item, even
//! after the outbox empties: the Jabber session's record names items by id), `cursors` (positions with a revision), `entries` (the table, revisions
//! from the one counter in `counters`, so a key written again after a delete never gets an old
//! revision back).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::Notify;

use super::schema::backend;
use super::writer::{from_sql_id, to_sql_id};
use crate::StoreError;
use crate::outbox::{Outbox, check_key};

/// The file's name in the data directory.
pub const FILE: &str = "xmpp.sqlite";

/// The schema this code writes (`PRAGMA user_version`). 0 is the layout of the bot's own file
/// before the store kept it: subscriptions and known JIDs in tables of their own.
const VERSION: i64 = 2;

const VERSION_0: &str = "
    CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, item TEXT NOT NULL, created INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS subscriptions (jid TEXT NOT NULL, wiki TEXT NOT NULL COLLATE NOCASE, pages TEXT NOT NULL,
                                              PRIMARY KEY (jid, wiki, pages));
    CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, id INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS known (jid TEXT PRIMARY KEY);
";

const VERSION_1: &str = "
    ALTER TABLE cursors ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE entries (key TEXT PRIMARY KEY, value BLOB NOT NULL, revision INTEGER NOT NULL);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO counters (name, value) VALUES ('entries', 0);
";

/// Ids never come back (the bot's stream record names items by id, and an item removed while
/// the record still named it must not lend its id to a new one).
const VERSION_2: &str = "
    CREATE TABLE outbox_v2 (id INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL, created INTEGER NOT NULL);
    INSERT INTO outbox_v2 (id, item, created) SELECT id, item, created FROM outbox ORDER BY id;
    DROP TABLE outbox;
    ALTER TABLE outbox_v2 RENAME TO outbox;
";

pub struct SqliteOutbox {
    connection: Arc<Mutex<Connection>>,
    /// The revision of each position as this handle last read or wrote it.
    positions: Mutex<HashMap<String, u64>>,
    /// Woken after every commit that stored items.
    wakes: Mutex<Vec<Arc<Notify>>>,
}

impl SqliteOutbox {
    /// Opens (creating or migrating) the file; blocking.
    pub fn open(path: &Path) -> Result<SqliteOutbox, StoreError> {
        let mut connection = Connection::open(path).map_err(backend)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
            )
            .map_err(backend)?;
        migrate(&mut connection)?;
        Ok(SqliteOutbox {
            connection: Arc::new(Mutex::new(connection)),
            positions: Mutex::default(),
            wakes: Mutex::default(),
        })
    }

    /// Runs `work` in one transaction off the async threads.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock left no transaction open (it rolled back on drop).
            let mut connection = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let transaction = connection.transaction().map_err(backend)?;
            let answer = work(&transaction)?;
            transaction.commit().map_err(backend)?;
            Ok(answer)
        })
        .await
        .map_err(|error| StoreError::backend_in("the bot's state task failed", error))?
    }

    fn wake(&self) {
        if let Ok(wakes) = self.wakes.lock() {
            wakes.iter().for_each(|wake| wake.notify_one());
        }
    }

    fn remember(&self, name: &str, revision: u64) {
        if let Ok(mut positions) = self.positions.lock() {
            positions.insert(name.to_owned(), revision);
        }
    }
}

#[async_trait]
impl Outbox for SqliteOutbox {
    async fn enqueue(&self, items: Vec<Bytes>) -> Result<(), StoreError> {
        let any = !items.is_empty();
        self.with(move |transaction| insert(transaction, &items)).await?;
        if any {
            self.wake();
        }
        Ok(())
    }

    async fn enqueue_at(&self, items: Vec<Bytes>, name: &str, id: u64) -> Result<(), StoreError> {
        let any = !items.is_empty();
        let expected =
            self.positions.lock().ok().and_then(|positions| positions.get(name).copied()).unwrap_or(0);
        let owned = name.to_owned();
        let revision = self
            .with(move |transaction| {
                insert(transaction, &items)?;
                let moved = if expected == 0 {
                    transaction.execute(
                        "INSERT INTO cursors (name, id, revision) VALUES (?1, ?2, 1) ON CONFLICT(name) DO NOTHING",
                        params![owned, to_sql_id(id)],
                    )
                } else {
                    transaction.execute(
                        "UPDATE cursors SET id = ?2, revision = revision + 1 WHERE name = ?1 AND revision = ?3",
                        params![owned, to_sql_id(id), to_sql_id(expected)],
                    )
                };
                if moved.map_err(backend)? == 0 {
                    // Returning the error drops the transaction: the items go too.
                    return Err(StoreError::Conflict(format!(
                        "the bot's position {owned:?} was moved by another node"
                    )));
                }
                Ok(expected + 1)
            })
            .await?;
        self.remember(name, revision);
        if any {
            self.wake();
        }
        Ok(())
    }

    async fn position(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let owned = name.to_owned();
        let found = self
            .with(move |transaction| {
                transaction
                    .query_row("SELECT id, revision FROM cursors WHERE name = ?1", [owned], |row| {
                        Ok((from_sql_id(row.get(0)?), from_sql_id(row.get(1)?)))
                    })
                    .optional()
                    .map_err(backend)
            })
            .await?;
        self.remember(name, found.map_or(0, |(_, revision)| revision));
        Ok(found.map(|(id, _)| id))
    }

    async fn pending(&self, after: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, StoreError> {
        self.with(move |transaction| {
            let mut statement = transaction
                .prepare_cached("SELECT id, item FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2")
                .map_err(backend)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = statement
                .query_map(params![to_sql_id(after), limit], |row| {
                    let item = match row.get_ref(1)? {
                        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => Bytes::copy_from_slice(bytes),
                        _ => Bytes::new(),
                    };
                    Ok((from_sql_id(row.get(0)?), item))
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    /// One transaction, so one sync to disk for a whole round of acknowledgements.
    async fn done_many(&self, ids: Vec<u64>) -> Result<(), StoreError> {
        self.with(move |transaction| {
            let mut statement =
                transaction.prepare_cached("DELETE FROM outbox WHERE id = ?1").map_err(backend)?;
            for id in ids {
                statement.execute([to_sql_id(id)]).map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn waiting(&self) -> Result<u64, StoreError> {
        self.with(|transaction| {
            let count = transaction.query_row("SELECT count(*) FROM outbox", [], |row| row.get::<_, i64>(0));
            count.map(from_sql_id).map_err(backend)
        })
        .await
    }

    async fn notify_on_items(&self, wake: Arc<Notify>) -> Result<(), StoreError> {
        if let Ok(mut wakes) = self.wakes.lock() {
            wakes.push(wake);
        }
        Ok(())
    }

    fn reads_its_removals(&self) -> bool {
        true
    }

    async fn table_get(&self, key: &str) -> Result<Option<(Bytes, u64)>, StoreError> {
        let key = check_key(key)?.to_owned();
        self.with(move |transaction| {
            transaction
                .query_row("SELECT value, revision FROM entries WHERE key = ?1", [key], |row| {
                    Ok((Bytes::from(row.get::<_, Vec<u8>>(0)?), from_sql_id(row.get(1)?)))
                })
                .optional()
                .map_err(backend)
        })
        .await
    }

    async fn table_put(&self, key: &str, value: Bytes, revision: u64) -> Result<u64, StoreError> {
        let key = check_key(key)?.to_owned();
        self.with(move |transaction| {
            let current: Option<i64> = transaction
                .query_row("SELECT revision FROM entries WHERE key = ?1", [&key], |row| row.get(0))
                .optional()
                .map_err(backend)?;
            if current.map_or(0, from_sql_id) != revision {
                return Err(StoreError::Conflict(format!("{key} changed meanwhile")));
            }
            let next: i64 = transaction
                .query_row(
                    "UPDATE counters SET value = value + 1 WHERE name = 'entries' RETURNING value",
                    [],
                    |row| row.get(0),
                )
                .map_err(backend)?;
            transaction
                .execute(
                    "INSERT INTO entries (key, value, revision) VALUES (?1, ?2, ?3)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value, revision = excluded.revision",
                    params![key, &value[..], next],
                )
                .map_err(backend)?;
            Ok(from_sql_id(next))
        })
        .await
    }

    async fn table_delete(&self, key: &str) -> Result<(), StoreError> {
        let key = check_key(key)?.to_owned();
        self.with(move |transaction| {
            transaction.execute("DELETE FROM entries WHERE key = ?1", [key]).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn table_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.to_owned();
        self.with(move |transaction| {
            let mut statement = transaction
                .prepare_cached("SELECT key FROM entries WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key")
                .map_err(backend)?;
            let keys = statement.query_map([prefix], |row| row.get(0)).map_err(backend)?;
            keys.collect::<Result<Vec<String>, _>>().map_err(backend)
        })
        .await
    }
}

/// Items as text when they are (they are JSON: the file stays readable with `sqlite3`, and by
/// the wikiwire that wrote version 0), as a blob otherwise.
fn insert(transaction: &Transaction<'_>, items: &[Bytes]) -> Result<(), StoreError> {
    let now = wikiwire_event::Timestamp::now().millis();
    let mut statement =
        transaction.prepare_cached("INSERT INTO outbox (item, created) VALUES (?1, ?2)").map_err(backend)?;
    for item in items {
        let inserted = match std::str::from_utf8(item) {
            Ok(text) => statement.execute(params![text, now]),
            Err(_) => statement.execute(params![&item[..], now]),
        };
        inserted.map_err(backend)?;
    }
    Ok(())
}

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(backend)?;
    if found > VERSION {
        return Err(StoreError::NewerSchema { found, supported: VERSION });
    }
    if found == VERSION {
        return Ok(());
    }
    let transaction = connection.transaction().map_err(backend)?;
    if found < 1 {
        transaction.execute_batch(VERSION_0).map_err(backend)?;
        transaction.execute_batch(VERSION_1).map_err(backend)?;
        move_into_entries(&transaction)?;
    }
    transaction.execute_batch(VERSION_2).map_err(backend)?;
    transaction.pragma_update(None, "user_version", VERSION).map_err(backend)?;
    transaction.commit().map_err(backend)?;
    Ok(())
}

/// Version 0's subscriptions and known JIDs as the entries the bot reads (`wikiwire-xmpp`'s
/// `state.rs`, which the test below pins): `sub.<hex of the JID>` holding a JSON list of
/// `[wiki, pages]`, and `known.<hex of the JID>` holding `1`.
fn move_into_entries(transaction: &Transaction<'_>) -> Result<(), StoreError> {
    let mut subscriptions: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
    {
        let mut statement = transaction
            .prepare("SELECT jid, wiki, pages FROM subscriptions ORDER BY jid, wiki, pages")
            .map_err(backend)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?))
            })
            .map_err(backend)?;
        for row in rows {
            let (jid, wiki, pages) = row.map_err(backend)?;
            subscriptions.entry(jid).or_default().push((wiki, pages));
        }
    }
    let known: Vec<String> = {
        let mut statement = transaction.prepare("SELECT jid FROM known ORDER BY jid").map_err(backend)?;
        let rows = statement.query_map([], |row| row.get(0)).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    let mut revision = 0_i64;
    let mut put = |key: String, value: Vec<u8>| {
        revision += 1;
        transaction
            .execute(
                "INSERT INTO entries (key, value, revision) VALUES (?1, ?2, ?3)",
                params![key, value, revision],
            )
            .map_err(backend)
    };
    for (jid, mut list) in subscriptions {
        list.sort();
        let value = serde_json::to_vec(&list).map_err(StoreError::backend)?;
        put(format!("sub.{}", hex::encode(&jid)), value)?;
    }
    for jid in known {
        put(format!("known.{}", hex::encode(&jid)), b"1".to_vec())?;
    }
    transaction
        .execute("UPDATE counters SET value = ?1 WHERE name = 'entries'", [revision])
        .map_err(backend)?;
    transaction.execute_batch("DROP TABLE subscriptions; DROP TABLE known;").map_err(backend)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outbox file in `directory` as an older version left it: `batches` of SQL run on it.
    fn old_file(directory: &tempfile::TempDir, batches: &[&str]) -> std::path::PathBuf {
        let path = directory.path().join(FILE);
        let connection = Connection::open(&path).unwrap();
        for batch in batches {
            connection.execute_batch(batch).unwrap();
        }
        path
    }

    /// A file as the bot wrote it before the store kept it is read on: its items, positions,
    /// subscriptions and known JIDs.
    #[tokio::test]
    async fn a_version_0_file_is_migrated() {
        let directory = tempfile::tempdir().unwrap();
        let path = old_file(
            &directory,
            &[
                VERSION_0,
                r#"INSERT INTO outbox (item, created) VALUES ('{"kind":"roster_add","jid":"a@x.test"}', 1);
                   INSERT INTO cursors (name, id) VALUES ('events', 42);
                   INSERT INTO subscriptions VALUES ('a@x.test', 'MoinMaster', 'Help/*'), ('a@x.test', 'Beta', '*');
                   INSERT INTO known VALUES ('b@x.test');"#,
            ],
        );
        let outbox = SqliteOutbox::open(&path).unwrap();
        let pending = outbox.pending(0, 10).await.unwrap();
        assert_eq!(pending, vec![(1, Bytes::from_static(br#"{"kind":"roster_add","jid":"a@x.test"}"#))]);
        // Emptied, the outbox does not give id 1 again.
        outbox.done(1).await.unwrap();
        outbox.enqueue(vec![Bytes::from_static(b"{}")]).await.unwrap();
        assert_eq!(outbox.pending(0, 10).await.unwrap()[0].0, 2);
        assert_eq!(outbox.position("events").await.unwrap(), Some(42));
        outbox.enqueue_at(Vec::new(), "events", 43).await.unwrap();
        let subscriptions = outbox.table_get(&format!("sub.{}", hex::encode("a@x.test"))).await.unwrap();
        let (value, revision) = subscriptions.unwrap();
        assert_eq!(&value[..], br#"[["Beta","*"],["MoinMaster","Help/*"]]"#);
        assert!(outbox.table_get(&format!("known.{}", hex::encode("b@x.test"))).await.unwrap().is_some());
        // The counter continues past the migrated revisions.
        let next = outbox.table_put("other", Bytes::from_static(b"x"), 0).await.unwrap();
        assert!(next > revision && next > 2, "{next}");
        drop(outbox);
        // Opened again: already at the current version, nothing moves.
        let outbox = SqliteOutbox::open(&path).unwrap();
        assert_eq!(outbox.table_keys("").await.unwrap().len(), 3);
    }

    /// A version 1 file keeps its items and ids, and from then on never gives an id again.
    #[tokio::test]
    async fn a_version_1_file_stops_reusing_ids() {
        let directory = tempfile::tempdir().unwrap();
        let path = old_file(
            &directory,
            &[
                VERSION_0,
                VERSION_1,
                "INSERT INTO outbox (id, item, created) VALUES (3, 'a', 1), (5, 'b', 1); PRAGMA user_version = 1;",
            ],
        );
        let outbox = SqliteOutbox::open(&path).unwrap();
        let ids = |pending: Vec<(u64, Bytes)>| pending.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(outbox.pending(0, 10).await.unwrap()), [3, 5]);
        outbox.done_many(vec![3, 5]).await.unwrap();
        outbox.enqueue(vec![Bytes::from_static(b"c")]).await.unwrap();
        assert_eq!(ids(outbox.pending(0, 10).await.unwrap()), [6]);
    }
}
