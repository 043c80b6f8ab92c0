//! One connection, from accept to goodbye: a reader loop (framing, flood control, timers,
//! dispatch) and a writer task (the only code that writes the socket, in batches). Closing goes
//! one way: `Client::close(reason)` → the reader loop ends → the writer finishes what it may
//! within a grace period, sends `ERROR :<reason>` and shuts the socket.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use wikiwire_irc_wire::framing::{Frame, LineReader};
use wikiwire_irc_wire::numeric::ERR_INPUTTOOLONG;
use wikiwire_irc_wire::wire::Line;

use crate::client::Client;
use crate::commands;
use crate::pipeline::Pipeline;
use crate::respond::Context;
use crate::server::{Admission, Release, Server};

/// How long a closing connection may take to flush and say goodbye.
const GOODBYE_GRACE: Duration = Duration::from_secs(5);
/// Lines written per batch at most.
/// Most bytes gathered for one write (then the rest waits for the next).
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Slots for queued lines a writer keeps once its queue is empty.
const IDLE_LINES: usize = 8;

/// Serves one connection until it ends.
pub async fn run<S>(
    server: Arc<Server>,
    stream: S,
    admission: Admission,
    ip: std::net::IpAddr,
    local_ip: std::net::IpAddr,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let limits = &server.settings.limits;
    let client =
        Client::new(server.next_client_id(), ip, local_ip, limits.sendq, Arc::clone(server.hub.metrics()));
    let (read_half, write_half) = tokio::io::split(stream);
    let writer = tokio::spawn(write_loop(write_half, Arc::clone(&client)));
    let release = Release { server: &server, client: &client };
    read_loop(&server, &client, read_half).await;
    drop(release);
    let _ = writer.await;
    drop(admission);
    tracing::debug!(client = client.id, reason = %client.close_reason(), "IRC connection ended");
}

