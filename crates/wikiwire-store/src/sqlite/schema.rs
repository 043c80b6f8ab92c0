//! The SQLite schema and its migrations. `PRAGMA user_version` is the schema version; a file
//! from a newer wikiwire is refused rather than misread.

use rusqlite::Connection;

use crate::StoreError;

/// Migration `n` (1-based) takes the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[
    // 1: events with the columns queries select on; the canonical JSON is the source of truth.
    // `wiki` compares without ASCII case: IRC channel names, and so wiki names, ignore it.
    "CREATE TABLE events (
         id INTEGER PRIMARY KEY,
         time INTEGER NOT NULL,
         received INTEGER NOT NULL,
         wiki TEXT NOT NULL COLLATE NOCASE,
         action TEXT NOT NULL,
         key TEXT,
         body TEXT NOT NULL
     );
     CREATE INDEX events_by_time ON events(time);
     CREATE INDEX events_by_received ON events(received);
     CREATE INDEX events_by_wiki ON events(wiki, id);
     CREATE UNIQUE INDEX events_by_key ON events(wiki, key) WHERE key IS NOT NULL;
     CREATE TABLE state (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
     INSERT INTO state VALUES ('last_id', 0), ('pruned_through', 0);
     CREATE TABLE cursors (name TEXT PRIMARY KEY, id INTEGER NOT NULL, updated INTEGER NOT NULL);",
    // 2: the editor as a column, so a `user=` filter is answered by an index instead of reading
    // and parsing every row up to the scan bound (an unauthenticated request could cost 100 ms).
    "ALTER TABLE events ADD COLUMN user TEXT;
     UPDATE events SET user = json_extract(body, '$.user');
     CREATE INDEX events_by_user ON events(user, id);",
    // 3: cursors with a revision, so that a job's write is fenced (moved only from the revision
    // that job last wrote).
    "ALTER TABLE cursors ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;",
];

pub const VERSION: i64 = MIGRATIONS.len() as i64;

pub fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(backend)?;
    if found > VERSION {
        return Err(StoreError::NewerSchema { found, supported: VERSION });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        let transaction = connection.transaction().map_err(backend)?;
        transaction.execute_batch(sql).map_err(backend)?;
        transaction.pragma_update(None, "user_version", index as i64 + 1).map_err(backend)?;
        transaction.commit().map_err(backend)?;
        tracing::info!(version = index + 1, "store schema migrated");
    }
    Ok(())
}

/// A SQLite error as the store reports it: a damaged file is said plainly (it will not heal by
/// retrying); anything else is a storage failure.
pub fn backend(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            StoreError::damaged(error)
        }
        _ => StoreError::backend(error),
    }
}
