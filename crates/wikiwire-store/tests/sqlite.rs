//! The SQLite store on real files: ids, durability across reopen, idempotency, group commit,
//! bus order, queries, retention, cursors and schema versions.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use wikiwire_event::{Filter, Timestamp};
use wikiwire_store::{Query, Retention, SqliteOptions, SqliteStore, Store, StoreError};

use common::{append_concurrently, draft, edit};

fn open(directory: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(SqliteOptions::new(directory.path().join("events.sqlite"))).expect("store opens")
}

#[tokio::test]
async fn ids_increase_and_survive_reopening() {
    let directory = tempfile::tempdir().unwrap();
    let store = open(&directory);
    let first = store.append(vec![edit("A", "One"), edit("B", "Two")]).await.unwrap();
    assert_eq!(first.iter().map(|a| a.event.id).collect::<Vec<_>>(), vec![1, 2]);
    store.close().await;
    assert!(matches!(store.append(vec![edit("A", "x")]).await, Err(StoreError::Closed)));

    let store = open(&directory);
    assert_eq!(store.get(2).await.unwrap().unwrap().page.as_deref(), Some("Two"));
    let third = store.append(vec![edit("A", "Three")]).await.unwrap();
    assert_eq!(third[0].event.id, 3);
    assert_eq!(store.bounds().await.unwrap().last_id, 3);
    assert_eq!(store.get(99).await.unwrap(), None);
    store.close().await;
}

#[tokio::test]
async fn a_repeated_key_returns_the_first_event() {
    let directory = tempfile::tempdir().unwrap();
    let store = open(&directory);
    let mut live = store.bus().subscribe();
    let keyed = |page: &str| {
        draft(json!({"wiki": "A", "action": "SAVE", "page": page, "user": "u", "key": "rev-42"}))
    };
    let first = store.append(vec![keyed("First")]).await.unwrap();
    let again = store.append(vec![keyed("Second"), keyed("Third")]).await.unwrap();
    assert!(!first[0].duplicate);
    assert!(again.iter().all(|appended| appended.duplicate && appended.event.id == first[0].event.id));
    assert_eq!(again[0].event.page.as_deref(), Some("First"));
    let other_wiki = store
        .append(vec![draft(
            json!({"wiki": "B", "action": "SAVE", "page": "P", "user": "u", "key": "rev-42"}),
        )])
        .await
        .unwrap();
    assert!(!other_wiki[0].duplicate);
    assert_eq!(live.recv().await.unwrap().id, 1);
    assert_eq!(live.recv().await.unwrap().id, 2, "duplicates are not announced");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_transactions_and_arrive_in_order() {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&directory));
    let mut live = store.bus().subscribe();
    append_concurrently(&store, 500).await;
    let transactions = store.stats().transactions.load(std::sync::atomic::Ordering::Relaxed);
    assert!(transactions < 500, "group commit put 500 appends in {transactions} transactions");
    for expected in 1..=500 {
        assert_eq!(live.recv().await.unwrap().id, expected);
    }
    store.close().await;
}

