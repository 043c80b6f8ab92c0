//! The bot's own durable state, one SQLite file beside the event log (`xmpp.sqlite`): the outbox
//! (what must still reach the XMPP server), hub subscriptions, the bot's positions in the log,
//! and the JIDs the wiki added (for the `known` subscription policy).
//!
//! An item leaves the outbox only when the server has taken it; enqueueing commits before the
//! caller answers (an XML-RPC `true` means "stored").

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

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
    connection: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, item TEXT NOT NULL, created INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS subscriptions (jid TEXT NOT NULL, wiki TEXT NOT NULL COLLATE NOCASE, pages TEXT NOT NULL,
                                              PRIMARY KEY (jid, wiki, pages));
    CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, id INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS known (jid TEXT PRIMARY KEY);
";

impl State {
    pub fn open(path: &Path) -> Result<State, StateError> {
        let connection = Connection::open(path)?;
        connection.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
        )?;
        connection.execute_batch(SCHEMA)?;
        Ok(State { connection: Arc::new(Mutex::new(connection)) })
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
        self.with(move |connection| {
            connection.execute("DELETE FROM outbox WHERE id = ?1", [id])?;
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

    /// Removes the JID's subscriptions to `wiki` (all of them without `pages`), or every one of
    /// its subscriptions when `wiki` is `None`. Returns how many went.
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
