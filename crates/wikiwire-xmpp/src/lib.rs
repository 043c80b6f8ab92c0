//! The Jabber notification bot (SPEC §5, seed 2).
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | `[xmpp]`, `[xmlrpc]`, `[wiki]`: the bot's part of the configuration and its check |
//! | [`xmlrpc`] | the XML-RPC API for wikis (MoinMoin's `notification_bot_uri`) |
//! | [`state`] | the outbox, subscriptions, cursors, known JIDs, session records: their encoding over the store's `Outbox` |
//! | [`session`] | the XMPP stream (tokio-xmpp), reconnection, stream management, IQ answers |
//! | [`connector`] | TCP + STARTTLS with certificate verification and an optional CA file |
//! | [`bot`] | incoming stanzas (presence, features, policy, IQs, commands) and the outbox dispatcher |
//! | [`feeds`] | hub subscriptions and rooms: events from the log into the outbox |
//! | [`commands`] | the command language users type |
//! | [`wiki`] | calls to the wiki (Wiki XML-RPC v2: `moin` and `wikirpc2` dialects) |
//! | [`notification`] | seed 2's notification struct, from XML-RPC or from a hub event |
//! | [`render`] | stanzas: forms, OOB, plain text, chat replies, the search form |
//! | [`i18n`] | every text the bot says, in English and German |

pub mod bot;
pub mod commands;
pub mod config;
pub mod connector;
pub mod feeds;
pub mod i18n;
pub mod notification;
pub mod render;
pub mod session;
pub mod state;
pub mod wiki;
pub mod xmlrpc;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_xmpp::jid::Jid;
use wikiwire_hub::Hub;
use wikiwire_store::Lease;

pub use config::Config;

/// How long a run that stops cleanly (SIGTERM) waits for the server to take what it has out, and
/// for those items to leave the outbox, before it stops: the next holder would send them again.
const HAND_OVER: std::time::Duration = std::time::Duration::from_secs(3);

/// Everything one run of the bot needs; a run lasts as long as this node holds the bot's lease.
struct Run {
    hub: Arc<Hub>,
    xmpp: config::XmppConfig,
    state: state::State,
    wiki: Option<Arc<wiki::Wiki>>,
    wake: Arc<Notify>,
    /// The account and the way to its server, made (CA file read) once at start.
    jid: Jid,
    connector: connector::Connector,
}

