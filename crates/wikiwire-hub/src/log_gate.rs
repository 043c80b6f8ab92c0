//! `LogGate`: at most one log line per interval for a kind of refusal that anyone can cause
//! (wrong secrets, bad datagrams), with the count of the ones held back, so a flood of them is
//! counted in the metrics and summarised in the log instead of filling it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LogGate {
    interval: Duration,
    /// When a line was last let through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogGate {
    pub const fn new(interval: Duration) -> LogGate {
        LogGate { interval, state: Mutex::new((None, 0)) }
    }

    /// `Some(held back since the last line)` when this occurrence may be logged.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means a panic while counting: logging then is the safe side.
        let Ok(mut state) = self.state.lock() else { return Some(0) };
        let (last, held) = &mut *state;
        match last {
            Some(at) if now.duration_since(*at) < self.interval => {
                *held += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let gate = LogGate::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(gate.admit_at(start), Some(0));
        for second in 1..10 {
            assert_eq!(gate.admit_at(start + Duration::from_secs(second)), None);
        }
        assert_eq!(gate.admit_at(start + Duration::from_secs(10)), Some(9));
        assert_eq!(gate.admit_at(start + Duration::from_secs(11)), None);
        assert_eq!(gate.admit_at(start + Duration::from_secs(25)), Some(1));
    }
}
