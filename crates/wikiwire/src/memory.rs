//! Giving memory back after a burst.
//!
//! glibc's allocator keeps what a burst freed (queued lines, write buffers of thousands of
//! connections, spread over one arena per worker thread) for reuse instead of returning it, so a
//! hub that once fanned out a burst to 5,000 listeners would stay at its peak size. Every
//! [`TRIM_EVERY`] the free pages are handed back (`malloc_trim`); on other C libraries this does
//! nothing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

const TRIM_EVERY: Duration = Duration::from_secs(10);

pub async fn trim_periodically(shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(TRIM_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                // It walks every arena: a few milliseconds, off the runtime's threads.
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim takes no pointers; it only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
