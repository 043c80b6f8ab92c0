//! The embedded store: one SQLite file in the data directory, WAL journal, one writer thread with
//! group commit ([`writer`]), and a small pool of read connections that never block the writer.

mod integrity;
mod outbox;
mod salvage;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{Semaphore, mpsc, oneshot};
use wikiwire_event::{Draft, Event};

use crate::{Appended, Bounds, Bus, Cursor, MAX_PAGE, Outbox, Page, Query, Retention, Store, StoreError};
pub use integrity::Damage;
pub use outbox::SqliteOutbox;
pub use salvage::{Salvage, salvage};
use schema::backend;
use writer::{Command, Writer, from_sql_id, to_sql_id};

/// Rows read per history query at most, whatever the filter refuses: bounds the work of a query
/// whose filter matches little.
const MAX_SCAN: usize = 20_000;

/// Appends queued for the writer before callers wait: bounds memory under a publishing storm.
const QUEUE: usize = 1024;

#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// The database file; its directory is created if missing.
    pub path: PathBuf,
    /// Most events committed in one transaction.
    pub max_group: usize,
    /// `synchronous=FULL`: a commit survives power loss, not only a crash of the process.
    pub synchronous_full: bool,
    pub readers: usize,
    pub bus_capacity: usize,
    /// History queries whose filter must read and match row by row (page patterns, globs, flags)
    /// that may run at once; the others wait, so that such queries cannot take every core.
    pub concurrent_scans: usize,
    /// How long the integrity check at open may walk the file before it stops (the end of the
    /// log is checked whatever this says).
    pub integrity_budget: Duration,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> SqliteOptions {
        SqliteOptions {
            path: path.into(),
            max_group: 2000,
            synchronous_full: true,
            readers: 4,
            bus_capacity: crate::bus::DEFAULT_CAPACITY,
            integrity_budget: Duration::from_secs(20),
            concurrent_scans: std::thread::available_parallelism()
                .map_or(1, |cores| (cores.get() / 2).max(1)),
        }
    }
}

/// Events numbered by another log (JetStream), for a replica: stored with their ids, in order,
/// after `pruned_through` (when given) removed everything up to it.
#[derive(Debug, Default)]
pub struct Applied {
    pub events: Vec<Arc<Event>>,
    pub pruned_through: Option<u64>,
    /// Ids the other log holds that are not events (a message that does not read, or that the
    /// replica refused), in id order, each with why: kept as rows that readers report as
    /// unreadable, so that every follower gets a gap at that id instead of nothing.
    pub unreadable: Vec<(u64, String)>,
}

/// The body of a row that holds no event, only why (see [`Applied::unreadable`]).
pub(crate) const NOT_AN_EVENT: &str = "!not an event: ";

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub transactions: AtomicU64,
    pub appended: AtomicU64,
    /// Rows passed over by readers because they cannot be read.
    pub unreadable: AtomicU64,
    /// Row-by-row history queries running now, and the most that ever ran at once.
    pub scans_running: AtomicU64,
    pub scans_peak: AtomicU64,
}

/// State the writer publishes and everyone reads without a database round trip.
pub struct Shared {
    pub last_id: AtomicU64,
    pub pruned_through: AtomicU64,
    pub bus: Bus,
    pub stats: Stats,
    /// The first damage found while running (see [`Store::fault`]).
    pub fault: Mutex<Option<String>>,
    /// Unreadable rows already logged, so a page read again does not log them again.
    pub unreadable: Mutex<std::collections::HashSet<u64>>,
}

impl Shared {
    /// Passes a result on, remembering the first damage it reports.
    fn observe<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Damaged { reason, .. }) = &result
            && let Ok(mut fault) = self.fault.lock()
            && fault.is_none()
        {
            tracing::error!(
                %reason,
                "the event store is damaged: nothing more is written to it; stop the hub and run `wikiwire repair` \
                 (operator guide, \"Repairing a damaged store\")"
            );
            *fault = Some(reason.clone());
        }
        result
    }

    /// Logs a row readers pass over, once per row (at most `LOGGED_UNREADABLE` rows).
    fn note_unreadable(&self, id: u64, error: &StoreError) {
        let Ok(mut seen) = self.unreadable.lock() else { return };
        if seen.len() < LOGGED_UNREADABLE && seen.insert(id) {
            self.stats.unreadable.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                id,
                %error,
                "a stored event cannot be read: readers pass over it (a gap at this id); repair the file \
                 (operator guide, \"Repairing a damaged store\")"
            );
        }
    }
}

/// Distinct unreadable rows logged; past this the log stays quiet (the file needs repair anyway).
const LOGGED_UNREADABLE: usize = 10_000;

