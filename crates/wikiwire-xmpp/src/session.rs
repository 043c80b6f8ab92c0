//! The XMPP session: one task owns tokio-xmpp's `StanzaStream` (reconnection with backoff,
//! XEP-0198 stream management) and is the only code that touches it. Everyone else talks to it
//! through an `Xmpp` handle: send a stanza (and get its `StanzaToken`, which reaches `Acked`
//! when the server has taken it), or send an IQ and await its answer. Incoming stanzas and
//! stream changes come out on a channel.
//!
//! Why an actor: tokio-xmpp's split halves share one mutex, and its receiving half does not wake
//! up when a sender releases it; one owner avoids both.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::stanzastream::{Event, StanzaStream, StanzaToken, StreamEvent};
use tokio_xmpp::xmlstream::Timeouts;

use crate::connector::Connector;

/// How long an IQ may wait for its answer.
const IQ_TIMEOUT: Duration = Duration::from_secs(30);
/// Incoming stanzas waiting for the bot; past it, more are dropped (a flood), never the stream.
const INCOMING: usize = 1024;

/// What the session reports.
#[derive(Debug)]
pub enum Incoming {
    /// A new stream (first, or after a reconnection that could not resume): presence, rooms and
    /// everything not acknowledged must be sent again.
    Online {
        jid: Jid,
        stream_management: bool,
    },
    Suspended,
    Resumed,
    Stanza(Box<Stanza>),
}

#[derive(Debug, thiserror::Error)]
pub enum IqError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the session ended")]
    Closed,
}

enum Request {
    Send {
        stanza: Box<Stanza>,
        reply: Option<oneshot::Sender<StanzaToken>>,
    },
    Iq {
        to: Option<Jid>,
        set: bool,
        payload: Element,
        reply: oneshot::Sender<Result<Option<Element>, IqError>>,
    },
}

/// A handle on the session, cheap to clone.
#[derive(Clone)]
pub struct Xmpp {
    requests: mpsc::Sender<Request>,
}

impl Xmpp {
    /// Sends a stanza; the token tells when the server has acknowledged it.
    pub async fn send(&self, stanza: impl Into<Stanza>) -> Option<StanzaToken> {
        let (reply, token) = oneshot::channel();
        self.requests
            .send(Request::Send { stanza: Box::new(stanza.into()), reply: Some(reply) })
            .await
            .ok()?;
        token.await.ok()
    }

    /// Sends a stanza without tracking it (answers, presence).
    pub async fn post(&self, stanza: impl Into<Stanza>) {
        let _ = self.requests.send(Request::Send { stanza: Box::new(stanza.into()), reply: None }).await;
    }

    pub async fn get(
        &self,
        to: Option<Jid>,
        payload: impl Into<Element>,
    ) -> Result<Option<Element>, IqError> {
        self.iq(to, false, payload.into()).await
    }

    pub async fn set(
        &self,
        to: Option<Jid>,
        payload: impl Into<Element>,
    ) -> Result<Option<Element>, IqError> {
        self.iq(to, true, payload.into()).await
    }

    async fn iq(&self, to: Option<Jid>, set: bool, payload: Element) -> Result<Option<Element>, IqError> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Iq { to, set, payload, reply }).await.map_err(|_| IqError::Closed)?;
        match tokio::time::timeout(IQ_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(IqError::Closed),
            Err(_) => Err(IqError::Timeout(IQ_TIMEOUT)),
        }
    }
}

/// How long a stream may take to close at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts the session task.
pub fn start(
    connector: Connector,
    jid: Jid,
    password: String,
    keepalive: Duration,
    shutdown: CancellationToken,
) -> (Xmpp, mpsc::Receiver<Incoming>, tokio::task::JoinHandle<()>) {
    // A silent connection is probed after `keepalive` and given up after twice that.
    let timeouts = Timeouts { read_timeout: keepalive, response_timeout: keepalive };
    let stream = StanzaStream::new_c2s(connector, jid, password, timeouts, 64);
    let (requests, requests_rx) = mpsc::channel(256);
    let (incoming_tx, incoming) = mpsc::channel(INCOMING);
    let task = tokio::spawn(run(stream, requests_rx, incoming_tx, shutdown));
    (Xmpp { requests }, incoming, task)
}

