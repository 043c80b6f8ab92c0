//! The Jabber notification bot (SPEC §5, seed 2).
//!
//! | module | owns |
//! |---|---|
//! | [`xmlrpc`] | the XML-RPC API for wikis (MoinMoin's `notification_bot_uri`) |
//! | [`state`] | `xmpp.sqlite`: the outbox, subscriptions, cursors, known JIDs |
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
use tokio_util::task::TaskTracker;
use tokio_xmpp::jid::Jid;
use wikiwire_hub::{Config, Hub};

/// What `start` brought up.
pub struct Started {
    /// The XML-RPC listener, when `[xmlrpc]` is configured.
    pub xmlrpc: Option<SocketAddr>,
    pub jid: String,
}

/// Starts the bot when `[xmpp]` is configured: its session, dispatcher, command workers,
/// followers and, with `[xmlrpc]`, the API for wikis. Everything ends with the hub's shutdown.
pub async fn start(hub: Arc<Hub>, config: &Config, tracker: &TaskTracker) -> Result<Option<Started>, String> {
    let Some(xmpp) = config.xmpp.clone() else {
        return Ok(None);
    };
    let state =
        state::State::open(&config.data_dir.join("xmpp.sqlite")).map_err(|error| error.to_string())?;
    let jid = Jid::new(&xmpp.jid).map_err(|error| format!("xmpp.jid: {error}"))?;
    let server = xmpp.server.clone().unwrap_or_else(|| jid.domain().to_string());
    let connector = connector::Connector::new(&server, xmpp.port, xmpp.ca_file.as_deref())?;
    let wiki = match &config.wiki {
        Some(wiki) => Some(Arc::new(wiki::Wiki::new(wiki, Arc::clone(hub.metrics()))?)),
        None => None,
    };
    let wake = Arc::new(Notify::new());
    let xmlrpc = match &config.xmlrpc {
        Some(api) => {
            let listener = TcpListener::bind(api.listen)
                .await
                .map_err(|error| format!("cannot listen for XML-RPC on {}: {error}", api.listen))?;
            let address = listener.local_addr().map_err(|error| error.to_string())?;
            let router = xmlrpc::router(
                xmlrpc::Api::new(
                    api.secret.clone(),
                    state.clone(),
                    Arc::clone(&wake),
                    Arc::clone(hub.metrics()),
                    Arc::clone(hub.logins()),
                ),
                api.max_body,
            );
            let shutdown = hub.shutdown().clone();
            let metrics = Arc::clone(hub.metrics());
            let limits = wikiwire_http::ConnectionLimits::from(&config.http);
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
    let (session, incoming, session_task) =
        session::start(connector, jid, xmpp.password.clone(), xmpp.keepalive, hub.shutdown().clone());
    let rooms = xmpp.rooms.clone();
    let (bot, commands) = bot::Bot::new(Arc::clone(&hub), xmpp.clone(), state, session, wiki, wake)?;
    tracker.spawn(async move {
        let _ = session_task.await;
    });
    tracker.spawn(Arc::clone(&bot).run_incoming(incoming));
    tracker.spawn(Arc::clone(&bot).run_dispatch());
    let commands = Arc::new(tokio::sync::Mutex::new(commands));
    for _ in 0..bot::COMMAND_WORKERS {
        tracker.spawn(Arc::clone(&bot).run_commands(Arc::clone(&commands)));
    }
    tracker.spawn(feeds::subscriptions(Arc::clone(&bot)));
    for room in rooms {
        tracker.spawn(feeds::room(Arc::clone(&bot), room));
    }
    Ok(Some(Started { xmlrpc, jid: xmpp.jid }))
}
