//! The check at open: a damaged file is refused before anything reads or writes it.
//!
//! SQLite has no checksums; a zeroed or torn page is found by walking the b-trees
//! (`PRAGMA quick_check`), which reads every page. Its time grows with the file, so it is bounded:
//! past the budget it is interrupted and the start goes on with what was checked, said in the log.
//! The end of the log, where a torn write lands, is always checked: the newest event the log
//! acknowledged must be there.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OptionalExtension};

/// Problems named in the refusal at most; the rest are counted.
const SHOWN: usize = 5;

/// What the check found wrong, in words for the operator.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    /// The problems `quick_check` named: the first few, and how many more.
    #[error("{0}")]
    Pages(String),
    #[error("the state row {0} is missing")]
    MissingState(&'static str),
    #[error("event {id} is stored past the last assigned id {last_id}")]
    PastLastId { id: i64, last_id: i64 },
    #[error(
        "the last acknowledged event {last_id} is missing (the newest stored is {newest}): the file lost its end"
    )]
    LostEnd { last_id: i64, newest: i64 },
    #[error("the last acknowledged event {last_id} is missing (no event is stored): the file lost its end")]
    NoEvent { last_id: i64 },
    /// SQLite could not read what the check asked for.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Every page walked (`quick_check`), under a watchdog that interrupts the walk when the budget
/// is spent. `Err` says what is wrong, in words for the operator.
pub fn walk_pages(connection: &Connection, budget: Duration) -> Result<(), Damage> {
    let started = Instant::now();
    let interrupt = connection.get_interrupt_handle();
    let (finished, wait) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(budget) == Err(RecvTimeoutError::Timeout) {
            interrupt.interrupt();
        }
    });
    let result = quick_check(connection);
    drop(finished);
    let _ = watchdog.join();
    match result {
        Ok(problems) if problems.is_empty() => {
            tracing::debug!(elapsed = ?started.elapsed(), "store integrity check passed");
            Ok(())
        }
        Ok(problems) => Err(Damage::Pages(describe(&problems))),
        Err(error) if error.sqlite_error_code() == Some(ErrorCode::OperationInterrupted) => {
            tracing::warn!(
                budget = ?budget,
                "store integrity check stopped at its time budget: the file was only partly checked \
                 (its end is checked below); run `sqlite3 FILE 'PRAGMA quick_check'` with the hub stopped \
                 for a full check"
            );
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

fn quick_check(connection: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut statement = connection.prepare("PRAGMA quick_check(100)")?;
    let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
    let mut problems = Vec::new();
    for row in rows {
        let row = row?;
        if row != "ok" {
            // One row may hold several lines.
            problems.extend(row.lines().filter(|line| !line.starts_with("***")).map(str::to_owned));
        }
    }
    Ok(problems)
}

fn describe(problems: &[String]) -> String {
    let mut text = problems.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if problems.len() > SHOWN {
        text.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    text
}

/// The newest acknowledged event must be stored and readable, unless retention removed it.
pub fn check_end(connection: &Connection) -> Result<(), Damage> {
    let state = |name: &'static str| -> Result<i64, Damage> {
        connection
            .query_row("SELECT value FROM state WHERE name = ?1", [name], |row| row.get(0))
            .optional()?
            .ok_or(Damage::MissingState(name))
    };
    let (last_id, pruned_through) = (state("last_id")?, state("pruned_through")?);
    let newest: Option<(i64, i64)> = connection
        .query_row("SELECT id, length(body) FROM events ORDER BY id DESC LIMIT 1", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    match newest {
        Some((id, _)) if id > last_id => Err(Damage::PastLastId { id, last_id }),
        Some((id, _)) if id < last_id && last_id > pruned_through => {
            Err(Damage::LostEnd { last_id, newest: id })
        }
        None if last_id > pruned_through => Err(Damage::NoEvent { last_id }),
        _ => Ok(()),
    }
}
