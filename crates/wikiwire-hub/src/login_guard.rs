//! `LoginGuard`: failed logins slow down the address they come from.
//!
//! Every front end that checks a secret (IRC `PASS` and SASL, HTTP publisher tokens, the XML-RPC
//! secret) asks the guard before checking and tells it the outcome. An address gets a few free
//! failures; after that it must wait before its next attempt, twice as long after each further
//! failure (1 s, 2 s, 4 s … up to 5 minutes), and attempts made while it waits are refused
//! without looking at the secret, so guessing stops being worth it. A success clears the address;
//! an address quiet for a while is forgotten. Counted in the metrics either way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::log_gate::LogGate;
use crate::metrics::Metrics;

/// Failures an address may have before it must wait.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// An address with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Addresses remembered at most (a flood of addresses cannot take memory).
const REMEMBERED: usize = 65_536;

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last: Instant,
    /// No attempt is looked at before this.
    until: Option<Instant>,
}

pub struct LoginGuard {
    records: Mutex<HashMap<IpAddr, Record>>,
    metrics: Arc<Metrics>,
}

impl LoginGuard {
    pub fn new(metrics: Arc<Metrics>) -> LoginGuard {
        LoginGuard { records: Mutex::default(), metrics }
    }

    /// A login from `ip`: `Err(wait)` when the address must wait first (`check` is not run);
    /// otherwise what `check` found, recorded.
    pub fn login<T>(&self, ip: IpAddr, check: impl FnOnce() -> Option<T>) -> Result<Option<T>, Duration> {
        self.check(ip)?;
        let found = check();
        match &found {
            Some(_) => self.succeeded(ip),
            None => {
                if let Some(wait) = self.failed(ip) {
                    static SLOWED: LogGate = LogGate::new(Duration::from_secs(10));
                    if let Some(also) = SLOWED.admit() {
                        tracing::warn!(
                            %ip,
                            ?wait,
                            also,
                            "repeated failed logins: the address must wait before it tries again"
                        );
                    }
                }
            }
        }
        Ok(found)
    }

    /// `Err(wait)` when `ip` must wait that long before it may try again (counted as refused).
    fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(records) = self.records.lock() else { return Ok(()) };
        match records.get(&ip).and_then(|record| record.until) {
            Some(until) if until > now => {
                self.metrics.login_refused.inc();
                Err(until - now)
            }
            _ => Ok(()),
        }
    }

    /// Records a failed login from `ip`; returns the wait now imposed, if any.
    fn failed(&self, ip: IpAddr) -> Option<Duration> {
        self.metrics.login_failures.inc();
        let now = Instant::now();
        let Ok(mut records) = self.records.lock() else { return None };
        if records.len() >= REMEMBERED && !records.contains_key(&ip) {
            records.retain(|_, record| now.duration_since(record.last) < FORGET_AFTER);
            if records.len() >= REMEMBERED {
                // Still full of recent failures: make room by forgetting the oldest.
                if let Some(oldest) = records.iter().min_by_key(|(_, record)| record.last).map(|(ip, _)| *ip)
                {
                    records.remove(&oldest);
                }
            }
        }
        let record = records.entry(ip).or_insert(Record { failures: 0, last: now, until: None });
        if now.duration_since(record.last) >= FORGET_AFTER {
            *record = Record { failures: 0, last: now, until: None };
        }
        record.failures += 1;
        record.last = now;
        let wait = wait_after(record.failures);
        record.until = wait.map(|wait| now + wait);
        wait
    }

    fn succeeded(&self, ip: IpAddr) {
        if let Ok(mut records) = self.records.lock() {
            records.remove(&ip);
        }
    }
}

/// What a refused login is told; whole seconds, rounded up.
pub fn refusal(wait: Duration) -> String {
    format!("too many failed logins from your address: try again in {} s", whole_seconds(wait))
}

/// A wait in whole seconds, rounded up (for `Retry-After`): a client that waits this long is let in.
pub fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

/// The wait after `failures` failures in a row.
fn wait_after(failures: u32) -> Option<Duration> {
    let over = failures.checked_sub(FREE_FAILURES)?;
    Some(Duration::from_secs(1u64 << over.min(16)).min(MAX_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_failures_and_stop_at_the_cap() {
        assert_eq!(wait_after(4), None);
        assert_eq!(wait_after(5), Some(Duration::from_secs(1)));
        assert_eq!(wait_after(6), Some(Duration::from_secs(2)));
        assert_eq!(wait_after(9), Some(Duration::from_secs(16)));
        assert_eq!(wait_after(40), Some(MAX_WAIT));
    }

    #[test]
    fn an_address_is_refused_unseen_while_it_waits_and_cleared_by_a_success() {
        let metrics = Arc::new(Metrics::default());
        let guard = LoginGuard::new(Arc::clone(&metrics));
        let (bad, other): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..FREE_FAILURES {
            assert_eq!(guard.login(bad, || None::<()>), Ok(None));
        }
        let mut looked = false;
        assert!(
            guard
                .login(bad, || {
                    looked = true;
                    Some(())
                })
                .is_err(),
            "the right secret waits too"
        );
        assert!(!looked, "the secret is not looked at while the address waits");
        assert_eq!(guard.login(other, || Some(())), Ok(Some(())), "only the failing address waits");
        assert_eq!((metrics.login_failures.get(), metrics.login_refused.get()), (5, 1));
        guard.succeeded(bad);
        assert_eq!(guard.login(bad, || Some(())), Ok(Some(())));
    }
}
