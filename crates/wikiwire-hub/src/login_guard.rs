//! `LoginGuard`: failed logins slow down the address they come from, and its network.
//!
//! Every front end that checks a secret (IRC `PASS` and SASL, HTTP publisher tokens, the XML-RPC
//! secret) asks the guard before checking and tells it the outcome. Failures are counted twice:
//! against the address and against its network (IPv4 per /24, IPv6 per /64: one host holds a
//! whole /64, and a sprayer easily holds many addresses of a /24 — all 16 million of 127/8 on
//! loopback). An address gets [`FREE_FAILURES`] free failures, its network
//! [`NETWORK_FREE_FAILURES`]; after that the address (or every address of the network) must wait
//! before its next attempt, twice as long after each further failure (1 s, 2 s, 4 s … up to
//! 5 minutes), and attempts made while it waits are refused without looking at the secret.
//!
//! A success clears only what it proves: the failures made from that address against the same
//! [`Claim`] (a mistyped token, then the right one). Failures against other publishers' names,
//! and unnamed ones (an HTTP token that matched no one), stay until forgotten — otherwise a wiki
//! holding one valid token could interleave it with guesses at everyone else's for ever.
//!
//! The table is bounded ([`REMEMBERED`] records). Records are kept in the order they were last
//! touched, so forgetting the quiet ones and, when still full, the least recently failing one is
//! O(log n) per failure: a flood of fresh addresses costs every login the same small amount.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::log_gate::LogGate;
use crate::metrics::Metrics;

/// Failures an address may have before it must wait.
pub const FREE_FAILURES: u32 = 5;
/// Failures a network (IPv4 /24, IPv6 /64) may have before all of its addresses must wait.
pub const NETWORK_FREE_FAILURES: u32 = 20;
/// IPv4 addresses are also counted per network of this prefix length.
pub const IPV4_NETWORK_BITS: u8 = 24;
/// IPv6 addresses are also counted per network of this prefix length.
pub const IPV6_NETWORK_BITS: u8 = 64;
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// A record with no failure for this long starts afresh.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);
/// Records (addresses and networks) remembered at most: a flood of addresses cannot take memory.
pub const REMEMBERED: usize = 65_536;
/// Distinct claims a record counts separately (an honest client tries one name, or mistypes it
/// once); failures against further claims still count, but no success clears them.
const CLAIMS_KEPT: usize = 3;

/// What a login was for: a success proves the client holds this claim's secret, and clears the
/// failures made against the same claim from the same address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim<'a> {
    /// A publisher's name (IRC `PASS name:token`, SASL's authentication identity).
    Publisher(&'a str),
    /// A service's one secret (the XML-RPC API).
    Secret(&'static str),
    /// Nothing named (an HTTP bearer token is looked up among all publishers): a success proves
    /// nothing about earlier failures.
    Unnamed,
}

/// Where failures are counted: one address, or the network it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    /// The address with the bits past `bits` cleared.
    ip: IpAddr,
    bits: u8,
}

impl Key {
    /// The address itself (IPv4-mapped IPv6 read as IPv4), then its network.
    fn both(ip: IpAddr) -> [Key; 2] {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let mask = u32::MAX << (32 - IPV4_NETWORK_BITS);
                let network = IpAddr::V4((u32::from(v4) & mask).into());
                [Key { ip: IpAddr::V4(v4), bits: 32 }, Key { ip: network, bits: IPV4_NETWORK_BITS }]
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX << (128 - IPV6_NETWORK_BITS);
                let network = IpAddr::V6((u128::from(v6) & mask).into());
                [Key { ip: IpAddr::V6(v6), bits: 128 }, Key { ip: network, bits: IPV6_NETWORK_BITS }]
            }
        }
    }

    fn free_failures(&self) -> u32 {
        if self.bits == 32 || self.bits == 128 { FREE_FAILURES } else { NETWORK_FREE_FAILURES }
    }
}

