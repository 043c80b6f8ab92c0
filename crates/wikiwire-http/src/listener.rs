//! The HTTP listener: connections accepted within limits, served as HTTP/1.1 only, with time
//! limits on every way a client can hold a connection without using it.
//!
//! Why not `axum::serve`: it serves cleartext HTTP/2 as soon as any crate in the build enables
//! hyper's `http2` feature (200 streams per connection, each able to pin an SSE buffer), and it
//! has no connection cap, no header timeout and no write timeout. Here:
//!
//! * every connection is accepted at once and admitted against the caps: in total, per address,
//!   and a reserve (the last `reserved` places) kept for addresses that hold no connection yet,
//!   so a few addresses filling the rest cannot lock everyone else out. A connection over a cap
//!   is answered `503` with `Retry-After` and closed at once, and counted by reason. It is never
//!   left waiting in the kernel's backlog: there it would be uncounted, and a health check
//!   behind it would wait for a stranger's connection to time out;
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
use tokio_util::task::TaskTracker;

use crate::{AppState, router};

/// Limits of the HTTP listener (`[http]` in the configuration).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections from one address at most.
    pub max_connections_per_ip: usize,
    /// The last this many places go only to addresses that hold no connection.
    pub reserved_connections: usize,
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
            reserved_connections: http.reserved_connections(),
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
    let admission = Arc::new(Mutex::new(Admission::default()));
    let tracker = TaskTracker::new();
    loop {
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
        let slot = match Slot::take(&admission, peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(refusal) => {
                refuse(stream, refusal, &metrics, peer);
                continue;
            }
        };
        let app = app.clone();
        let shutdown = shutdown.clone();
        let open =
            wikiwire_hub::metrics::GaugeGuard::new(Arc::clone(&metrics), |metrics| &metrics.http_connections);
        tracker.spawn(async move {
            let _slot = (slot, open);
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

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// The address holds `max_connections_per_ip` already.
    Address,
    /// Every place is taken, or every place but the reserve and the address holds one already.
    Full,
}

/// What is open: in total and per address (only addresses holding a connection are kept).
#[derive(Debug, Default)]
struct Admission {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Admission {
    fn admit(&mut self, ip: IpAddr, limits: &ConnectionLimits) -> Result<(), Refusal> {
        let held = self.per_ip.get(&ip).copied().unwrap_or(0);
        let shared = limits.max_connections.saturating_sub(limits.reserved_connections);
        if held >= limits.max_connections_per_ip {
            Err(Refusal::Address)
        } else if self.total >= limits.max_connections || (held > 0 && self.total >= shared) {
            Err(Refusal::Full)
        } else {
            self.total += 1;
            *self.per_ip.entry(ip).or_insert(0) += 1;
            Ok(())
        }
    }

    fn release(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

/// One admitted connection's place, given back when dropped.
struct Slot {
    admission: Arc<Mutex<Admission>>,
    ip: IpAddr,
}

impl Slot {
    fn take(
        admission: &Arc<Mutex<Admission>>,
        ip: IpAddr,
        limits: &ConnectionLimits,
    ) -> Result<Slot, Refusal> {
        // A poisoned lock only means a panic between two integer updates; the counts stand.
        let mut open = admission.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        open.admit(ip, limits)?;
        Ok(Slot { admission: Arc::clone(admission), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.admission.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        open.release(self.ip);
    }
}

/// Tells a refused client why and closes: one non-blocking write (a client that cannot take 200
/// bytes at once gets only the close), counted, logged once per interval.
fn refuse(stream: TcpStream, refusal: Refusal, metrics: &wikiwire_hub::Metrics, peer: SocketAddr) {
    let (counter, why) = match refusal {
        Refusal::Address => (&metrics.http_refused, "too many connections from your address"),
        Refusal::Full => (&metrics.http_refused_full, "the hub has no room for another connection"),
    };
    counter.inc();
    static GATE: wikiwire_hub::LogGate = wikiwire_hub::LogGate::new(Duration::from_secs(10));
    if let Some(also) = GATE.admit() {
        tracing::warn!(%peer, ?refusal, also, "HTTP connection refused at a connection cap");
    }
    let body = format!("{{\"error\":\"{why}; try again later\"}}");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Retry-After: {REFUSED_RETRY_AFTER}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Seconds a client refused at a connection cap is told to wait.
const REFUSED_RETRY_AFTER: u64 = 1;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_only_for_addresses_that_hold_nothing() {
        let limits = ConnectionLimits {
            max_connections: 4,
            max_connections_per_ip: 3,
            reserved_connections: 2,
            ..ConnectionLimits::default()
        };
        let (a, b, c, d): (IpAddr, IpAddr, IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "192.0.2.3".parse().unwrap(),
            "192.0.2.4".parse().unwrap(),
        );
        let mut open = Admission::default();
        assert_eq!(open.admit(a, &limits), Ok(()));
        assert_eq!(open.admit(a, &limits), Ok(()));
        assert_eq!(open.admit(a, &limits), Err(Refusal::Full), "the shared places are taken");
        assert_eq!(open.admit(b, &limits), Ok(()), "an address holding nothing takes a reserved place");
        assert_eq!(open.admit(b, &limits), Err(Refusal::Full));
        assert_eq!(open.admit(c, &limits), Ok(()));
        assert_eq!(open.admit(d, &limits), Err(Refusal::Full), "every place is taken");
        open.release(a);
        open.release(a);
        assert!(!open.per_ip.contains_key(&a), "an address holding nothing is not kept");
        assert_eq!(open.total, 2);
        // Places are not labelled: with two open, the shared part counts as taken.
        assert_eq!(open.admit(a, &limits), Ok(()));
        assert_eq!(open.admit(a, &limits), Err(Refusal::Full));
        open.release(b);
        open.release(c);
        assert_eq!(open.admit(a, &limits), Ok(()), "room again below the reserve");
        let one = ConnectionLimits { max_connections_per_ip: 1, ..limits };
        let mut open = Admission::default();
        assert_eq!(open.admit(a, &one), Ok(()));
        assert_eq!(open.admit(a, &one), Err(Refusal::Address));
    }
}
