//! The bot's durable state: the outbox (what must still reach the XMPP server), hub
//! subscriptions, the bot's positions in the log, and the JIDs the wiki added (for the `known`
//! subscription policy).
//!
//! On one node it is one SQLite file beside the event log (`xmpp.sqlite`, [`Local`]); in a
//! cluster it lives in NATS and every node shares it ([`Shared`], over the store's
//! `SharedOutbox`): any node takes XML-RPC calls, the node holding the bot's lease delivers.
//!
//! An item leaves the outbox only when the server has taken it; enqueueing commits before the
//! caller answers (an XML-RPC `true` means "stored"). Positions move with the items they produced,
//! in one transaction (one atomic batch in a cluster, where a deposed node's write fails).

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use wikiwire_store::jetstream::outbox::SharedOutbox;

/// What the outbox holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    /// A notification from the wiki's XML-RPC call, for one bare JID.
    Notification {
        to: String,
        notification: Box<crate::notification::Notification>,
    },
    /// A hub event for a subscribed JID; rendered when sent, in the user's language.
    Event {
        to: String,
        event: String,
    },
    /// A line for a room (XEP-0045).
    Room {
        room: String,
        text: String,
    },
    RosterAdd {
        jid: String,
    },
    RosterRemove {
        jid: String,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("bot state: {0}")]
pub struct StateError(String);

impl From<rusqlite::Error> for StateError {
    fn from(error: rusqlite::Error) -> StateError {
        StateError(error.to_string())
    }
}

/// A subscription of a JID to events of a wiki, optionally only of pages matching a glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub jid: String,
    pub wiki: String,
    pub pages: String,
}

#[derive(Clone)]
pub struct State {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Local(Local),
    Shared(Shared),
}

/// One node: `xmpp.sqlite`.
#[derive(Clone)]
struct Local {
    connection: Arc<Mutex<Connection>>,
}

/// A cluster: NATS, through the store.
#[derive(Clone)]
struct Shared {
    outbox: Arc<SharedOutbox>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, item TEXT NOT NULL, created INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS subscriptions (jid TEXT NOT NULL, wiki TEXT NOT NULL COLLATE NOCASE, pages TEXT NOT NULL,
                                              PRIMARY KEY (jid, wiki, pages));
    CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, id INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS known (jid TEXT PRIMARY KEY);
";

/// Dispatches each call to the backend.
macro_rules! both {
    ($self:ident . $method:ident ( $($argument:expr),* )) => {
        match &$self.backend {
            Backend::Local(local) => local.$method($($argument),*).await,
            Backend::Shared(shared) => shared.$method($($argument),*).await,
        }
    };
}

impl State {
    /// The bot's own file, on one node.
    pub fn open(path: &Path) -> Result<State, StateError> {
        Ok(State { backend: Backend::Local(Local::open(path)?) })
    }

    /// The cluster's shared state.
    pub fn shared(outbox: Arc<SharedOutbox>) -> State {
        State { backend: Backend::Shared(Shared { outbox }) }
    }

    /// Whether other nodes store items too (then the holder learns of them from NATS).
    pub fn shared_outbox(&self) -> Option<&Arc<SharedOutbox>> {
        match &self.backend {
            Backend::Shared(shared) => Some(&shared.outbox),
            Backend::Local(_) => None,
        }
    }

    /// Stores items, all or none, durably.
    pub async fn enqueue(&self, items: Vec<Item>) -> Result<(), StateError> {
        both!(self.enqueue(items))
    }

    /// Stores items and moves a cursor together: a follower of the log that crashes neither
    /// loses nor repeats, and one that lost the bot's lease cannot move it.
    pub async fn enqueue_at(&self, items: Vec<Item>, cursor: &str, id: u64) -> Result<(), StateError> {
        both!(self.enqueue_at(items, cursor, id))
    }

    /// Items still to deliver, oldest first, at most `limit`; lines for the rooms in `waiting`
    /// (not joined yet) stay where they are and do not hold up the rest.
    pub async fn pending(&self, limit: usize, waiting: Vec<String>) -> Result<Vec<(i64, Item)>, StateError> {
        both!(self.pending(limit, waiting))
    }

    pub async fn done(&self, id: i64) -> Result<(), StateError> {
        both!(self.done(id))
    }

    /// Removes delivered items, all in one go where the backend can (one transaction on one
    /// node); an item already gone is no error.
    pub async fn done_many(&self, ids: Vec<i64>) -> Result<(), StateError> {
        both!(self.done_many(ids))
    }

