//! Leases: which process runs a job that must run exactly once (a relay, the Jabber bot).
//!
//! A job takes its lease before it starts and checks [`Lease::valid`] immediately before every
//! side effect (an IRC line, an XMPP stanza); it stops when [`Lease::lost`] fires. A lease alone
//! cannot stop a holder that was paused from one last write, so every durable step of a leased
//! job is also fenced: cursors move only from the revision the job last wrote
//! ([`crate::Store::set_cursor`]), and a job claims its cursor when it takes over, so a deposed
//! holder's late write fails.
//!
//! On one node ([`LocalLeases`]) a lease is granted at once and never lost: the same code path
//! with nothing to decide. In a cluster the JetStream store hands out leases kept in a NATS
//! key-value bucket with a time to live (`jetstream::lease`).

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Waits until this process holds `name`; `None` when `stop` fired first.
    async fn acquire(&self, name: &str, stop: &CancellationToken) -> Option<Lease>;
}

/// What a lease implementation tells its holder.
pub trait Holding: Send + Sync {
    /// Still held, and recently confirmed: safe to act now.
    fn valid(&self) -> bool;
}

/// A held lease. Dropping it releases it (in a cluster, at once, so another node takes over
/// without waiting for the time to live).
pub struct Lease {
    /// Fired when the lease is lost (taken over, or not renewed in time).
    lost: CancellationToken,
    holding: Arc<dyn Holding>,
    /// Fired on drop: the implementation releases.
    release: CancellationToken,
}

impl Lease {
    pub fn new(lost: CancellationToken, holding: Arc<dyn Holding>, release: CancellationToken) -> Lease {
        Lease { lost, holding, release }
    }

    /// Whether the job may act now; check immediately before every side effect.
    pub fn valid(&self) -> bool {
        !self.lost.is_cancelled() && self.holding.valid()
    }

    /// Resolves when the lease is lost.
    pub async fn lost(&self) {
        self.lost.cancelled().await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release.cancel();
    }
}

/// One process, nothing to share: every lease is granted at once and held until dropped.
#[derive(Default)]
pub struct LocalLeases;

struct Always;

impl Holding for Always {
    fn valid(&self) -> bool {
        true
    }
}

#[async_trait]
impl Leases for LocalLeases {
    async fn acquire(&self, _name: &str, stop: &CancellationToken) -> Option<Lease> {
        if stop.is_cancelled() {
            return None;
        }
        Some(Lease::new(CancellationToken::new(), Arc::new(Always), CancellationToken::new()))
    }
}
