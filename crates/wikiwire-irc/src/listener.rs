//! The accept loop: the TCP (and TLS) listener that admits connections and hands each to
//! [`crate::connection::run`]. It owns admission before a task is spawned, the TLS handshake's
//! time bound and the refusal line; it never reads or answers IRC itself, so everything a
//! connection does can be driven without a socket (`tests/harness`).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::connection;
use crate::server::Server;

const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// Accepts connections until shutdown. Limits are checked before a connection gets a task of its
/// own; a refused one gets an ERROR line and is closed.
pub async fn serve(server: Arc<Server>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    let shutdown = server.hub.shutdown().clone();
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, tls = tls.is_some(), "IRC listening");
    }
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, address) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, mostly: wait a little instead of spinning.
                tracing::warn!(%error, "IRC accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let admission = match server.admit(address.ip()) {
            Ok(admission) => admission,
            Err(reason) => {
                server.hub.metrics().irc_refused.inc();
                tracing::debug!(%address, reason, "IRC connection refused");
                server.tracker.spawn(refuse(stream, reason));
                continue;
            }
        };
        let connection_server = Arc::clone(&server);
        let tls = tls.clone();
        let local = stream.local_addr().map_or(address.ip(), |local| local.ip());
        server.tracker.spawn(async move {
            let ip = address.ip();
            match tls {
                None => connection::run(connection_server, stream, admission, ip, local).await,
                Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => connection::run(connection_server, stream, admission, ip, local).await,
                    Ok(Err(error)) => tracing::debug!(%address, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%address, "TLS handshake timed out"),
                },
            }
        });
    }
}

async fn refuse(mut stream: TcpStream, reason: &'static str) {
    let line = format!("ERROR :Closing link: {reason}\r\n");
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(line.as_bytes())).await;
}

/// Waits, after shutdown, until every connection has said goodbye.
pub async fn finish(server: Arc<Server>) {
    server.hub.shutdown().cancelled().await;
    server.tracker.close();
    server.tracker.wait().await;
}