    /// Whether a reading of the outbox that begins after a removal is committed never lists the
    /// removed item, and whether ids may come back. One node's SQLite file: yes (the same
    /// connection), and an emptied outbox numbers from 1 again. A cluster: a reading may be
    /// served by a replica a moment behind, and ids (stream sequences) never come back.
    pub fn reads_its_removals(&self) -> bool {
        matches!(self.backend, Backend::Local(_))
    }

    pub async fn outbox_len(&self) -> Result<u64, StateError> {
        both!(self.outbox_len())
    }

    pub async fn cursor(&self, name: &str) -> Result<Option<u64>, StateError> {
        both!(self.cursor(name))
    }

    pub async fn subscribe(&self, subscription: Subscription) -> Result<bool, StateError> {
        both!(self.subscribe(subscription))
    }

    /// Removes the JID's subscriptions to `wiki` (all of them without `pages`), or every one of
    /// its subscriptions when `wiki` is `None`. Returns how many went.
    pub async fn unsubscribe(
        &self,
        jid: &str,
        wiki: Option<&str>,
        pages: Option<&str>,
    ) -> Result<usize, StateError> {
        both!(self.unsubscribe(jid, wiki, pages))
    }

    /// Subscriptions of one JID, or of everyone.
    pub async fn subscriptions(&self, jid: Option<&str>) -> Result<Vec<Subscription>, StateError> {
        both!(self.subscriptions(jid))
    }

    pub async fn remember(&self, jid: &str) -> Result<(), StateError> {
        both!(self.remember(jid))
    }

    pub async fn forget(&self, jid: &str) -> Result<(), StateError> {
        both!(self.forget(jid))
    }

    /// A JID the wiki added, or one with a subscription here.
    pub async fn is_known(&self, jid: &str) -> Result<bool, StateError> {
        both!(self.is_known(jid))
    }
}

impl Local {
    fn open(path: &Path) -> Result<Local, StateError> {
        let connection = Connection::open(path)?;
        connection.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
        )?;
        connection.execute_batch(SCHEMA)?;
        Ok(Local { connection: Arc::new(Mutex::new(connection)) })
    }

