//! The HTTP listener: connections accepted within limits, served as HTTP/1.1 only, with time
//! limits on every way a client can hold a connection without using it.
//!
//! Why not `axum::serve`: it serves cleartext HTTP/2 as soon as any crate in the build enables
//! hyper's `http2` feature (200 streams per connection, each able to pin an SSE buffer), and it
//! has no connection cap, no header timeout and no write timeout. Here:
//!
//! * a permit is taken *before* `accept` (total cap), then the address's count (per-address cap);
//!   a connection over either is closed at once, and counted;
//! * headers must arrive within `header_timeout`, also between requests on a kept-alive
//!   connection (hyper applies it to the wait for the next request's headers);
//! * a write that makes no progress for `write_timeout` ends the connection: a client that stops
//!   reading an SSE stream is cut off, and what it pinned is freed (`Stalled` below);
//! * running out of file descriptors slows the accept loop down instead of spinning or ending it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::{AppState, router};

/// Limits of the HTTP listener (`[http]` in the configuration).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections from one address at most.
    pub max_connections_per_ip: usize,
    /// Time to send a request's headers, and to start the next request on a kept-alive connection.
    pub header_timeout: Duration,
    /// Time a response write may make no progress before the connection is cut.
    pub write_timeout: Duration,
}

impl From<&wikiwire_hub::config::HttpConfig> for ConnectionLimits {
    fn from(http: &wikiwire_hub::config::HttpConfig) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: http.max_connections,
            max_connections_per_ip: http.max_connections_per_ip,
            header_timeout: http.header_timeout,
            write_timeout: http.write_timeout,
        }
    }
}

/// The configuration's defaults, written once there.
impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits::from(&wikiwire_hub::config::HttpConfig::default())
    }
}

/// Serves until the hub shuts down, then lets open requests finish (streams end on the same
/// shutdown signal).
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let shutdown = state.hub.shutdown().clone();
    let metrics = Arc::clone(state.hub.metrics());
    tracing::info!(address = %listener.local_addr()?, "HTTP listening");
    serve_router(listener, router(state), shutdown, metrics, limits).await
}

/// The address a request came from, put on every request by [`serve_router`].
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub IpAddr);

/// Serves any router within the limits (the XML-RPC API for wikis uses it too).
pub async fn serve_router(
    listener: TcpListener,
    app: axum::Router,
    shutdown: tokio_util::sync::CancellationToken,
    metrics: Arc<wikiwire_hub::Metrics>,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors (EMFILE/ENFILE) or a connection reset before accept:
                    // wait a little so the loop neither spins nor ends.
                    static GATE: wikiwire_hub::LogGate = wikiwire_hub::LogGate::new(Duration::from_secs(10));
                    if let Some(also) = GATE.admit() {
                        tracing::error!(%error, also, "HTTP accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(address) = AddressSlot::take(&per_ip, peer, limits.max_connections_per_ip) else {
            metrics.http_refused.inc();
            drop(stream);
            continue;
        };
        let app = app.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let _address = address;
            let _ = stream.set_nodelay(true);
            let io = TokioIo::new(Stalled::new(stream, limits.write_timeout));
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
            let app = tower::ServiceExt::map_request(
                app,
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(Peer(peer.ip()));
                    request
                },
            );
            let connection = builder.serve_connection(io, TowerToHyperService::new(app));
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "HTTP connection ended");
                    }
                }
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                }
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await;
    Ok(())
}

/// One connection's place in its address's count, given back when dropped.
struct AddressSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl AddressSlot {
    fn take(
        counts: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        peer: SocketAddr,
        limit: usize,
    ) -> Option<AddressSlot> {
        let ip = peer.ip();
        let mut map = counts.lock().ok()?;
        let count = map.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot { counts: Arc::clone(counts), ip })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.counts.lock()
            && let Some(count) = map.get_mut(&self.ip)
        {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A socket whose writes fail when they make no progress for a while: the peer stopped reading.
struct Stalled {
    stream: TcpStream,
    limit: Duration,
    /// Armed while a write is pending; cleared by any progress.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stalled {
    fn new(stream: TcpStream, limit: Duration) -> Stalled {
        Stalled { stream, limit, deadline: None }
    }

    fn pending<T>(&mut self, context: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let limit = self.limit;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(context) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future;

impl AsyncRead for Stalled {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

impl Stalled {
    /// A write's result: any progress disarms the deadline, no progress arms it.
    fn progress<T>(
        &mut self,
        context: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Pending => self.pending(context),
            ready => {
                self.deadline = None;
                ready
            }
        }
    }
}

impl AsyncWrite for Stalled {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(context, data);
        self.progress(context, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(context, buffers);
        self.progress(context, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(context);
        self.progress(context, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }
}
