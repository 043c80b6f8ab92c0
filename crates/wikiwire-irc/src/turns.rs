//! Turns for history queries that read the log row by row (a channel whose filter has page
//! patterns, globs or flags): one at a time per client address. The store runs only a few such
//! scans at once and queues the rest in order; without turns one address, over many connections,
//! could fill that queue and make everyone else wait behind all of it. With them, an address's
//! flood queues behind itself and any other query waits for at most one scan per address.
//!
//! Never held across anything but the store queries of one request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Addresses with a scan running or waiting; an address with neither has no entry.
#[derive(Default)]
pub struct Turns {
    addresses: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

/// An address's turn; the next query from the address goes when it is dropped.
pub struct Turn {
    turns: Arc<Turns>,
    ip: IpAddr,
    permit: Option<OwnedSemaphorePermit>,
}

impl Turns {
    fn addresses(&self) -> MutexGuard<'_, HashMap<IpAddr, Arc<Semaphore>>> {
        self.addresses.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for the address's turn; also says whether it had to wait.
    pub async fn take(self: &Arc<Turns>, ip: IpAddr) -> (Turn, bool) {
        let semaphore = Arc::clone(self.addresses().entry(ip).or_insert_with(|| Arc::new(Semaphore::new(1))));
        let (permit, waited) = match Arc::clone(&semaphore).try_acquire_owned() {
            Ok(permit) => (permit, false),
            // Never closed: the semaphore lives as long as anyone holds or awaits it.
            Err(_) => (semaphore.acquire_owned().await.expect("turn semaphores are never closed"), true),
        };
        (Turn { turns: Arc::clone(self), ip, permit: Some(permit) }, waited)
    }

    /// Addresses with a turn running or waiting (for tests).
    pub fn busy(&self) -> usize {
        self.addresses().len()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        // Under the lock, so that no one takes the entry between the count and the removal.
        let mut addresses = self.turns.addresses();
        drop(self.permit.take());
        if addresses.get(&self.ip).is_some_and(|semaphore| Arc::strong_count(semaphore) == 1) {
            addresses.remove(&self.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const THERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[tokio::test]
    async fn one_turn_per_address_and_none_kept_once_idle() {
        let turns = Arc::new(Turns::default());
        let (first, waited) = turns.take(HERE).await;
        assert!(!waited);
        let (other, waited) = turns.take(THERE).await;
        assert!(!waited, "another address does not wait");
        let next = tokio::spawn({
            let turns = Arc::clone(&turns);
            async move { turns.take(HERE).await.1 }
        });
        tokio::task::yield_now().await;
        assert!(!next.is_finished(), "the same address waits for its earlier query");
        drop(first);
        assert!(next.await.unwrap(), "and says it waited");
        drop(other);
        assert_eq!(turns.busy(), 0, "idle addresses leave nothing behind");
    }
}
