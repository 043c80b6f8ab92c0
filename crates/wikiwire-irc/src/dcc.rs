//! HistServ's DCC SEND offers (seed 1, "Getting old messages"): a long answer goes by a direct
//! connection instead of hundreds of NOTICEs that would get the listener flood-killed.
//!
//! An offer is a file already rendered in memory (JSON lines, bounded by `dcc_max_events`) and a
//! listening socket on a free port of `dcc_ports`, on the address the client reached us at. Only a
//! connection from the asking client's address is served; the offer ends when it has been sent,
//! when it expires (`dcc_timeout`), when the client withdraws it (`DCC REJECT`) or disconnects.
//! Each client has at most one offer or transfer at a time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use wikiwire_hub::config::{IrcConfig, PortRange};

use crate::client::Client;
use crate::wire::Line;

/// A transfer that has begun may take this long.
const TRANSFER_TIME: Duration = Duration::from_secs(300);
/// After the last byte, how long the receiver has to acknowledge and close.
const LINGER: Duration = Duration::from_secs(10);

/// The server's DCC offers, one per client at most.
pub struct Offers {
    ports: Option<PortRange>,
    address: Option<IpAddr>,
    pub timeout: Duration,
    pub max_events: usize,
    /// Open offers and transfers by client id; cancelling one withdraws it.
    active: Mutex<HashMap<u64, CancellationToken>>,
}

/// A client's one offer; dropping it frees the place.
pub struct Slot {
    offers: Arc<Offers>,
    client: u64,
    cancel: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.offers.active().remove(&self.client);
    }
}

/// What is offered: the file's name and bytes.
pub struct File {
    pub name: String,
    pub bytes: Bytes,
}

impl Offers {
    pub fn new(config: &IrcConfig) -> Arc<Offers> {
        Arc::new(Offers {
            ports: config.dcc_ports,
            address: config.dcc_address,
            timeout: config.dcc_timeout,
            max_events: config.dcc_max_events,
            active: Mutex::new(HashMap::new()),
        })
    }

    pub fn enabled(&self) -> bool {
        self.ports.is_some()
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CancellationToken>> {
        self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The client's place for one offer; `None` while it has one.
    pub fn reserve(self: &Arc<Offers>, client: u64) -> Option<Slot> {
        let mut active = self.active();
        if active.contains_key(&client) {
            return None;
        }
        let cancel = CancellationToken::new();
        active.insert(client, cancel.clone());
        Some(Slot { offers: Arc::clone(self), client, cancel })
    }

    /// Withdraws the client's offer (`DCC REJECT`); false when it had none.
    pub fn withdraw(&self, client: u64) -> bool {
        self.active().get(&client).map(CancellationToken::cancel).is_some()
    }

    /// Listens on the first free port of the range, on `local` (the address the client reached).
    async fn listen(&self, local: IpAddr) -> Option<TcpListener> {
        for port in self.ports?.ports() {
            if let Ok(listener) = TcpListener::bind(SocketAddr::new(local, port)).await {
                return Some(listener);
            }
        }
        None
    }

    /// Opens the offer and serves it in the background; returns the CTCP text to send the client
    /// (`DCC SEND <file> <address> <port> <size>`), or `None` when every port is taken.
    pub async fn offer(&self, slot: Slot, client: &Arc<Client>, file: File, mask: String) -> Option<String> {
        let listener = self.listen(client.local_ip).await?;
        let port = listener.local_addr().ok()?.port();
        let address = match self.address.unwrap_or(client.local_ip) {
            // The classic form: an IPv4 address as one unsigned number.
            IpAddr::V4(v4) => u32::from(v4).to_string(),
            IpAddr::V6(v6) => v6.to_string(),
        };
        let ctcp = format!("\u{1}DCC SEND {} {address} {port} {}\u{1}", file.name, file.bytes.len());
        let timeout = self.timeout;
        tokio::spawn(serve(slot, listener, Arc::clone(client), file, mask, timeout));
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
                    tracing::info!(%peer, client = client.id, "DCC: a connection from another address refused");
                }
                Err(error) => {
                    tracing::debug!(%error, "DCC accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    };
    drop(listener);
    let sent = tokio::select! {
        _ = slot.cancel.cancelled() => Err(std::io::Error::other("withdrawn")),
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

    #[test]
    fn one_offer_per_client() {
        let offers = Offers::new(&IrcConfig::default());
        let slot = offers.reserve(1).unwrap();
        assert!(offers.reserve(1).is_none());
        assert!(offers.reserve(2).is_some());
        assert!(offers.withdraw(1));
        assert!(slot.cancel.is_cancelled());
        drop(slot);
        assert!(offers.reserve(1).is_some());
        assert!(!offers.withdraw(3));
    }
}
