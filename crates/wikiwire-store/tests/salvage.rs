//! `wikiwire repair`'s salvage on a corpus of damaged files, the ways disks and crashes damage
//! them: the last page torn at several sizes, pages zeroed, random bytes written into interior
//! and leaf pages, the file cut inside its header. On every one the salvage ends within a time
//! bound, reserves no id past the log's last, copies only genuine events in order, and leaves a
//! file the hub opens and appends to after the last id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use wikiwire_event::{Draft, Timestamp, fields};
use wikiwire_store::{Query, Salvage, SqliteOptions, SqliteStore, Store};

const PAGE: u64 = 4096;

/// Long enough for a debug build on a busy 2-core machine; a salvage that loops runs far past it.
const BOUND: Duration = Duration::from_secs(60);

fn edit(n: u64) -> Draft {
    let serde_json::Value::Object(map) = json!({
        "wiki": "MoinMaster", "action": "page_changed", "page": format!("Page {n}"), "user": "Alice",
        "comment": format!("edit {n:06} of a log that will be damaged"),
    }) else {
        unreachable!("a JSON object literal")
    };
    fields::parse_submission(map, Timestamp::now()).expect("a valid event")
}

/// A log of `count` events, closed cleanly (its journal folded into the file), and the body of
/// every event by id.
async fn log_of(directory: &Path, count: u64) -> (PathBuf, HashMap<u64, serde_json::Value>) {
    let path = directory.join("events.sqlite");
    let store = SqliteStore::open(SqliteOptions::new(&path)).expect("store opens");
    let mut next = 1;
    while next <= count {
        let batch = (next..=count.min(next + 499)).map(edit).collect();
        store.append(batch).await.unwrap();
        next += 500;
    }
    let mut bodies = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.query(Query::after(after, 1000)).await.unwrap();
        for event in &page.events {
            bodies.insert(event.id, serde_json::to_value(event).unwrap());
        }
        match page.events.last() {
            Some(last) => after = last.id,
            None => break,
        }
    }
    store.close().await;
    assert_eq!(bodies.len() as u64, count);
    (path, bodies)
}

/// A small generator, so that the corpus is the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// The pages of a b-tree of one kind: 0x05 interior table pages, 0x0d leaf table pages.
fn pages_of_kind(data: &[u8], kind: u8) -> Vec<u64> {
    (1..data.len() as u64 / PAGE).filter(|&page| data[(page * PAGE) as usize] == kind).collect()
}

#[derive(Debug)]
enum Damage {
    /// The file's end cut off (a crash or a full disk mid-write).
    Torn(u64),
    /// The last part of the newest page of events never written (a torn page write): what SQLite
    /// reads of it are zeros, and its cells come back with id 0.
    TornLeaf(u64),
    Zeroed(&'static str),
    Random {
        kind: u8,
        pages: usize,
        seed: u64,
    },
    CutTo(u64),
}

fn damage(path: &Path, how: &Damage) {
    let mut data = std::fs::read(path).unwrap();
    let pages = data.len() as u64 / PAGE;
    match *how {
        Damage::Torn(bytes) => data.truncate(data.len() - bytes as usize),
        Damage::TornLeaf(bytes) => {
            let leaf = *pages_of_kind(&data, 0x0d).last().expect("the log has leaf pages");
            let end = ((leaf + 1) * PAGE) as usize;
            data[end - bytes as usize..end].fill(0);
        }
        Damage::CutTo(bytes) => data.truncate(bytes as usize),
        Damage::Zeroed(which) => {
            let page = match which {
                "second" => 1,
                "middle" => pages / 2,
                "last" => pages - 1,
                "three before the end" => pages - 4,
                other => unreachable!("no page {other}"),
            };
            data[(page * PAGE) as usize..((page + 1) * PAGE) as usize].fill(0);
        }
        Damage::Random { kind, pages: count, seed } => {
            let mut random = XorShift(seed);
            let candidates = pages_of_kind(&data, kind);
            assert!(!candidates.is_empty(), "the log has pages of kind {kind:#x}");
            for _ in 0..count {
                let page = candidates[random.below(candidates.len() as u64) as usize];
                // A few runs of random bytes anywhere in the page, its header and cell pointers too.
                for _ in 0..4 {
                    let start = page * PAGE + random.below(PAGE - 64);
                    for offset in start..start + 1 + random.below(64) {
                        data[offset as usize] = random.next() as u8;
                    }
                }
            }
        }
    }
    std::fs::write(path, data).unwrap();
}

/// The salvage, run on its own thread so that a walk that does not end fails the test instead of
/// hanging it (the thread is left behind; the test process ends).
fn salvage_within_bound(damaged: &Path, into: &Path) -> Result<Salvage, String> {
    let (damaged, into) = (damaged.to_owned(), into.to_owned());
    let (done, result) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = done.send(wikiwire_store::salvage(&damaged, &into).map_err(|error| error.to_string()));
    });
    match result.recv_timeout(BOUND) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the salvage did not end within {BOUND:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("the salvage panicked after {:?}", started.elapsed())
        }
    }
}

