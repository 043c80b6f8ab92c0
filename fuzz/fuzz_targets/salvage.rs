//! `wikiwire repair`'s salvage on damaged logs: a sound log of a few hundred events, cut short
//! and overwritten byte by byte as the input says. The salvage always ends (the fuzzer's timeout
//! catches a walk that does not), never panics, reserves no id past the log's last, and accounts
//! for every id once: copied or reserved as lost.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wikiwire_event::{Timestamp, fields};
use wikiwire_store::{SqliteOptions, SqliteStore, Store};

const EVENTS: u64 = 300;

/// The sound log every input damages, made once per process.
fn sound_log() -> &'static (PathBuf, Vec<u8>) {
    static LOG: OnceLock<(PathBuf, Vec<u8>)> = OnceLock::new();
    LOG.get_or_init(|| {
        let directory = std::env::temp_dir().join(format!("wikiwire-fuzz-salvage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        let path = directory.join("events.sqlite");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            let store = SqliteStore::open(SqliteOptions::new(&path)).expect("the sound log opens");
            let drafts = (1..=EVENTS)
                .map(|n| {
                    let serde_json::Value::Object(map) = serde_json::json!({
                        "wiki": "W", "action": "page_changed", "page": format!("Page {n}"), "user": "Alice",
                        "comment": format!("edit {n} of the sound log"),
                    }) else {
                        unreachable!("a JSON object literal")
                    };
                    fields::parse_submission(map, Timestamp::now()).expect("a valid event")
                })
                .collect();
            store.append(drafts).await.expect("the sound log takes its events");
            store.close().await;
        });
        let bytes = std::fs::read(&path).expect("the sound log reads");
        (directory, bytes)
    })
}

/// The sound log damaged as `data` says: two bytes of how much to cut off the end, then
/// (offset, offset, byte) triples to overwrite.
fn damaged(sound: &[u8], data: &[u8]) -> Vec<u8> {
    let mut bytes = sound.to_vec();
    let Some((cut, writes)) = data.split_first_chunk::<2>() else { return bytes };
    let cut = usize::from(u16::from_le_bytes(*cut)) % (bytes.len() + 1);
    bytes.truncate(bytes.len() - cut);
    if bytes.is_empty() {
        return bytes;
    }
    for write in writes.chunks_exact(3) {
        let offset = usize::from(u16::from_le_bytes([write[0], write[1]])) * 7 % bytes.len();
        bytes[offset] = write[2];
    }
    bytes
}

fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

fuzz_target!(|data: &[u8]| {
    let (directory, sound) = sound_log();
    let (input, output) = (directory.join("damaged.sqlite"), directory.join("repaired.sqlite"));
    remove(&input);
    remove(&output);
    std::fs::write(&input, damaged(sound, data)).expect("the damaged copy writes");
    if let Ok(report) = wikiwire_store::salvage(&input, &output) {
        assert!(report.last_id <= EVENTS, "ids reserved past the log's end: {report:?}");
        assert_eq!(report.recovered + report.lost_count(), report.last_id - report.pruned_through, "{report:?}");
    }
});
