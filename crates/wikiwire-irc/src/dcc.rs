//! HistServ's DCC SEND offers (seed 1, "Getting old messages"): a long answer goes by a direct
//! connection instead of hundreds of NOTICEs that would get the listener flood-killed.
//!
//! An offer is a file already rendered in memory (JSON lines, bounded by `dcc_max_events` and
//! `dcc_max_bytes`) and a listening socket on a free port of `dcc_ports`, on the address the client
//! reached us at. Only a connection from the asking client's address is served; the offer ends
//! when it has been sent, when it expires (`dcc_timeout`), when the client withdraws it
//! (`DCC REJECT`) or disconnects — a transfer under way ends with its client too.
//!
//! Offers and transfers are places counted per client (one), per address (`dcc_max_per_ip`) and
//! in total (`dcc_max_transfers`), taken before the port and the port before the file is
//! rendered: memory held is at most `dcc_max_transfers` files, whoever asks.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use wikiwire_hub::{LogGate, Metrics};
use wikiwire_irc_wire::wire::Line;

use crate::client::Client;
use crate::config::{Config, PortRange};

/// A transfer that has begun may take this long.
const TRANSFER_TIME: Duration = Duration::from_secs(300);
/// After the last byte, how long the receiver has to acknowledge and close.
const LINGER: Duration = Duration::from_secs(10);

/// Connections from strangers to a DCC port: anyone can cause them, so one log line per interval.
static STRANGERS: LogGate = LogGate::new(Duration::from_secs(10));

/// The server's DCC offers, one per client at most.
pub struct Offers {
    ports: Option<PortRange>,
    address: Option<IpAddr>,
    pub timeout: Duration,
    pub max_events: usize,
    pub max_bytes: usize,
    max_transfers: usize,
    max_per_ip: usize,
    active: Mutex<Active>,
    metrics: Arc<Metrics>,
}

/// Open offers and transfers.
#[derive(Default)]
struct Active {
    /// By client id; cancelling one withdraws it.
    clients: HashMap<u64, CancellationToken>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why no offer can be made now.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This client has one open.
    Open,
    /// Its address has `dcc_max_per_ip` open.
    Address,
    /// The server has `dcc_max_transfers` open.
    Full,
}

/// A client's one offer; dropping it frees the place.
pub struct Slot {
    offers: Arc<Offers>,
    client: u64,
    ip: IpAddr,
    cancel: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut active = self.offers.active();
        active.clients.remove(&self.client);
        if let Some(count) = active.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                active.per_ip.remove(&self.ip);
            }
        }
        drop(active);
        self.offers.metrics.irc_dcc_open.dec();
    }
}

/// What is offered: the file's name and bytes.
pub struct File {
    pub name: String,
    pub bytes: Bytes,
}

impl Offers {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Arc<Offers> {
        Arc::new(Offers {
            ports: config.dcc_ports,
            address: config.dcc_address,
            timeout: config.dcc_timeout,
            max_events: config.dcc_max_events,
            max_bytes: config.dcc_max_bytes,
            max_transfers: config.dcc_max_transfers,
            max_per_ip: config.dcc_max_per_ip,
            active: Mutex::new(Active::default()),
            metrics,
        })
    }

    pub fn enabled(&self) -> bool {
        self.ports.is_some()
    }

    fn active(&self) -> std::sync::MutexGuard<'_, Active> {
        self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The client's place for one offer, or why there is none now (counted unless the client
    /// merely has one open already).
    pub fn reserve(self: &Arc<Offers>, client: u64, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut active = self.active();
        let refusal = if active.clients.contains_key(&client) {
            return Err(Refusal::Open);
        } else if active.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            Refusal::Address
        } else if active.clients.len() >= self.max_transfers {
            Refusal::Full
        } else {
            let cancel = CancellationToken::new();
            active.clients.insert(client, cancel.clone());
            *active.per_ip.entry(ip).or_default() += 1;
            drop(active);
            self.metrics.irc_dcc_open.inc();
            return Ok(Slot { offers: Arc::clone(self), client, ip, cancel });
        };
        drop(active);
        self.metrics.irc_dcc_refused.inc();
        Err(refusal)
    }

    /// Withdraws the client's offer (`DCC REJECT`); false when it had none.
    pub fn withdraw(&self, client: u64) -> bool {
        self.active().clients.get(&client).map(CancellationToken::cancel).is_some()
    }

    /// Listens on the first free port of the range, on `local` (the address the client reached);
    /// `None` (counted) when every port is taken.
    pub async fn listen(&self, local: IpAddr) -> Option<TcpListener> {
        for port in self.ports?.ports() {
            if let Ok(listener) = TcpListener::bind(SocketAddr::new(local, port)).await {
                return Some(listener);
            }
        }
        self.metrics.irc_dcc_refused.inc();
        None
    }

    /// Serves the offer in the background on `listener` (from [`Offers::listen`]); returns the
    /// CTCP text to send the client (`DCC SEND <file> <address> <port> <size>`).
    pub fn offer(
        &self,
        slot: Slot,
        listener: TcpListener,
        client: &Arc<Client>,
        file: File,
        mask: String,
    ) -> Option<String> {
        let port = listener.local_addr().ok()?.port();
        let address = match self.address.unwrap_or(client.local_ip) {
            // The classic form: an IPv4 address as one unsigned number.
            IpAddr::V4(v4) => u32::from(v4).to_string(),
            IpAddr::V6(v6) => v6.to_string(),
        };
        let ctcp = format!("\u{1}DCC SEND {} {address} {port} {}\u{1}", file.name, file.bytes.len());
        let timeout = self.timeout;
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(serve(slot, listener, Arc::clone(client), file, mask, timeout, metrics));
        Some(ctcp)
    }
}

