//! Salvage: a damaged log copied, row by row, into a new file (`wikiwire repair`).
//!
//! Every row SQLite can still reach is copied with its id. A damaged page hides the rows on it;
//! the walk probes past it (further and further, then back to the first id it can read), so one
//! bad page costs only its rows. Ids are never handed out twice: the new file keeps the old
//! `last_id`, and every id that could not be recovered gets a row marked lost, which readers pass
//! over as a gap at that id, said in the log, like any unreadable row.
//!
//! A damaged page can also read back as rows that are not events at all: cells of a torn page
//! come back with id 0 between real ids, or with ids from another page. Only a row whose body is
//! the event its id names, and whose id comes after the last one copied and within the log's
//! last id, is copied; every other row is damage, counted and passed over. What the walk reserves
//! is bounded by the log's last id, and the walk itself by the rows the file can hold, so it ends
//! on any input.
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

/// Bytes of the file per row it can hold at most: a stored event (a b-tree cell with its id,
/// times, names and a JSON body of at least `{"id":..}`) takes more than this. Bounds the rows
/// the walk examines, and so its time, whatever the pages say.
const BYTES_PER_ROW: u64 = 16;

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
    /// False when the damaged file's own record of its last id could not be read, or could not
    /// be true: ids after the newest recovered event may then be handed out a second time.
    pub last_id_known: bool,
    /// Rows the walk read back.
    pub examined: u64,
    /// Rows passed over as damage: unreadable, not the event their id names, out of id order, or
    /// past the log's last id.
    pub damaged_rows: u64,
    /// True when the cursors table could not be read.
    pub cursors_unreadable: bool,
    /// True when the walk stopped at its bound (more rows than the file can hold): the file is
    /// damaged beyond a page or two, and events after the last one copied are counted lost.
    pub walk_cut: bool,
}

impl Salvage {
    pub fn lost_count(&self) -> u64 {
        self.lost.iter().map(|(from, to)| to - from + 1).sum()
    }
}

