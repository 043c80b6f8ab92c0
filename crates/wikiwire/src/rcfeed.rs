//! MediaWiki's RCFeed over UDP (SPEC §7 `[[rcfeed]]`): an ingest adapter like HTTP and IRC. A
//! MediaWiki sends each change as a `JSONRCFeedFormatter` datagram (`$wgRCFeeds` with a
//! `udp://` URI); datagrams from an address not in `allow` are dropped unread. Each one is
//! mapped by `wikiwire_event::mediawiki`, must name one of the configured publisher's wikis
//! (its `wiki` id, its `server_name`, or the host of the wiki's `base_url`), is validated like
//! any submission and goes through `Hub::publish`. What is refused is counted and logged; UDP
//! has no answer to give.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use wikiwire_event::Draft;
use wikiwire_event::mediawiki::{self, MAX_DATAGRAM, RcChange};
use wikiwire_hub::config::{RcFeedChannels, RcFeedConfig, check_channel_name};
use wikiwire_hub::publisher::Publisher;
use wikiwire_hub::{Hub, PublishError};

/// Datagrams already waiting are published together, at most this many (one commit).
const BATCH: usize = 100;
/// Valid changes waiting for the store. MediaWiki cannot send a datagram again, so a burst, a
/// rate limit or a store outage is waited out here; only a full queue drops (and counts) one.
const QUEUE: usize = 50_000;
/// The socket's receive buffer asked of the kernel (it may grant less: `net.core.rmem_max`).
const RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

pub async fn run(hub: Arc<Hub>, config: RcFeedConfig, socket: UdpSocket) {
    let Some(publisher) = hub.publishers().by_name(&config.publisher) else {
        tracing::error!(listen = %config.listen, publisher = %config.publisher, "rcfeed: no such publisher; not listening");
        return;
    };
    if let Err(error) = socket2::SockRef::from(&socket).set_recv_buffer_size(RECEIVE_BUFFER) {
        tracing::warn!(listen = %config.listen, %error, "rcfeed: cannot enlarge the receive buffer");
    }
    let (queue, waiting) = tokio::sync::mpsc::channel(QUEUE);
    let publishing = tokio::spawn(publish(Arc::clone(&hub), config.clone(), Arc::clone(&publisher), waiting));
    receive(&hub, &config, &publisher, &socket, &queue).await;
    drop(queue);
    // What was received before shutdown is still stored, if the store takes it in time.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), publishing).await;
}

/// Reads datagrams as fast as they come, so the kernel's buffer does not overflow; what it
/// dropped anyway is counted from `/proc/net/udp`.
async fn receive(
    hub: &Hub,
    config: &RcFeedConfig,
    publisher: &Publisher,
    socket: &UdpSocket,
    queue: &tokio::sync::mpsc::Sender<Draft>,
) {
    let shutdown = hub.shutdown().clone();
    let mut buffer = vec![0u8; MAX_DATAGRAM + 1];
    let mut kernel = KernelDrops::of(socket);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                hub.metrics().rcfeed_kernel_dropped.add(kernel.new_drops());
                continue;
            }
            received = socket.recv_from(&mut buffer) => received,
        };
        match received {
            Ok((length, from)) => {
                if let Some(draft) = read(hub, config, publisher, &buffer[..length], from)
                    && queue.try_send(draft).is_err()
                {
                    hub.metrics().rcfeed_queue_dropped.inc();
                    static FULL: wikiwire_hub::LogGate =
                        wikiwire_hub::LogGate::new(std::time::Duration::from_secs(10));
                    if let Some(also) = FULL.admit() {
                        tracing::error!(listen = %config.listen, also, "rcfeed: queue full, a change was dropped");
                    }
                }
            }
            Err(error) => tracing::warn!(listen = %config.listen, %error, "rcfeed: receiving failed"),
        }
    }
    hub.metrics().rcfeed_kernel_dropped.add(kernel.new_drops());
}

/// Stores what waits in the queue, in groups; a rate limit or an unavailable store is waited
/// out, never a reason to drop a change.
async fn publish(
    hub: Arc<Hub>,
    config: RcFeedConfig,
    publisher: Arc<Publisher>,
    mut waiting: tokio::sync::mpsc::Receiver<Draft>,
) {
    let mut drafts = Vec::with_capacity(BATCH);
    while waiting.recv_many(&mut drafts, BATCH).await > 0 {
        let count = drafts.len() as u64;
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            match hub.publish(&publisher, drafts.clone()).await {
                Ok(_) => {
                    hub.metrics().rcfeed_accepted.add(count);
                    break;
                }
                Err(PublishError::RateLimited { retry_after }) => tokio::time::sleep(retry_after).await,
                Err(PublishError::Store(error @ wikiwire_store::StoreError::Damaged { .. })) => {
                    // Waiting would not help: the store refuses every write until it is repaired
                    // with the hub stopped.
                    hub.metrics().rcfeed_refused.add(count);
                    static DAMAGED: wikiwire_hub::LogGate =
                        wikiwire_hub::LogGate::new(std::time::Duration::from_secs(10));
                    if let Some(also) = DAMAGED.admit() {
                        tracing::error!(listen = %config.listen, %error, count, also, "rcfeed: changes not stored");
                    }
                    break;
                }
                Err(PublishError::Store(error)) if !hub.shutdown().is_cancelled() => {
                    tracing::warn!(listen = %config.listen, %error, count, "rcfeed: store unavailable, waiting");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
                Err(error) => {
                    hub.metrics().rcfeed_refused.add(count);
                    tracing::warn!(listen = %config.listen, %error, count, "rcfeed: changes not stored");
                    break;
                }
            }
        }
        drafts.clear();
    }
}

