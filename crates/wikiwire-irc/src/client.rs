//! One connected client as the rest of the server sees it: identity, capabilities, and a send
//! queue bounded in bytes. Fan-out pushes shared lines into the queue without waiting; only the
//! connection's writer task touches the socket, so no lock is ever held across a write.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wikiwire_hub::{Metrics, Publisher};

use crate::caps::Caps;

/// Registration and SASL progress, and who the client is.
#[derive(Debug)]
pub struct State {
    /// `*` until a NICK is accepted.
    pub nick: String,
    pub user: Option<String>,
    pub realname: String,
    pub registered: bool,
    /// Between `CAP LS`/`CAP REQ` and `CAP END` before registration.
    pub negotiating: bool,
    pub cap_version: u32,
    pub password: Option<String>,
    pub sasl: Sasl,
    /// Set by SASL or PASS: this connection speaks for a publisher.
    pub account: Option<Arc<Publisher>>,
    /// The channels joined, as indices into the server's directory (`Channels::get`).
    pub channels: Vec<usize>,
    pub invisible: bool,
    /// User mode `w`: accepted, though no wallops are ever sent.
    pub wallops: bool,
    /// User mode `B` set by the client itself (publishers are bots anyway).
    pub bot: bool,
    /// Set by `AWAY :message`, cleared by `AWAY`.
    pub away: Option<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub enum Sasl {
    #[default]
    Idle,
    /// `AUTHENTICATE PLAIN` accepted; collecting base64 chunks.
    Plain(String),
    /// The payload grew past the limit (905 sent): its remaining chunks are read and dropped
    /// until the chunk that ends it, so an abusive client gets one answer, not one per chunk.
    Discarding,
    Done,
}

#[derive(Debug)]
pub struct Client {
    pub id: u64,
    pub ip: IpAddr,
    /// Our side of the connection: the address the client reached us at.
    pub local_ip: IpAddr,
    caps: AtomicU32,
    state: Mutex<State>,
    queue: SendQueue,
    /// Cancelled when the connection must end; the writer then says goodbye.
    pub closing: CancellationToken,
    reason: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
}

impl Client {
    pub fn new(id: u64, ip: IpAddr, local_ip: IpAddr, sendq: usize, metrics: Arc<Metrics>) -> Arc<Client> {
        Arc::new(Client {
            id,
            ip,
            local_ip,
            caps: AtomicU32::new(0),
            state: Mutex::new(State {
                nick: "*".into(),
                user: None,
                realname: String::new(),
                registered: false,
                negotiating: false,
                cap_version: 0,
                password: None,
                sasl: Sasl::Idle,
                account: None,
                channels: Vec::new(),
                invisible: false,
                wallops: false,
                bot: false,
                away: None,
            }),
            queue: SendQueue {
                lines: Mutex::new(VecDeque::new()),
                ready: Notify::new(),
                queued: AtomicUsize::new(0),
                limit: sendq,
                overflowed: AtomicBool::new(false),
            },
            closing: CancellationToken::new(),
            reason: Mutex::new(None),
            metrics,
        })
    }

    /// The client's state; never held across an `.await` or while taking another lock.
    pub fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a handler panicked mid-update; the data is still the best we have.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn caps(&self) -> Caps {
        Caps::from_bits(self.caps.load(Ordering::Relaxed))
    }

    pub fn set_caps(&self, caps: Caps) {
        self.caps.store(caps.bits(), Ordering::Relaxed);
    }

    pub fn nick(&self) -> String {
        self.state().nick.clone()
    }

    pub fn account(&self) -> Option<Arc<Publisher>> {
        self.state().account.clone()
    }

    /// Queues a line. False when the queue is over its limit: the client is then being closed
    /// with "SendQ exceeded" and gets nothing more.
    pub fn send(&self, line: Bytes) -> bool {
        match self.queue.push(line) {
            Push::Queued => true,
            Push::Overflowed => {
                self.metrics.irc_sendq_exceeded.inc();
                tracing::debug!(client = self.id, "SendQ exceeded");
                self.close("SendQ exceeded");
                false
            }
            Push::Refused => false,
        }
    }

    /// Asks the connection to end; the first reason given is the one sent.
    pub fn close(&self, reason: &str) {
        let mut slot = self.reason.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            *slot = Some(reason.to_owned());
        }
        drop(slot);
        self.closing.cancel();
    }

    pub fn close_reason(&self) -> String {
        let slot = self.reason.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.clone().unwrap_or_else(|| "Connection closed".into())
    }

    /// For the writer: moves every queued line into `into` (empty), in order.
    pub fn take_queued(&self, into: &mut VecDeque<Bytes>) {
        let mut lines = self.queue.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::swap(&mut *lines, into);
    }

    /// For the writer: returns once a line was queued since the last call (at once if one was).
    pub async fn queued(&self) {
        self.queue.ready.notified().await;
    }

    /// The writer took `bytes` off the queue.
    pub fn dequeued(&self, bytes: usize) {
        self.queue.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn queued_bytes(&self) -> usize {
        self.queue.queued.load(Ordering::Relaxed)
    }

    pub fn overflowed(&self) -> bool {
        self.queue.overflowed.load(Ordering::Relaxed)
    }
}

/// A queue bounded by bytes: pushing never waits, and a client past its limit is cut off
/// instead of holding memory for ever. A deque under a lock rather than a channel: an idle
/// listener's queue holds no memory (a channel allocates its first block of slots up front),
/// and the writer takes everything queued in one step.
#[derive(Debug)]
struct SendQueue {
    lines: Mutex<VecDeque<Bytes>>,
    ready: Notify,
    queued: AtomicUsize,
    limit: usize,
    overflowed: AtomicBool,
}

enum Push {
    Queued,
    /// This push went over the limit: the client is cut off from now on.
    Overflowed,
    /// The client was already cut off.
    Refused,
}

impl SendQueue {
    fn push(&self, line: Bytes) -> Push {
        if self.overflowed.load(Ordering::Relaxed) {
            return Push::Refused;
        }
        let size = line.len();
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > self.limit {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            return match self.overflowed.swap(true, Ordering::Relaxed) {
                false => Push::Overflowed,
                true => Push::Refused,
            };
        }
        self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push_back(line);
        self.ready.notify_one();
        Push::Queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_refuses_past_its_byte_limit_and_closes() {
        let metrics = Arc::new(Metrics::default());
        let client = Client::new(
            1,
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([127, 0, 0, 1]),
            100,
            Arc::clone(&metrics),
        );
        assert!(client.send(Bytes::from(vec![b'x'; 60])));
        assert!(!client.send(Bytes::from(vec![b'y'; 60])));
        assert!(client.overflowed() && client.closing.is_cancelled());
        assert_eq!(client.close_reason(), "SendQ exceeded");
        let mut taken = VecDeque::new();
        client.take_queued(&mut taken);
        assert_eq!(taken.len(), 1, "only what fitted was queued");
        client.dequeued(taken[0].len());
        assert!(!client.send(Bytes::from_static(b"z")), "an overflowed client gets nothing more");
        assert_eq!(metrics.irc_sendq_exceeded.get(), 1, "counted once, when it happened");
    }
}
