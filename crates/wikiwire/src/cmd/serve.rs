//! `wikiwire serve`: open the store, build the hub, bind every listener, run until SIGTERM or
//! SIGINT, then shut down in order: stop accepting, end streams, flush the store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wikiwire_hub::config::{ClusterConfig, PublisherConfig, Synchronous};
use wikiwire_hub::{Hub, Publishers, token};
use wikiwire_store::{JetStreamOptions, JetStreamStore, Retention, SqliteOptions, SqliteStore, Store};

use crate::config::Config;

/// How long tasks get to finish after shutdown starts.
const GRACE: Duration = Duration::from_secs(10);

/// The name of the publisher that a hub without configured publishers makes for itself.
pub const LOCAL: &str = "local";

pub async fn run(config_path: Option<&Path>) -> anyhow::Result<()> {
    let config = match config_path {
        Some(path) => crate::config::Config::load(path)?,
        None => Config::default(),
    };
    let running = start(config).await?;
    announce(&running);
    println!("Stop it with Ctrl-C.");
    run_until_signal(running).await;
    Ok(())
}

/// Prints where everything listens (harnesses read these lines up to "Stop it with").
pub fn announce(running: &Running) {
    println!("wikiwire is running:");
    println!("  HTTP  http://{}/", running.http);
    if let Some(irc) = running.irc {
        println!("  IRC   irc://{irc}/");
    }
    if let Some(ircs) = running.ircs {
        println!("  IRCS  ircs://{ircs}/");
    }
    if let Some(jid) = &running.xmpp {
        println!("  XMPP  {jid}");
    }
    if let Some(xmlrpc) = running.xmlrpc {
        println!("  XMLRPC http://{xmlrpc}/");
    }
    for rcfeed in &running.rcfeeds {
        println!("  RCFEED udp://{rcfeed}");
    }
}

/// Runs until SIGTERM or SIGINT, then stops in order.
pub async fn run_until_signal(running: Running) {
    wait_for_signal(&running.shutdown).await;
    running.stop().await;
    println!("wikiwire stopped");
}

/// A started hub: its addresses, and what `stop` needs.
pub struct Running {
    pub http: SocketAddr,
    pub irc: Option<SocketAddr>,
    pub ircs: Option<SocketAddr>,
    /// The bot's JID, when `[xmpp]` is configured.
    pub xmpp: Option<String>,
    /// The XML-RPC API for wikis, when `[xmlrpc]` is configured.
    pub xmlrpc: Option<SocketAddr>,
    /// The MediaWiki RCFeed listeners (UDP).
    pub rcfeeds: Vec<SocketAddr>,
    pub shutdown: CancellationToken,
    /// The hub itself, for in-process publishers (`wikiwire demo`).
    pub hub: Arc<Hub>,
    tracker: TaskTracker,
    store: Arc<dyn Store>,
}

impl Running {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(GRACE, self.tracker.wait()).await.is_err() {
            tracing::warn!("some tasks did not finish within {GRACE:?}");
        }
        self.store.close().await;
    }
}

pub async fn start(config: Config) -> anyhow::Result<Running> {
    for warning in config.warnings() {
        tracing::warn!("configuration: {warning}");
    }
    let publishers = publishers(&config.hub)?;
    let store = open_store(&config.hub).await?;
    let http_listener = TcpListener::bind(config.hub.http.listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.hub.http.listen))?;
    let http = http_listener.local_addr()?;
    // Without a configured public URL, the bound address is it (port 0 becomes the real port).
    let public_url = match &config.hub.http.public_url {
        Some(_) => config.hub.public_url(),
        None => format!("http://{http}"),
    };
    let channels = wikiwire_hub::channels::directory(
        &publishers,
        &config.hub.channels,
        config.irc.wiki_format,
        &public_url,
    )?;
    let shutdown = CancellationToken::new();
    let hub = Hub::new(Arc::clone(&store), publishers, channels, public_url, shutdown.clone());
    let tracker = TaskTracker::new();
    let streams = config
        .hub
        .streams
        .iter()
        .map(|stream| Ok((stream.name.clone(), wikiwire_event::Filter::parse(&stream.filter)?)))
        .collect::<Result<_, wikiwire_event::FieldError>>()
        .context("stream filter")?;
    let state = wikiwire_http::AppState {
        hub: Arc::clone(&hub),
        max_body: config.hub.http.max_body,
        heartbeat: config.hub.http.heartbeat,
        body_timeout: config.hub.http.body_timeout,
        renders: Default::default(),
        streams: Arc::new(streams),
    };
    let limits = wikiwire_http::ConnectionLimits::from(&config.hub.http);
    tracker.spawn(async move {
        if let Err(error) = wikiwire_http::serve_with(http_listener, state, limits).await {
            tracing::error!(%error, "HTTP server failed");
        }
    });
    let retention = Retention { max_age: config.hub.store.max_age, max_events: config.hub.store.max_events };
    tracker.spawn(Arc::clone(&hub).run_retention(retention));
    tracker.spawn(crate::memory::trim_periodically(shutdown.clone()));
    let (irc, ircs) =
        if config.irc.enabled { start_irc(&config, &hub, &tracker).await? } else { (None, None) };
    for relay in &config.relays {
        let relay = wikiwire_relay::Relay::new(Arc::clone(&hub), relay.clone())?;
        tracker.spawn(relay.run());
    }
    let mut rcfeeds = Vec::new();
    for feed in &config.hub.rcfeeds {
        let socket = tokio::net::UdpSocket::bind(feed.listen)
            .await
            .with_context(|| format!("cannot listen for MediaWiki's RCFeed on udp {}", feed.listen))?;
        rcfeeds.push(socket.local_addr()?);
        tracker.spawn(crate::rcfeed::run(Arc::clone(&hub), feed.clone(), socket));
    }
    // The XML-RPC API is served like the HTTP API: the same caps and timeouts ([http]).
    let bot = wikiwire_xmpp::start(Arc::clone(&hub), &config.bot, limits, &tracker).await?;
    let (xmpp, xmlrpc) = match bot {
        Some(bot) => (Some(bot.jid), bot.xmlrpc),
        None => (None, None),
    };
    Ok(Running { http, irc, ircs, xmpp, xmlrpc, rcfeeds, shutdown, hub, tracker, store })
}

