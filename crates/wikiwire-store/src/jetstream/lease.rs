//! Leases in a cluster: one key per job in the bucket `<stream>_leases`, whose entries expire
//! after the lease's time to live (`max_age`).
//!
//! * **Acquire**: `create(name, node)`, which succeeds only when no live entry holds the name.
//!   Every node tries every job, after a random pause, so jobs spread over the nodes.
//! * **Renew** every ttl/5 with `update(name, node, revision)`: a compare-and-set, so a node that
//!   was taken over cannot renew.
//! * **Self-fence**: a holder whose last successful renewal is older than 0.6 × ttl (monotonic
//!   clock; a process paused by SIGSTOP sees the time pass) is no longer valid, before the entry
//!   can expire (ttl) and another node take it. Its job stops before any further side effect.
//! * **Release** when the job drops the lease or the store closes (SIGTERM):
//!   `delete_expect_revision`, so another node takes over at once instead of after the time to
//!   live.
//!
//! The node's own name is leased the same way (`node.<hex name>`, [`claim_node`], [`keep_node`]):
//! taken before the store opens, so a second process with the same `[cluster] node` is refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lease::{Holding, Lease, Leases};

/// Renewals per time to live.
const RENEWALS: u32 = 5;
/// Fraction of the time to live after the last renewal at which a holder stops acting.
const FENCE: f64 = 0.6;

pub struct NatsLeases {
    bucket: kv::Store,
    node: String,
    ttl: Duration,
    /// The store's closing: every lease is released and lost.
    closing: CancellationToken,
}

impl NatsLeases {
    pub fn new(bucket: kv::Store, node: String, ttl: Duration, closing: CancellationToken) -> NatsLeases {
        NatsLeases { bucket, node, ttl, closing }
    }
}

/// When the holder last renewed, read by `valid`.
struct Renewed {
    at: Mutex<Instant>,
    fence_after: Duration,
}

impl Holding for Renewed {
    fn valid(&self) -> bool {
        self.at.lock().is_ok_and(|at| at.elapsed() < self.fence_after)
    }
}

/// A key for a lease name: any job name, hex-encoded (KV keys allow few characters).
pub fn lease_key(name: &str) -> String {
    format!("lease.{}", hex::encode(name))
}

#[async_trait]
impl Leases for NatsLeases {
    async fn acquire(&self, name: &str, stop: &CancellationToken) -> Option<Lease> {
        let key = lease_key(name);
        let retry = self.ttl / RENEWALS;
        // Every node tries every job: a random first pause spreads the jobs over the nodes.
        if !pause(jitter(Duration::from_secs(2)), stop).await {
            return None;
        }
        loop {
            match self.bucket.create(&key, self.node.clone().into()).await {
                Ok(revision) => {
                    tracing::info!(lease = name, node = %self.node, "lease taken");
                    return Some(self.hold(name, key, revision));
                }
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(error) => tracing::debug!(lease = name, %error, "cannot take the lease yet"),
            }
            if !pause(retry + jitter(retry / 2), stop).await {
                return None;
            }
        }
    }
}

impl NatsLeases {
    fn hold(&self, name: &str, key: String, revision: u64) -> Lease {
        let lost = CancellationToken::new();
        let release = CancellationToken::new();
        let fence_after = self.ttl.mul_f64(FENCE);
        let renewed = Arc::new(Renewed { at: Mutex::new(Instant::now()), fence_after });
        let task = Renewal {
            bucket: self.bucket.clone(),
            name: name.to_owned(),
            key,
            node: self.node.clone(),
            revision,
            every: self.ttl / RENEWALS,
            renewed: Arc::clone(&renewed),
            lost: lost.clone(),
            release: release.clone(),
            closing: self.closing.clone(),
        };
        tokio::spawn(task.run());
        Lease::new(lost, renewed, release)
    }
}

struct Renewal {
    bucket: kv::Store,
    name: String,
    key: String,
    node: String,
    revision: u64,
    every: Duration,
    renewed: Arc<Renewed>,
    lost: CancellationToken,
    release: CancellationToken,
    closing: CancellationToken,
}

impl Renewal {
    async fn run(mut self) {
        loop {
            let fence_at = self.last() + self.renewed.fence_after;
            tokio::select! {
                _ = self.release.cancelled() => {}
                _ = self.closing.cancelled() => {}
                _ = tokio::time::sleep_until(fence_at) => {
                    tracing::warn!(lease = %self.name, "lease not renewed in time: the job stops");
                    self.lost.cancel();
                    return;
                }
                _ = tokio::time::sleep(self.every) => {
                    self.renew().await;
                    if self.lost.is_cancelled() {
                        return;
                    }
                    continue;
                }
            }
            // Released, or the store closes: let the next holder in now rather than after the
            // time to live.
            let fenced = !self.renewed.valid();
            self.lost.cancel();
            let deleted = self.bucket.delete_expect_revision(&self.key, Some(self.revision));
            match tokio::time::timeout(self.every, deleted).await {
                Ok(Ok(())) if !fenced => tracing::info!(lease = %self.name, "lease released"),
                Ok(Ok(())) => tracing::warn!(lease = %self.name, "lease not renewed in time: released"),
                Ok(Err(_)) => {
                    tracing::warn!(lease = %self.name, "lease taken over by another node meanwhile")
                }
                Err(_) => tracing::debug!(lease = %self.name, "lease release timed out: it expires"),
            }
            return;
        }
    }

