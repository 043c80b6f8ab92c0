//! The bus: committed events, in id order, to every output in this process.
//!
//! A `tokio::sync::broadcast` ring: sending never waits, so a slow output cannot slow the store or
//! anyone else. A receiver that falls more than the capacity behind gets `Lagged` and must resume
//! from the store, which still has every event.

use std::sync::Arc;

use tokio::sync::broadcast;
use wikiwire_event::Event;

/// Events held for receivers that are behind; past this a receiver lags.
pub const DEFAULT_CAPACITY: usize = 4096;

#[derive(Clone, Debug)]
pub struct Bus {
    sender: broadcast::Sender<Arc<Event>>,
}

impl Bus {
    pub fn new(capacity: usize) -> Bus {
        Bus { sender: broadcast::channel(capacity).0 }
    }

    /// Announces a committed event. Only a store calls this, after its commit.
    pub fn announce(&self, event: Arc<Event>) {
        // No receivers is not an error: nobody is listening yet.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }

    pub fn receivers(&self) -> usize {
        self.sender.receiver_count()
    }
}

impl Default for Bus {
    fn default() -> Bus {
        Bus::new(DEFAULT_CAPACITY)
    }
}
