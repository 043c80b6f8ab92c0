//! Salvage: a damaged log copied, row by row, into a new file (`wikiwire repair`).
//!
//! Every row SQLite can still reach is copied with its id. A damaged page hides the rows on it;
//! the walk probes past it (further and further, then back to the first id it can read), so one
//! bad page costs only its rows. Ids are never handed out twice: the new file keeps the old
//! `last_id`, and every id that could not be recovered gets a row marked lost, which readers pass
//! over as a gap at that id, said in the log, like any unreadable row.
//!
//! Why not `sqlite3 .recover`: Debian's `sqlite3` is built without the page reader it needs, and a
//! generic recovery cannot know that ids must stay reserved.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use wikiwire_event::Event;

use super::schema::{self, backend};
use super::writer::{from_sql_id, to_sql_id};
use crate::StoreError;

/// The body of a row that stands for an event lost in a repair.
pub(crate) const LOST_BODY: &str = "{\"lost\":\"this event was lost when a damaged store was repaired\"}";

/// Rows read per query of the walk.
const CHUNK: i64 = 1000;

/// What a salvage did.
#[derive(Debug, Default)]
pub struct Salvage {
    /// Events copied intact.
    pub recovered: u64,
    /// Ids that could not be recovered, as inclusive ranges, in order.
    pub lost: Vec<(u64, u64)>,
    pub cursors: u64,
    pub last_id: u64,
    pub pruned_through: u64,
    /// False when the damaged file's own record of its last id could not be read: ids after the
    /// newest recovered event may then be handed out a second time.
    pub last_id_known: bool,
}

impl Salvage {
    pub fn lost_count(&self) -> u64 {
        self.lost.iter().map(|(from, to)| to - from + 1).sum()
    }
}

/// Copies what can be read from `damaged` into a new file `into` (which must not exist).
pub fn salvage(damaged: &Path, into: &Path) -> Result<Salvage, StoreError> {
    if into.exists() {
        return Err(StoreError::Backend(format!("{} exists already", into.display())));
    }
    let source = Connection::open_with_flags(damaged, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|error| StoreError::Backend(format!("cannot open {}: {error}", damaged.display())))?;
    source.execute_batch("PRAGMA query_only = ON").map_err(backend)?;
    let mut target = Connection::open(into).map_err(backend)?;
    target.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(backend)?;
    schema::migrate(&mut target)?;

    let state = |name: &str| -> Option<u64> {
        source
            .query_row("SELECT value FROM state WHERE name = ?1", [name], |row| row.get::<_, i64>(0))
            .ok()
            .map(from_sql_id)
    };
    let mut report = Salvage {
        pruned_through: state("pruned_through").unwrap_or(0),
        last_id: state("last_id").unwrap_or(0),
        ..Salvage::default()
    };
    report.last_id_known = state("last_id").is_some();

    let transaction = target.transaction().map_err(backend)?;
    {
        let mut insert = transaction
            .prepare(
                "INSERT INTO events (id, time, received, wiki, action, key, body, user)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(backend)?;
        let mut cursor = report.pruned_through;
        let mut time = 0;
        loop {
            let (rows, broken) = read_chunk(&source, cursor + 1);
            let full = rows.len() as i64 == CHUNK;
            let moved = !rows.is_empty();
            for (id, row) in rows {
                lose(&mut insert, &mut report, cursor + 1, id - 1, time)?;
                match row {
                    Some((row_time, received, wiki, action, key, body, user)) => {
                        insert
                            .execute(params![
                                to_sql_id(id),
                                row_time,
                                received,
                                wiki,
                                action,
                                key,
                                body,
                                user
                            ])
                            .map_err(backend)?;
                        time = row_time;
                        report.recovered += 1;
                    }
                    None => lose(&mut insert, &mut report, id, id, time)?,
                }
                cursor = id;
            }
            if broken {
                // A damaged page: go on from the first row after it that can be read.
                match next_readable(&source, cursor, report.last_id) {
                    // The probe reads a row that the walk cannot: give up that one id, go on.
                    Some(next) if next == cursor + 1 && !moved => {
                        lose(&mut insert, &mut report, next, next, time)?;
                        cursor = next;
                    }
                    Some(next) => {
                        lose(&mut insert, &mut report, cursor + 1, next - 1, time)?;
                        cursor = next - 1;
                    }
                    None => break,
                }
            } else if !full {
                break;
            }
        }
        if cursor > report.last_id {
            report.last_id = cursor;
        }
        if report.last_id > cursor {
            // The end was lost: its ids stay reserved.
            let last_id = report.last_id;
            lose(&mut insert, &mut report, cursor + 1, last_id, time)?;
        }
        let mut cursors = source.prepare("SELECT name, id, updated FROM cursors").map_err(backend)?;
        if let Ok(rows) = cursors
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?)))
        {
            for (name, id, updated) in rows.flatten() {
                transaction
                    .execute(
                        "INSERT INTO cursors (name, id, updated) VALUES (?1, ?2, ?3)",
                        params![name, id, updated],
                    )
                    .map_err(backend)?;
                report.cursors += 1;
            }
        }
    }
    for (name, value) in [("last_id", report.last_id), ("pruned_through", report.pruned_through)] {
        transaction
            .execute("UPDATE state SET value = ?1 WHERE name = ?2", params![to_sql_id(value), name])
            .map_err(backend)?;
    }
    transaction.commit().map_err(backend)?;
    target.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").map_err(backend)?;
    Ok(report)
}

