//! The cluster store: one NATS JetStream stream is the log of every hub node; its sequence is the
//! event id. Each node reads through a local SQLite replica that one ordered consumer fills in
//! stream order ([`apply`]), so history, followers and the bus work exactly as on one machine.
//!
//! | module | owns |
//! |---|---|
//! | this file | connecting, creating or checking the stream, the [`Store`] methods |
//! | [`append`] | the node's one writer: group commit as JetStream atomic batches, retries and their resolution |
//! | [`apply`] | stream → replica → bus, gaps after retention, the stream's identity, readiness |
//! | [`subjects`] | subject names (one per key), headers, error codes |
//! | [`lease`] | leases for jobs that run once in the cluster (relays, the bot), with fencing |
//! | [`outbox`] | the Jabber bot's outbox, positions and table, shared by every node |
//!
//! Nodes never talk to each other; NATS is the only thing they share. This module must never
//! announce an event that the stream has not stored, never serve a message as an event unless its
//! subject is the one its wiki makes (a gap instead), never serve ids from a stream that is not
//! the one its replica follows (a stream deleted and made again would hand out old ids anew), and
//! never run twice under one node name.

mod append;
mod apply;
pub mod lease;
pub mod outbox;
pub mod subjects;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream};
use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use wikiwire_event::{Draft, Event};

use crate::{
    Appended, Bounds, Bus, ClusterStatus, Cursor, Leases, Page, Query, Retention, SqliteOptions, SqliteStore,
    Store, StoreError,
};

/// The replica state row that records which stream it follows (the stream's creation time, µs).
const STREAM_CREATED: &str = "stream_created";
/// Copies of the stream unless the configuration says otherwise: 3 survives the loss of a NATS
/// server.
pub const DEFAULT_REPLICAS: usize = 3;
/// How long a job's lease lives without a renewal unless the configuration says otherwise.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// How long closing waits for the store's tasks (the writer, the applier, lease releases).
const CLOSE_TASKS: Duration = Duration::from_secs(5);
/// How long closing waits for NATS to confirm what this node sent last.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct JetStreamOptions {
    /// This node's unique name (`[cluster] node`).
    pub node: String,
    /// `nats://host:port` URLs of the NATS servers.
    pub servers: Vec<String>,
    /// Copies of the stream and the cursor bucket: 1 or 3.
    pub replicas: usize,
    /// A NATS credentials file (JWT + nkey seed), for NATS in operator (JWT) mode.
    pub credentials: Option<PathBuf>,
    /// A file holding this node's NKEY seed (`SU…`), for a NATS configuration that lists the hubs'
    /// public keys with their permissions (`docs/deploy/nats.conf`).
    pub nkey_file: Option<PathBuf>,
    /// A CA file for NATS over TLS; set, TLS is required.
    pub ca_file: Option<PathBuf>,
    /// The local replica's SQLite file.
    pub replica: PathBuf,
    /// The stream's name; its subjects are `<subject_prefix>.>`.
    pub stream: String,
    pub subject_prefix: String,
    /// Becomes the stream's limits (the server removes the oldest events).
    pub retention: Retention,
    /// How long one append may retry before it answers `Unavailable`.
    pub publish_timeout: Duration,
    /// How long `open` waits for NATS and the stream.
    pub connect_timeout: Duration,
    /// How long a job's lease lives without renewal: a dead node's relays and bot move to
    /// another node after about this long.
    pub lease_ttl: Duration,
    /// For `wikiwire migrate`: the first id of a stream made by this open.
    pub first_sequence: Option<u64>,
    /// Fault injection for tests: the writer throws away this many answers of the stream after
    /// the stream stored the events, as if the connection had dropped them.
    #[doc(hidden)]
    pub lose_answers: u32,
}

impl JetStreamOptions {
    pub fn new(
        node: impl Into<String>,
        servers: Vec<String>,
        replica: impl Into<PathBuf>,
    ) -> JetStreamOptions {
        JetStreamOptions {
            node: node.into(),
            servers,
            replicas: DEFAULT_REPLICAS,
            credentials: None,
            nkey_file: None,
            ca_file: None,
            replica: replica.into(),
            stream: "WIKIWIRE".into(),
            subject_prefix: "wikiwire.events".into(),
            retention: Retention::default(),
            publish_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(30),
            lease_ttl: DEFAULT_LEASE_TTL,
            first_sequence: None,
            lose_answers: 0,
        }
    }