/// What every salvage must give, whatever the damage.
async fn check_salvage(
    how: &Damage,
    directory: &Path,
    original: &Path,
    bodies: &HashMap<u64, serde_json::Value>,
) {
    let count = bodies.len() as u64;
    let damaged = directory.join("damaged.sqlite");
    std::fs::copy(original, &damaged).unwrap();
    damage(&damaged, how);
    let repaired = directory.join("repaired.sqlite");
    let report = match salvage_within_bound(&damaged, &repaired) {
        Ok(report) => report,
        // A file whose header is gone is no database: a clear refusal is right.
        Err(error) => {
            assert!(matches!(how, Damage::CutTo(_)), "{how:?}: the salvage failed: {error}");
            assert!(!error.is_empty());
            return;
        }
    };
    // Bounded by the log's last id: nothing reserved past it.
    assert!(report.last_id <= count, "{how:?}: the log ends at {} past {count}: {report:?}", report.last_id);
    assert_eq!(
        report.recovered + report.lost_count(),
        report.last_id - report.pruned_through,
        "{how:?}: every id is either recovered or reserved, once: {report:?}"
    );
    let size = std::fs::metadata(&repaired).unwrap().len();
    let original_size = std::fs::metadata(original).unwrap().len();
    assert!(size <= 2 * original_size + 1_000_000, "{how:?}: the repaired file grew to {size} bytes");
    wikiwire_store::verify(&repaired)
        .unwrap_or_else(|damage| panic!("{how:?}: the copy is not sound: {damage}"));

    // Only genuine events, in order, each as it was acknowledged. SQLite keeps no checksums: a
    // byte changed inside the text of an event that still parses cannot be found, so random bytes
    // may change the events they land in (each run of at most 64 bytes, two events at most).
    let changed_at_most = match how {
        Damage::Random { pages, .. } => pages * 4 * 2,
        _ => 0,
    };
    let mut changed = 0;
    let store = SqliteStore::open(SqliteOptions::new(&repaired)).expect("the repaired log opens");
    let (mut after, mut seen, mut unreadable) = (0, 0, 0);
    loop {
        let page = store.query(Query::after(after, 1000)).await.unwrap();
        unreadable += page.unreadable.len() as u64;
        for event in &page.events {
            assert!(event.id > after, "{how:?}: ids go back at {}", event.id);
            if serde_json::to_value(event).unwrap() != bodies[&event.id] {
                changed += 1;
                assert!(
                    changed <= changed_at_most,
                    "{how:?}: event {} is not the one acknowledged",
                    event.id
                );
            }
            after = event.id;
            seen += 1;
        }
        match page.next {
            Some(next) => after = after.max(next),
            None => break,
        }
    }
    assert_eq!(seen, report.recovered, "{how:?}: {report:?}");
    assert!(unreadable <= report.lost_count(), "{how:?}");
    // No id is handed out twice.
    let next = store.append(vec![edit(0)]).await.unwrap()[0].event.id;
    assert_eq!(next, report.last_id + 1, "{how:?}");
    store.close().await;
    for file in ["damaged.sqlite", "repaired.sqlite", "repaired.sqlite-wal", "repaired.sqlite-shm"] {
        let _ = std::fs::remove_file(directory.join(file));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_page_is_salvaged_at_every_size() {
    let directory = tempfile::tempdir().unwrap();
    let (original, bodies) = log_of(directory.path(), 20_000).await;
    for bytes in [512, 1024, 2048, 3000, 4095, PAGE + 2048, 3 * PAGE + 100] {
        check_salvage(&Damage::Torn(bytes), directory.path(), &original, &bodies).await;
    }
    for bytes in [100, 1024, 2048, 3000, 4000] {
        check_salvage(&Damage::TornLeaf(bytes), directory.path(), &original, &bodies).await;
    }
}

/// The probe's case: 51,001 events, the last 2,048 bytes torn off. Its cells read back with id 0
/// between real ids, which once sent the walk towards 2^64 (and the disk full).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_end_of_fifty_thousand_events_ends_and_loses_only_its_page() {
    let directory = tempfile::tempdir().unwrap();
    let (original, bodies) = log_of(directory.path(), 51_001).await;
    let damaged = directory.path().join("damaged.sqlite");
    std::fs::copy(&original, &damaged).unwrap();
    damage(&damaged, &Damage::TornLeaf(2048));
    let repaired = directory.path().join("first.sqlite");
    let started = Instant::now();
    let report = salvage_within_bound(&damaged, &repaired).unwrap();
    let took = started.elapsed();
    assert_eq!(report.last_id, 51_001, "{report:?}");
    assert!(report.last_id_known);
    assert!(report.lost_count() < 100, "more than the torn page lost: {report:?}");
    assert!(report.damaged_rows > 0, "the torn page's cells are counted as damage: {report:?}");
    eprintln!("salvaged in {took:?}: {report:?}");
    check_salvage(&Damage::TornLeaf(2048), directory.path(), &original, &bodies).await;
    check_salvage(&Damage::Torn(2048), directory.path(), &original, &bodies).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeroed_pages_are_salvaged() {
    let directory = tempfile::tempdir().unwrap();
    let (original, bodies) = log_of(directory.path(), 5_000).await;
    for which in ["second", "middle", "last", "three before the end"] {
        check_salvage(&Damage::Zeroed(which), directory.path(), &original, &bodies).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_in_interior_and_leaf_pages_are_salvaged() {
    let directory = tempfile::tempdir().unwrap();
    let (original, bodies) = log_of(directory.path(), 5_000).await;
    for seed in 1..=6 {
        for (kind, pages) in [(0x05, 1), (0x0d, 1), (0x0d, 3)] {
            let how = Damage::Random { kind, pages, seed: seed * 7919 + u64::from(kind) };
            check_salvage(&how, directory.path(), &original, &bodies).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_cut_inside_its_header_is_refused_or_salvaged() {
    let directory = tempfile::tempdir().unwrap();
    let (original, bodies) = log_of(directory.path(), 2_000).await;
    for bytes in [0, 16, 50, 99, 100, 1000, PAGE + 10, 2 * PAGE + 7] {
        check_salvage(&Damage::CutTo(bytes), directory.path(), &original, &bodies).await;
    }
}