#[derive(Clone, Debug)]
struct Record {
    failures: u32,
    /// Failures by claim (a hash of it; 0 is an empty slot), for the first few claims.
    claims: [(u64, u32); CLAIMS_KEPT],
    last: Instant,
    /// No attempt is looked at before this.
    until: Option<Instant>,
    /// Its place in the table's age order.
    stamp: u64,
}

impl Record {
    fn new(now: Instant, stamp: u64) -> Record {
        Record { failures: 0, claims: [(0, 0); CLAIMS_KEPT], last: now, until: None, stamp }
    }

    fn count(&mut self, claim: u64) {
        self.failures += 1;
        if claim == 0 {
            return;
        }
        let at = self.claims.iter().position(|(id, _)| *id == claim);
        if let Some(at) = at.or_else(|| self.claims.iter().position(|(id, _)| *id == 0)) {
            self.claims[at] = (claim, self.claims[at].1 + 1);
        }
    }

    /// Takes the failures counted against `claim` out of the record; returns how many.
    fn take(&mut self, claim: u64) -> u32 {
        let Some(slot) = self.claims.iter_mut().find(|(id, _)| *id == claim && claim != 0) else {
            return 0;
        };
        let taken = slot.1;
        *slot = (0, 0);
        self.failures = self.failures.saturating_sub(taken);
        taken
    }
}

/// The records and their age order; every operation is O(log n).
struct Table {
    records: HashMap<Key, Record>,
    /// Stamp → key, oldest first.
    by_age: BTreeMap<u64, Key>,
    next_stamp: u64,
    capacity: usize,
    /// Hashes claims (names are kept as 8 bytes, not as strings an attacker chooses).
    hasher: RandomState,
}

impl Table {
    fn new(capacity: usize) -> Table {
        Table {
            records: HashMap::new(),
            by_age: BTreeMap::new(),
            next_stamp: 0,
            capacity: capacity.max(2),
            hasher: RandomState::new(),
        }
    }

    fn claim_id(&self, claim: Claim<'_>) -> u64 {
        let id = match claim {
            Claim::Publisher(name) => self.hasher.hash_one(("publisher", name.to_ascii_lowercase())),
            Claim::Secret(service) => self.hasher.hash_one(("secret", service)),
            Claim::Unnamed => return 0,
        };
        id.max(1)
    }