    /// The key uniqueness check works only while the stream still holds the first event, and a
    /// retry is harmless only inside the duplicate window: the window stays within `max_age`
    /// (the server refuses a longer one) and above the publish timeout.
    fn duplicate_window(&self) -> Duration {
        let window = Duration::from_secs(120);
        match self.retention.max_age {
            Some(age) if !age.is_zero() => window.min(age),
            _ => window,
        }
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            max_age: self.retention.max_age.unwrap_or_default(),
            max_messages: self
                .retention
                .max_events
                .map_or(-1, |events| i64::try_from(events).unwrap_or(i64::MAX)),
            max_bytes: -1,
            max_messages_per_subject: -1,
            max_message_size: 2 * 1024 * 1024,
            duplicate_window: self.duplicate_window(),
            allow_direct: true,
            allow_atomic_publish: true,
            deny_delete: true,
            deny_purge: true,
            first_sequence: self.first_sequence,
            description: Some("wikiwire: the event log; the sequence is the event id".into()),
            ..Default::default()
        }
    }
}

/// What every task of the store shares.
pub(crate) struct Inner {
    options: JetStreamOptions,
    client: async_nats::Client,
    stream: stream::Stream,
    cursors: kv::Store,
    leases: Arc<lease::NatsLeases>,
    /// The bot's shared state, made when the bot first asks.
    outbox: tokio::sync::OnceCell<Arc<outbox::SharedOutbox>>,
    replica: SqliteStore,
    /// The newest id the replica applied and announced.
    applied: watch::Sender<u64>,
    /// The stream's first and last sequence when last asked, and when that was.
    stream_first: AtomicU64,
    stream_last: AtomicU64,
    last_poll: Mutex<Option<Instant>>,
    /// The stream's last sequence at start: the node is not ready before its replica has it.
    rebuild_target: u64,
    /// The creation time (µs) of the stream this node follows: its identity.
    created: i64,
    /// Set when serving would be wrong (the stream was made again, the log went backwards);
    /// appends are refused and the node reports unready until restarted.
    fatal: Mutex<Option<String>>,
    stop: tokio_util::sync::CancellationToken,
    retries: AtomicU64,
    resolved: AtomicU64,
    apply_wait_timeouts: AtomicU64,
    /// Stream messages that are not events (see [`ClusterStatus::unreadable`]).
    unreadable: AtomicU64,
}

impl Inner {
    fn fatal(&self) -> Option<String> {
        self.fatal.lock().ok().and_then(|fatal| fatal.clone())
    }

    fn set_fatal(&self, reason: String) {
        tracing::error!(%reason, "the cluster store stops serving");
        if let Ok(mut fatal) = self.fatal.lock() {
            fatal.get_or_insert(reason);
        }
    }

    fn is_closed(&self) -> bool {
        self.stop.is_cancelled()
    }
}