#[tokio::test]
async fn queries_filter_page_and_bound_time() {
    let directory = tempfile::tempdir().unwrap();
    let store = open(&directory);
    let timed = |wiki: &str, page: &str, time: &str| {
        draft(json!({"wiki": wiki, "action": "page_changed", "page": page, "user": "u", "time": time}))
    };
    store
        .append(vec![
            timed("MoinMaster", "Help/One", "2026-01-01T00:00:00Z"),
            timed("Other", "Help/Two", "2026-01-02T00:00:00Z"),
            timed("moinmaster", "Front", "2026-01-03T00:00:00Z"),
            timed("MoinMaster", "Help/Three", "2026-01-04T00:00:00Z"),
        ])
        .await
        .unwrap();
    let pages =
        |page: wikiwire_store::Page| page.events.iter().map(|e| e.page.clone().unwrap()).collect::<Vec<_>>();

    let by_wiki = Query { filter: Filter::parse("wiki=MoinMaster").unwrap(), ..Query::after(0, 10) };
    assert_eq!(pages(store.query(by_wiki).await.unwrap()), ["Help/One", "Front", "Help/Three"]);

    let by_glob = Query { filter: Filter::parse("wiki=moin*&page=Help/*").unwrap(), ..Query::after(0, 10) };
    assert_eq!(pages(store.query(by_glob).await.unwrap()), ["Help/One", "Help/Three"]);

    let by_time = Query {
        from: Some(Timestamp::parse("2026-01-02T00:00:00Z").unwrap()),
        to: Some(Timestamp::parse("2026-01-03T00:00:00Z").unwrap()),
        ..Query::after(0, 10)
    };
    assert_eq!(pages(store.query(by_time).await.unwrap()), ["Help/Two", "Front"]);

    let first_page = store.query(Query::after(0, 2)).await.unwrap();
    assert_eq!(first_page.next, Some(2));
    let second_page = store.query(Query::after(2, 2)).await.unwrap();
    assert_eq!(pages(second_page.clone()), ["Front", "Help/Three"]);
    let last_page = store.query(Query::after(4, 2)).await.unwrap();
    assert_eq!((last_page.events.len(), last_page.next), (0, None));

    let newest = store.query(Query::latest(None, 3)).await.unwrap();
    assert_eq!(pages(newest.clone()), ["Help/Three", "Front", "Help/Two"]);
    assert_eq!(newest.next, Some(2));
    let older = store.query(Query::latest(Some(2), 3)).await.unwrap();
    assert_eq!((pages(older.clone()), older.next), (vec!["Help/One".to_owned()], None));
    let window = Query { before: Some(4), ..Query::after(1, 10) };
    assert_eq!(pages(store.query(window).await.unwrap()), ["Help/Two", "Front"]);
    store.close().await;
}

#[tokio::test]
async fn a_sparse_filter_reads_a_bounded_number_of_rows() {
    let directory = tempfile::tempdir().unwrap();
    let store = open(&directory);
    for _ in 0..25 {
        store.append((0..1000).map(|n| edit("Busy", &format!("P{n}"))).collect()).await.unwrap();
    }
    store.append(vec![edit("Quiet", "Rare")]).await.unwrap();
    let sparse = Query { filter: Filter::parse("page=Rare").unwrap(), ..Query::after(0, 10) };
    let first = store.query(sparse.clone()).await.unwrap();
    assert!(first.events.is_empty(), "the first page stops at the scan bound");
    let next = first.next.expect("a cursor to continue");
    assert!(next < 25_001);
    let rest = store.query(Query { after: next, ..sparse }).await.unwrap();
    assert_eq!(rest.events[0].page.as_deref(), Some("Rare"));
    store.close().await;
}

#[tokio::test]
async fn retention_removes_old_events_and_ids_are_never_reused() {
    let directory = tempfile::tempdir().unwrap();
    let store = open(&directory);
    store.append((0..30).map(|n| edit("A", &format!("P{n}"))).collect()).await.unwrap();
    let keep_ten = Retention { max_events: Some(10), max_age: None };
    assert_eq!(store.prune(keep_ten).await.unwrap(), 20);
    assert_eq!(store.prune(keep_ten).await.unwrap(), 0);
    assert_eq!(store.bounds().await.unwrap().pruned_through, 20);
    assert_eq!(store.get(20).await.unwrap(), None);
    assert!(store.get(21).await.unwrap().is_some());

    tokio::time::sleep(Duration::from_millis(20)).await;
    let by_age = Retention { max_events: None, max_age: Some(Duration::from_millis(1)) };
    assert_eq!(store.prune(by_age).await.unwrap(), 10);
    store.close().await;

    let store = open(&directory);
    let bounds = store.bounds().await.unwrap();
    assert_eq!((bounds.last_id, bounds.pruned_through), (30, 30));
    assert_eq!(store.append(vec![edit("A", "New")]).await.unwrap()[0].event.id, 31);
    store.close().await;
}