    /// The longest wait any of `ip`'s records imposes now.
    fn wait(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        Key::both(ip)
            .iter()
            .filter_map(|key| self.records.get(key)?.until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Counts a failure against `ip` and its network; returns the wait now imposed, if any,
    /// and how many records were forgotten to make room while still recent.
    fn fail(&mut self, ip: IpAddr, claim: Claim<'_>, now: Instant) -> (Option<Duration>, u64) {
        let claim = self.claim_id(claim);
        let mut evicted = 0;
        let mut wait = None;
        for key in Key::both(ip) {
            evicted += self.make_room(&key, now);
            let stamp = self.next_stamp;
            self.next_stamp += 1;
            let record = self.records.entry(key).or_insert_with(|| Record::new(now, stamp));
            if now.saturating_duration_since(record.last) >= FORGET_AFTER {
                *record = Record::new(now, record.stamp);
            }
            self.by_age.remove(&record.stamp);
            record.stamp = stamp;
            self.by_age.insert(stamp, key);
            record.count(claim);
            record.last = now;
            let imposed = wait_after(record.failures, key.free_failures());
            record.until = imposed.map(|imposed| now + imposed);
            wait = wait.max(imposed);
        }
        (wait, evicted)
    }

    /// Before `key` is added: forgets records quiet for `FORGET_AFTER`, then, while the table is
    /// still full, the least recently failing one (counted: the bound was hit).
    fn make_room(&mut self, key: &Key, now: Instant) -> u64 {
        if self.records.contains_key(key) {
            return 0;
        }
        while let Some((_, oldest)) = self.by_age.first_key_value()
            && self
                .records
                .get(oldest)
                .is_none_or(|record| now.saturating_duration_since(record.last) >= FORGET_AFTER)
        {
            self.forget_oldest();
        }
        let mut evicted = 0;
        while self.records.len() >= self.capacity {
            self.forget_oldest();
            evicted += 1;
        }
        evicted
    }

    fn forget_oldest(&mut self) {
        if let Some((_, key)) = self.by_age.pop_first() {
            self.records.remove(&key);
        }
    }

    /// A success from `ip` for `claim`: the failures it made against that claim are cleared
    /// from its record and its network's; nothing else is.
    fn succeed(&mut self, ip: IpAddr, claim: Claim<'_>) {
        let claim = self.claim_id(claim);
        if claim == 0 {
            return;
        }
        let [address, network] = Key::both(ip);
        let Some(record) = self.records.get_mut(&address) else { return };
        let proven = record.take(claim);
        if proven == 0 {
            return;
        }
        self.drop_if_clear(&address);
        if let Some(record) = self.records.get_mut(&network) {
            // The network's own count for the claim may include other addresses' failures:
            // only this address's are proven.
            if let Some(slot) = record.claims.iter_mut().find(|(id, _)| *id == claim) {
                slot.1 = slot.1.saturating_sub(proven);
                if slot.1 == 0 {
                    *slot = (0, 0);
                }
            }
            record.failures = record.failures.saturating_sub(proven);
            self.drop_if_clear(&network);
        }
    }

    fn drop_if_clear(&mut self, key: &Key) {
        if self.records.get(key).is_some_and(|record| record.failures == 0)
            && let Some(record) = self.records.remove(key)
        {
            self.by_age.remove(&record.stamp);
        }
    }
}

pub struct LoginGuard {
    table: Mutex<Table>,
    metrics: Arc<Metrics>,
}

impl LoginGuard {
    pub fn new(metrics: Arc<Metrics>) -> LoginGuard {
        LoginGuard::with_capacity(metrics, REMEMBERED)
    }

    fn with_capacity(metrics: Arc<Metrics>, capacity: usize) -> LoginGuard {
        LoginGuard { table: Mutex::new(Table::new(capacity)), metrics }
    }

    /// A login from `ip` for `claim`: `Err(wait)` when the address or its network must wait
    /// first (`check` is not run); otherwise what `check` found, recorded.
    pub fn login<T>(
        &self,
        ip: IpAddr,
        claim: Claim<'_>,
        check: impl FnOnce() -> Option<T>,
    ) -> Result<Option<T>, Duration> {
        self.check(ip)?;
        let found = check();
        match &found {
            Some(_) => self.succeeded(ip, claim),
            None => {
                if let Some(wait) = self.failed(ip, claim) {
                    static SLOWED: LogGate = LogGate::new(Duration::from_secs(10));
                    if let Some(also) = SLOWED.admit() {
                        tracing::warn!(
                            %ip,
                            ?wait,
                            also,
                            "repeated failed logins: the address (or its network) must wait before it tries again"
                        );
                    }
                }
            }
        }
        Ok(found)
    }

    /// `Err(wait)` when `ip` must wait that long before it may try again (counted as refused).
    fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let Ok(table) = self.table.lock() else { return Ok(()) };
        match table.wait(ip, Instant::now()) {
            Some(wait) => {
                self.metrics.login_refused.inc();
                Err(wait)
            }
            None => Ok(()),
        }
    }

    /// Records a failed login from `ip`; returns the wait now imposed, if any.
    fn failed(&self, ip: IpAddr, claim: Claim<'_>) -> Option<Duration> {
        self.metrics.login_failures.inc();
        let Ok(mut table) = self.table.lock() else { return None };
        let (wait, evicted) = table.fail(ip, claim, Instant::now());
        drop(table);
        if evicted > 0 {
            self.metrics.login_forgotten.add(evicted);
        }
        wait
    }

    fn succeeded(&self, ip: IpAddr, claim: Claim<'_>) {
        if let Ok(mut table) = self.table.lock() {
            table.succeed(ip, claim);
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

/// The wait after `failures` failures in a row, `free` of them without one.
fn wait_after(failures: u32, free: u32) -> Option<Duration> {
    let over = failures.checked_sub(free)?;
    Some(Duration::from_secs(1u64 << over.min(16)).min(MAX_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn waits_double_after_the_free_failures_and_stop_at_the_cap() {
        assert_eq!(wait_after(4, FREE_FAILURES), None);
        assert_eq!(wait_after(5, FREE_FAILURES), Some(Duration::from_secs(1)));
        assert_eq!(wait_after(6, FREE_FAILURES), Some(Duration::from_secs(2)));
        assert_eq!(wait_after(9, FREE_FAILURES), Some(Duration::from_secs(16)));
        assert_eq!(wait_after(40, FREE_FAILURES), Some(MAX_WAIT));
    }

    #[test]
    fn addresses_are_also_counted_per_network() {
        let [address, network] = Key::both(ip("192.0.2.77"));
        assert_eq!((address.ip, address.bits), (ip("192.0.2.77"), 32));
        assert_eq!((network.ip, network.bits), (ip("192.0.2.0"), 24));
        let [address, network] = Key::both(ip("2001:db8:1:2:3:4:5:6"));
        assert_eq!((address.ip, address.bits), (ip("2001:db8:1:2:3:4:5:6"), 128));
        assert_eq!((network.ip, network.bits), (ip("2001:db8:1:2::"), 64));
        // An IPv4 client on a dual-stack socket is the same client.
        assert_eq!(Key::both(ip("::ffff:192.0.2.77")), Key::both(ip("192.0.2.77")));
    }

    #[test]
    fn an_address_is_refused_unseen_while_it_waits_and_cleared_by_a_success() {
        let metrics = Arc::new(Metrics::default());
        let guard = LoginGuard::new(Arc::clone(&metrics));
        let (bad, other) = (ip("192.0.2.1"), ip("198.51.100.2"));
        let moin = Claim::Publisher("moin");
        for _ in 0..FREE_FAILURES {
            assert_eq!(guard.login(bad, moin, || None::<()>), Ok(None));
        }
        let mut looked = false;
        assert!(
            guard
                .login(bad, moin, || {
                    looked = true;
                    Some(())
                })
                .is_err(),
            "the right secret waits too"
        );
        assert!(!looked, "the secret is not looked at while the address waits");
        assert_eq!(guard.login(other, moin, || Some(())), Ok(Some(())), "only the failing address waits");
        assert_eq!((metrics.login_failures.get(), metrics.login_refused.get()), (5, 1));
        guard.succeeded(bad, moin);
        assert_eq!(guard.login(bad, moin, || Some(())), Ok(Some(())));
    }

    #[test]
    fn a_network_of_fresh_addresses_waits_after_its_own_free_failures() {
        let guard = LoginGuard::new(Arc::new(Metrics::default()));
        for host in 0..NETWORK_FREE_FAILURES {
            let from = ip(&format!("203.0.113.{host}"));
            assert_eq!(guard.login(from, Claim::Unnamed, || None::<()>), Ok(None), "{from}");
        }
        assert!(
            guard.login(ip("203.0.113.250"), Claim::Unnamed, || Some(())).is_err(),
            "a fresh address of the /24"
        );
        assert_eq!(guard.login(ip("203.0.114.1"), Claim::Unnamed, || Some(())), Ok(Some(())), "the next /24");
        for host in 0..NETWORK_FREE_FAILURES {
            let from = ip(&format!("2001:db8::{:x}", host + 1));
            assert_eq!(guard.login(from, Claim::Unnamed, || None::<()>), Ok(None), "{from}");
        }
        assert!(guard.login(ip("2001:db8::ffff:1"), Claim::Unnamed, || Some(())).is_err(), "same /64");
        assert_eq!(guard.login(ip("2001:db8:0:1::1"), Claim::Unnamed, || Some(())), Ok(Some(())), "next /64");
    }

    #[test]
    fn a_success_clears_only_the_failures_it_proves() {
        let guard = LoginGuard::new(Arc::new(Metrics::default()));
        let from = ip("192.0.2.9");
        // Guesses at other publishers' names, each followed by a login with one's own token:
        // the guesses add up.
        for round in 0..FREE_FAILURES {
            assert_eq!(
                guard.login(from, Claim::Publisher(&format!("victim{round}")), || None::<()>),
                Ok(None)
            );
            if round + 1 < FREE_FAILURES {
                assert_eq!(guard.login(from, Claim::Publisher("own"), || Some(())), Ok(Some(())));
            }
        }
        assert!(guard.login(from, Claim::Publisher("own"), || Some(())).is_err(), "guesses were not cleared");
        // A mistyped secret and then the right one: cleared, here and in the network's count.
        let typo = ip("192.0.2.10");
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(guard.login(typo, Claim::Publisher("Own"), || None::<()>), Ok(None));
        }
        assert_eq!(guard.login(typo, Claim::Publisher("own"), || Some(())), Ok(Some(())));
        let table = guard.table.lock().unwrap();
        let [address, network] = Key::both(typo);
        assert!(!table.records.contains_key(&address), "the address starts afresh");
        assert_eq!(table.records[&network].failures, FREE_FAILURES, "only the other address's failures stay");
        drop(table);
        // Unnamed failures (HTTP tokens that matched no one) are never proven by a success.
        let http = ip("198.51.100.7");
        assert_eq!(guard.login(http, Claim::Unnamed, || None::<()>), Ok(None));
        assert_eq!(guard.login(http, Claim::Unnamed, || Some(())), Ok(Some(())));
        assert_eq!(guard.table.lock().unwrap().records[&Key::both(http)[0]].failures, 1);
    }

    #[test]
    fn a_full_table_forgets_the_least_recently_failing_record_first() {
        let metrics = Arc::new(Metrics::default());
        let guard = LoginGuard::with_capacity(Arc::clone(&metrics), 6);
        let now = Instant::now();
        let mut table = guard.table.lock().unwrap();
        // Three addresses in three networks: six records, a full table.
        for (n, from) in ["10.0.1.1", "10.0.2.1", "10.0.3.1"].into_iter().enumerate() {
            table.fail(ip(from), Claim::Unnamed, now + Duration::from_secs(n as u64));
        }
        // The first fails again: now the second is the oldest.
        table.fail(ip("10.0.1.1"), Claim::Unnamed, now + Duration::from_secs(3));
        let (_, evicted) = table.fail(ip("10.0.4.1"), Claim::Unnamed, now + Duration::from_secs(4));
        assert_eq!(evicted, 2, "the full table forgot two recent records to make room for two");
        assert_eq!(table.records.len(), 6);
        assert_eq!(table.by_age.len(), 6, "the age order holds exactly the records");
        assert!(!table.records.contains_key(&Key::both(ip("10.0.2.1"))[0]));
        assert!(!table.records.contains_key(&Key::both(ip("10.0.2.1"))[1]));
        assert_eq!(table.records[&Key::both(ip("10.0.1.1"))[0]].failures, 2);
        // Records quiet for FORGET_AFTER go first, without counting as evictions.
        let later = now + FORGET_AFTER + Duration::from_secs(10);
        let (_, evicted) = table.fail(ip("10.0.5.1"), Claim::Unnamed, later);
        assert_eq!(evicted, 0);
        assert_eq!(table.records.len(), 2);
        assert_eq!(table.by_age.len(), 2);
    }

    #[test]
    fn a_flood_of_fresh_addresses_costs_the_same_at_a_full_table() {
        // O(log n) eviction: 200,000 failures from fresh networks through a full table in well
        // under the time the old full scan took for a few thousand.
        let guard = LoginGuard::with_capacity(Arc::new(Metrics::default()), 65_536);
        let started = Instant::now();
        let mut table = guard.table.lock().unwrap();
        let now = Instant::now();
        for n in 0u32..200_000 {
            table.fail(IpAddr::V4((0x0a00_0000 + (n << 8)).into()), Claim::Unnamed, now);
        }
        assert_eq!(table.records.len(), 65_536);
        assert_eq!(table.by_age.len(), 65_536);
        assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    }
}