/// Waits for the asking client to connect, then sends the file.
async fn serve(
    slot: Slot,
    listener: TcpListener,
    client: Arc<Client>,
    file: File,
    mask: String,
    timeout: Duration,
    metrics: Arc<Metrics>,
) {
    let tell = |text: String| {
        let line = Line::new("NOTICE").source(mask.clone()).param(client.nick()).text(text);
        client.send(line.to_bytes());
    };
    let expiry = tokio::time::sleep(timeout);
    tokio::pin!(expiry);
    let stream = loop {
        tokio::select! {
            _ = slot.cancel.cancelled() => return tell(format!("DCC offer of {} withdrawn", file.name)),
            _ = client.closing.cancelled() => return,
            _ = &mut expiry => return tell(format!("DCC offer of {} expired; ask again to get a new one", file.name)),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if peer.ip() == client.ip => break stream,
                Ok((_, peer)) => {
                    metrics.irc_dcc_strangers.inc();
                    if let Some(held) = STRANGERS.admit() {
                        tracing::info!(%peer, client = client.id, held_back = held, "DCC: a connection from another address refused");
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "DCC accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    };
    drop(listener);
    // A transfer ends with its client: a client cannot leave a file (and a socket) behind it.
    let sent = tokio::select! {
        _ = slot.cancel.cancelled() => Err(std::io::Error::other("withdrawn")),
        _ = client.closing.cancelled() => return,
        sent = tokio::time::timeout(TRANSFER_TIME, send(stream, &file.bytes)) => {
            sent.unwrap_or_else(|_| Err(std::io::Error::other("took too long")))
        }
    };
    match sent {
        Ok(()) => tell(format!("DCC transfer of {} done ({} bytes)", file.name, file.bytes.len())),
        Err(error) => tell(format!("DCC transfer of {} failed: {error}", file.name)),
    }
}

/// Writes the file, then waits (briefly) until the receiver has acknowledged all of it or closed.
async fn send(mut stream: TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await?;
    // Receivers acknowledge with the count received so far: 4 bytes, network order, modulo 2^32
    // (receivers in "turbo" mode send none and close instead).
    let size = (bytes.len() as u64 & u64::from(u32::MAX)) as u32;
    let mut acks = Vec::new();
    let mut buffer = [0u8; 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(read @ 1..) = stream.read(&mut buffer).await {
            acks.extend_from_slice(&buffer[..read]);
            let whole = acks.len() / 4 * 4;
            if whole > 0 && acks[whole - 4..whole] == size.to_be_bytes() {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// A DCC file name from a label: no spaces, slashes or quotes, which clients would mangle.
pub fn file_name(label: &str, start: &str) -> String {
    let clean = |text: &str| -> String {
        text.chars()
            .filter(|c| *c != '#')
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
            .collect()
    };
    format!("{}-{}.jsonl", clean(label), clean(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_one_safe_word() {
        assert_eq!(file_name("#MoinMaster.events", "since-12"), "MoinMaster.events-since-12.jsonl");
        assert_eq!(
            file_name("all wikis", "from-2026-01-01T00:00:00Z"),
            "all_wikis-from-2026-01-01T00_00_00Z.jsonl"
        );
    }

    fn offers(max_transfers: usize, max_per_ip: usize) -> (Arc<Offers>, Arc<Metrics>) {
        let config =
            Config { dcc_max_transfers: max_transfers, dcc_max_per_ip: max_per_ip, ..Config::default() };
        let metrics = Arc::new(Metrics::default());
        (Offers::new(&config, Arc::clone(&metrics)), metrics)
    }

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const THERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn one_offer_per_client() {
        let (offers, _) = offers(10, 10);
        let slot = offers.reserve(1, HERE).unwrap();
        assert_eq!(offers.reserve(1, HERE).err(), Some(Refusal::Open));
        assert!(offers.reserve(2, HERE).is_ok());
        assert!(offers.withdraw(1));
        assert!(slot.cancel.is_cancelled());
        drop(slot);
        assert!(offers.reserve(1, HERE).is_ok());
        assert!(!offers.withdraw(3));
    }

    #[test]
    fn offers_are_bounded_per_address_and_in_total_whatever_the_clients() {
        let (offers, metrics) = offers(3, 2);
        // New connections are new clients: the address's count holds across them.
        let first = offers.reserve(1, HERE).unwrap();
        let _second = offers.reserve(2, HERE).unwrap();
        assert_eq!(offers.reserve(3, HERE).err(), Some(Refusal::Address));
        let _third = offers.reserve(4, THERE).unwrap();
        assert_eq!(offers.reserve(5, THERE).err(), Some(Refusal::Full), "the server's limit");
        assert_eq!(metrics.irc_dcc_refused.get(), 2);
        assert_eq!(metrics.irc_dcc_open.get(), 3);
        drop(first);
        assert_eq!(metrics.irc_dcc_open.get(), 2);
        let _fourth = offers.reserve(6, HERE).expect("a place given back is free again");
        assert_eq!(offers.reserve(7, THERE).err(), Some(Refusal::Full));
    }
}