pub struct JetStreamStore {
    inner: Arc<Inner>,
    writer: Mutex<Option<mpsc::Sender<append::Request>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl JetStreamStore {
    /// Connects, creates the stream (or checks the one there), opens the replica and starts the
    /// writer and the applier. Fails when NATS cannot be reached within `connect_timeout`, when
    /// another running process holds this node's name, or when the stream is not the one this
    /// node's replica follows.
    pub async fn open(options: JetStreamOptions) -> Result<JetStreamStore, StoreError> {
        let deadline = Instant::now() + options.connect_timeout;
        let client = connect(&options).await?;
        let mut context = jetstream::new(client.clone());
        context.set_timeout(Duration::from_secs(5));
        let stream = retry_until(deadline, "the stream", || ensure_stream(&context, &options)).await?;
        let bucket = |suffix: &'static str, description: &'static str, max_age: Duration| {
            let config = bucket_config(
                &format!("{}_{suffix}", options.stream),
                description,
                options.replicas,
                max_age,
            );
            let context = context.clone();
            retry_until(deadline, description, move || {
                let (context, config) = (context.clone(), config.clone());
                async move { context.create_or_update_key_value(config).await.map_err(SetupError::from) }
            })
        };
        let cursors = bucket("state", "wikiwire: named cursors (relays)", Duration::ZERO).await?;
        let lease_bucket =
            bucket("leases", "wikiwire: which node runs each relay and the bot", options.lease_ttl).await?;
        // One process per node name: two would share message ids' prefix and each other's leases.
        let holder = format!("{}.{}", options.node, nonce());
        let node_revision =
            lease::claim_node(&lease_bucket, &options.node, &holder, options.lease_ttl).await?;
        let (node, ttl) = (options.node.clone(), options.lease_ttl);
        let store = match Self::start(options, client, stream, cursors, lease_bucket.clone()).await {
            Ok(store) => store,
            Err(error) => {
                // Not running after all: a restart may take the name at once.
                let key = lease::node_key(&node);
                let _ =
                    tokio::time::timeout(ttl, lease_bucket.delete_expect_revision(&key, Some(node_revision)))
                        .await;
                return Err(error);
            }
        };
        let inner = Arc::clone(&store.inner);
        let stop = inner.stop.clone();
        let keeper = lease::keep_node(lease_bucket, node, holder, node_revision, ttl, stop, move |reason| {
            inner.set_fatal(reason)
        });
        if let Ok(mut tasks) = store.tasks.lock() {
            tasks.push(tokio::spawn(keeper));
        }
        Ok(store)
    }

    /// Opens the replica and starts the writer and the applier, once this process holds the
    /// node's name.
    async fn start(
        options: JetStreamOptions,
        client: async_nats::Client,
        stream: stream::Stream,
        cursors: kv::Store,
        lease_bucket: kv::Store,
    ) -> Result<JetStreamStore, StoreError> {
        let stop = tokio_util::sync::CancellationToken::new();
        let leases = Arc::new(lease::NatsLeases::new(
            lease_bucket,
            options.node.clone(),
            options.lease_ttl,
            stop.clone(),
        ));
        let mut replica_options = SqliteOptions::new(&options.replica);
        // The replica is a cache of the stream: a node that loses it rebuilds it from there.
        replica_options.synchronous_full = false;
        let replica = match SqliteStore::open(replica_options.clone()) {
            Err(StoreError::Damaged { reason, .. }) => {
                set_aside(&options.replica, &reason)?;
                SqliteStore::open(replica_options)?
            }
            other => other?,
        };
        let info = stream.cached_info().clone();
        let created = created_micros(&info);
        let applied_id = replica.bounds().await?.last_id;
        match replica.state(STREAM_CREATED).await? {
            Some(known) if known != created => {
                return Err(StoreError::unavailable_msg(format!(
                    "stream {} is not the one this node's replica ({}) follows: it was made again at {} \
                     (ids would be handed out a second time); delete the replica only if the old log is \
                     really gone, or restore the stream",
                    options.stream,
                    options.replica.display(),
                    info.created
                )));
            }
            Some(_) => {}
            None => replica.set_state(STREAM_CREATED, created).await?,
        }
        if info.state.last_sequence < applied_id {
            return Err(StoreError::unavailable_msg(format!(
                "stream {} ends at {} but this node's replica already has {applied_id}: refusing to reuse ids",
                options.stream, info.state.last_sequence
            )));
        }
        tracing::info!(
            node = %options.node,
            stream = %options.stream,
            first = info.state.first_sequence,
            last = info.state.last_sequence,
            applied = applied_id,
            "cluster store open"
        );
        let inner = Arc::new(Inner {
            rebuild_target: info.state.last_sequence,
            created,
            stream_first: AtomicU64::new(info.state.first_sequence),
            stream_last: AtomicU64::new(info.state.last_sequence),
            last_poll: Mutex::new(Some(Instant::now())),
            applied: watch::Sender::new(applied_id),
            options,
            client,
            stream,
            cursors,
            leases,
            outbox: tokio::sync::OnceCell::new(),
            replica,
            fatal: Mutex::new(None),
            stop,
            retries: AtomicU64::new(0),
            resolved: AtomicU64::new(0),
            apply_wait_timeouts: AtomicU64::new(0),
            unreadable: AtomicU64::new(0),
        });
        let (sender, receiver) = mpsc::channel(append::QUEUE);
        let tasks = vec![
            tokio::spawn(append::run(Arc::clone(&inner), receiver)),
            tokio::spawn(apply::run(Arc::clone(&inner))),
            tokio::spawn(apply::watch_stream(Arc::clone(&inner))),
        ];
        Ok(JetStreamStore { inner, writer: Mutex::new(Some(sender)), tasks: Mutex::new(tasks) })
    }

    /// Waits until this node's replica has applied `id` (or `timeout` passes).
    pub async fn wait_applied(&self, id: u64, timeout: Duration) -> bool {
        let mut applied = self.inner.applied.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|&applied| applied >= id))
            .await
            .is_ok_and(|done| done.is_ok())
    }

    /// The stream's current first and last sequence, asked of the server.
    pub async fn stream_bounds(&self) -> Result<(u64, u64), StoreError> {
        let (first, last, _) = self.stream_state().await?;
        Ok((first, last))
    }

    /// The stream's first and last sequence and how many messages it holds.
    pub async fn stream_state(&self) -> Result<(u64, u64, u64), StoreError> {
        let info = self.inner.stream.get_info().await.map_err(StoreError::unavailable)?;
        Ok((info.state.first_sequence, info.state.last_sequence, info.state.messages))
    }

    fn sender(&self) -> Result<mpsc::Sender<append::Request>, StoreError> {
        self.writer.lock().ok().and_then(|slot| slot.clone()).ok_or(StoreError::Closed)
    }
}

