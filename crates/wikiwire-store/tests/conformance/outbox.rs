//! The bot's [`Outbox`] contract against both stores: order, removal (twice is harmless),
//! positions that move with their items and are fenced against a second handle (another node,
//! or a holder that was deposed), the table's compare-and-set, and what a reading sees after a
//! removal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wikiwire_store::sqlite::SqliteOutbox;
use wikiwire_store::{JetStreamStore, Outbox, Retention, Store, StoreError};

use super::{Fixture, Kind, jetstream_options};

conformance!(
    outbox_items_keep_their_order_and_leave_when_done,
    outbox_positions_move_with_their_items_and_are_fenced,
    outbox_table_writes_are_compare_and_set,
    outbox_wakes_on_items,
);

fn item(text: &str) -> Bytes {
    Bytes::from(text.to_owned())
}

fn payloads(items: &[(u64, Bytes)]) -> Vec<Bytes> {
    items.iter().map(|(_, payload)| payload.clone()).collect()
}

/// A second handle on the fixture's outbox, as another node (or a restarted process) has it;
/// for JetStream also the store that holds it.
async fn second_handle(fixture: &Fixture, node: &str) -> (Arc<dyn Outbox>, Option<JetStreamStore>) {
    match fixture.kind {
        Kind::Sqlite => {
            let path = fixture._directory.path().join("xmpp.sqlite");
            (Arc::new(SqliteOutbox::open(&path).unwrap()), None)
        }
        Kind::JetStream => {
            let nats = fixture._nats.as_ref().expect("a JetStream fixture has its server");
            let mut options = jetstream_options(nats, &fixture._directory, Retention::default());
            options.node = node.into();
            options.replica = fixture._directory.path().join(format!("{node}.sqlite"));
            let store = JetStreamStore::open(options).await.unwrap();
            (store.outbox().await.unwrap(), Some(store))
        }
    }
}

/// Waits until `outbox` no longer lists `gone`: at once where readings see removals, else within
/// a few seconds (a replica a moment behind).
async fn pending_without(outbox: &dyn Outbox, gone: &[u64]) -> Vec<(u64, Bytes)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pending = outbox.pending(0, 100).await.unwrap();
        if !pending.iter().any(|(id, _)| gone.contains(id)) {
            return pending;
        }
        assert!(!outbox.reads_its_removals(), "a reading after the removal listed it: {pending:?}");
        assert!(Instant::now() < deadline, "removed items still listed: {pending:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn outbox_items_keep_their_order_and_leave_when_done(kind: Kind) {
    let Some(fixture) = Fixture::open(kind, Retention::default()).await else { return };
    let outbox = fixture.store.outbox().await.unwrap();
    let (other, other_store) = second_handle(&fixture, "b").await;
    assert_eq!(outbox.waiting().await.unwrap(), 0);
    outbox.enqueue(vec![item("one"), item("two")]).await.unwrap();
    other.enqueue(vec![item("three")]).await.unwrap();
    outbox.enqueue(Vec::new()).await.unwrap();
    let pending = other.pending(0, 10).await.unwrap();
    assert_eq!(
        payloads(&pending),
        [item("one"), item("two"), item("three")],
        "oldest first, from any handle"
    );
    assert!(pending.windows(2).all(|pair| pair[0].0 < pair[1].0), "ids grow: {pending:?}");
    assert_eq!(
        payloads(&outbox.pending(0, 2).await.unwrap()),
        [item("one"), item("two")],
        "at most the limit"
    );
    let after_first = outbox.pending(pending[0].0, 10).await.unwrap();
    assert_eq!(payloads(&after_first), [item("two"), item("three")], "only after the id given");
    assert_eq!(outbox.waiting().await.unwrap(), 3);

    // Removed once and again, from either handle: an item already gone is no error.
    outbox.done(pending[0].0).await.unwrap();
    outbox.done(pending[0].0).await.unwrap();
    other.done_many(vec![pending[0].0, pending[1].0]).await.unwrap();
    let left = pending_without(&*outbox, &[pending[0].0, pending[1].0]).await;
    assert_eq!(payloads(&left), [item("three")]);
    assert_eq!(outbox.waiting().await.unwrap(), 1);

    // Emptied: an id never comes back (the Jabber session's record names items by id).
    outbox.done_many(vec![pending[2].0]).await.unwrap();
    pending_without(&*outbox, &[pending[2].0]).await;
    outbox.enqueue(vec![item("four")]).await.unwrap();
    let again = outbox.pending(0, 10).await.unwrap();
    assert_eq!(payloads(&again), [item("four")]);
    assert!(again[0].0 > pending[2].0, "an emptied outbox gave an old id to a new item");
    if let Some(store) = other_store {
        store.close().await;
    }
}

