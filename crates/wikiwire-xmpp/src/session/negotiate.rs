//! Opening a stream: TCP and STARTTLS (the [`Connector`]), SASL (tokio-xmpp's), then either the
//! resumption of an earlier stream (XEP-0198 `<resume/>`) or resource binding and, when the
//! server offers it, stream management with resumption.

use std::borrow::Cow;
use std::io;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sasl::common::Credentials;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_xmpp::Stanza;
use tokio_xmpp::connect::ServerConnector;
use tokio_xmpp::jid::{FullJid, Jid};
use tokio_xmpp::parsers::bind::{BindQuery, BindResponse};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::sm::{self, Enable, Resume, StreamId};
use tokio_xmpp::xmlstream::{
    FallibleStreamElement, ReadError, StreamElementError, StreamHeader, Timeouts, XmppStream,
    XmppStreamElement,
};

use crate::connector::Connector;

pub type Stream = XmppStream<BufStream<TlsStream<TcpStream>>>;

/// How long any one step of the negotiation may take.
const STEP: Duration = Duration::from_secs(30);
const BIND_ID: &str = "wwbind";

#[derive(Debug, thiserror::Error)]
pub enum NegotiationError {
    #[error(transparent)]
    Xmpp(#[from] tokio_xmpp::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the server closed the stream")]
    Closed,
    #[error("the server refused to bind a resource: {0}")]
    Bind(String),
}

/// A stream after SASL, before binding.
pub struct Authenticated {
    pub stream: Stream,
    pub stream_management: bool,
    /// Stanzas that arrived while negotiating (before anything is counted).
    pub early: Vec<Stanza>,
}

/// How `<resume/>` ended.
pub enum Resumption {
    /// The server took `h` of the old stream's stanzas and the stream goes on.
    Resumed { h: u32 },
    /// The old stream is gone; `h`, when given, counts what the server took of it.
    Failed { h: Option<u32> },
}

async fn step<T, E: Into<NegotiationError>>(
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, NegotiationError> {
    match tokio::time::timeout(STEP, future).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(NegotiationError::Timeout(STEP)),
    }
}

/// Connects, secures and authenticates.
pub async fn login(
    connector: &Connector,
    jid: &Jid,
    password: &str,
    timeouts: Timeouts,
) -> Result<Authenticated, NegotiationError> {
    let (pending, binding) = step(connector.connect(jid, ns::JABBER_CLIENT, timeouts)).await?;
    let (features, stream) =
        step(async { pending.recv_features().await.map_err(tokio_xmpp::Error::from) }).await?;
    let username = jid.node().map(|node| node.as_str().to_owned()).unwrap_or_default();
    let credentials = Credentials::default()
        .with_username(username)
        .with_password(password.to_owned())
        .with_channel_binding(binding);
    let initiating = step(tokio_xmpp::client_login(stream, features.sasl_mechanisms, credentials)).await?;
    let header = StreamHeader { to: Some(Cow::Owned(jid.domain().to_string())), from: None, id: None };
    let pending = step(initiating.send_header(header)).await?;
    let (features, stream) =
        step(async { pending.recv_features().await.map_err(tokio_xmpp::Error::from) }).await?;
    Ok(Authenticated { stream, stream_management: features.stream_management.is_some(), early: Vec::new() })
}

/// The next element the server sends, skipping soft timeouts (the step's bound applies).
async fn next(stream: &mut Stream) -> Result<XmppStreamElement, NegotiationError> {
    loop {
        match step(async { Ok::<_, NegotiationError>(stream.next().await) }).await? {
            None | Some(Err(ReadError::StreamFooterReceived)) => return Err(NegotiationError::Closed),
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(ReadError::HardError(error))) => return Err(error.into()),
            Some(Err(ReadError::ParseError(error))) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, error).into());
            }
            Some(Ok(FallibleStreamElement::Ok(element))) => return Ok(element),
            // xmpp-parsers 0.23 requires `h` on `<failed/>`, which XEP-0198 makes optional
            // (Prosody leaves it out for a stream it never had): read as failed without a count.
            Some(Ok(FallibleStreamElement::Err(StreamElementError::InvalidNonza { qname, .. })))
                if qname.0.as_str() == ns::SM && qname.1.as_str() == "failed" =>
            {
                return Ok(XmppStreamElement::SM(sm::Nonza::Failed(sm::Failed { h: None, error: None })));
            }
            Some(Ok(FallibleStreamElement::Err(error))) => {
                tracing::debug!(%error, "an unreadable element while negotiating")
            }
        }
    }
}

