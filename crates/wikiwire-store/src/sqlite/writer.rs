//! The one writer: a thread that owns the write connection and commits appends in groups.
//!
//! Why a thread and not a task: SQLite calls block, and a commit waits for fsync. Why one: SQLite
//! has one writer anyway, and a single owner of `next_id` makes ids strictly increasing without a
//! lock. Group commit: whatever appends are waiting when a commit starts share its transaction and
//! its fsync, so throughput grows with load while each append still returns only after commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use wikiwire_event::{Draft, Event, Timestamp};

use super::schema::backend;
use super::{Shared, row_event};
use crate::{Appended, Retention, StoreError};

/// Events removed per prune call, so retention never holds the writer for long.
const PRUNE_CHUNK: i64 = 10_000;

pub enum Command {
    Append {
        drafts: Vec<Draft>,
        reply: oneshot::Sender<Result<Vec<Appended>, StoreError>>,
    },
    SetCursor {
        name: String,
        id: u64,
        revision: u64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Prune {
        retention: Retention,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// A replica's path: events numbered elsewhere, stored with their ids (see [`super::Applied`]).
    Apply {
        applied: super::Applied,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    SetState {
        name: &'static str,
        value: i64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

type Request = (Vec<Draft>, oneshot::Sender<Result<Vec<Appended>, StoreError>>);

pub struct Writer {
    pub connection: Connection,
    pub commands: mpsc::Receiver<Command>,
    pub shared: Arc<Shared>,
    pub max_group: usize,
}

impl Writer {
    pub fn run(mut self) {
        // Its own group loop rather than `crate::groups::Groups` (the JetStream writer's and the
        // IRC pipeline's): this is a plain thread with no runtime to await in, so it blocks in
        // `blocking_recv` where `Groups::first` awaits.
        let mut held: Option<Command> = None;
        loop {
            let Some(command) = held.take().or_else(|| self.commands.blocking_recv()) else { break };
            match command {
                Command::Append { drafts, reply } => {
                    let mut group: Vec<Request> = vec![(drafts, reply)];
                    let mut count = group[0].0.len();
                    while count < self.max_group {
                        match self.commands.try_recv() {
                            Ok(Command::Append { drafts, reply }) => {
                                count += drafts.len();
                                group.push((drafts, reply));
                            }
                            Ok(other) => {
                                held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_group(group);
                }
                Command::SetCursor { name, id, revision, reply } => {
                    let _ = reply.send(self.set_cursor(&name, id, revision));
                }
                Command::Prune { retention, reply } => {
                    let _ = reply.send(self.prune(retention));
                }
                Command::Apply { applied, reply } => {
                    let _ = reply.send(self.apply(applied));
                }
                Command::SetState { name, value, reply } => {
                    let result = self
                        .connection
                        .execute(
                            "INSERT INTO state (name, value) VALUES (?1, ?2)
                             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                            params![name, value],
                        )
                        .map(drop)
                        .map_err(backend);
                    let _ = reply.send(result);
                }
            }
        }
        // Fold the WAL back into the main file so a stopped hub leaves one tidy file.
        if let Err(error) = self.connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
            tracing::warn!(%error, "checkpoint at close failed");
        }
    }

    /// A fenced cursor move: from `revision` (0: a new cursor) to the next one.
    fn set_cursor(&mut self, name: &str, id: u64, revision: u64) -> Result<u64, StoreError> {
        let now = Timestamp::now().millis();
        let changed = if revision == 0 {
            self.connection
                .execute(
                    "INSERT INTO cursors (name, id, updated, revision) VALUES (?1, ?2, ?3, 1)
                     ON CONFLICT(name) DO NOTHING",
                    params![name, to_sql_id(id), now],
                )
                .map_err(backend)?
        } else {
            self.connection
                .execute(
                    "UPDATE cursors SET id = ?2, updated = ?3, revision = revision + 1
                     WHERE name = ?1 AND revision = ?4",
                    params![name, to_sql_id(id), now, to_sql_id(revision)],
                )
                .map_err(backend)?
        };
        if changed == 0 {
            return Err(StoreError::Conflict(format!(
                "cursor {name:?} was moved by someone else since revision {revision}"
            )));
        }
        Ok(revision + 1)
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        let first_id = self.shared.last_id.load(Ordering::Acquire) + 1;
        match self.insert_group(&group, first_id) {
            Ok((results, new_events)) => {
                let stats = &self.shared.stats;
                stats.transactions.fetch_add(1, Ordering::Relaxed);
                stats.appended.fetch_add(new_events.len() as u64, Ordering::Relaxed);
                if let Some(last) = new_events.last() {
                    self.shared.last_id.store(last.id, Ordering::Release);
                }
                // Announce before acknowledging: when a publisher holds its ack, every output
                // already has the event.
                for event in new_events {
                    self.shared.bus.announce(event);
                }
                for ((_, reply), result) in group.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(error) => {
                tracing::error!(%error, events = group.len(), "append transaction failed");
                // Every waiter gets the error itself: its words once, and its kind (a `Damaged`
                // one is what makes the store stop writing).
                for (_, reply) in group {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// One transaction for the whole group. Returns each request's results and the new events
    /// in id order; on error nothing was committed.
    #[allow(clippy::type_complexity)]
    fn insert_group(
        &mut self,
        group: &[Request],
        first_id: u64,
    ) -> Result<(Vec<Vec<Appended>>, Vec<Arc<Event>>), StoreError> {
        let received = Timestamp::now().millis();
        let transaction = self.connection.transaction().map_err(backend)?;
        let mut next_id = first_id;
        let mut results = Vec::with_capacity(group.len());
        let mut new_events = Vec::new();
        {
            let mut find = transaction
                .prepare_cached("SELECT id, body FROM events WHERE wiki = ?1 AND key = ?2")
                .map_err(backend)?;
            let mut insert = transaction.prepare_cached(INSERT).map_err(backend)?;
            for (drafts, _) in group {
                let mut request_results = Vec::with_capacity(drafts.len());
                for draft in drafts {
                    if let Some(key) = draft.key() {
                        let earlier = find
                            .query_row(params![draft.wiki(), key], |row| {
                                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                            })
                            .optional()
                            .map_err(backend)?;
                        if let Some((id, body)) = earlier {
                            let event = row_event(id, &body)?;
                            request_results.push(Appended { event: Arc::new(event), duplicate: true });
                            continue;
                        }
                    }
                    let event = draft.clone().commit(next_id);
                    insert_event(&mut insert, &event, received, event.key.as_deref())?;
                    next_id += 1;
                    let event = Arc::new(event);
                    new_events.push(Arc::clone(&event));
                    request_results.push(Appended { event, duplicate: false });
                }
                results.push(request_results);
            }
        }
        if let Some(last) = new_events.last() {
            transaction
                .execute("UPDATE state SET value = ?1 WHERE name = 'last_id'", [to_sql_id(last.id)])
                .map_err(backend)?;
        }
        transaction.commit().map_err(backend)?;
        Ok((results, new_events))
    }

    /// Stores events that another log numbered, with their ids, then announces them. Keys are not
    /// looked up or kept in the key column: the log that numbered the events enforced them, and
    /// may accept a key again once its first event expired there before it is pruned here.
    fn apply(&mut self, applied: super::Applied) -> Result<(), StoreError> {
        let super::Applied { events, pruned_through, unreadable } = applied;
        let last_id = self.shared.last_id.load(Ordering::Acquire);
        let transaction = self.connection.transaction().map_err(backend)?;
        if let Some(through) =
            pruned_through.filter(|&through| through > self.shared.pruned_through.load(Ordering::Acquire))
        {
            transaction
                .execute("DELETE FROM events WHERE id <= ?1", [to_sql_id(through)])
                .map_err(backend)?;
            transaction
                .execute("UPDATE state SET value = ?1 WHERE name = 'pruned_through'", [to_sql_id(through)])
                .map_err(backend)?;
        }
        let received = Timestamp::now().millis();
        {
            let mut insert = transaction.prepare_cached(INSERT).map_err(backend)?;
            let mut previous = last_id;
            for event in &events {
                if event.id <= previous {
                    return Err(StoreError::backend_msg(format!(
                        "replica asked to apply event {} after {previous}: ids must grow",
                        event.id
                    )));
                }
                previous = event.id;
                insert_event(&mut insert, event, received, None)?;
            }
            // Rows with the id and why only: readers pass over them as unreadable (a gap there).
            let mut previous = last_id;
            for (id, reason) in &unreadable {
                if *id <= previous {
                    return Err(StoreError::backend_msg(format!(
                        "replica asked to record {id} as unreadable after {previous}: ids must grow"
                    )));
                }
                previous = *id;
                let body = format!("{}{reason}", super::NOT_AN_EVENT);
                insert
                    .execute(params![
                        to_sql_id(*id),
                        received,
                        received,
                        "",
                        "",
                        None::<String>,
                        body,
                        None::<String>
                    ])
                    .map_err(backend)?;
            }
        }
        let new_last = events
            .last()
            .map_or(last_id, |event| event.id)
            .max(unreadable.last().map_or(0, |(id, _)| *id))
            .max(pruned_through.unwrap_or(0));
        if new_last != last_id {
            transaction
                .execute("UPDATE state SET value = ?1 WHERE name = 'last_id'", [to_sql_id(new_last)])
                .map_err(backend)?;
        }
        transaction.commit().map_err(backend)?;
        if let Some(through) = pruned_through {
            self.shared.pruned_through.fetch_max(through, Ordering::AcqRel);
        }
        let stats = &self.shared.stats;
        stats.transactions.fetch_add(1, Ordering::Relaxed);
        stats.appended.fetch_add(events.len() as u64, Ordering::Relaxed);
        self.shared.last_id.store(new_last, Ordering::Release);
        for event in events {
            self.shared.bus.announce(event);
        }
        Ok(())
    }

    /// Removes one chunk of events past retention. Returns 0 only when nothing is left to remove.
    fn prune(&mut self, retention: Retention) -> Result<u64, StoreError> {
        let last_id = self.shared.last_id.load(Ordering::Acquire);
        let pruned_through = self.shared.pruned_through.load(Ordering::Acquire);
        let mut threshold = retention.max_events.map_or(0, |keep| last_id.saturating_sub(keep));
        if let Some(age) = retention.max_age {
            let cutoff = Timestamp::now().millis() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            let old: Option<i64> = self
                .connection
                .query_row("SELECT max(id) FROM events WHERE received < ?1", [cutoff], |row| row.get(0))
                .map_err(backend)?;
            threshold = threshold.max(old.map_or(0, from_sql_id));
        }
        if threshold <= pruned_through {
            return Ok(0);
        }
        let transaction = self.connection.transaction().map_err(backend)?;
        // The chunk ends at the PRUNE_CHUNK-th remaining event, or at the threshold.
        let chunk_end: Option<i64> = transaction
            .query_row(
                "SELECT id FROM events WHERE id <= ?1 ORDER BY id LIMIT 1 OFFSET ?2",
                params![to_sql_id(threshold), PRUNE_CHUNK - 1],
                |row| row.get(0),
            )
            .optional()
            .map_err(backend)?;
        let upto = chunk_end.map_or(threshold, from_sql_id);
        let removed =
            transaction.execute("DELETE FROM events WHERE id <= ?1", [to_sql_id(upto)]).map_err(backend)?;
        transaction
            .execute("UPDATE state SET value = ?1 WHERE name = 'pruned_through'", [to_sql_id(upto)])
            .map_err(backend)?;
        transaction.commit().map_err(backend)?;
        self.shared.pruned_through.store(upto, Ordering::Release);
        tracing::info!(removed, through = upto, "retention removed events");
        // Nothing removed in a range still below the threshold cannot happen: the chunk ends at an
        // existing row, or at the threshold, after which the next call returns 0.
        Ok(removed as u64)
    }
}

const INSERT: &str = "INSERT INTO events (id, time, received, wiki, action, key, body, user)
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// One row of `events`; `key` goes into the key column (the unique index), the body keeps it anyway.
fn insert_event(
    insert: &mut rusqlite::CachedStatement<'_>,
    event: &Event,
    received: i64,
    key: Option<&str>,
) -> Result<(), StoreError> {
    insert
        .execute(params![
            to_sql_id(event.id),
            event.time.millis(),
            received,
            event.wiki,
            event.action.as_str(),
            key,
            event.to_stored_json(),
            event.user,
        ])
        .map(drop)
        .map_err(backend)
}

/// Ids are u64 in the model and i64 in SQLite; ids come from a counter starting at 1, which
/// cannot reach 2^63 in this universe.
pub fn to_sql_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

pub fn from_sql_id(id: i64) -> u64 {
    u64::try_from(id).unwrap_or(0)
}