async fn outbox_positions_move_with_their_items_and_are_fenced(kind: Kind) {
    let Some(fixture) = Fixture::open(kind, Retention::default()).await else { return };
    let a = fixture.store.outbox().await.unwrap();
    let (b, b_store) = second_handle(&fixture, "b").await;
    assert_eq!(a.position("events").await.unwrap(), None);
    a.enqueue_at(vec![item("one")], "events", 7).await.unwrap();
    a.enqueue_at(vec![item("two")], "events", 8).await.unwrap();
    assert_eq!(b.position("events").await.unwrap(), Some(8));
    // b takes over: writing the same id claims the position.
    b.enqueue_at(Vec::new(), "events", 8).await.unwrap();
    // a did not see that move: refused, and the refused batch stored nothing (all or none).
    let late = a.enqueue_at(vec![item("late"), item("later")], "events", 9).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    assert_eq!(payloads(&b.pending(0, 10).await.unwrap()), [item("one"), item("two")]);
    assert_eq!(a.position("events").await.unwrap(), Some(8));
    b.enqueue_at(vec![item("three")], "events", 9).await.unwrap();
    assert_eq!(a.position("events").await.unwrap(), Some(9));
    // A handle that never read an existing position cannot write it either.
    let (c, c_store) = second_handle(&fixture, "c").await;
    let blind = c.enqueue_at(vec![item("blind")], "events", 10).await;
    assert!(matches!(blind, Err(StoreError::Conflict(_))), "{blind:?}");
    // Positions are independent of one another.
    c.enqueue_at(Vec::new(), "rooms", 3).await.unwrap();
    assert_eq!(a.position("rooms").await.unwrap(), Some(3));
    assert_eq!(a.position("events").await.unwrap(), Some(9));
    assert_eq!(a.waiting().await.unwrap(), 3, "positions are not items");
    for store in [b_store, c_store].into_iter().flatten() {
        store.close().await;
    }
}

async fn outbox_table_writes_are_compare_and_set(kind: Kind) {
    let Some(fixture) = Fixture::open(kind, Retention::default()).await else { return };
    let a = fixture.store.outbox().await.unwrap();
    let (b, b_store) = second_handle(&fixture, "b").await;
    assert_eq!(a.table_get("sub.x").await.unwrap(), None);
    let first = a.table_put("sub.x", item("[1]"), 0).await.unwrap();
    assert!(first > 0);
    let taken = b.table_put("sub.x", item("[2]"), 0).await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "0 means absent: {taken:?}");
    let second = b.table_put("sub.x", item("[1,2]"), first).await.unwrap();
    assert!(second > first);
    let stale = a.table_put("sub.x", item("[1,3]"), first).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(a.table_get("sub.x").await.unwrap(), Some((item("[1,2]"), second)));
    a.table_put("sub.y", item("[]"), 0).await.unwrap();
    a.table_put("known.x", item("1"), 0).await.unwrap();
    assert_eq!(b.table_keys("sub.").await.unwrap(), ["sub.x", "sub.y"]);

    // Deleted (twice is harmless), gone from readings and listings; written again, the key never
    // gets an old revision back.
    a.table_delete("sub.x").await.unwrap();
    a.table_delete("sub.x").await.unwrap();
    b.table_delete("sub.never").await.unwrap();
    assert_eq!(b.table_get("sub.x").await.unwrap(), None);
    assert_eq!(b.table_keys("sub.").await.unwrap(), ["sub.y"]);
    let stale = a.table_put("sub.x", item("[9]"), second).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let again = b.table_put("sub.x", item("[4]"), 0).await.unwrap();
    assert!(again > second, "{again} after {second}");
    assert!(a.table_put("not a key", item("x"), 0).await.is_err(), "keys are checked alike");
    if let Some(store) = b_store {
        store.close().await;
    }
}

async fn outbox_wakes_on_items(kind: Kind) {
    let Some(fixture) = Fixture::open(kind, Retention::default()).await else { return };
    let outbox = fixture.store.outbox().await.unwrap();
    let wake = Arc::new(tokio::sync::Notify::new());
    outbox.notify_on_items(Arc::clone(&wake)).await.unwrap();
    outbox.enqueue(vec![item("one")]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.expect("woken by an enqueue");
    outbox.enqueue_at(vec![item("two")], "events", 1).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.expect("woken by an enqueue_at");
}