    /// One renewal: a compare-and-set from the revision this holder wrote last.
    async fn renew(&mut self) {
        let update = self.bucket.update(&self.key, self.node.clone().into(), self.revision);
        match tokio::time::timeout(self.every, update).await {
            Ok(Ok(revision)) => {
                self.revision = revision;
                if let Ok(mut at) = self.renewed.at.lock() {
                    *at = Instant::now();
                }
            }
            Ok(Err(error)) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                tracing::warn!(lease = %self.name, "lease taken over by another node: the job stops");
                self.lost.cancel();
            }
            // NATS out of reach for now: try again until the fence says stop.
            Ok(Err(error)) => tracing::debug!(lease = %self.name, %error, "lease renewal failed"),
            Err(_) => tracing::debug!(lease = %self.name, "lease renewal timed out"),
        }
    }

    fn last(&self) -> Instant {
        self.renewed.at.lock().map_or_else(|_| Instant::now(), |at| *at)
    }
}

/// Sleeps unless `stop` fires first; false when it did.
async fn pause(duration: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(duration) => true,
    }
}

/// A pseudo-random duration below `limit` (spreading, not security).
fn jitter(limit: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.subsec_nanos());
    let seed = u64::from(nanos) ^ u64::from(std::process::id()).rotate_left(17);
    limit.mul_f64((seed % 1000) as f64 / 1000.0)
}

/// How often a node waiting for its name polls the holder's entry.
const CLAIM_POLL: Duration = Duration::from_millis(200);

/// The key of a node's own lease: one running process per `[cluster] node` name.
pub fn node_key(node: &str) -> String {
    format!("node.{}", hex::encode(node))
}

/// Takes the name `node` for this process (`holder`: the name and a nonce of this process), in the
/// lease bucket, and returns the entry's revision. A name held by a process that renews it is
/// refused as soon as a renewal is seen (at most ttl/5 + a poll); a name left by a process that
/// died (kill -9, a lost machine) is taken once its entry expires, after at most the ttl.
pub(crate) async fn claim_node(
    bucket: &kv::Store,
    node: &str,
    holder: &str,
    ttl: Duration,
) -> Result<u64, crate::StoreError> {
    let key = node_key(node);
    let deadline = Instant::now() + ttl + ttl / RENEWALS;
    let refused = |why: &str| {
        crate::StoreError::unavailable_msg(format!(
            "another wikiwire process is running as node {node:?} ({why}): every hub node needs its own \
             [cluster] node name; stop the other one, or give this one another name"
        ))
    };
    let mut seen = None;
    let mut waiting_logged = false;
    let mut failure = None;
    loop {
        match bucket.create(&key, holder.to_owned().into()).await {
            Ok(revision) => return Ok(revision),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(error) => {
                tracing::debug!(%error, "cannot take this node's name yet");
                failure = Some(error);
            }
        }
        if let Ok(Some(entry)) = bucket.entry(&key).await
            && entry.operation == kv::Operation::Put
        {
            match seen {
                Some(revision) if revision != entry.revision => {
                    return Err(refused("it renewed the name's lease while this one waited"));
                }
                Some(_) => {}
                None => seen = Some(entry.revision),
            }
            if !waiting_logged {
                waiting_logged = true;
                tracing::info!(
                    node,
                    ttl = ?ttl,
                    "this node's name is held (a previous run that did not stop cleanly, or another process): \
                     waiting for it to expire"
                );
            }
        }
        if Instant::now() >= deadline {
            return Err(match (seen, failure) {
                (None, Some(error)) => crate::StoreError::unavailable_in(
                    format_args!("cannot take the name of node {node:?} in NATS (bucket of leases)"),
                    error,
                ),
                _ => refused(&format!("the name's lease is still held after {ttl:?}")),
            });
        }
        tokio::time::sleep(CLAIM_POLL).await;
    }
}

/// Renews the node's name every ttl/5 until `stop`, then releases it (a restart takes it at once).
/// If the entry expired meanwhile (NATS out of reach for longer than the ttl) it is taken again;
/// if another process took it, `lost` is called with why: two processes share one name.
pub(crate) async fn keep_node(
    bucket: kv::Store,
    node: String,
    holder: String,
    mut revision: u64,
    ttl: Duration,
    stop: CancellationToken,
    lost: impl Fn(String) + Send,
) {
    let key = node_key(&node);
    let every = ttl / RENEWALS;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        let update = tokio::select! {
            update = tokio::time::timeout(every, bucket.update(&key, holder.clone().into(), revision)) => update,
            () = stop.cancelled() => break,
        };
        match update {
            Ok(Ok(renewed)) => revision = renewed,
            Ok(Err(error)) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                match tokio::time::timeout(every, bucket.entry(&key)).await {
                    Ok(Ok(Some(entry))) if entry.operation == kv::Operation::Put => {
                        if entry.value == holder.as_bytes() {
                            revision = entry.revision;
                        } else {
                            lost(format!(
                                "another process took this node's name {node:?} (its lease expired while NATS \
                                 was out of reach): two processes run as one node"
                            ));
                            return;
                        }
                    }
                    Ok(Ok(_)) => {
                        if let Ok(Ok(created)) =
                            tokio::time::timeout(every, bucket.create(&key, holder.clone().into())).await
                        {
                            revision = created;
                        }
                    }
                    _ => {}
                }
            }
            // NATS out of reach for now: try again at the next tick.
            _ => tracing::debug!(node, "renewing this node's name failed"),
        }
    }
    let deleted = bucket.delete_expect_revision(&key, Some(revision));
    if !matches!(tokio::time::timeout(every, deleted).await, Ok(Ok(()))) {
        tracing::debug!(node, "releasing this node's name failed: it expires");
    }
}