#[tokio::test]
async fn cursors_persist() {
    let directory = tempfile::tempdir().unwrap();
    let store = open(&directory);
    assert_eq!(store.cursor("relay:libera").await.unwrap(), None);
    let revision = store.set_cursor("relay:libera", 7, 0).await.unwrap();
    let revision = store.set_cursor("relay:libera", 9, revision).await.unwrap();
    store.close().await;
    let store = open(&directory);
    assert_eq!(store.cursor("relay:libera").await.unwrap(), Some(wikiwire_store::Cursor { id: 9, revision }));
    store.close().await;
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("events.sqlite");
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.pragma_update(None, "user_version", 99).unwrap();
    drop(connection);
    let error = SqliteStore::open(SqliteOptions::new(&path)).err().expect("refused");
    assert!(matches!(error, StoreError::NewerSchema { found: 99, .. }), "{error}");
}

#[cfg(unix)]
#[test]
fn the_data_directory_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data").join("deeper");
    let store = SqliteStore::open(SqliteOptions::new(data.join("events.sqlite"))).unwrap();
    for path in [&data, &directory.path().join("data")] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", path.display());
    }
    drop(store);
}

#[tokio::test]
async fn a_user_filter_is_answered_by_the_index_and_old_files_get_the_column() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("events.sqlite");
    let store = SqliteStore::open(SqliteOptions::new(&path)).unwrap();
    for chunk in 0..25 {
        let drafts = (0..1000).map(|n| edit("A", &format!("P{chunk}-{n}"))).collect();
        store.append(drafts).await.unwrap();
    }
    store
        .append(vec![draft(json!({"wiki": "A", "action": "SAVE", "page": "Rare", "user": "Zoë"}))])
        .await
        .unwrap();
    let by =
        |user: &str| Query { filter: Filter::parse(&format!("user={user}")).unwrap(), ..Query::after(0, 10) };
    // Nobody: the whole log is answered at once, not a page that stops at the scan bound.
    let nobody = store.query(by("Nobody")).await.unwrap();
    assert_eq!(nobody, wikiwire_store::Page::default());
    let rare = store.query(by("Zo%C3%AB")).await.unwrap();
    assert_eq!(rare.events.len(), 1);
    assert_eq!(rare.events[0].id, 25_001);
    store.close().await;

    // A file written before the column existed: the upgrade fills it from the stored events.
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch(
            "DROP INDEX events_by_user; ALTER TABLE events DROP COLUMN user;
             ALTER TABLE cursors DROP COLUMN revision; PRAGMA user_version = 1;",
        )
        .unwrap();
    drop(connection);
    let store = SqliteStore::open(SqliteOptions::new(&path)).unwrap();
    let rare = store.query(by("Zo%C3%AB")).await.unwrap();
    assert_eq!(rare.events.iter().map(|event| event.id).collect::<Vec<_>>(), vec![25_001]);
    assert_eq!(store.query(by("Alice")).await.unwrap().events.len(), 10);
    store.close().await;
}

#[tokio::test]
async fn an_unreadable_row_is_passed_over_and_named_in_both_directions() {
    let directory = tempfile::tempdir().unwrap();
    let store = open(&directory);
    for n in 1..=10 {
        store.append(vec![edit("A", &format!("P{n}"))]).await.unwrap();
    }
    // Rot in two rows: one body no longer JSON, one naming another id.
    let raw = rusqlite::Connection::open(directory.path().join("events.sqlite")).unwrap();
    raw.execute("UPDATE events SET body = '{\"id\":4,' WHERE id = 4", []).unwrap();
    raw.execute("UPDATE events SET body = replace(body, '\"id\":7', '\"id\":8') WHERE id = 7", []).unwrap();

    let page = store.query(Query::after(0, 100)).await.unwrap();
    assert_eq!(page.events.iter().map(|event| event.id).collect::<Vec<_>>(), vec![1, 2, 3, 5, 6, 8, 9, 10]);
    assert_eq!(page.unreadable, vec![4, 7]);
    let newest = store.query(Query::latest(None, 100)).await.unwrap();
    assert_eq!(newest.unreadable, vec![7, 4]);
    assert!(matches!(store.get(4).await, Err(StoreError::Corrupt { id: 4, .. })));
    // Rot in a row is not damage of the file: the store stays healthy and writable.
    assert_eq!(store.fault(), None);
    assert_eq!(store.append(vec![edit("A", "P11")]).await.unwrap()[0].event.id, 11);
    store.close().await;
}