async fn read_loop<R: AsyncRead + Unpin>(server: &Arc<Server>, client: &Arc<Client>, read_half: R) {
    let limits = &server.settings.limits;
    let shutdown = server.hub.shutdown().clone();
    let mut reader = LineReader::new(read_half);
    let registration_deadline = Instant::now() + limits.registration_timeout;
    let mut last_input = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    let mut flood = Flood::new(limits.flood_burst, limits.flood_rate);
    let mut pipeline: Option<Pipeline> = None;
    loop {
        let registered = client.state().registered;
        let deadline = match (registered, ping_sent) {
            (false, _) => registration_deadline,
            (true, Some(sent)) => sent + limits.ping_timeout,
            (true, None) => last_input + limits.ping_interval,
        };
        let frame = tokio::select! {
            _ = client.closing.cancelled() => return,
            _ = shutdown.cancelled() => {
                client.close("Server shutting down");
                return;
            }
            _ = tokio::time::sleep_until(deadline) => {
                match (registered, ping_sent) {
                    (false, _) => client.close("Registration timeout"),
                    (true, Some(_)) => client.close(&format!("Ping timeout: {} seconds", limits.ping_timeout.as_secs())),
                    (true, None) => {
                        ping_sent = Some(Instant::now());
                        let ping = Line::new("PING").param(server.settings.server_name.clone());
                        client.send(ping.to_bytes());
                    }
                }
                continue;
            }
            frame = reader.next() => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return client.close("Connection closed"),
            Err(error) => return client.close(&format!("Read error: {}", error.kind())),
        };
        last_input = Instant::now();
        ping_sent = None;
        // Publishers are paced by the hub's publish rate, listeners here.
        let paced = client.account().is_none().then(|| flood.take(Instant::now())).flatten();
        if let Some(wait) = paced {
            server.hub.metrics().irc_flood_waits.inc();
            tokio::select! {
                _ = client.closing.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        match frame {
            Frame::Line(text) => {
                // A publisher's lines are pipelined (made on its first line as a publisher).
                if pipeline.is_none() && client.account().is_some() {
                    pipeline = Some(Pipeline::start(Arc::clone(server), Arc::clone(client)));
                }
                // Boxed: a command's state exists only while it runs, not in every idle
                // connection's task (it is most of the task's size).
                Box::pin(commands::handle(server, client, pipeline.as_ref(), &text)).await
            }
            // A refused line still answers its label (IRCv3 labeled-response): a client waiting
            // for it would otherwise wait forever.
            Frame::TooLong { label } => {
                let mut context = Context::new(server, client);
                context.numeric(ERR_INPUTTOOLONG, &[]);
                context.finish(label.as_deref());
            }
            Frame::InvalidUtf8 { label } => {
                let mut context = Context::new(server, client);
                context.fail(
                    "*",
                    "INVALID_UTF8",
                    &[],
                    "Message rejected: this network only carries UTF-8 (UTF8ONLY)",
                );
                context.finish(label.as_deref());
            }
        }
    }
}

/// The writer: takes every queued line at once and writes them in one go (one line alone is
/// written as it is, without a copy). On a close it lets queued lines out within a grace period,
/// then says `ERROR`; a client over its SendQ is cut at once — the partial line is ended so the
/// ERROR arrives whole when the client reads again.
async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, client: Arc<Client>) {
    // Both grow only while lines queue up faster than they are written, and are let go once the
    // queue is empty: an idle listener keeps neither.
    let mut pending: VecDeque<Bytes> = VecDeque::new();
    let mut buffer = BytesMut::new();
    let mut cut = false;
    let mut deadline: Option<Instant> = None;
    loop {
        // Closing after an overflow: nothing more goes out.
        if deadline.is_some() && client.overflowed() {
            break;
        }
        if pending.is_empty() {
            client.take_queued(&mut pending);
        }
        let Some(first) = pending.pop_front() else {
            if deadline.is_some() {
                // Closing: what was queued went out.
                break;
            }
            // Caught up: a burst's buffers go back to the allocator before waiting, so a listener
            // is small again once idle (a burst to thousands would otherwise stay in every one).
            if buffer.capacity() > 0 {
                buffer = BytesMut::new();
            }
            if pending.capacity() > IDLE_LINES {
                pending = VecDeque::new();
            }
            tokio::select! {
                _ = client.queued() => {}
                _ = client.closing.cancelled() => deadline = Some(Instant::now() + GOODBYE_GRACE),
            }
            continue;
        };
        client.dequeued(first.len());
        let mut batched = false;
        while let Some(line) = pending.pop_front() {
            if !batched {
                buffer.clear();
                buffer.extend_from_slice(&first);
                batched = true;
            }
            client.dequeued(line.len());
            buffer.extend_from_slice(&line);
            if buffer.len() >= WRITE_BATCH_BYTES {
                break;
            }
        }
        let outcome = {
            let data: &[u8] = if batched { &buffer } else { &first };
            let write = writer.write_all(data);
            tokio::pin!(write);
            match deadline {
                Some(deadline) => Outcome::within(deadline, &mut write).await,
                None => tokio::select! {
                    result = &mut write => Outcome::of(result),
                    _ = client.closing.cancelled() => {
                        let until = Instant::now() + GOODBYE_GRACE;
                        deadline = Some(until);
                        if client.overflowed() { Outcome::Cut } else { Outcome::within(until, &mut write).await }
                    }
                },
            }
        };
        match outcome {
            Outcome::Written => {}
            Outcome::Failed => return,
            Outcome::Cut => {
                cut = true;
                break;
            }
        }
    }
    let deadline = deadline.unwrap_or_else(|| Instant::now() + GOODBYE_GRACE);
    let ending = if cut { "\r\n" } else { "" };
    let goodbye = format!("{ending}ERROR :Closing link: {}\r\n", client.close_reason());
    let _ = tokio::time::timeout_at(deadline, async {
        writer.write_all(goodbye.as_bytes()).await?;
        writer.shutdown().await
    })
    .await;
}

/// How one batch write ended.
enum Outcome {
    Written,
    /// The socket failed: nothing more can be said.
    Failed,
    /// Stopped part-way (overflow, or the grace ran out): a line may be unfinished.
    Cut,
}

impl Outcome {
    fn of(result: std::io::Result<()>) -> Outcome {
        if result.is_ok() { Outcome::Written } else { Outcome::Failed }
    }

    async fn within(
        deadline: Instant,
        write: impl std::future::Future<Output = std::io::Result<()>>,
    ) -> Outcome {
        match tokio::time::timeout_at(deadline, write).await {
            Ok(result) => Outcome::of(result),
            Err(_) => Outcome::Cut,
        }
    }
}

/// Input flood control: a token bucket of lines. An empty bucket makes the reader wait (no reads,
/// so TCP pushes back on the client) instead of buffering its input.
struct Flood {
    tokens: f64,
    burst: f64,
    rate: f64,
    updated: Instant,
}

impl Flood {
    fn new(burst: f64, rate: f64) -> Flood {
        Flood { tokens: burst, burst, rate, updated: Instant::now() }
    }

    /// Takes a token; returns how long to wait first when there was none.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        self.tokens =
            (self.tokens + now.duration_since(self.updated).as_secs_f64() * self.rate).min(self.burst);
        self.updated = now;
        self.tokens -= 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flood_bucket_makes_fast_input_wait() {
        let start = Instant::now();
        let mut flood = Flood { tokens: 3.0, burst: 3.0, rate: 2.0, updated: start };
        assert_eq!(flood.take(start), None);
        assert_eq!(flood.take(start), None);
        assert_eq!(flood.take(start), None);
        assert_eq!(flood.take(start), Some(Duration::from_millis(500)));
        assert_eq!(flood.take(start + Duration::from_millis(500)), Some(Duration::from_millis(500)));
    }
}