impl Run {
    /// Takes the bot's lease (at once on one node), runs the bot until the lease is lost or the
    /// hub stops, and waits for the lease again.
    async fn forever(self) {
        let shutdown = self.hub.shutdown().clone();
        let leases = self.hub.store().leases();
        loop {
            let Some(lease) = leases.acquire("xmpp", &shutdown).await else { return };
            let lease = Arc::new(lease);
            tracing::info!("this node runs the Jabber bot");
            // Not a child of `shutdown`: at shutdown the run first hands over, then stops.
            let stop = CancellationToken::new();
            let tasks = TaskTracker::new();
            let bot = match self.once(&lease, &stop, &tasks) {
                Ok(bot) => bot,
                Err(error) => {
                    tracing::error!(%error, "the Jabber bot cannot start");
                    return;
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => bot.hand_over(HAND_OVER).await,
                _ = lease.lost() => tracing::warn!("the bot's lease was lost: this node stopped the Jabber bot"),
            }
            stop.cancel();
            tasks.close();
            if tokio::time::timeout(std::time::Duration::from_secs(10), tasks.wait()).await.is_err() {
                tracing::warn!("the Jabber bot's tasks did not stop in time");
            }
            self.hub.metrics().xmpp_connected.set(0);
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Starts the session, dispatcher, command workers and followers of one run.
    fn once(
        &self,
        lease: &Arc<Lease>,
        stop: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Arc<bot::Bot>, String> {
        let xmpp = &self.xmpp;
        let (session, incoming, session_task) = session::start(
            self.connector.clone(),
            self.jid.clone(),
            xmpp.password.clone(),
            xmpp.keepalive,
            self.state.clone(),
            stop.clone(),
        );
        let (bot, commands, removals) = bot::Bot::new(
            Arc::clone(&self.hub),
            Arc::clone(lease),
            stop.clone(),
            xmpp.clone(),
            self.state.clone(),
            session,
            self.wiki.clone(),
            Arc::clone(&self.wake),
        )?;
        tasks.spawn(async move {
            let _ = session_task.await;
        });
        tasks.spawn(Arc::clone(&bot).run_incoming(incoming));
        tasks.spawn(Arc::clone(&bot).run_dispatch());
        tasks.spawn(Arc::clone(&bot).run_removals(removals));
        let commands = Arc::new(tokio::sync::Mutex::new(commands));
        for _ in 0..bot::COMMAND_WORKERS {
            tasks.spawn(Arc::clone(&bot).run_commands(Arc::clone(&commands)));
        }
        tasks.spawn(feeds::subscriptions(Arc::clone(&bot)));
        for room in xmpp.rooms.clone() {
            tasks.spawn(feeds::room(Arc::clone(&bot), room));
        }
        Ok(bot)
    }
}

/// Why the bot could not start. Each keeps what failed as its source; shown with its chain (as
/// `wikiwire serve` does) it reads `the bot's state: <why>`, `xmpp.jid: <why>` and so on.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the bot's state")]
    State(#[source] wikiwire_store::StoreError),
    #[error(transparent)]
    Wake(#[from] state::StateError),
    #[error("xmpp.jid")]
    Jid(#[source] tokio_xmpp::jid::Error),
    #[error(transparent)]
    Connector(#[from] connector::ConnectorError),
    #[error(transparent)]
    Wiki(#[from] wiki::ClientError),
    #[error("cannot listen for XML-RPC on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Address(std::io::Error),
}

/// What `start` brought up.
pub struct Started {
    /// The XML-RPC listener, when `[xmlrpc]` is configured.
    pub xmlrpc: Option<SocketAddr>,
    pub jid: String,
}

/// Starts the bot when `[xmpp]` is configured: with `[xmlrpc]`, the API for wikis (on every
/// node of a cluster); and, while this node holds the bot's lease, its session, dispatcher,
/// command workers and followers. Everything ends with the hub's shutdown. The XML-RPC listener
/// has the HTTP API's `limits` ([http]).
pub async fn start(
    hub: Arc<Hub>,
    config: &Config,
    limits: wikiwire_http::ConnectionLimits,
    tracker: &TaskTracker,
) -> Result<Option<Started>, StartError> {
    let Some(xmpp) = config.xmpp.clone() else {
        return Ok(None);
    };
    // In a cluster the outbox, positions and subscriptions are shared in NATS: any node takes
    // the wikis' calls, the node holding the bot's lease delivers.
    let outbox = hub.store().outbox().await.map_err(StartError::State)?;
    let state = state::State::new(outbox);
    let jid = Jid::new(&xmpp.jid).map_err(StartError::Jid)?;
    let server = xmpp.server.clone().unwrap_or_else(|| jid.domain().to_string());
    // Made once here, so that a bad CA file stops the start instead of every run.
    let connector = connector::Connector::new(&server, xmpp.port, xmpp.ca_file.as_deref())?;
    let wiki = match &config.wiki {
        Some(wiki) => Some(Arc::new(wiki::Wiki::new(wiki, Arc::clone(hub.metrics()))?)),
        None => None,
    };
    let wake = Arc::new(Notify::new());
    state.notify_on_items(Arc::clone(&wake)).await?;
    let xmlrpc = match &config.xmlrpc {
        Some(api) => {
            let listener = TcpListener::bind(api.listen)
                .await
                .map_err(|source| StartError::Listen { address: api.listen, source })?;
            let address = listener.local_addr().map_err(StartError::Address)?;
            let router = xmlrpc::router(
                xmlrpc::Api::new(
                    api.secret.clone(),
                    state.clone(),
                    Arc::clone(&wake),
                    Arc::clone(hub.metrics()),
                    Arc::clone(hub.logins()),
                    {
                        let store = Arc::clone(hub.store());
                        Arc::new(move || {
                            store.fault().map(|fault| {
                                format!(
                                    "the hub's event store is damaged ({fault}); its operator must repair it"
                                )
                            })
                        })
                    },
                ),
                api.max_body,
            );
            let shutdown = hub.shutdown().clone();
            let metrics = Arc::clone(hub.metrics());
            tracker.spawn(async move {
                // The same listener as the HTTP API: the same caps and timeouts ([http]).
                let serve = wikiwire_http::serve_router(listener, router, shutdown, metrics, limits);
                if let Err(error) = serve.await {
                    tracing::error!(%error, "the XML-RPC server failed");
                }
            });
            Some(address)
        }
        None => None,
    };
    let run = Run { hub: Arc::clone(&hub), xmpp: xmpp.clone(), state, wiki, wake, jid, connector };
    tracker.spawn(run.forever());
    Ok(Some(Started { xmlrpc, jid: xmpp.jid }))
}
