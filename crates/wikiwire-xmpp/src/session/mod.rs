//! The XMPP session: one task owns the stream and is the only code that touches it. Everyone
//! else talks to it through an [`Xmpp`] handle: send a stanza (and get a [`Ticket`] that tells
//! when the server has taken it), or send an IQ and await its answer. Incoming stanzas and
//! stream changes come out on a channel.
//!
//! The task speaks stream management (XEP-0198) itself, rather than through tokio-xmpp's
//! `StanzaStream`, because its state must outlive the process: before a stanza carrying an
//! outbox item leaves, the task writes the stream's [`record`] into the bot's state, fenced by
//! its revision (a holder that lost the bot cannot write it). Whoever runs the bot next, another
//! node or this one after a crash, resumes that stream, and the server's count says which of the
//! dead holder's items it took: those are done, the rest are sent again. Nothing is delivered
//! twice and nothing lost while the server still keeps the stream (Prosody: 10 minutes by
//! default), and, where its `<failed/>` still counts what it took, after.
//!
//! Without stream management nothing can be counted: a stanza's ticket says when it was written,
//! and the bot confirms what it sent with a ping.

mod handle;
mod negotiate;
pub mod record;

use std::collections::HashMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::{FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::sm;
use tokio_xmpp::xmlstream::{FallibleStreamElement, ReadError, Timeouts, XmppStreamElement};

use crate::connector::Connector;
use crate::state::{State, StateError};
use handle::Request;
pub use handle::{Fate, Incoming, IqError, Ticket, Xmpp};
use negotiate::{Resumption, Stream};
use record::{Record, Unacked};

/// Incoming stanzas waiting for the bot; past it, more are dropped (a flood), never the stream.
const INCOMING: usize = 1024;
/// Requests written to the stream at a time (with one record written before them).
const WRITE_BATCH: usize = 64;
/// How long a stream may take to close at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Waits between connection attempts.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(15);
/// How long writing the record may take before the stream is given up (and resumed).
const RECORD_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the session task. `state` holds the stream's record between holders.
pub fn start(
    connector: Connector,
    jid: Jid,
    password: String,
    keepalive: Duration,
    state: State,
    shutdown: CancellationToken,
) -> (Xmpp, mpsc::Receiver<Incoming>, tokio::task::JoinHandle<()>) {
    // A silent connection is probed after `keepalive` and given up after twice that.
    let timeouts = Timeouts { read_timeout: keepalive, response_timeout: keepalive };
    let (requests, requests_rx) = mpsc::channel(256);
    let (incoming_tx, incoming) = mpsc::channel(INCOMING);
    let session = Session {
        connector,
        jid,
        password,
        timeouts,
        state,
        requests: requests_rx,
        incoming: incoming_tx,
        shutdown,
        waiting: HashMap::new(),
        next_id: 0,
        record: None,
        revision: 0,
        attempted: None,
        managed: None,
    };
    (Xmpp { requests }, incoming, tokio::spawn(session.run()))
}

/// A stanza on a managed stream, kept until the server acknowledges it.
struct Out {
    stanza: Stanza,
    item: Option<i64>,
    fate: Option<watch::Sender<Fate>>,
}

/// Stream management on the current stream (or on the broken one, until it resumes or not).
struct Managed {
    previd: Option<String>,
    jid: FullJid,
    inbound: u32,
    unacked: Unacked<Out>,
}

/// How serving a stream ended.
enum Ended {
    /// The hub stops (or the handles are gone).
    Shutdown,
    /// The connection broke: connect again.
    Broken(String),
    /// Another holder wrote the record: this one must send nothing more.
    Deposed,
}

struct Session {
    connector: Connector,
    jid: Jid,
    password: String,
    timeouts: Timeouts,
    state: State,
    requests: mpsc::Receiver<Request>,
    incoming: mpsc::Sender<Incoming>,
    shutdown: CancellationToken,
    waiting: HashMap<String, oneshot::Sender<Result<Option<Element>, IqError>>>,
    next_id: u64,
    /// The record as last written (or read, from an earlier holder); `None` until read.
    record: Option<Record>,
    revision: u64,
    /// A record whose write failed without an answer: it may have been stored.
    attempted: Option<Record>,
    managed: Option<Managed>,
}

impl Session {
    async fn run(mut self) {
        let mut pause = RETRY_FIRST;
        let shutdown = self.shutdown.clone();
        loop {
            let connected = tokio::select! {
                _ = shutdown.cancelled() => return,
                connected = self.connect() => connected,
            };
            let ended = match connected {
                Ok(stream) => {
                    pause = RETRY_FIRST;
                    self.serve(stream).await
                }
                Err(ended) => ended,
            };
            match ended {
                Ended::Shutdown => return,
                Ended::Deposed => {
                    tracing::warn!(
                        "another node runs the Jabber bot now: this session stops, sending nothing more"
                    );
                    self.lose_all();
                    return;
                }
                Ended::Broken(error) => {
                    tracing::info!(%error, retry_in = ?pause, "XMPP session down; connecting again");
                    let _ = self.incoming.send(Incoming::Suspended).await;
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// Reads the record an earlier holder left, once.
    async fn inherited(&mut self) -> Result<Record, Ended> {
        if let Some(record) = &self.record {
            return Ok(record.clone());
        }
        let read = tokio::time::timeout(RECORD_TIMEOUT, self.state.record(record::KEY)).await;
        let (record, revision) = match read {
            Ok(Ok(Some((bytes, revision)))) => match Record::from_bytes(&bytes) {
                Ok(record) => (record, revision),
                Err(error) => {
                    tracing::error!(%error, "the XMPP stream's record does not read; starting a new stream");
                    (Record::default(), revision)
                }
            },
            Ok(Ok(None)) => (Record::default(), 0),
            Ok(Err(error)) => return Err(Ended::Broken(format!("cannot read the stream's record: {error}"))),
            Err(_) => return Err(Ended::Broken("the stream's record was not read in time".into())),
        };
        self.revision = revision;
        self.record = Some(record.clone());
        Ok(record)
    }

    /// Writes the record of the current stream, fenced by the revision last seen.
    async fn save(&mut self) -> Result<(), Ended> {
        let record = match &self.managed {
            Some(managed) => Record {
                previd: managed.previd.clone(),
                jid: managed.jid.to_string(),
                inbound: managed.inbound,
                items: managed.unacked.iter().filter_map(|(number, out)| Some((number, out.item?))).collect(),
            },
            None => Record::default(),
        };
        self.write_record(record).await
    }

    async fn write_record(&mut self, record: Record) -> Result<(), Ended> {
        if let Some(attempted) = self.attempted.take() {
            // An earlier write may have landed: its revision is this holder's if the stored
            // record is the one it wrote.
            let stored =
                self.state.record(record::KEY).await.map_err(|error| Ended::Broken(error.to_string()))?;
            match stored {
                Some((bytes, revision)) if Record::from_bytes(&bytes).ok().as_ref() == Some(&attempted) => {
                    self.revision = revision;
                }
                Some((_, revision)) if revision != self.revision => return Err(Ended::Deposed),
                _ => {}
            }
        }
        let write = self.state.put_record(record::KEY, record.to_bytes(), self.revision);
        match tokio::time::timeout(RECORD_TIMEOUT, write).await {
            Ok(Ok(revision)) => {
                self.revision = revision;
                self.record = Some(record);
                Ok(())
            }
            Ok(Err(StateError::Conflict(_))) => Err(Ended::Deposed),
            Ok(Err(error)) => {
                self.attempted = Some(record);
                Err(Ended::Broken(format!("cannot write the stream's record: {error}")))
            }
            Err(_) => {
                self.attempted = Some(record);
                Err(Ended::Broken("the stream's record was not written in time".into()))
            }
        }
    }

    /// Connects, resumes the last stream where there is one (this run's, or an earlier
    /// holder's), else starts a new one.
    async fn connect(&mut self) -> Result<Stream, Ended> {
        let inherited = self.inherited().await?;
        let broken = |error: negotiate::NegotiationError| Ended::Broken(error.to_string());
        let login = negotiate::login(&self.connector, &self.jid, &self.password, self.timeouts);
        let mut auth = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(Ended::Shutdown),
            auth = login => auth.map_err(broken)?,
        };
        let target = match &self.managed {
            Some(managed) => managed.previd.clone().map(|previd| (previd, managed.inbound)),
            None => inherited.previd.clone().map(|previd| (previd, inherited.inbound)),
        };
        if let (true, Some((previd, h))) = (auth.stream_management, target) {
            // The fence: from this write on, an earlier holder can write nothing, so it sends no
            // item on the stream about to move here.
            self.write_record(self.record.clone().unwrap_or_default()).await?;
            match auth.resume(&previd, h).await.map_err(broken)? {
                Resumption::Resumed { h } => {
                    self.resumed(previd, h, &inherited).await?;
                    let early = std::mem::take(&mut auth.early);
                    let mut stream = auth.stream;
                    self.resend(&mut stream).await?;
                    self.deliver_all(early).await;
                    return Ok(stream);
                }
                Resumption::Failed { h } => self.failed(h, &inherited).await,
            }
        }
        let jid = auth.bind(&self.jid).await.map_err(broken)?;
        self.drain_waiting();
        self.managed = None;
        if auth.stream_management
            && let Some(previd) = auth.enable().await.map_err(broken)?
        {
            self.managed = Some(Managed { previd, jid: jid.clone(), inbound: 0, unacked: Unacked::new(0) });
        }
        self.save().await?;
        let stream_management = self.managed.is_some();
        tracing::info!(%jid, stream_management, "XMPP session online");
        let early = std::mem::take(&mut auth.early);
        let _ = self.incoming.send(Incoming::Online { jid: Jid::from(jid), stream_management }).await;
        self.deliver_all(early).await;
        Ok(auth.stream)
    }

    /// The server resumed the stream, having taken `h` of its stanzas.
    async fn resumed(&mut self, previd: String, h: u32, inherited: &Record) -> Result<(), Ended> {
        if let Some(managed) = &mut self.managed {
            let taken = managed.unacked.ack(h).unwrap_or_else(|error| {
                tracing::warn!(%error, "the resumed stream's count is past what was sent");
                managed.unacked.drain()
            });
            settle(taken, Fate::Taken);
            tracing::info!(h, again = managed.unacked.len(), "XMPP stream resumed");
            let _ = self.incoming.send(Incoming::Resumed).await;
            return Ok(());
        }
        // An earlier holder's stream: what the server took of it is done, the rest is sent again.
        let jid = inherited.jid.parse::<FullJid>().map_err(|error| Ended::Broken(error.to_string()))?;
        let (taken, again) = inherited.split(h);
        self.managed = Some(Managed {
            previd: Some(previd),
            jid: jid.clone(),
            inbound: inherited.inbound,
            unacked: Unacked::new(h),
        });
        self.save().await?;
        tracing::info!(%jid, h, taken = taken.len(), again = again.len(), "took over the XMPP stream of the bot's last run");
        self.finish(taken).await;
        self.drain_waiting();
        let _ = self.incoming.send(Incoming::Online { jid: Jid::from(jid), stream_management: true }).await;
        Ok(())
    }

    /// The server would not resume; `h`, when given, counts what it took of the old stream.
    /// The record is written anew once the new stream is up, before anything is sent on it; till
    /// then it names the old stream, whose count a next holder would be given just the same.
    async fn failed(&mut self, h: Option<u32>, inherited: &Record) {
        match self.managed.take() {
            Some(mut managed) => {
                if let Some(h) = h
                    && let Ok(taken) = managed.unacked.ack(h)
                {
                    settle(taken, Fate::Taken);
                }
                settle(managed.unacked.drain(), Fate::Lost);
            }
            None => self.finish(h.map(|h| inherited.split(h).0).unwrap_or_default()).await,
        }
    }

    /// Removes from the outbox the items an earlier holder's stream delivered.
    async fn finish(&self, taken: Vec<i64>) {
        if taken.is_empty() {
            return;
        }
        if let Err(error) = self.state.done_many(taken.clone()).await {
            tracing::warn!(%error, items = taken.len(), "delivered items left in the outbox: they will be sent again");
        }
    }

    /// Writes again what the resumed stream's server has not taken.
    async fn resend(&mut self, stream: &mut Stream) -> Result<(), Ended> {
        let Some(managed) = &self.managed else { return Ok(()) };
        if managed.unacked.is_empty() {
            return Ok(());
        }
        self.write_stanzas(stream, managed.unacked.iter().map(|(_, out)| &out.stanza).collect(), true).await
    }

    /// Writes stanzas (from where they are kept: no copy), then asks for an acknowledgement.
    async fn write_stanzas(
        &self,
        stream: &mut Stream,
        stanzas: Vec<&Stanza>,
        request_ack: bool,
    ) -> Result<(), Ended> {
        let write = async {
            for stanza in stanzas {
                stream.feed(stanza).await?;
            }
            if request_ack {
                stream.feed(&XmppStreamElement::SM(sm::Nonza::Req(sm::R))).await?;
            }
            SinkExt::<&XmppStreamElement>::flush(stream).await
        };
        self.bounded(write).await
    }

    /// A write the server must take within the response timeout.
    async fn bounded(&self, write: impl Future<Output = std::io::Result<()>>) -> Result<(), Ended> {
        match tokio::time::timeout(self.timeouts.response_timeout.max(Duration::from_secs(5)), write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Ended::Broken(error.to_string())),
            Err(_) => Err(Ended::Broken("the server does not read what is sent".into())),
        }
    }

    async fn write_elements(
        &self,
        stream: &mut Stream,
        mut elements: Vec<XmppStreamElement>,
        request_ack: bool,
    ) -> Result<(), Ended> {
        if request_ack {
            elements.push(XmppStreamElement::SM(sm::Nonza::Req(sm::R)));
        }
        let write = async {
            for element in &elements {
                stream.feed(element).await?;
            }
            SinkExt::<&XmppStreamElement>::flush(stream).await
        };
        self.bounded(write).await
    }

    async fn serve(&mut self, mut stream: Stream) -> Ended {
        let ended = loop {
            let step = tokio::select! {
                _ = self.shutdown.cancelled() => break Ended::Shutdown,
                element = stream.next() => self.read(&mut stream, element).await,
                request = self.requests.recv() => match request {
                    None => break Ended::Shutdown,
                    Some(first) => {
                        let mut batch = vec![first];
                        while batch.len() < WRITE_BATCH && let Ok(request) = self.requests.try_recv() {
                            batch.push(request);
                        }
                        self.write(&mut stream, batch).await
                    }
                },
            };
            if let Err(ended) = step {
                break ended;
            }
        };
        match ended {
            Ended::Shutdown => {
                // A live server gets its `</stream>`, within a bound.
                if tokio::time::timeout(CLOSE_TIMEOUT, stream.shutdown()).await.is_err() {
                    tracing::debug!("the XMPP stream did not close in time");
                }
            }
            // Dropped without `</stream>`: a stream that is another holder's now stays open to
            // resumption on the server.
            Ended::Deposed | Ended::Broken(_) => {}
        }
        ended
    }

    async fn read(
        &mut self,
        stream: &mut Stream,
        element: Option<Result<FallibleStreamElement, ReadError>>,
    ) -> Result<(), Ended> {
        let element = match element {
            None | Some(Err(ReadError::StreamFooterReceived)) => {
                return Err(Ended::Broken("the server closed the stream".into()));
            }
            Some(Err(ReadError::HardError(error))) => return Err(Ended::Broken(error.to_string())),
            Some(Err(ReadError::ParseError(error))) => {
                return Err(Ended::Broken(format!("unreadable XML from the server: {error}")));
            }
            Some(Err(ReadError::SoftTimeout)) => {
                // Silence: something the server must answer before the hard timeout.
                let probe = if self.managed.is_some() {
                    XmppStreamElement::SM(sm::Nonza::Req(sm::R))
                } else {
                    self.next_id += 1;
                    XmppStreamElement::Stanza(Stanza::Iq(Iq::from_get(format!("wwka{}", self.next_id), Ping)))
                };
                return self.write_elements(stream, vec![probe], false).await;
            }
            Some(Ok(FallibleStreamElement::Err(error))) => {
                // A stanza that does not parse still counts as one the server sent.
                tracing::debug!(%error, "an unreadable element from the XMPP server");
                if let (tokio_xmpp::xmlstream::StreamElementError::InvalidStanza { .. }, Some(managed)) =
                    (&error, &mut self.managed)
                {
                    managed.inbound = managed.inbound.wrapping_add(1);
                }
                return Ok(());
            }
            Some(Ok(FallibleStreamElement::Ok(element))) => element,
        };
        match element {
            XmppStreamElement::Stanza(stanza) => {
                if let Some(managed) = &mut self.managed {
                    managed.inbound = managed.inbound.wrapping_add(1);
                }
                self.deliver(stanza).await;
                Ok(())
            }
            XmppStreamElement::SM(sm::Nonza::Req(_)) => {
                let Some(managed) = &self.managed else { return Ok(()) };
                let inbound = managed.inbound;
                // The count is written before the server may forget those stanzas: a holder
                // resuming with less would be refused.
                if self.record.as_ref().is_none_or(|record| record.inbound != inbound) {
                    self.save().await?;
                }
                self.write_elements(
                    stream,
                    vec![XmppStreamElement::SM(sm::Nonza::Ack(sm::A::new(inbound)))],
                    false,
                )
                .await
            }
            XmppStreamElement::SM(sm::Nonza::Ack(ack)) => {
                if let Some(managed) = &mut self.managed {
                    match managed.unacked.ack(ack.h) {
                        Ok(taken) => settle(taken, Fate::Taken),
                        Err(error) => tracing::warn!(%error, "an XMPP server acknowledgement ignored"),
                    }
                }
                Ok(())
            }
            XmppStreamElement::StreamError(error) => Err(Ended::Broken(format!("stream error: {error:?}"))),
            other => {
                tracing::debug!(?other, "ignored from the XMPP server");
                Ok(())
            }
        }
    }

    /// Writes a batch of requests: on a managed stream the record first, when items are in it.
    async fn write(&mut self, stream: &mut Stream, batch: Vec<Request>) -> Result<(), Ended> {
        let mut written = Vec::new();
        let mut items = false;
        let mut stanzas = Vec::with_capacity(batch.len());
        for request in batch {
            match request {
                Request::Items(list) => {
                    stanzas.extend(
                        list.into_iter().map(|(stanza, item, fate)| (stanza, Some(item), Some(fate))),
                    );
                }
                Request::Send { stanza, item, fate } => stanzas.push((*stanza, item, fate)),
                Request::Iq { to, set, payload, reply } => {
                    self.next_id += 1;
                    let id = format!("wwiq{}", self.next_id);
                    let iq = if set {
                        Iq::Set { from: None, to, id: id.clone(), payload }
                    } else {
                        Iq::Get { from: None, to, id: id.clone(), payload }
                    };
                    self.waiting.insert(id, reply);
                    stanzas.push((Stanza::Iq(iq), None, None));
                }
            }
        }
        let mut plain = Vec::new();
        let mut pushed = 0;
        for (stanza, item, fate) in stanzas {
            match &mut self.managed {
                Some(managed) => {
                    items |= item.is_some();
                    managed.unacked.push(Out { stanza, item, fate });
                    pushed += 1;
                }
                None => {
                    written.extend(fate);
                    plain.push(stanza);
                }
            }
        }
        if items {
            self.save().await?;
        }
        match &self.managed {
            Some(managed) if pushed > 0 => {
                let new = managed.unacked.iter().skip(managed.unacked.len() - pushed);
                self.write_stanzas(stream, new.map(|(_, out)| &out.stanza).collect(), true).await?;
            }
            Some(_) => {}
            None => self.write_stanzas(stream, plain.iter().collect(), false).await?,
        }
        for fate in written {
            fate.send_replace(Fate::Written);
        }
        Ok(())
    }

    async fn deliver_all(&mut self, stanzas: Vec<Stanza>) {
        for stanza in stanzas {
            self.deliver(stanza).await;
        }
    }

    /// An answer to one of our IQs goes to its asker; anything else to the bot.
    async fn deliver(&mut self, stanza: Stanza) {
        if let Stanza::Iq(iq) = &stanza
            && matches!(iq, Iq::Result { .. } | Iq::Error { .. })
            && let Some(reply) = self.waiting.remove(iq.id())
        {
            let result = match stanza {
                Stanza::Iq(Iq::Result { payload, .. }) => Ok(payload),
                Stanza::Iq(Iq::Error { error, .. }) => {
                    Err(IqError::Refused(format!("{:?}", error.defined_condition)))
                }
                _ => Err(IqError::Closed),
            };
            let _ = reply.send(result);
            return;
        }
        // A flood of incoming stanzas is dropped here rather than stalling the stream.
        if self.incoming.try_send(Incoming::Stanza(Box::new(stanza))).is_err() {
            tracing::warn!("incoming XMPP stanzas dropped: the bot is behind");
        }
    }

    /// IQs asked on a stream that is gone will not be answered.
    fn drain_waiting(&mut self) {
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err(IqError::Closed));
        }
    }

    fn lose_all(&mut self) {
        if let Some(mut managed) = self.managed.take() {
            settle(managed.unacked.drain(), Fate::Lost);
        }
        self.drain_waiting();
    }
}

fn settle(outs: Vec<Out>, fate: Fate) {
    for out in outs {
        if let Some(sender) = out.fate {
            sender.send_replace(fate);
        }
    }
}
