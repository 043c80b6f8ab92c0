//! The bot's durable state: the outbox (what must still reach the XMPP server), hub
//! subscriptions, the bot's positions in the log, the JIDs the wiki added (for the `known`
//! subscription policy), and the session's records (XEP-0198 stream management).
//!
//! Kept by the store ([`Outbox`], `Store::outbox`): on one node a SQLite file beside the event log
//! (`xmpp.sqlite`), in a cluster NATS, shared by every node (any node takes XML-RPC calls, the
//! node holding the bot's lease delivers). This module owns only the meaning of the bytes: items
//! as JSON, and the table's keys — `sub.<hex of the JID>` (a JSON list of `[wiki, pages]`),
//! `known.<hex of the JID>`, `session.<hex of the record's name>`.
//!
//! An item leaves the outbox only when the server has taken it; enqueueing commits before the
//! caller answers (an XML-RPC `true` means "stored"). Positions move with the items they produced,
//! in one transaction (one atomic batch in a cluster, where a deposed node's write fails).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use wikiwire_store::sqlite::SqliteOutbox;
use wikiwire_store::{Outbox, StoreError};

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
pub enum StateError {
    /// A fenced write lost: another node (or a run of the bot that was deposed) wrote since this
    /// one last read (a position, a session record).
    #[error("bot state: {0}")]
    Conflict(#[source] StoreError),
    #[error("bot state: {0}")]
    Store(#[source] StoreError),
    /// Stored bytes that do not read as what this module wrote.
    #[error("bot state: {0}")]
    Encoding(#[from] serde_json::Error),
}

impl From<StoreError> for StateError {
    fn from(error: StoreError) -> StateError {
        match error {
            StoreError::Conflict(_) => StateError::Conflict(error),
            error => StateError::Store(error),
        }
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
    outbox: Arc<dyn Outbox>,
}

impl State {
    /// Over the store's outbox (`Store::outbox`).
    pub fn new(outbox: Arc<dyn Outbox>) -> State {
        State { outbox }
    }

    /// A SQLite file of the bot's own (tests, tools); the hub opens it through its store.
    pub fn open(path: &Path) -> Result<State, StateError> {
        Ok(State::new(Arc::new(SqliteOutbox::open(path)?)))
    }

    /// Wakes `wake` whenever an item is stored (in a cluster, by any node).
    pub async fn notify_on_items(&self, wake: Arc<Notify>) -> Result<(), StateError> {
        Ok(self.outbox.notify_on_items(wake).await?)
    }

    /// Stores items, all or none, durably.
    pub async fn enqueue(&self, items: Vec<Item>) -> Result<(), StateError> {
        Ok(self.outbox.enqueue(encode(&items)?).await?)
    }

    /// Stores items and moves a cursor together: a follower of the log that crashes neither
    /// loses nor repeats, and one that lost the bot's lease cannot move it.
    pub async fn enqueue_at(&self, items: Vec<Item>, cursor: &str, id: u64) -> Result<(), StateError> {
        Ok(self.outbox.enqueue_at(encode(&items)?, cursor, id).await?)
    }

    /// Items still to deliver, oldest first, at most `limit`; lines for the rooms in `waiting`
    /// (not joined yet) stay where they are and do not hold up the rest (read past, a page at a
    /// time).
    pub async fn pending(&self, limit: usize, waiting: Vec<String>) -> Result<Vec<(i64, Item)>, StateError> {
        let mut items = Vec::new();
        let mut after = 0;
        while items.len() < limit {
            let page = self.outbox.pending(after, limit).await?;
            let full = page.len() == limit;
            for (id, payload) in page {
                after = id;
                let id = i64::try_from(id).unwrap_or(i64::MAX);
                match serde_json::from_slice(&payload) {
                    Ok(Item::Room { room, .. }) if waiting.contains(&room) => {}
                    Ok(item) if items.len() < limit => items.push((id, item)),
                    Ok(_) => {}
                    // An unreadable item (from a future version?) must not block the rest.
                    Err(error) => tracing::error!(id, %error, "skipping an unreadable outbox item"),
                }
            }
            if !full {
                break;
            }
        }
        Ok(items)
    }

    pub async fn done(&self, id: i64) -> Result<(), StateError> {
        Ok(self.outbox.done(u64::try_from(id).unwrap_or(0)).await?)
    }

    /// Removes delivered items, all in one go where the backend can (one transaction on one
    /// node); an item already gone is no error.
    pub async fn done_many(&self, ids: Vec<i64>) -> Result<(), StateError> {
        let ids = ids.into_iter().map(|id| u64::try_from(id).unwrap_or(0)).collect();
        Ok(self.outbox.done_many(ids).await?)
    }

    /// Whether a reading of the outbox that begins after a removal is committed never lists the
    /// removed item (see `Outbox::reads_its_removals`: yes on one node, no in a cluster).
    pub fn reads_its_removals(&self) -> bool {
        self.outbox.reads_its_removals()
    }

    pub async fn outbox_len(&self) -> Result<u64, StateError> {
        Ok(self.outbox.waiting().await?)
    }

    pub async fn cursor(&self, name: &str) -> Result<Option<u64>, StateError> {
        Ok(self.outbox.position(name).await?)
    }

    /// A record of the XMPP session (stream management), with its revision.
    pub async fn record(&self, key: &str) -> Result<Option<(Bytes, u64)>, StateError> {
        Ok(self.outbox.table_get(&table_key("session", key)).await?)
    }

    /// Writes a record if it is still at `revision` (0: only if there is none yet) and returns
    /// the new revision; `StateError::Conflict` when another run of the bot wrote it meanwhile.
    pub async fn put_record(&self, key: &str, value: Bytes, revision: u64) -> Result<u64, StateError> {
        Ok(self.outbox.table_put(&table_key("session", key), value, revision).await?)
    }

    pub async fn subscribe(&self, subscription: Subscription) -> Result<bool, StateError> {
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

    /// Removes the JID's subscriptions to `wiki` (all of them without `pages`), or every one of
    /// its subscriptions when `wiki` is `None`. Returns how many went.
    pub async fn unsubscribe(
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

    /// Subscriptions of one JID, or of everyone; by JID, wiki (without ASCII case), pages.
    pub async fn subscriptions(&self, jid: Option<&str>) -> Result<Vec<Subscription>, StateError> {
        let jids = match jid {
            Some(jid) => vec![jid.to_owned()],
            None => {
                let keys = self.outbox.table_keys("sub.").await?;
                keys.iter().filter_map(|key| jid_of(key)).collect()
            }
        };
        // Read together: in a cluster each is a round trip to NATS.
        let lists =
            futures::future::try_join_all(jids.iter().map(|jid| self.read_subscriptions(jid))).await?;
        let mut all = Vec::new();
        for (jid, (list, _)) in jids.iter().zip(lists) {
            all.extend(list.into_iter().map(|(wiki, pages)| Subscription { jid: jid.clone(), wiki, pages }));
        }
        all.sort_by_cached_key(|each| (each.jid.clone(), each.wiki.to_ascii_lowercase(), each.pages.clone()));
        Ok(all)
    }

    pub async fn remember(&self, jid: &str) -> Result<(), StateError> {
        match self.outbox.table_put(&table_key("known", jid), Bytes::from_static(b"1"), 0).await {
            Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn forget(&self, jid: &str) -> Result<(), StateError> {
        Ok(self.outbox.table_delete(&table_key("known", jid)).await?)
    }

    /// A JID the wiki added, or one with a subscription here.
    /// Both keys are read at once; the subscriptions are parsed only when the JID was not added.
    pub async fn is_known(&self, jid: &str) -> Result<bool, StateError> {
        let (known_key, sub_key) = (table_key("known", jid), table_key("sub", jid));
        let (known, subscriptions) =
            tokio::try_join!(self.outbox.table_get(&known_key), self.outbox.table_get(&sub_key))?;
        if known.is_some() {
            return Ok(true);
        }
        Ok(!parse_subscriptions(subscriptions)?.0.is_empty())
    }

    /// A JID's subscriptions: one key, a JSON list of `[wiki, pages]`, changed by compare-and-set.
    async fn read_subscriptions(&self, jid: &str) -> Result<(Vec<(String, String)>, u64), StateError> {
        parse_subscriptions(self.outbox.table_get(&table_key("sub", jid)).await?)
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
                self.outbox.table_put(&key, serde_json::to_vec(&list)?.into(), revision).await
            };
            match written {
                Ok(_) => return Ok(answer),
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }
}

fn encode(items: &[Item]) -> Result<Vec<Bytes>, StateError> {
    items.iter().map(|item| Ok(serde_json::to_vec(item)?.into())).collect()
}

/// `<kind>.<hex>`: the table allows few characters in a key.
fn table_key(kind: &str, name: &str) -> String {
    format!("{kind}.{}", hex::encode(name))
}

/// A stored subscription list and its revision; none stored is an empty list at revision 0.
fn parse_subscriptions(entry: Option<(Bytes, u64)>) -> Result<(Vec<(String, String)>, u64), StateError> {
    match entry {
        Some((value, revision)) => Ok((serde_json::from_slice(&value)?, revision)),
        None => Ok((Vec::new(), 0)),
    }
}

fn jid_of(key: &str) -> Option<String> {
    let (_, hex) = key.split_once('.')?;
    String::from_utf8(hex::decode(hex).ok()?).ok()
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