async fn run(
    mut stream: StanzaStream,
    mut requests: mpsc::Receiver<Request>,
    incoming: mpsc::Sender<Incoming>,
    shutdown: CancellationToken,
) {
    let mut waiting: HashMap<String, oneshot::Sender<Result<Option<Element>, IqError>>> = HashMap::new();
    let mut next_iq = 0u64;
    // Whether a session is up: only then is there a stream to close politely.
    let mut online = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = stream.next() => match event {
                None => break,
                Some(Event::Stream(StreamEvent::Reset { bound_jid, features })) => {
                    for (_, reply) in waiting.drain() {
                        let _ = reply.send(Err(IqError::Closed));
                    }
                    online = true;
                    let stream_management = features.stream_management.is_some();
                    tracing::info!(jid = %bound_jid, stream_management, "XMPP session online");
                    let _ = incoming.send(Incoming::Online { jid: bound_jid, stream_management }).await;
                }
                Some(Event::Stream(StreamEvent::Suspended)) => {
                    online = false;
                    tracing::info!("XMPP session suspended; reconnecting");
                    let _ = incoming.send(Incoming::Suspended).await;
                }
                Some(Event::Stream(StreamEvent::Resumed)) => {
                    online = true;
                    tracing::info!("XMPP session resumed");
                    let _ = incoming.send(Incoming::Resumed).await;
                }
                Some(Event::Stanza(Stanza::Iq(iq))) if answers(&iq, &waiting) => {
                    let (id, result) = match iq {
                        Iq::Result { id, payload, .. } => (id, Ok(payload)),
                        Iq::Error { id, error, .. } => (id, Err(IqError::Refused(format!("{:?}", error.defined_condition)))),
                        Iq::Get { id, .. } | Iq::Set { id, .. } => (id, Err(IqError::Closed)),
                    };
                    if let Some(reply) = waiting.remove(&id) {
                        let _ = reply.send(result);
                    }
                }
                Some(Event::Stanza(stanza)) => {
                    // A flood of incoming stanzas is dropped here rather than stalling the stream.
                    if incoming.try_send(Incoming::Stanza(Box::new(stanza))).is_err() {
                        tracing::warn!("incoming XMPP stanzas dropped: the bot is behind");
                    }
                }
            },
            request = requests.recv() => match request {
                None => break,
                Some(Request::Send { stanza, reply }) => {
                    // While the server is unreachable the stream's queue fills: shutdown must not
                    // wait behind it.
                    let token = tokio::select! {
                        token = stream.send(stanza) => token,
                        _ = shutdown.cancelled() => break,
                    };
                    if let Some(reply) = reply {
                        let _ = reply.send(token);
                    }
                }
                Some(Request::Iq { to, set, payload, reply }) => {
                    let id = format!("wwiq{next_iq}");
                    next_iq += 1;
                    let iq = if set {
                        Iq::Set { from: None, to, id: id.clone(), payload }
                    } else {
                        Iq::Get { from: None, to, id: id.clone(), payload }
                    };
                    waiting.insert(id, reply);
                    tokio::select! {
                        _ = stream.send(Box::new(Stanza::Iq(iq))) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            },
        }
    }
    // A live server gets its `</stream>`, within a bound; a stream without a session (its server
    // down, reconnecting with backoff) would hold the hub's shutdown for its whole grace.
    if !online {
        return;
    }
    if tokio::time::timeout(CLOSE_TIMEOUT, stream.close()).await.is_err() {
        tracing::debug!("the XMPP stream did not close in time (its server is unreachable)");
    }
}

/// Whether an IQ is the answer to one we sent.
fn answers(iq: &Iq, waiting: &HashMap<String, oneshot::Sender<Result<Option<Element>, IqError>>>) -> bool {
    matches!(iq, Iq::Result { .. } | Iq::Error { .. }) && waiting.contains_key(iq.id())
}