#[async_trait]
impl Store for JetStreamStore {
    async fn append(&self, drafts: Vec<Draft>) -> Result<Vec<Appended>, StoreError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        if drafts.len() > append::MAX_BATCH {
            return Err(StoreError::backend_msg(format!(
                "{} events in one append; the stream takes at most {} at once",
                drafts.len(),
                append::MAX_BATCH
            )));
        }
        if let Some(reason) = self.inner.fatal() {
            return Err(StoreError::unavailable_msg(reason));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.sender()?.send(append::Request { drafts, reply }).await.map_err(|_| StoreError::Closed)?;
        let appended = answer.await.map_err(|_| StoreError::Closed)??;
        // Announced before acknowledged: every output of this node has the events when the
        // publisher holds its answer. Bounded, since the events are stored whatever happens here.
        if let Some(last) =
            appended.iter().filter(|appended| !appended.duplicate).map(|appended| appended.event.id).max()
            && !self.wait_applied(last, append::APPLY_WAIT).await
        {
            self.inner.apply_wait_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(id = last, "answered an append before this node's replica applied it");
        }
        Ok(appended)
    }

    async fn get(&self, id: u64) -> Result<Option<Event>, StoreError> {
        if let Some(event) = self.inner.replica.get(id).await? {
            return Ok(Some(event));
        }
        // Stored but not applied here yet: ask the stream.
        if id > *self.inner.applied.borrow() && id <= self.inner.stream_last.load(Ordering::Acquire) {
            return match self.inner.stream.direct_get(id).await {
                Ok(message) => {
                    let prefix = &self.inner.options.subject_prefix;
                    apply::event_from_message(prefix, &message.subject, &message.payload, id).map(Some)
                }
                Err(_) => Ok(None),
            };
        }
        Ok(None)
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.inner.replica.query(query).await
    }

    async fn bounds(&self) -> Result<Bounds, StoreError> {
        // Both from the replica, so that bounds and queries agree: what retention removed from the
        // stream leaves the replica within a second (the applier's tick).
        self.inner.replica.bounds().await
    }

    fn bus(&self) -> &Bus {
        self.inner.replica.bus()
    }

