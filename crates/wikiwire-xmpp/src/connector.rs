//! Connecting to the XMPP server: TCP to the configured host, STARTTLS verified against the
//! Mozilla roots plus an optional CA file (a private server's), then the stream is handed to
//! tokio-xmpp for SASL (SCRAM, with TLS 1.3 channel binding when available), binding and stream
//! management. tokio-xmpp's own STARTTLS connector cannot take a CA file; this one can.

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use sasl::common::ChannelBinding;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_xmpp::connect::ServerConnector;
use tokio_xmpp::error::ProtocolError;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::parsers::starttls::{Nonza, Request};
use tokio_xmpp::xmlstream::{
    FallibleStreamElement, PendingFeaturesRecv, ReadError, StreamHeader, Timeouts, XmppStreamElement,
    initiate_stream,
};

#[derive(Clone)]
pub struct Connector {
    host: String,
    port: u16,
    tls: Arc<ClientConfig>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("host", &self.host).field("port", &self.port).finish()
    }
}

/// Why the TLS client cannot be set up (at start only). The cause is the `source`: `wikiwire
/// serve` prints the chain, `xmpp.ca_file <path>: <why>`.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("xmpp.ca_file {}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("xmpp.ca_file {}", path.display())]
    CaCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error(transparent)]
    Protocols(rustls::Error),
}

impl Connector {
    pub fn new(host: &str, port: u16, ca_file: Option<&Path>) -> Result<Connector, ConnectorError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                .map_err(|source| ConnectorError::CaFile { path: path.to_owned(), source })?;
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|source| ConnectorError::CaCertificate { path: path.to_owned(), source })?;
            }
        }
        let tls =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(ConnectorError::Protocols)?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Connector { host: host.to_owned(), port, tls: Arc::new(tls) })
    }
}

impl ServerConnector for Connector {
    type Stream = BufStream<TlsStream<TcpStream>>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<(PendingFeaturesRecv<Self::Stream>, ChannelBinding), tokio_xmpp::Error> {
        let domain = jid.domain().as_str().to_owned();
        let header = || StreamHeader { to: Some(Cow::Owned(domain.clone())), from: None, id: None };
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        let _ = tcp.set_nodelay(true);
        let plain = initiate_stream(BufStream::new(tcp), ns, header(), timeouts).await?;
        let (features, mut stream) = plain.recv_features::<FallibleStreamElement>().await?;
        if !features.can_starttls() {
            // Never authenticate in the clear.
            return Err(tokio_xmpp::Error::Protocol(ProtocolError::NoTls));
        }
        stream.send(&XmppStreamElement::Starttls(Nonza::Request(Request))).await?;
        loop {
            match stream.next().await.map(|item| item.and_then(|element| element.into_read_error())) {
                Some(Ok(XmppStreamElement::Starttls(Nonza::Proceed(_)))) => break,
                Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => {}
                Some(Err(ReadError::HardError(error))) => return Err(error.into()),
                Some(Err(ReadError::ParseError(error))) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, error).into());
                }
                None | Some(Err(ReadError::StreamFooterReceived)) => {
                    return Err(tokio_xmpp::Error::Disconnected);
                }
            }
        }
        let tcp = stream.into_inner().into_inner();
        let name = ServerName::try_from(domain.clone())
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        let tls = TlsConnector::from(Arc::clone(&self.tls)).connect(name, tcp).await?;
        let (_, connection) = tls.get_ref();
        // TLS 1.3 exporter channel binding (RFC 9266) lets SCRAM-...-PLUS bind to this connection.
        let binding = match connection.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => connection
                .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
                .map(ChannelBinding::TlsExporter)
                .unwrap_or(ChannelBinding::None),
            _ => ChannelBinding::None,
        };
        let secured = initiate_stream(BufStream::new(tls), ns, header(), timeouts).await?;
        Ok((secured, binding))
    }
}