    /// Runs `work` on the connection off the async threads.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut connection)
        })
        .await
        .map_err(|error| StateError(error.to_string()))?
    }

    /// Stores items, all or none, durably.
    pub async fn enqueue(&self, items: Vec<Item>) -> Result<(), StateError> {
        self.with(move |connection| {
            let transaction = connection.transaction()?;
            insert(&transaction, &items)?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    /// Stores items and moves a cursor in the same transaction: a follower of the log that crashes
    /// neither loses nor repeats.
    pub async fn enqueue_at(&self, items: Vec<Item>, cursor: &str, id: u64) -> Result<(), StateError> {
        let cursor = cursor.to_owned();
        self.with(move |connection| {
            let transaction = connection.transaction()?;
            insert(&transaction, &items)?;
            transaction.execute(
                "INSERT INTO cursors (name, id) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET id = excluded.id",
                params![cursor, id as i64],
            )?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    /// Items still to deliver, oldest first, at most `limit`; lines for the rooms in `waiting`
    /// (not joined yet) stay where they are and do not hold up the rest.
    pub async fn pending(&self, limit: usize, waiting: Vec<String>) -> Result<Vec<(i64, Item)>, StateError> {
        self.with(move |connection| {
            let mut statement = connection.prepare_cached("SELECT id, item FROM outbox ORDER BY id")?;
            let rows =
                statement.query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))?;
            let mut items = Vec::new();
            for row in rows {
                if items.len() >= limit {
                    break;
                }
                let (id, text) = row?;
                match serde_json::from_str(&text) {
                    Ok(Item::Room { room, .. }) if waiting.contains(&room) => {}
                    Ok(item) => items.push((id, item)),
                    // An unreadable row (from a future version?) must not block the rest.
                    Err(error) => tracing::error!(id, %error, "skipping an unreadable outbox item"),
                }
            }
            Ok(items)
        })
        .await
    }

    pub async fn done(&self, id: i64) -> Result<(), StateError> {
        self.done_many(vec![id]).await
    }

    /// One transaction, so one sync to disk for a whole round of acknowledgements.
    pub async fn done_many(&self, ids: Vec<i64>) -> Result<(), StateError> {
        self.with(move |connection| {
            let transaction = connection.transaction()?;
            {
                let mut statement = transaction.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
                for id in ids {
                    statement.execute([id])?;
                }
            }
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn outbox_len(&self) -> Result<u64, StateError> {
        self.with(|connection| {
            Ok(connection.query_row("SELECT count(*) FROM outbox", [], |row| row.get::<_, i64>(0))? as u64)
        })
        .await
    }

    pub async fn cursor(&self, name: &str) -> Result<Option<u64>, StateError> {
        let name = name.to_owned();
        self.with(move |connection| {
            Ok(connection
                .query_row("SELECT id FROM cursors WHERE name = ?1", [name], |row| row.get::<_, i64>(0))
                .optional()?
                .map(|id| id as u64))
        })
        .await
    }

    pub async fn subscribe(&self, subscription: Subscription) -> Result<bool, StateError> {
        self.with(move |connection| {
            let added = connection.execute(
                "INSERT OR IGNORE INTO subscriptions (jid, wiki, pages) VALUES (?1, ?2, ?3)",
                params![subscription.jid, subscription.wiki, subscription.pages],
            )?;
            Ok(added > 0)
        })
        .await
    }

    pub async fn unsubscribe(
        &self,
        jid: &str,
        wiki: Option<&str>,
        pages: Option<&str>,
    ) -> Result<usize, StateError> {
        let (jid, wiki, pages) = (jid.to_owned(), wiki.map(str::to_owned), pages.map(str::to_owned));
        self.with(move |connection| {
            Ok(match (wiki, pages) {
                (None, _) => connection.execute("DELETE FROM subscriptions WHERE jid = ?1", [jid])?,
                (Some(wiki), None) => connection
                    .execute("DELETE FROM subscriptions WHERE jid = ?1 AND wiki = ?2", params![jid, wiki])?,
                (Some(wiki), Some(pages)) => connection.execute(
                    "DELETE FROM subscriptions WHERE jid = ?1 AND wiki = ?2 AND pages = ?3",
                    params![jid, wiki, pages],
                )?,
            })
        })
        .await
    }

    /// Subscriptions of one JID, or of everyone.
    pub async fn subscriptions(&self, jid: Option<&str>) -> Result<Vec<Subscription>, StateError> {
        let jid = jid.map(str::to_owned);
        self.with(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT jid, wiki, pages FROM subscriptions WHERE ?1 IS NULL OR jid = ?1 ORDER BY jid, wiki, pages",
            )?;
            let rows = statement.query_map([jid], |row| Ok(Subscription { jid: row.get(0)?, wiki: row.get(1)?, pages: row.get(2)? }))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(StateError::from)
        })
        .await
    }

    pub async fn remember(&self, jid: &str) -> Result<(), StateError> {
        let jid = jid.to_owned();
        self.with(move |connection| {
            connection.execute("INSERT OR IGNORE INTO known (jid) VALUES (?1)", [jid])?;
            Ok(())
        })
        .await
    }

    pub async fn forget(&self, jid: &str) -> Result<(), StateError> {
        let jid = jid.to_owned();
        self.with(move |connection| {
            connection.execute("DELETE FROM known WHERE jid = ?1", [jid])?;
            Ok(())
        })
        .await
    }

    /// A JID the wiki added, or one with a subscription here.
    pub async fn is_known(&self, jid: &str) -> Result<bool, StateError> {
        let jid = jid.to_owned();
        self.with(move |connection| {
            let known: i64 = connection.query_row(
                "SELECT (SELECT count(*) FROM known WHERE jid = ?1) + (SELECT count(*) FROM subscriptions WHERE jid = ?1)",
                [jid],
                |row| row.get(0),
            )?;
            Ok(known > 0)
        })
        .await
    }
}

impl Shared {
    async fn enqueue(&self, items: Vec<Item>) -> Result<(), StateError> {
        self.outbox.enqueue(encode(&items)?).await.map_err(shared_error)
    }

    async fn enqueue_at(&self, items: Vec<Item>, cursor: &str, id: u64) -> Result<(), StateError> {
        self.outbox.enqueue_at(encode(&items)?, cursor, id).await.map_err(shared_error)
    }

    async fn pending(&self, limit: usize, waiting: Vec<String>) -> Result<Vec<(i64, Item)>, StateError> {
        let mut items = Vec::new();
        for (sequence, payload) in self.outbox.pending(limit).await.map_err(shared_error)? {
            let id = i64::try_from(sequence).unwrap_or(i64::MAX);
            match serde_json::from_slice(&payload) {
                Ok(Item::Room { room, .. }) if waiting.contains(&room) => {}
                Ok(item) => items.push((id, item)),
                Err(error) => tracing::error!(id, %error, "skipping an unreadable outbox item"),
            }
        }
        Ok(items)
    }

    async fn done(&self, id: i64) -> Result<(), StateError> {
        self.outbox.done(u64::try_from(id).unwrap_or(0)).await.map_err(shared_error)
    }

    /// The deletions go out together (each is its own request to the stream's leader).
    async fn done_many(&self, ids: Vec<i64>) -> Result<(), StateError> {
        let deletions = ids.into_iter().map(|id| self.done(id));
        futures::future::join_all(deletions).await.into_iter().collect()
    }

    async fn outbox_len(&self) -> Result<u64, StateError> {
        self.outbox.waiting().await.map_err(shared_error)
    }

    async fn cursor(&self, name: &str) -> Result<Option<u64>, StateError> {
        self.outbox.position(name).await.map_err(shared_error)
    }

    /// A JID's subscriptions: one key, a JSON list of `[wiki, pages]`, changed by compare-and-set.
    async fn read_subscriptions(&self, jid: &str) -> Result<(Vec<(String, String)>, u64), StateError> {
        match self.outbox.table_get(&table_key("sub", jid)).await.map_err(shared_error)? {
            Some((value, revision)) => {
                let list = serde_json::from_slice(&value).map_err(|error| StateError(error.to_string()))?;
                Ok((list, revision))
            }
            None => Ok((Vec::new(), 0)),
        }
    }

    /// Changes a JID's list until no other node changed it meanwhile; returns what `change` said.
    async fn change_subscriptions<T>(
        &self,
        jid: &str,
        mut change: impl FnMut(&mut Vec<(String, String)>) -> T,
    ) -> Result<T, StateError> {
        let key = table_key("sub", jid);
        loop {
            let (mut list, revision) = self.read_subscriptions(jid).await?;
            let before = list.clone();
            let answer = change(&mut list);
            if list == before {
                return Ok(answer);
            }
            let written = if list.is_empty() {
                self.outbox.table_delete(&key).await.map(|()| 0)
            } else {
                let value = serde_json::to_vec(&list).map_err(|error| StateError(error.to_string()))?;
                self.outbox.table_put(&key, value.into(), revision).await
            };
            match written {
                Ok(_) => return Ok(answer),
                Err(wikiwire_store::StoreError::Conflict(_)) => continue,
                Err(error) => return Err(shared_error(error)),
            }
        }
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<bool, StateError> {
        let entry = (subscription.wiki.clone(), subscription.pages.clone());
        self.change_subscriptions(&subscription.jid, |list| {
            let new =
                !list.iter().any(|(wiki, pages)| wiki.eq_ignore_ascii_case(&entry.0) && *pages == entry.1);
            if new {
                list.push(entry.clone());
                list.sort();
            }
            new
        })
        .await
    }

    async fn unsubscribe(
        &self,
        jid: &str,
        wiki: Option<&str>,
        pages: Option<&str>,
    ) -> Result<usize, StateError> {
        self.change_subscriptions(jid, |list| {
            let before = list.len();
            list.retain(|(held_wiki, held_pages)| match (wiki, pages) {
                (None, _) => false,
                (Some(wiki), None) => !held_wiki.eq_ignore_ascii_case(wiki),
                (Some(wiki), Some(pages)) => !(held_wiki.eq_ignore_ascii_case(wiki) && held_pages == pages),
            });
            before - list.len()
        })
        .await
    }

    async fn subscriptions(&self, jid: Option<&str>) -> Result<Vec<Subscription>, StateError> {
        let jids = match jid {
            Some(jid) => vec![jid.to_owned()],
            None => {
                let keys = self.outbox.table_keys("sub.").await.map_err(shared_error)?;
                keys.iter().filter_map(|key| jid_of(key)).collect()
            }
        };
        let mut all = Vec::new();
        for jid in jids {
            let (list, _) = self.read_subscriptions(&jid).await?;
            all.extend(list.into_iter().map(|(wiki, pages)| Subscription { jid: jid.clone(), wiki, pages }));
        }
        all.sort_by(|a, b| (&a.jid, &a.wiki, &a.pages).cmp(&(&b.jid, &b.wiki, &b.pages)));
        Ok(all)
    }

    async fn remember(&self, jid: &str) -> Result<(), StateError> {
        match self.outbox.table_put(&table_key("known", jid), Bytes::from_static(b"1"), 0).await {
            Ok(_) | Err(wikiwire_store::StoreError::Conflict(_)) => Ok(()),
            Err(error) => Err(shared_error(error)),
        }
    }

    async fn forget(&self, jid: &str) -> Result<(), StateError> {
        self.outbox.table_delete(&table_key("known", jid)).await.map_err(shared_error)
    }

    async fn is_known(&self, jid: &str) -> Result<bool, StateError> {
        if self.outbox.table_get(&table_key("known", jid)).await.map_err(shared_error)?.is_some() {
            return Ok(true);
        }
        Ok(!self.read_subscriptions(jid).await?.0.is_empty())
    }
}

fn encode(items: &[Item]) -> Result<Vec<Bytes>, StateError> {
    items
        .iter()
        .map(|item| serde_json::to_vec(item).map(Bytes::from).map_err(|error| StateError(error.to_string())))
        .collect()
}

fn shared_error(error: wikiwire_store::StoreError) -> StateError {
    StateError(error.to_string())
}

/// `<kind>.<hex of the JID>`: KV keys allow few characters.
fn table_key(kind: &str, jid: &str) -> String {
    format!("{kind}.{}", hex::encode(jid))
}

fn jid_of(key: &str) -> Option<String> {
    let (_, hex) = key.split_once('.')?;
    String::from_utf8(hex::decode(hex).ok()?).ok()
}

fn insert(transaction: &rusqlite::Transaction<'_>, items: &[Item]) -> Result<(), StateError> {
    let now = wikiwire_event::Timestamp::now().millis();
    let mut statement = transaction.prepare_cached("INSERT INTO outbox (item, created) VALUES (?1, ?2)")?;
    for item in items {
        let text = serde_json::to_string(item).map_err(|error| StateError(error.to_string()))?;
        statement.execute(params![text, now])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_outbox_keeps_order_and_survives_reopening() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("xmpp.sqlite");
        let state = State::open(&path).unwrap();
        state
            .enqueue(vec![
                Item::RosterAdd { jid: "a@x.test".into() },
                Item::Room { room: "r@c.x.test".into(), text: "hi".into() },
            ])
            .await
            .unwrap();
        state.enqueue_at(vec![Item::RosterRemove { jid: "b@x.test".into() }], "events", 7).await.unwrap();
        drop(state);
        let state = State::open(&path).unwrap();
        let pending = state.pending(10, vec![]).await.unwrap();
        assert_eq!(pending.len(), 3);
        assert_eq!(pending[0].1, Item::RosterAdd { jid: "a@x.test".into() });
        // Lines for a room not joined wait without holding up what comes after them.
        let without_room = state.pending(2, vec!["r@c.x.test".into()]).await.unwrap();
        assert_eq!(
            without_room.iter().map(|(_, item)| item.clone()).collect::<Vec<_>>(),
            vec![Item::RosterAdd { jid: "a@x.test".into() }, Item::RosterRemove { jid: "b@x.test".into() }]
        );
        assert_eq!(state.cursor("events").await.unwrap(), Some(7));
        state.done(pending[0].0).await.unwrap();
        assert_eq!(state.outbox_len().await.unwrap(), 2);
        // Removed in one go; an id already gone is no error.
        state.done_many(vec![pending[0].0, pending[1].0, pending[2].0]).await.unwrap();
        assert_eq!(state.outbox_len().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn subscriptions_and_known_jids() {
        let directory = tempfile::tempdir().unwrap();
        let state = State::open(&directory.path().join("xmpp.sqlite")).unwrap();
        let subscription =
            Subscription { jid: "a@x.test".into(), wiki: "MoinMaster".into(), pages: "Help/*".into() };
        assert!(state.subscribe(subscription.clone()).await.unwrap());
        assert!(!state.subscribe(subscription.clone()).await.unwrap(), "once");
        assert!(state.is_known("a@x.test").await.unwrap());
        assert_eq!(state.subscriptions(Some("a@x.test")).await.unwrap(), vec![subscription]);
        assert_eq!(state.unsubscribe("a@x.test", Some("moinmaster"), None).await.unwrap(), 1);
        assert!(!state.is_known("a@x.test").await.unwrap());
        state.remember("b@x.test").await.unwrap();
        assert!(state.is_known("b@x.test").await.unwrap());
    }
}