#[tokio::test]
async fn a_file_that_lost_its_end_is_refused_at_open() {
    let directory = tempfile::tempdir().unwrap();
    let store = open(&directory);
    for n in 1..=5 {
        store.append(vec![edit("A", &format!("P{n}"))]).await.unwrap();
    }
    store.close().await;
    // The newest acknowledged events gone while the state still names them.
    let raw = rusqlite::Connection::open(directory.path().join("events.sqlite")).unwrap();
    raw.execute("DELETE FROM events WHERE id > 3", []).unwrap();
    drop(raw);
    let refused = SqliteStore::open(SqliteOptions::new(directory.path().join("events.sqlite")));
    let Err(StoreError::Damaged { reason, .. }) = refused else { panic!("a file that lost its end opened") };
    assert!(reason.contains("the last acknowledged event 5 is missing"), "{reason}");
}

#[tokio::test]
async fn salvage_copies_what_reads_and_reserves_the_ids_of_what_does_not() {
    let directory = tempfile::tempdir().unwrap();
    let store = open(&directory);
    for n in 1..=20 {
        store.append(vec![edit("A", &format!("P{n}"))]).await.unwrap();
    }
    store.set_cursor("relay:x", 12, 0).await.unwrap();
    store.close().await;
    let damaged = directory.path().join("events.sqlite");
    let raw = rusqlite::Connection::open(&damaged).unwrap();
    raw.execute("UPDATE events SET body = 'rot' WHERE id IN (5, 6, 9)", []).unwrap();
    raw.execute("DELETE FROM events WHERE id > 18", []).unwrap();
    drop(raw);
    assert!(wikiwire_store::verify(&damaged).is_err(), "the lost end is found");

    let repaired = directory.path().join("repaired.sqlite");
    let report = wikiwire_store::salvage(&damaged, &repaired).unwrap();
    assert_eq!(report.recovered, 15);
    assert_eq!(report.lost, vec![(5, 6), (9, 9), (19, 20)]);
    assert_eq!((report.last_id, report.cursors), (20, 1));
    wikiwire_store::verify(&repaired).unwrap();

    let store = SqliteStore::open(SqliteOptions::new(&repaired)).unwrap();
    let page = store.query(Query::after(0, 100)).await.unwrap();
    assert_eq!(page.unreadable, vec![5, 6, 9, 19, 20]);
    assert_eq!(page.events.len(), 15);
    assert_eq!(store.cursor("relay:x").await.unwrap().map(|cursor| cursor.id), Some(12));
    assert_eq!(store.append(vec![edit("A", "next")]).await.unwrap()[0].event.id, 21);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_by_row_queries_run_a_bounded_number_at_once_and_indexed_ones_do_not_wait() {
    let directory = tempfile::tempdir().unwrap();
    let mut options = SqliteOptions::new(directory.path().join("events.sqlite"));
    options.concurrent_scans = 1;
    let store = Arc::new(SqliteStore::open(options).unwrap());
    for _ in 0..20 {
        store.append((0..1000).map(|n| edit("Busy", &format!("P{n}"))).collect()).await.unwrap();
    }
    // Eight clients asking for a page that matches nothing: each reads the scan bound.
    let sparse = Query { filter: Filter::parse("page=Nowhere*").unwrap(), ..Query::after(0, 10) };
    let scans: Vec<_> = (0..8)
        .map(|_| {
            let (store, query) = (Arc::clone(&store), sparse.clone());
            tokio::spawn(async move { store.query(query).await.unwrap() })
        })
        .collect();
    // Meanwhile an indexed query (an exact wiki that has nothing) is answered without a permit.
    let indexed = Query { filter: Filter::parse("wiki=Quiet").unwrap(), ..Query::after(0, 10) };
    assert_eq!(store.query(indexed).await.unwrap().events.len(), 0);
    for scan in join_all(scans).await {
        assert!(scan.unwrap().events.is_empty());
    }
    assert_eq!(store.stats().scans_peak.load(std::sync::atomic::Ordering::Acquire), 1);
    store.close().await;
}