/// Copies what can be read from `damaged` into a new file `into` (which must not exist).
pub fn salvage(damaged: &Path, into: &Path) -> Result<Salvage, StoreError> {
    if into.exists() {
        return Err(StoreError::backend_msg(format!("{} exists already", into.display())));
    }
    let size = std::fs::metadata(damaged)
        .map_err(|error| StoreError::backend_in(format_args!("cannot read {}", damaged.display()), error))?
        .len();
    let source = Connection::open_with_flags(damaged, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|error| StoreError::backend_in(format_args!("cannot open {}", damaged.display()), error))?;
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
    // The rows the file can hold: no walk examines more, and no log end reserves more.
    let bound = size / BYTES_PER_ROW + CHUNK as u64;
    let pruned_through = state("pruned_through").unwrap_or(0);
    let last_id = state("last_id").filter(|&last| last >= pruned_through && last - pruned_through <= bound);
    let mut report = Salvage {
        pruned_through: if last_id.is_some() { pruned_through } else { 0 },
        last_id: last_id.unwrap_or(0),
        last_id_known: last_id.is_some(),
        ..Salvage::default()
    };

    let transaction = target.transaction().map_err(backend)?;
    {
        let mut insert = transaction
            .prepare(
                "INSERT INTO events (id, time, received, wiki, action, key, body, user)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(backend)?;
        let mut walk = Walk { report: &mut report, insert: &mut insert, copied: None, time: 0 };
        // The next id the walk asks for: it only moves forward, whatever the rows say.
        let mut scan = 1;
        loop {
            if walk.report.examined >= bound {
                walk.report.walk_cut = true;
                break;
            }
            if walk.report.last_id_known && scan > walk.report.last_id {
                break;
            }
            let started = scan;
            let (rows, broken) = read_chunk(&source, scan);
            let full = rows.len() as i64 == CHUNK;
            // An empty read still counts, so that the walk's bound also bounds its rounds.
            walk.report.examined += (rows.len() as u64).max(1);
            for (id, row) in rows {
                scan = scan.max(id.saturating_add(1));
                walk.take(id, row)?;
            }
            if broken {
                // A damaged page: go on from the first row after it that can be read.
                let limit = if walk.report.last_id_known { walk.report.last_id + 1 } else { u64::MAX / 4 };
                match next_readable(&source, scan - 1, limit) {
                    Some(next) => scan = scan.max(next),
                    None => break,
                }
                if scan == started {
                    // The probe reads a row that the walk cannot: pass over that one id.
                    scan += 1;
                }
            } else if !full {
                break;
            }
        }
        walk.finish()?;
        let last_id = report.last_id;
        // Cursors (relays' positions) that cannot be read are left out: a relay without its cursor
        // starts again from the newest event, said in the report.
        let mut cursors = source.prepare("SELECT name, id, updated FROM cursors");
        let rows = cursors.as_mut().ok().and_then(|cursors| {
            cursors
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
                })
                .ok()
        });
        report.cursors_unreadable = rows.is_none();
        if let Some(rows) = rows {
            for (name, id, updated) in rows.flatten() {
                // A cursor past the end (a damaged row) points at the end.
                let id = to_sql_id(from_sql_id(id).min(last_id));
                transaction
                    .execute(
                        "INSERT OR IGNORE INTO cursors (name, id, updated) VALUES (?1, ?2, ?3)",
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

/// The copy as the walk builds it: which rows are taken, and which ids are reserved as lost.
struct Walk<'a, 'statement> {
    report: &'a mut Salvage,
    insert: &'a mut rusqlite::Statement<'statement>,
    /// The last id copied or reserved; `None` before the first, when the log's start is not
    /// known (its record was unreadable).
    copied: Option<u64>,
    /// The time of the last event copied (lost rows carry it, so time queries pass over them).
    time: i64,
}

impl Walk<'_, '_> {
    /// One row of the damaged file: copied when it is the event its id names and comes in order
    /// within the log's end; anything else is damage, and reserves nothing by itself (its id may
    /// be as damaged as its body).
    fn take(&mut self, id: u64, row: Option<Row>) -> Result<(), StoreError> {
        let floor = match self.copied {
            Some(copied) => copied,
            None if self.report.last_id_known => self.report.pruned_through,
            // The start is unknown: the first intact event sets it.
            None => id.saturating_sub(1),
        };
        let in_order = id > floor && (!self.report.last_id_known || id <= self.report.last_id);
        let Some(row) = row.filter(|_| in_order) else {
            self.report.damaged_rows += 1;
            return Ok(());
        };
        if self.copied.is_none() && !self.report.last_id_known {
            self.report.pruned_through = floor;
        }
        self.lose(floor + 1, id - 1)?;
        let (row_time, received, wiki, action, key, body, user) = row;
        if body == LOST_BODY {
            // Lost in an earlier repair: still lost.
            self.lose(id, id)?;
        } else {
            self.insert
                .execute(params![to_sql_id(id), row_time, received, wiki, action, key, body, user])
                .map_err(backend)?;
            self.time = row_time;
            self.report.recovered += 1;
        }
        self.copied = Some(id);
        Ok(())
    }

    /// The end of the walk: the log's last ids that were not found stay reserved.
    fn finish(&mut self) -> Result<(), StoreError> {
        let copied = self.copied.unwrap_or(self.report.pruned_through);
        if !self.report.last_id_known {
            self.report.last_id = copied;
        }
        let last_id = self.report.last_id;
        self.lose(copied + 1, last_id)
    }

    /// Rows marked lost for ids `from..=to` (nothing when the range is empty).
    fn lose(&mut self, from: u64, to: u64) -> Result<(), StoreError> {
        if from > to {
            return Ok(());
        }
        for id in from..=to {
            self.insert
                .execute(params![
                    to_sql_id(id),
                    self.time,
                    self.time,
                    "",
                    "",
                    None::<String>,
                    LOST_BODY,
                    None::<String>
                ])
                .map_err(backend)?;
        }
        match self.report.lost.last_mut() {
            Some((_, end)) if *end + 1 == from => *end = to,
            _ => self.report.lost.push((from, to)),
        }
        self.copied = Some(to);
        Ok(())
    }
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

/// The first stored id after `after` (and at most `limit`) from which rows can be read again, or
/// `None` when nothing readable follows.
fn next_readable(source: &Connection, after: u64, limit: u64) -> Option<u64> {
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