    async fn cursor(&self, name: &str) -> Result<Option<Cursor>, StoreError> {
        let entry =
            self.inner.cursors.entry(subjects::cursor_key(name)).await.map_err(StoreError::unavailable)?;
        let Some(entry) = entry.filter(|entry| entry.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let id =
            std::str::from_utf8(&entry.value).ok().and_then(|text| text.parse::<u64>().ok()).ok_or_else(
                || StoreError::backend_msg(format!("cursor {name:?} holds something that is not an id")),
            )?;
        Ok(Some(Cursor { id, revision: entry.revision }))
    }

    async fn set_cursor(&self, name: &str, id: u64, revision: u64) -> Result<u64, StoreError> {
        let key = subjects::cursor_key(name);
        let conflict = || {
            StoreError::Conflict(format!(
                "cursor {name:?} was moved by someone else since revision {revision}"
            ))
        };
        let value = id.to_string().into();
        if revision == 0 {
            return self.inner.cursors.create(key, value).await.map_err(|error| match error.kind() {
                kv::CreateErrorKind::AlreadyExists => conflict(),
                _ => StoreError::unavailable(error),
            });
        }
        self.inner.cursors.update(key, value, revision).await.map_err(|error| match error.kind() {
            kv::UpdateErrorKind::WrongLastRevision => conflict(),
            _ => StoreError::unavailable(error),
        })
    }

    fn leases(&self) -> Arc<dyn Leases> {
        Arc::clone(&self.inner.leases) as Arc<dyn Leases>
    }

    async fn outbox(&self) -> Result<Arc<dyn crate::Outbox>, StoreError> {
        let inner = &self.inner;
        let outbox = inner
            .outbox
            .get_or_try_init(|| async {
                let mut context = jetstream::new(inner.client.clone());
                context.set_timeout(Duration::from_secs(5));
                // Right after NATS restarts its streams may still be electing leaders: wait as
                // opening the store does.
                let deadline = Instant::now() + inner.options.connect_timeout;
                let opened = retry_until(deadline, "the bot's stream and bucket", || {
                    let (client, context) = (inner.client.clone(), context.clone());
                    async move {
                        let (stream, replicas, node) =
                            (&inner.options.stream, inner.options.replicas, &inner.options.node);
                        outbox::SharedOutbox::open(client, context, stream, replicas, node)
                            .await
                            .map_err(SetupError::from)
                    }
                })
                .await?;
                Ok::<_, StoreError>(Arc::new(opened))
            })
            .await?;
        Ok(Arc::clone(outbox) as Arc<dyn crate::Outbox>)
    }

    /// The server applies retention to the stream; the applier prunes the replica to match.
    async fn prune(&self, _retention: Retention) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn close(&self) {
        if let Ok(mut slot) = self.writer.lock() {
            slot.take();
        }
        self.inner.stop.cancel();
        let tasks = self.tasks.lock().map(|mut tasks| std::mem::take(&mut *tasks)).unwrap_or_default();
        // One deadline for all of them, so that closing is bounded whatever NATS does.
        let deadline = tokio::time::Instant::now() + CLOSE_TASKS;
        for task in tasks {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!("a cluster store task did not stop in time");
            }
        }
        self.inner.replica.close().await;
        // Waits for a PONG, which never comes while NATS is out of reach (the client reconnects
        // forever): unbounded, this kept a node from stopping on SIGTERM.
        if tokio::time::timeout(CLOSE_FLUSH, self.inner.client.flush()).await.is_err() {
            tracing::warn!("NATS did not answer while closing: stopping anyway");
        }
    }

    fn fault(&self) -> Option<String> {
        self.inner.replica.fault()
    }

    fn cluster_status(&self) -> Option<ClusterStatus> {
        Some(apply::status(&self.inner))
    }
}

/// A key-value bucket of this store: one value per key, as many copies as the stream, entries
/// expiring after `max_age` (zero: never).
fn bucket_config(name: &str, description: &str, replicas: usize, max_age: Duration) -> kv::Config {
    kv::Config {
        bucket: name.to_owned(),
        description: description.to_owned(),
        history: 1,
        max_age,
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// Twelve hex digits that make this process's message ids its own. Without randomness a restart
/// within the same microsecond could reuse ids; the clock is the fallback, which only a broken
/// machine shares with its previous life.
fn nonce() -> String {
    let mut nonce = [0u8; 6];
    if getrandom::fill(&mut nonce).is_err() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        nonce.copy_from_slice(&now.as_micros().to_le_bytes()[..6]);
    }
    hex::encode(nonce)
}

/// Moves a damaged replica (and its journal) out of the way, so that the node rebuilds it from
/// the stream; the damaged file stays beside it for whoever wants to look at it.
fn set_aside(replica: &std::path::Path, reason: &str) -> Result<(), StoreError> {
    tracing::warn!(%reason, "the local replica is damaged: setting it aside and rebuilding it from the stream");
    for suffix in ["", "-wal", "-shm"] {
        let from = std::path::PathBuf::from(format!("{}{suffix}", replica.display()));
        let to = std::path::PathBuf::from(format!("{}.damaged{suffix}", replica.display()));
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(StoreError::backend_in(
                    format_args!("cannot move the damaged replica {} aside", from.display()),
                    error,
                ));
            }
        }
    }
    Ok(())
}