/// Rows marked lost for ids `from..=to` (nothing when the range is empty).
fn lose(
    insert: &mut rusqlite::Statement<'_>,
    report: &mut Salvage,
    from: u64,
    to: u64,
    time: i64,
) -> Result<(), StoreError> {
    if from > to {
        return Ok(());
    }
    for id in from..=to {
        insert
            .execute(params![to_sql_id(id), time, time, "", "", None::<String>, LOST_BODY, None::<String>])
            .map_err(backend)?;
    }
    match report.lost.last_mut() {
        Some((_, end)) if *end + 1 == from => *end = to,
        _ => report.lost.push((from, to)),
    }
    Ok(())
}

type Row = (i64, i64, String, String, Option<String>, String, Option<String>);

/// Up to `CHUNK` rows from id `from` on (a seek past a damaged page must not land on it, so never
/// "after" the last id read), and whether the walk broke on a damaged page before the
/// chunk was full. A row whose columns cannot be read, or whose body is not the event it should
/// be, comes back as `None` (lost).
fn read_chunk(source: &Connection, from: u64) -> (Vec<(u64, Option<Row>)>, bool) {
    let mut chunk = Vec::new();
    let statement = source.prepare_cached(
        "SELECT id, time, received, wiki, action, key, body, user FROM events WHERE id >= ?1 ORDER BY id LIMIT ?2",
    );
    let Ok(mut statement) = statement else { return (chunk, true) };
    let Ok(mut rows) = statement.query(params![to_sql_id(from), CHUNK]) else { return (chunk, true) };
    loop {
        match rows.next() {
            Ok(Some(row)) => {
                let Ok(id) = row.get::<_, i64>(0) else { return (chunk, true) };
                let id = from_sql_id(id);
                let columns = (|| -> rusqlite::Result<Row> {
                    Ok((
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                        row.get(6)?,
                        row.get(7)?,
                    ))
                })();
                let intact = columns.ok().filter(|columns| {
                    Event::from_json(&columns.5).is_ok_and(|event| event.id == id) || columns.5 == LOST_BODY
                });
                chunk.push((id, intact));
            }
            Ok(None) => return (chunk, false),
            Err(_) => return (chunk, true),
        }
    }
}

/// The first stored id after `after` from which rows can be read again, or `None` when nothing
/// readable follows.
fn next_readable(source: &Connection, after: u64, last_id: u64) -> Option<u64> {
    // Whether the first row at or after `start` (if any) reads whole.
    let readable_from = |start: u64| -> bool {
        source
            .query_row(
                "SELECT id, time, received, wiki, action, key, body, user FROM events WHERE id >= ?1 ORDER BY id LIMIT 1",
                [to_sql_id(start)],
                |row| {
                    for column in 0..8 {
                        row.get_ref(column)?;
                    }
                    Ok(())
                },
            )
            .optional()
            .is_ok()
    };
    let limit = if last_id > after { last_id + 1 } else { u64::MAX / 4 };
    let mut step = 1;
    let mut low = after + 1;
    let found = loop {
        let probe = after.saturating_add(step);
        if probe > limit {
            return None;
        }
        if readable_from(probe) {
            break probe;
        }
        low = probe + 1;
        step *= 2;
    };
    // The first readable start in low..=found.
    let mut high = found;
    while low < high {
        let middle = low + (high - low) / 2;
        if readable_from(middle) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    // Where reading can resume: the first stored id at or after that start.
    source
        .query_row("SELECT id FROM events WHERE id >= ?1 ORDER BY id LIMIT 1", [to_sql_id(high)], |row| {
            row.get::<_, i64>(0)
        })
        .optional()
        .ok()
        .flatten()
        .map(from_sql_id)
        .filter(|&next| next > after)
}