/// The log: SQLite in the data directory, or with `[cluster]` the JetStream stream shared by the
/// hub nodes (read through a replica in the data directory).
pub async fn open_store(config: &wikiwire_hub::Config) -> anyhow::Result<Arc<dyn Store>> {
    let retention = Retention { max_age: config.store.max_age, max_events: config.store.max_events };
    match &config.cluster {
        None => {
            let mut options = SqliteOptions::new(config.data_dir.join("events.sqlite"));
            options.synchronous_full = config.store.synchronous == Synchronous::Full;
            let store = SqliteStore::open(options)
                .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
            Ok(Arc::new(store))
        }
        Some(cluster) => {
            let options = jetstream_options(config, cluster, retention);
            let store = JetStreamStore::open(options)
                .await
                .with_context(|| format!("cannot open the cluster store (node {:?})", cluster.node))?;
            Ok(Arc::new(store))
        }
    }
}

pub fn jetstream_options(
    config: &wikiwire_hub::Config,
    cluster: &ClusterConfig,
    retention: Retention,
) -> JetStreamOptions {
    let mut options =
        JetStreamOptions::new(&cluster.node, cluster.nats.clone(), config.data_dir.join("replica.sqlite"));
    options.replicas = cluster.replicas;
    options.credentials.clone_from(&cluster.credentials);
    options.nkey_file.clone_from(&cluster.nkey_file);
    options.ca_file.clone_from(&cluster.ca_file);
    options.retention = retention;
    options.lease_ttl = cluster.lease_ttl;
    options
}

/// The IRC server: its fan-out, the plain listener and, with a certificate, the TLS listener.
async fn start_irc(
    config: &Config,
    hub: &Arc<Hub>,
    tracker: &TaskTracker,
) -> anyhow::Result<(Option<SocketAddr>, Option<SocketAddr>)> {
    let server = wikiwire_irc::Server::new(Arc::clone(hub), &config.irc, &config.hub.rcfeeds);
    // Before anyone can JOIN: channels made from RCFeed prefixes by earlier runs.
    let after = wikiwire_irc::fanout::restore_prefix_channels(&server).await;
    let listener = TcpListener::bind(config.irc.listen)
        .await
        .with_context(|| format!("cannot listen for IRC on {}", config.irc.listen))?;
    let irc = listener.local_addr()?;
    let ircs = match (&config.irc.tls_cert, &config.irc.tls_key) {
        (Some(certificate), Some(key)) => {
            let acceptor = wikiwire_irc::tls::acceptor(certificate, key)?;
            let tls_listener = TcpListener::bind(config.irc.tls_listen)
                .await
                .with_context(|| format!("cannot listen for IRC over TLS on {}", config.irc.tls_listen))?;
            let address = tls_listener.local_addr()?;
            tracker.spawn(wikiwire_irc::listener::serve(Arc::clone(&server), tls_listener, Some(acceptor)));
            Some(address)
        }
        _ => None,
    };
    tracker.spawn(wikiwire_irc::fanout::run(Arc::clone(&server), after));
    tracker.spawn(wikiwire_irc::listener::serve(Arc::clone(&server), listener, None));
    tracker.spawn(wikiwire_irc::listener::finish(server));
    Ok((Some(irc), ircs))
}

/// The configured publishers; with none, a `local` publisher for wiki `local` whose token lives
/// in the data directory, so a new hub can be tried at once.
fn publishers(config: &wikiwire_hub::Config) -> anyhow::Result<Publishers> {
    let local;
    let configs = if config.publishers.is_empty() {
        local = [local_publisher(&config.data_dir)?];
        &local[..]
    } else {
        &config.publishers[..]
    };
    Ok(Publishers::new(configs, &config.limits)?)
}

fn local_publisher(data_dir: &Path) -> anyhow::Result<PublisherConfig> {
    let path = local_token_path(data_dir);
    let token = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().to_owned(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            wikiwire_store::create_private_dir(data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            let token = token::generate();
            write_private(&path, &format!("{token}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            token
        }
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    tracing::info!(
        token_file = %path.display(),
        "no publishers configured: publisher {LOCAL:?} may announce for wiki {LOCAL:?} with the token in the file"
    );
    Ok(PublisherConfig {
        name: LOCAL.into(),
        token: Some(token),
        token_hash: None,
        wikis: vec![LOCAL.into()],
        base_url: None,
        engine: Default::default(),
        links: Default::default(),
        allow_weak_token: false,
    })
}

pub fn local_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("local.token")
}

/// Writes a file only its owner can read: it holds a secret.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

async fn wait_for_signal(shutdown: &CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(error) => {
                tracing::error!(%error, "cannot watch SIGTERM; Ctrl-C still works");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = shutdown.cancelled() => {}
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
            _ = shutdown.cancelled() => {}
        }
    }
}
