//! Rate limits (GCRA, the leaky bucket as a single timestamp per key): per client address
//! before anything else runs, per API key once the key is known, and per identity for what it
//! may do (the appliance's quotas).
//!
//! A limit of `n` a window allows bursts of [`Limit::burst`], then one every `window / n`.
//! Memory is bounded: idle keys are dropped when the table grows.
//!
//! Hand-written rather than `governor` because the state is one timestamp per key, which is what
//! appliances sharing a database will have to store there (issue #15); `governor` keeps its
//! state in process memory only.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many keys a table holds before idle ones are swept.
const SWEEP_AT: usize = 10_000;

/// A limit: one every `every`, with bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub every: Duration,
    pub burst: u32,
}

impl Limit {
    /// `n` a minute, with a burst of ten seconds' worth (at least 10).
    pub fn per_minute(n: u32) -> Self {
        Limit {
            every: Duration::from_secs(60) / n.max(1),
            burst: (n / 6).max(10),
        }
    }

    /// `n` in each `window`, with a burst of a sixth of them (at least ten, or all `n` if
    /// fewer).
    pub fn per(n: u32, window: Duration) -> Self {
        Limit {
            every: window / n.max(1),
            burst: (n / 6).max(n.min(10)).max(1),
        }
    }
}

/// A moment on some clock: an `Instant`, or a `Duration` since the Unix epoch.
trait Moment: Copy + Ord {
    fn since(self, earlier: Self) -> Duration;
    fn plus(self, span: Duration) -> Self;
}

impl Moment for Instant {
    fn since(self, earlier: Self) -> Duration {
        self.saturating_duration_since(earlier)
    }
    fn plus(self, span: Duration) -> Self {
        self + span
    }
}

impl Moment for Duration {
    fn since(self, earlier: Self) -> Duration {
        self.saturating_sub(earlier)
    }
    fn plus(self, span: Duration) -> Self {
        self.saturating_add(span)
    }
}

/// A limit as GCRA keeps it: one admitted every `interval`, up to `tolerance` ahead.
#[derive(Debug, Clone, Copy)]
struct Rule {
    interval: Duration,
    tolerance: Duration,
}

impl Rule {
    fn of(limit: Limit) -> Self {
        Rule {
            interval: limit.every,
            tolerance: limit.every * limit.burst.max(1).saturating_sub(1),
        }
    }

    /// One more at `now` for a key whose next request is due at `next` (`None`: never seen):
    /// when the one after is due, or how long to wait.
    fn admit<T: Moment>(&self, next: Option<T>, now: T) -> Result<T, Duration> {
        let next = next.unwrap_or(now).max(now);
        let wait = next.since(now);
        if wait > self.tolerance {
            return Err(wait - self.tolerance);
        }
        Ok(next.plus(self.interval))
    }
}

/// One rate-limited table of keys, in memory.
#[derive(Debug)]
pub struct Limiter<K> {
    rule: Rule,
    /// Per key, the theoretical arrival time of its next request.
    table: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(limit: Limit) -> Self {
        Limiter {
            rule: Rule::of(limit),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one request for `key`, or says how long to wait.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= SWEEP_AT && !table.contains_key(key) {
            table.retain(|_, next| *next > now);
        }
        let next = self.rule.admit(table.get(key).copied(), now)?;
        table.insert(key.clone(), next);
        Ok(())
    }
}

/// A rate-limited table of keys in the store, shared by every appliance on it; each key is
/// `scope ‖ 0 ‖ key`.
#[derive(Debug, Clone)]
pub struct SharedLimiter {
    rule: Rule,
    scope: &'static str,
}

/// The wall clock, as a `Duration` since the Unix epoch (appliances sharing a limit must keep
/// their clocks in step, as NTP does).
fn wall_clock() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn millis(moment: Duration) -> u64 {
    u64::try_from(moment.as_millis()).unwrap_or(u64::MAX)
}

impl SharedLimiter {
    pub fn new(scope: &'static str, limit: Limit) -> Self {
        SharedLimiter {
            rule: Rule::of(limit),
            scope,
        }
    }

    /// Admits one request for `key`, or says how long to wait; `Err` when the store cannot
    /// answer.
    pub fn check(
        &self,
        store: &crate::store::Store,
        key: &str,
    ) -> Result<Result<(), Duration>, crate::store::Error> {
        self.check_at(store, key, wall_clock())
    }

    fn check_at(
        &self,
        store: &crate::store::Store,
        key: &str,
        now: Duration,
    ) -> Result<Result<(), Duration>, crate::store::Error> {
        let mut id = self.scope.as_bytes().to_vec();
        id.push(0);
        id.extend_from_slice(key.as_bytes());
        store.step_rate(&id, |next| {
            let next = next.map(Duration::from_millis);
            self.rule.admit(next, now).map(millis)
        })
    }

    /// Now, in the stored form: every timestamp before it is spent (see
    /// [`Store::remove_spent_rates`](crate::store::Store::remove_spent_rates)).
    pub fn now() -> u64 {
        millis(wall_clock())
    }
}

/// The key a client address is limited under: the address itself for IPv4, its /64 for IPv6
/// (one host usually holds a whole /64).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limiter = Limiter::new(Limit {
            every: Duration::from_secs(1),
            burst: 5,
        });
        let start = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check_at(&"a", start).is_ok());
        }
        let wait = limiter.check_at(&"a", start).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        // Another key is not affected.
        assert!(limiter.check_at(&"b", start).is_ok());
        // One interval later, one more request passes, and only one.
        let later = start + Duration::from_secs(1);
        assert!(limiter.check_at(&"a", later).is_ok());
        assert!(limiter.check_at(&"a", later).is_err());
        // After a quiet spell, the full burst is back.
        let quiet = start + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(limiter.check_at(&"a", quiet).is_ok());
        }
    }

    #[test]
    fn the_table_stays_bounded() {
        let limiter = Limiter::new(Limit::per_minute(600));
        let start = Instant::now();
        for i in 0..SWEEP_AT as u32 {
            limiter.check_at(&i, start).unwrap();
        }
        limiter
            .check_at(&u32::MAX, start + Duration::from_secs(5))
            .unwrap();
        assert!(limiter.table.lock().unwrap().len() < 10);
    }

    #[test]
    fn ipv6_hosts_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