pub struct SqliteStore {
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Readers>,
    /// Permits for row-by-row queries (see [`SqliteOptions::concurrent_scans`]).
    scans: Semaphore,
    shared: Arc<Shared>,
    /// The bot's state beside the log ([`outbox::FILE`]), opened when the bot first asks.
    outbox: tokio::sync::OnceCell<Arc<SqliteOutbox>>,
    outbox_path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) and starts the writer thread.
    pub fn open(options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        if let Some(directory) = options.path.parent().filter(|directory| !directory.as_os_str().is_empty()) {
            create_private_dir(directory).map_err(|error| {
                StoreError::backend_in(format_args!("cannot create {}", directory.display()), error)
            })?;
        }
        let path = options.path.display();
        let damaged = |details: String, cause: Option<crate::Cause>| StoreError::Damaged {
            reason: format!(
                "{path}: {details}. The hub will not serve from a damaged log: repair it with `wikiwire repair` \
                 (with the hub stopped) or restore a backup, as the operator guide says under \"Repairing a damaged store\""
            ),
            cause,
        };
        let refuse_damage = |error: StoreError| match error {
            StoreError::Damaged { reason, cause } => damaged(reason, cause),
            other => other,
        };
        let mut connection = Connection::open(&options.path).map_err(backend).map_err(refuse_damage)?;
        let synchronous = if options.synchronous_full { "FULL" } else { "NORMAL" };
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = 5000;"
            ))
            .map_err(backend)
            .map_err(refuse_damage)?;
        // Before the migrations write into it, and after them (the end check reads their tables).
        integrity::walk_pages(&connection, options.integrity_budget)
            .map_err(|damage| refuse_damage(StoreError::damaged(damage)))?;
        schema::migrate(&mut connection).map_err(refuse_damage)?;
        integrity::check_end(&connection).map_err(|damage| refuse_damage(StoreError::damaged(damage)))?;
        let state = |name: &str| -> Result<u64, StoreError> {
            connection
                .query_row("SELECT value FROM state WHERE name = ?1", [name], |row| row.get::<_, i64>(0))
                .map(from_sql_id)
                .map_err(backend)
        };
        let shared = Arc::new(Shared {
            last_id: AtomicU64::new(state("last_id")?),
            pruned_through: AtomicU64::new(state("pruned_through")?),
            bus: Bus::new(options.bus_capacity),
            stats: Stats::default(),
            fault: Mutex::new(None),
            unreadable: Mutex::new(std::collections::HashSet::new()),
        });
        let (sender, receiver) = mpsc::channel(QUEUE);
        let writer = Writer {
            connection,
            commands: receiver,
            shared: Arc::clone(&shared),
            max_group: options.max_group.max(1),
        };
        let handle = std::thread::Builder::new()
            .name("wikiwire-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|error| StoreError::backend_in("cannot start the writer thread", error))?;
        tracing::info!(path = %options.path.display(), last_id = shared.last_id.load(Ordering::Relaxed), "store open");
        Ok(SqliteStore {
            commands: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
            readers: Arc::new(Readers::new(&options.path, options.readers.max(1))),
            scans: Semaphore::new(options.concurrent_scans.max(1)),
            shared,
            outbox: tokio::sync::OnceCell::new(),
            outbox_path: options.path.with_file_name(outbox::FILE),
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Stores events numbered elsewhere and announces them on the bus (a replica's only way in;
    /// never mixed with [`Store::append`] on one file).
    pub async fn apply(&self, applied: Applied) -> Result<(), StoreError> {
        self.command(|reply| Command::Apply { applied, reply }).await
    }

    /// A number kept beside the events (the replica keeps its stream's identity here).
    pub async fn state(&self, name: &'static str) -> Result<Option<i64>, StoreError> {
        self.read(move |connection| {
            connection
                .query_row("SELECT value FROM state WHERE name = ?1", [name], |row| row.get::<_, i64>(0))
                .optional()
                .map_err(backend)
        })
        .await
    }

    pub async fn set_state(&self, name: &'static str, value: i64) -> Result<(), StoreError> {
        self.command(|reply| Command::SetState { name, value, reply }).await
    }

    fn sender(&self) -> Result<mpsc::Sender<Command>, StoreError> {
        // A poisoned lock means a panic elsewhere while cloning a sender; treat as closed.
        self.commands.lock().ok().and_then(|slot| slot.clone()).ok_or(StoreError::Closed)
    }

    async fn command<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender()?.send(make(reply)).await.map_err(|_| StoreError::Closed)?;
        self.shared.observe(answer.await.map_err(|_| StoreError::Closed)?)
    }

    /// Writes stop at the first damage found: a commit into a file whose pages are known bad
    /// could make an acknowledged event unreadable, and the repair copies what is there.
    fn refuse_if_damaged(&self) -> Result<(), StoreError> {
        match self.fault() {
            Some(reason) => Err(StoreError::damaged_msg(format!(
                "{reason}; nothing is written to a damaged log until it is repaired (wikiwire repair)"
            ))),
            None => Ok(()),
        }
    }

    /// Work on a read connection; damage it finds is remembered.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.shared.observe(self.readers.with(work).await)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(&self, drafts: Vec<Draft>) -> Result<Vec<Appended>, StoreError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        self.refuse_if_damaged()?;
        self.command(|reply| Command::Append { drafts, reply }).await
    }

    async fn get(&self, id: u64) -> Result<Option<Event>, StoreError> {
        self.read(move |connection| {
            let body: Option<String> = connection
                .query_row("SELECT body FROM events WHERE id = ?1", [to_sql_id(id)], |row| row.get(0))
                .optional()
                .map_err(backend)?;
            body.map(|body| row_event(to_sql_id(id), &body)).transpose()
        })
        .await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        let _scan = match query.filter.needs_row_scan() {
            true => Some(Scan::start(&self.scans, &self.shared.stats).await?),
            false => None,
        };
        let shared = Arc::clone(&self.shared);
        self.read(move |connection| read_page(connection, &query, &shared)).await
    }

    async fn bounds(&self) -> Result<Bounds, StoreError> {
        Ok(Bounds {
            last_id: self.shared.last_id.load(Ordering::Acquire),
            pruned_through: self.shared.pruned_through.load(Ordering::Acquire),
        })
    }

    fn bus(&self) -> &Bus {
        &self.shared.bus
    }

    fn fault(&self) -> Option<String> {
        self.shared.fault.lock().ok().and_then(|fault| fault.clone())
    }

    async fn cursor(&self, name: &str) -> Result<Option<Cursor>, StoreError> {
        let name = name.to_owned();
        self.read(move |connection| {
            connection
                .query_row("SELECT id, revision FROM cursors WHERE name = ?1", [name], |row| {
                    Ok(Cursor { id: from_sql_id(row.get(0)?), revision: from_sql_id(row.get(1)?) })
                })
                .optional()
                .map_err(backend)
        })
        .await
    }

    async fn set_cursor(&self, name: &str, id: u64, revision: u64) -> Result<u64, StoreError> {
        self.refuse_if_damaged()?;
        let name = name.to_owned();
        self.command(|reply| Command::SetCursor { name, id, revision, reply }).await
    }

    async fn outbox(&self) -> Result<Arc<dyn Outbox>, StoreError> {
        let path = self.outbox_path.clone();
        let outbox = self
            .outbox
            .get_or_try_init(|| async move {
                let opened = tokio::task::spawn_blocking(move || SqliteOutbox::open(&path)).await;
                let opened = opened.map_err(|error| StoreError::backend_in("opening the bot's state", error));
                opened?.map(Arc::new)
            })
            .await?;
        Ok(Arc::clone(outbox) as Arc<dyn Outbox>)
    }

    async fn prune(&self, retention: Retention) -> Result<u64, StoreError> {
        self.refuse_if_damaged()?;
        self.command(|reply| Command::Prune { retention, reply }).await
    }

    async fn close(&self) {
        // Dropping the last sender ends the writer's loop once the queue is drained.
        if let Ok(mut slot) = self.commands.lock() {
            slot.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut slot| slot.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

/// Checks a store file with no time limit (for `wikiwire repair`, with the hub stopped): `Err`
/// says what is damaged.
pub fn verify(path: &Path) -> Result<(), Damage> {
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    integrity::walk_pages(&connection, Duration::from_secs(365 * 24 * 3600))?;
    integrity::check_end(&connection)
}

/// Creates a directory (and its missing parents) that only its owner may enter, whatever the
/// umask: it holds the log, and beside it tokens and the bot's state.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Reads one page: rows in id order, filtered here for what SQL cannot express (globs,
/// patterns), bounded by `MAX_SCAN` rows read. A row that cannot be read is passed over and
/// named in `unreadable`.
fn read_page(connection: &Connection, query: &Query, shared: &Shared) -> Result<Page, StoreError> {
    let limit = query.limit.clamp(1, MAX_PAGE);
    let chunk = (limit * 2).clamp(64, 4096);
    let mut sql = String::from("SELECT id, body FROM events WHERE id > ? AND id < ?");
    let mut parameters: Vec<SqlValue> = Vec::new();
    if let Some(from) = query.from {
        sql.push_str(" AND time >= ?");
        parameters.push(SqlValue::Integer(from.millis()));
    }
    if let Some(to) = query.to {
        sql.push_str(" AND time <= ?");
        parameters.push(SqlValue::Integer(to.millis()));
    }
    if let Some(wikis) = query.filter.exact_wikis() {
        sql.push_str(&format!(" AND wiki IN ({})", vec!["?"; wikis.len()].join(",")));
        parameters.extend(wikis.iter().map(|wiki| SqlValue::Text((*wiki).to_owned())));
    }
    if let Some(users) = query.filter.exact_users() {
        sql.push_str(&format!(" AND user IN ({})", vec!["?"; users.len()].join(",")));
        parameters.extend(users.iter().map(|user| SqlValue::Text((*user).to_owned())));
    }
    let actions = query.filter.actions();
    if !actions.is_empty() {
        sql.push_str(&format!(" AND action IN ({})", vec!["?"; actions.len()].join(",")));
        parameters.extend(actions.iter().map(|action| SqlValue::Text(action.as_str().to_owned())));
    }
    sql.push_str(if query.descending { " ORDER BY id DESC LIMIT ?" } else { " ORDER BY id LIMIT ?" });
    let mut statement = connection.prepare_cached(&sql).map_err(backend)?;
    // The window (lower, upper) shrinks from the side the query reads from.
    let mut lower = to_sql_id(query.after);
    let mut upper = query.before.map_or(i64::MAX, to_sql_id);
    let mut page = Page::default();
    let mut scanned = 0;
    loop {
        let mut values = Vec::with_capacity(parameters.len() + 3);
        values.push(SqlValue::Integer(lower));
        values.push(SqlValue::Integer(upper));
        values.extend(parameters.iter().cloned());
        values.push(SqlValue::Integer(chunk as i64));
        let mut rows = statement.query(rusqlite::params_from_iter(values)).map_err(backend)?;
        let mut read = 0;
        let mut cursor = 0;
        while let Some(row) = rows.next().map_err(backend)? {
            let id: i64 = row.get(0).map_err(backend)?;
            read += 1;
            cursor = id;
            let body = row.get::<_, String>(1).map_err(backend);
            match body.and_then(|body| row_event(id, &body)) {
                Ok(event) => {
                    if query.filter.matches(&event) {
                        page.events.push(event);
                        if page.events.len() == limit {
                            page.next = Some(from_sql_id(cursor));
                            return Ok(page);
                        }
                    }
                }
                Err(error @ StoreError::Damaged { .. }) => return Err(error),
                Err(error) => {
                    shared.note_unreadable(from_sql_id(id), &error);
                    page.unreadable.push(from_sql_id(id));
                }
            }
        }
        scanned += read;
        if read < chunk {
            return Ok(page);
        }
        if query.descending {
            upper = cursor;
        } else {
            lower = cursor;
        }
        if scanned >= MAX_SCAN {
            page.next = Some(from_sql_id(cursor));
            return Ok(page);
        }
    }
}

/// A stored row back into an event; a row that does not parse, or names another id, is
/// reported, never skipped here.
pub(crate) fn row_event(id: i64, body: &str) -> Result<Event, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { id: from_sql_id(id), reason, cause: None };
    if body == salvage::LOST_BODY {
        return Err(corrupt("it was lost when the damaged store was repaired".to_owned()));
    }
    if let Some(reason) = body.strip_prefix(NOT_AN_EVENT) {
        return Err(corrupt(reason.to_owned()));
    }
    let event = Event::from_json(body).map_err(|error| {
        let (reason, cause) = crate::with_cause(None, error);
        StoreError::Corrupt { id: from_sql_id(id), reason, cause }
    })?;
    if event.id != from_sql_id(id) {
        return Err(corrupt(format!("the stored body names event {}", event.id)));
    }
    Ok(event)
}

/// A row-by-row query holding its permit, counted while it runs.
struct Scan<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    stats: &'a Stats,
}

impl<'a> Scan<'a> {
    async fn start(permits: &'a Semaphore, stats: &'a Stats) -> Result<Scan<'a>, StoreError> {
        let permit = permits.acquire().await.map_err(|_| StoreError::Closed)?;
        let running = stats.scans_running.fetch_add(1, Ordering::AcqRel) + 1;
        stats.scans_peak.fetch_max(running, Ordering::AcqRel);
        Ok(Scan { _permit: permit, stats })
    }
}

impl Drop for Scan<'_> {
    fn drop(&mut self) {
        self.stats.scans_running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Read connections, opened on demand up to a bound, reused.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    fn new(path: &Path, size: usize) -> Readers {
        Readers { path: path.to_owned(), idle: Mutex::new(Vec::new()), permits: Semaphore::new(size) }
    }

    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _permit = self.permits.acquire().await.map_err(|_| StoreError::Closed)?;
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let connection = match readers.idle.lock().ok().and_then(|mut idle| idle.pop()) {
                Some(connection) => connection,
                None => readers.open()?,
            };
            let result = work(&connection);
            if let Ok(mut idle) = readers.idle.lock() {
                idle.push(connection);
            }
            result
        })
        .await
        .map_err(|error| StoreError::backend_in("reader task failed", error))?
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&self.path, flags).map_err(backend)?;
        connection.execute_batch("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;").map_err(backend)?;
        Ok(connection)
    }
}