async fn connect(options: &JetStreamOptions) -> Result<async_nats::Client, StoreError> {
    let mut connect = async_nats::ConnectOptions::new()
        .name(format!("wikiwire {}", options.node))
        .ping_interval(Duration::from_secs(2))
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(5)))
        .retry_on_initial_connect()
        .max_reconnects(None)
        // Reconnect quickly at first, then every two seconds: a failover is over in seconds.
        .reconnect_delay_callback(|attempts| Duration::from_millis((100 * attempts as u64).min(2000)));
    if let Some(path) = &options.credentials {
        connect = connect.credentials_file(path).await.map_err(|error| {
            StoreError::unavailable_in(
                format_args!("cannot read the NATS credentials {}", path.display()),
                error,
            )
        })?;
    }
    if let Some(path) = &options.nkey_file {
        let seed = std::fs::read_to_string(path).map_err(|error| {
            StoreError::unavailable_in(
                format_args!("cannot read the NATS nkey seed {}", path.display()),
                error,
            )
        })?;
        // The first line: `nk -gen user -pubout` writes the public key on the second.
        let seed = seed.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or_default();
        connect = connect.nkey(seed.to_owned());
    }
    if let Some(path) = &options.ca_file {
        connect = connect.add_root_certificates(path.clone()).require_tls(true);
    }
    connect.connect(options.servers.as_slice()).await.map_err(|error| {
        StoreError::unavailable_in(format_args!("cannot connect to NATS {:?}", options.servers), error)
    })
}

/// Creates the stream, or checks that the one there is ours and brings its limits in line with
/// the configuration.
async fn ensure_stream(
    context: &jetstream::Context,
    options: &JetStreamOptions,
) -> Result<stream::Stream, SetupError> {
    let wanted = options.stream_config();
    match context.get_stream(&options.stream).await {
        Ok(mut existing) => {
            let config = existing.info().await?.config.clone();
            if config.subjects != wanted.subjects || !config.allow_atomic_publish || !config.allow_direct {
                return Err(SetupError::Shape(format!(
                    "stream {} exists with subjects {:?} (atomic publish {}, direct get {}); wikiwire needs {:?} \
                     with both",
                    options.stream,
                    config.subjects,
                    config.allow_atomic_publish,
                    config.allow_direct,
                    wanted.subjects
                )));
            }
            let changed = config.max_age != wanted.max_age
                || config.max_messages != wanted.max_messages
                || config.duplicate_window != wanted.duplicate_window
                || config.num_replicas != wanted.num_replicas;
            if changed {
                tracing::info!(stream = %options.stream, "stream limits changed in the configuration: updating");
                let updated = stream::Config { first_sequence: None, ..wanted };
                context.update_stream(updated).await?;
                return Ok(context.get_stream(&options.stream).await?);
            }
            Ok(existing)
        }
        Err(error) if error.to_string().contains("not found") => {
            tracing::info!(stream = %options.stream, replicas = options.replicas, "creating the stream");
            Ok(context.create_stream(wanted).await?)
        }
        Err(error) => Err(error.into()),
    }
}

/// Why setting up the stream or a bucket failed this time.
enum SetupError {
    /// The stream there has another shape than wikiwire needs: waiting will not change it.
    Shape(String),
    /// NATS refused or did not answer (yet).
    Nats(crate::Cause),
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for SetupError {
    fn from(error: E) -> SetupError {
        SetupError::Nats(Arc::new(error))
    }
}

async fn retry_until<T, F, Fut>(deadline: Instant, what: &str, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SetupError>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            // A refusal that names the stream's own shape will not change by waiting.
            Err(SetupError::Shape(reason)) => return Err(StoreError::unavailable_msg(reason)),
            Err(SetupError::Nats(error)) if Instant::now() + delay >= deadline => {
                return Err(StoreError::Unavailable {
                    reason: format!("cannot set up {what} in NATS: {error}"),
                    cause: Some(error),
                });
            }
            Err(SetupError::Nats(error)) => {
                tracing::debug!(%error, "waiting for NATS to set up {what}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// A stream's identity: its creation time in microseconds (a stream made again has another).
pub(crate) fn created_micros(info: &stream::Info) -> i64 {
    i64::try_from(info.created.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}
