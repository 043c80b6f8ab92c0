//! What the rest of the bot sees of the session: the [`Xmpp`] handle, the [`Ticket`] that
//! follows a stanza, and the reports that come out of the session.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;

/// How long an IQ may wait for its answer.
const IQ_TIMEOUT: Duration = Duration::from_secs(30);

/// What the session reports.
#[derive(Debug)]
pub enum Incoming {
    /// A new stream to the bot: presence, rooms and everything not acknowledged must be sent
    /// again. A stream taken over from an earlier holder counts as new, with what the server
    /// took of it already done.
    Online {
        jid: Jid,
        stream_management: bool,
    },
    Suspended,
    /// The stream this run had goes on.
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

/// Where a stanza sent with [`Xmpp::send`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Not written to a stream yet.
    Queued,
    /// Written to a stream without stream management (whether it arrived, a ping tells).
    Written,
    /// Acknowledged by the server (stream management).
    Taken,
    /// Not taken: the stream ended without resumption, or the session did.
    Lost,
}

/// Follows one stanza.
pub struct Ticket(watch::Receiver<Fate>);

impl Ticket {
    pub fn fate(&self) -> Fate {
        *self.0.borrow()
    }

    /// Waits until the fate is one of `until` (a session that ended means `Lost`).
    pub async fn wait(&mut self, until: &[Fate]) -> Fate {
        match self.0.wait_for(|fate| until.contains(fate)).await {
            Ok(fate) => *fate,
            Err(_) => Fate::Lost,
        }
    }
}

pub(super) enum Request {
    /// Stanzas carrying outbox items, written together (one record for all of them).
    Items(Vec<(Stanza, i64, watch::Sender<Fate>)>),
    Send {
        stanza: Box<Stanza>,
        /// The outbox item the stanza carries.
        item: Option<i64>,
        fate: Option<watch::Sender<Fate>>,
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
    pub(super) requests: mpsc::Sender<Request>,
}

impl Xmpp {
    /// Sends stanzas carrying outbox items, in order; each ticket tells when the server has
    /// its stanza.
    pub async fn send_items(&self, items: Vec<(Stanza, i64)>) -> Option<Vec<Ticket>> {
        let mut tickets = Vec::with_capacity(items.len());
        let mut request = Vec::with_capacity(items.len());
        for (stanza, item) in items {
            let (fate, ticket) = watch::channel(Fate::Queued);
            request.push((stanza, item, fate));
            tickets.push(Ticket(ticket));
        }
        self.requests.send(Request::Items(request)).await.ok()?;
        Some(tickets)
    }

    /// Sends a stanza without tracking it (answers, presence).
    pub async fn post(&self, stanza: impl Into<Stanza>) {
        let request = Request::Send { stanza: Box::new(stanza.into()), item: None, fate: None };
        let _ = self.requests.send(request).await;
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