async fn send(stream: &mut Stream, element: XmppStreamElement) -> Result<(), NegotiationError> {
    step(stream.send(&element)).await
}

impl Authenticated {
    /// Asks to resume the stream `previd`, having handled `h` of its server's stanzas.
    pub async fn resume(&mut self, previd: &str, h: u32) -> Result<Resumption, NegotiationError> {
        let resume = Resume { h, previd: StreamId(previd.to_owned()) };
        send(&mut self.stream, XmppStreamElement::SM(sm::Nonza::Resume(resume))).await?;
        loop {
            match next(&mut self.stream).await? {
                XmppStreamElement::SM(sm::Nonza::Resumed(resumed)) => {
                    return Ok(Resumption::Resumed { h: resumed.h });
                }
                XmppStreamElement::SM(sm::Nonza::Failed(failed)) => {
                    tracing::info!(previd, h = ?failed.h, error = ?failed.error, "the XMPP server did not resume the stream");
                    return Ok(Resumption::Failed { h: failed.h });
                }
                XmppStreamElement::Stanza(stanza) => self.early.push(stanza),
                other => tracing::debug!(?other, "ignored while resuming"),
            }
        }
    }

    /// Binds a resource (the one in the configured JID, else the server's choice).
    pub async fn bind(&mut self, jid: &Jid) -> Result<FullJid, NegotiationError> {
        let query = BindQuery::new(jid.resource().map(|resource| resource.to_string()));
        let iq = Iq::from_set(BIND_ID, query);
        send(&mut self.stream, XmppStreamElement::Stanza(Stanza::Iq(iq))).await?;
        loop {
            match next(&mut self.stream).await? {
                XmppStreamElement::Stanza(Stanza::Iq(Iq::Result { id, payload, .. })) if id == BIND_ID => {
                    let payload = payload.ok_or_else(|| NegotiationError::Bind("an empty answer".into()))?;
                    let bound = BindResponse::try_from(payload)
                        .map_err(|error| NegotiationError::Bind(error.to_string()))?;
                    return Ok(bound.into());
                }
                XmppStreamElement::Stanza(Stanza::Iq(Iq::Error { id, error, .. })) if id == BIND_ID => {
                    return Err(NegotiationError::Bind(format!("{:?}", error.defined_condition)));
                }
                XmppStreamElement::Stanza(stanza) => self.early.push(stanza),
                other => tracing::debug!(?other, "ignored while binding"),
            }
        }
    }

    /// Turns stream management on, with resumption: the resumption id, if the server gives one.
    pub async fn enable(&mut self) -> Result<Option<Option<String>>, NegotiationError> {
        send(&mut self.stream, XmppStreamElement::SM(sm::Nonza::Enable(Enable::new().with_resume()))).await?;
        loop {
            match next(&mut self.stream).await? {
                XmppStreamElement::SM(sm::Nonza::Enabled(enabled)) => {
                    let id = enabled.id.filter(|_| enabled.resume).map(|id| id.0);
                    return Ok(Some(id));
                }
                XmppStreamElement::SM(sm::Nonza::Failed(failed)) => {
                    tracing::warn!(error = ?failed.error, "the XMPP server refused stream management");
                    return Ok(None);
                }
                XmppStreamElement::Stanza(stanza) => self.early.push(stanza),
                other => tracing::debug!(?other, "ignored while enabling stream management"),
            }
        }
    }
}