/// The kernel's count of datagrams dropped on one socket (`/proc/net/udp`, found by the
/// socket's inode); elsewhere than Linux, nothing.
struct KernelDrops {
    inode: Option<u64>,
    seen: u64,
}

impl KernelDrops {
    fn of(socket: &UdpSocket) -> KernelDrops {
        #[cfg(target_os = "linux")]
        let inode = {
            use std::os::fd::AsRawFd;
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok().map(|meta| meta.ino())
        };
        #[cfg(not(target_os = "linux"))]
        let inode = {
            let _ = socket;
            None
        };
        KernelDrops { inode, seen: 0 }
    }

    /// Drops since the last call.
    fn new_drops(&mut self) -> u64 {
        let Some(inode) = self.inode else { return 0 };
        let total = ["/proc/net/udp", "/proc/net/udp6"]
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .find_map(|table| drops_of(&table, inode))
            .unwrap_or(self.seen);
        let new = total.saturating_sub(self.seen);
        self.seen = total;
        new
    }
}

/// The `drops` column (the last) of the row whose `inode` column (the tenth) is `inode`.
fn drops_of(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|row| {
        let columns: Vec<&str> = row.split_whitespace().collect();
        (columns.get(9)?.parse::<u64>().ok()? == inode).then(|| columns.last()?.parse().ok())?
    })
}

/// One datagram: a draft for the publisher's wiki, or counted and logged as refused.
fn read(
    hub: &Hub,
    config: &RcFeedConfig,
    publisher: &Publisher,
    datagram: &[u8],
    from: SocketAddr,
) -> Option<Draft> {
    let refuse = |reason: &dyn std::fmt::Display| {
        // An allowed sender with a broken formatter would otherwise log one line per edit.
        static REFUSED: wikiwire_hub::LogGate =
            wikiwire_hub::LogGate::new(std::time::Duration::from_secs(10));
        hub.metrics().rcfeed_refused.inc();
        if let Some(also) = REFUSED.admit() {
            tracing::warn!(listen = %config.listen, %from, %reason, also, "rcfeed: datagram refused (also: refused since the last such line)");
        }
    };
    if !config.allow.contains(&from.ip()) {
        // Anyone can send datagrams: counted, and logged at debug so a flood cannot fill the log.
        hub.metrics().rcfeed_refused.inc();
        tracing::debug!(listen = %config.listen, %from, "rcfeed: datagram from an address not in `allow`");
        return None;
    }
    let change = match mediawiki::parse_datagram(datagram) {
        Ok(change) => change,
        Err(error) => {
            refuse(&error);
            return None;
        }
    };
    let Some(wiki) = wiki_of(hub, publisher, &change) else {
        refuse(&format!(
            "wiki {:?} (server {:?}) is not one of publisher {}'s wikis",
            change.wiki_id.as_deref().unwrap_or(""),
            change.server_name.as_deref().unwrap_or(""),
            publisher.name
        ));
        return None;
    };
    let mut event = change.event;
    event.wiki = wiki;
    if config.channels == RcFeedChannels::FromPrefix
        && let Some(prefix) = change.prefix.filter(|prefix| check_channel_name(prefix).is_ok())
    {
        // Read by the IRC server, which makes the channel (`wikiwire_irc::channels`).
        event.extra.insert(mediawiki::CHANNEL_EXTRA.to_owned(), prefix);
    }
    match Draft::validate(event) {
        Ok(draft) => Some(draft),
        Err(error) => {
            refuse(&error);
            None
        }
    }
}

/// The publisher's wiki a change names: by `wiki` id, by `server_name` as a wiki name, or by
/// `server_name` as the host of a wiki's `base_url`. A `wiki` id that names another publisher's
/// wiki names none of this publisher's, whatever the server name says.
fn wiki_of(hub: &Hub, publisher: &Publisher, change: &RcChange) -> Option<String> {
    if let Some(id) = change.wiki_id.as_deref()
        && publisher.canonical_wiki(id).is_none()
        && hub.publishers().wiki(id).is_some()
    {
        return None;
    }
    let names = [change.wiki_id.as_deref(), change.server_name.as_deref()];
    for name in names.into_iter().flatten() {
        if let Some(wiki) = publisher.canonical_wiki(name) {
            return Some(wiki.to_owned());
        }
    }
    let server = change.server_name.as_deref()?;
    publisher.wikis.iter().find_map(|wiki| {
        let base = hub.publishers().wiki(wiki)?.base_url.as_deref()?;
        let host = base.split_once("://").map_or(base, |(_, rest)| rest);
        let host = host.split(['/', ':']).next()?;
        host.eq_ignore_ascii_case(server).then(|| wiki.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::drops_of;

    #[test]
    fn kernel_drops_are_read_from_the_row_of_the_socket() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4711 2 0000000000000000 0
  124: 0100007F:A1B3 00000000:0000 07 00000000:00034000 00:00000000 00000000     0        0 4712 2 0000000000000000 23737
";
        assert_eq!(drops_of(table, 4712), Some(23737));
        assert_eq!(drops_of(table, 4711), Some(0));
        assert_eq!(drops_of(table, 9), None);
    }
}
