//! Quotas: how fast one identity may do each thing (rates, GCRA per user id), how many live
//! records one identity may hold (counts), how many identities the appliance takes, and how
//! many keys the token may hold (its object budget, minus room kept for the appliance's own
//! keys).
//!
//! A quota is checked before anything is made: over quota, the caller gets `quota_exceeded`
//! with the limit in the message, and nothing is half-made.
//!
//! Operators set them with `SSHSIGN_QUOTAS` (or `quotas` in the config file): a comma-separated
//! list of `name=value`, a rate as `N/min`, `N/h` or `N/day`, a count as `N`; unnamed quotas keep
//! their defaults ([`QuotaSettings::DEFAULTS`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use super::Error;
use crate::limit::{Limit, SharedLimiter, address_key};
use crate::store::Store;

/// What an identity does at a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rated {
    Signatures,
    KeyCreations,
    Grants,
    ApiKeyCreations,
    ApprovalRequests,
    WebhookChanges,
    EnrollmentLinks,
    /// New identities registered from one source address (not per identity: there is none yet).
    Registrations,
}

/// What an identity (or the appliance) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counted {
    /// Live signing keys one user owns.
    Keys,
    /// Live authorizations on one key.
    GrantsPerKey,
    /// Live API keys one user holds.
    ApiKeys,
    /// Webhook endpoints one user has.
    Webhooks,
    /// Identities the appliance holds.
    Users,
}

/// A rate: `count` in each `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub window: Duration,
}

impl Rate {
    fn limit(self) -> Limit {
        Limit::per(self.count, self.window)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.window.as_secs() {
            60 => "a minute",
            3600 => "an hour",
            _ => "a day",
        };
        write!(f, "{} {unit}", self.count)
    }
}

/// One quota's name (as `SSHSIGN_QUOTAS` spells it) and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    Rate(Rated, Rate),
    Count(Counted, u64),
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

const fn rate(rated: Rated, count: u32, window: Duration) -> (&'static str, Quota) {
    let name = match rated {
        Rated::Signatures => "signatures",
        Rated::KeyCreations => "key_creations",
        Rated::Grants => "grants",
        Rated::ApiKeyCreations => "api_key_creations",
        Rated::ApprovalRequests => "approval_requests",
        Rated::WebhookChanges => "webhook_changes",
        Rated::EnrollmentLinks => "enrollment_links",
        Rated::Registrations => "registrations_per_address",
    };
    (name, Quota::Rate(rated, Rate { count, window }))
}

const fn count(counted: Counted, n: u64) -> (&'static str, Quota) {
    let name = match counted {
        Counted::Keys => "keys",
        Counted::GrantsPerKey => "grants_per_key",
        Counted::ApiKeys => "api_keys",
        Counted::Webhooks => "webhooks",
        Counted::Users => "users",
    };
    (name, Quota::Count(counted, n))
}

/// The quotas in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSettings {
    quotas: Vec<(&'static str, Quota)>,
}

impl QuotaSettings {
    /// The defaults, sized for a team with an agent fleet:
    ///
    /// - signatures: 600 a minute per identity (bursts of 100). Above a YubiHSM 2's whole rate
    ///   (about 8 a second), so on that device no identity is held back by its own quota; on a
    ///   faster token, one runaway agent takes at most 10 a second and leaves the rest to
    ///   others. (The SignedApproval seed's 100 an hour would stop a CI fleet in a minute.)
    /// - keys: 100 live keys per identity (a person or agent uses a handful; the token's budget
    ///   bounds the sum), created at 60 an hour.
    /// - grants: 1,000 live authorizations per key (a key shared with a large team), made at
    ///   600 an hour.
    /// - API keys: 50 live per identity (one per pipeline), made at 60 an hour.
    /// - approval requests: 1,200 an hour per identity (one every three seconds, bursts of 200).
    /// - webhooks: 10 endpoints per identity; endpoint and notify-target changes 60 an hour.
    /// - enrollment links: 30 an hour (each is a passkey or TOTP enrollment a person finishes).
    /// - identities: 10,000 in all, and 60 new ones an hour from one address (a new team
    ///   arriving at once from one office gets ten at a time, then one a minute).
    pub const DEFAULTS: [(&'static str, Quota); 13] = [
        rate(Rated::Signatures, 600, MINUTE),
        rate(Rated::KeyCreations, 60, HOUR),
        rate(Rated::Grants, 600, HOUR),
        rate(Rated::ApiKeyCreations, 60, HOUR),
        rate(Rated::ApprovalRequests, 1200, HOUR),
        rate(Rated::WebhookChanges, 60, HOUR),
        rate(Rated::EnrollmentLinks, 30, HOUR),
        rate(Rated::Registrations, 60, HOUR),
        count(Counted::Keys, 100),
        count(Counted::GrantsPerKey, 1000),
        count(Counted::ApiKeys, 50),
        count(Counted::Webhooks, 10),
        count(Counted::Users, 10_000),
    ];

    /// The defaults with `text`'s changes (`signatures=100/min, keys=10`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut settings = QuotaSettings::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not name=value"))?;
            let (name, value) = (name.trim(), value.trim());
            let slot = settings
                .quotas
                .iter_mut()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| {
                    let names: Vec<_> = Self::DEFAULTS.iter().map(|(n, _)| *n).collect();
                    format!("unknown quota {name:?}; known: {}", names.join(", "))
                })?;
            slot.1 = match slot.1 {
                Quota::Rate(rated, _) => Quota::Rate(rated, parse_rate(value)?),
                Quota::Count(counted, _) => Quota::Count(
                    counted,
                    value
                        .parse()
                        .ok()
                        .filter(|n| (1..=10_000_000).contains(n))
                        .ok_or_else(|| format!("{name}={value}: a count is 1 to 10000000"))?,
                ),
            };
        }
        Ok(settings)
    }

    fn rate(&self, which: Rated) -> (&'static str, Rate) {
        self.quotas
            .iter()
            .find_map(|(name, q)| match q {
                Quota::Rate(r, rate) if *r == which => Some((*name, *rate)),
                _ => None,
            })
            .unwrap_or((
                "",
                Rate {
                    count: u32::MAX,
                    window: MINUTE,
                },
            ))
    }

    /// The limit on `which`, and its name.
    pub fn count(&self, which: Counted) -> (&'static str, u64) {
        self.quotas
            .iter()
            .find_map(|(name, q)| match q {
                Quota::Count(c, n) if *c == which => Some((*name, *n)),
                _ => None,
            })
            .unwrap_or(("", u64::MAX))
    }
}

impl Default for QuotaSettings {
    fn default() -> Self {
        QuotaSettings {
            quotas: Self::DEFAULTS.to_vec(),
        }
    }
}

/// `N/min`, `N/h` or `N/day`, N from 1 to 1,000,000.
fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = || format!("{text:?} is not a rate like 600/min, 60/h or 100/day (1 to 1000000)");
    let (count, unit) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    if !(1..=1_000_000).contains(&count) {
        return Err(bad());
    }
    let window = match unit.trim() {
        "min" | "minute" => MINUTE,
        "h" | "hour" => HOUR,
        "day" | "d" => DAY,
        _ => return Err(bad()),
    };
    Ok(Rate { count, window })
}

/// The quotas' state: one rate table per rated action (in the store, so appliances sharing it
/// share the rates), and the token's key budget.
#[derive(Debug)]
pub struct Quotas {
    settings: QuotaSettings,
    store: Store,
    rates: Vec<(Rated, SharedLimiter)>,
    registrations: SharedLimiter,
    /// Identities registered.
    users: AtomicUsize,
    budget: KeyBudget,
    /// When the spent rates were last swept and the counts taken again (unix seconds).
    tidied_at: AtomicI64,
}

/// How often the spent rates are swept and, on a shared store, the counts taken again.
const TIDY_SECONDS: i64 = 10;

/// How many signing keys the token may hold, and how many it holds.
#[derive(Debug)]
pub struct KeyBudget {
    /// Keys the appliance may create in all (None: the token sets no limit).
    limit: Option<usize>,
    /// Live signing keys.
    live: AtomicUsize,
}

impl Quotas {
    /// `users` and `live_keys` are what the store holds at start-up; `key_limit` is the token's
    /// room for signing keys after the appliance's own.
    pub fn new(
        settings: QuotaSettings,
        store: Store,
        users: usize,
        live_keys: usize,
        key_limit: Option<usize>,
    ) -> Self {
        let rates = settings
            .quotas
            .iter()
            .filter_map(|(_, q)| match q {
                Quota::Rate(r, rate) if *r != Rated::Registrations => {
                    Some((*r, SharedLimiter::new(settings.rate(*r).0, rate.limit())))
                }
                _ => None,
            })
            .collect();
        let (name, rate) = settings.rate(Rated::Registrations);
        let registrations = SharedLimiter::new(name, rate.limit());
        Quotas {
            settings,
            store,
            rates,
            registrations,
            users: AtomicUsize::new(users),
            budget: KeyBudget {
                limit: key_limit,
                live: AtomicUsize::new(live_keys),
            },
            tidied_at: AtomicI64::new(0),
        }
    }

    /// Charges one `what` to `user`, or says when they may again.
    pub fn charge(&self, user: &str, what: Rated) -> Result<(), Error> {
        let Some((_, limiter)) = self.rates.iter().find(|(r, _)| *r == what) else {
            return Ok(());
        };
        limiter
            .check(&self.store, user)?
            .map_err(|wait| self.over_rate(what, wait))
    }

    fn over_rate(&self, what: Rated, wait: Duration) -> Error {
        let (name, rate) = self.settings.rate(what);
        Error::OverQuota(format!(
            "quota reached: {name} is {rate} per {}; retry in {} s",
            if what == Rated::Registrations {
                "address"
            } else {
                "user"
            },
            wait.as_secs() + 1
        ))
    }

    /// Refuses a new one of `what` when `held` already reach its limit.
    pub fn check_count(&self, what: Counted, held: usize) -> Result<(), Error> {
        let (name, limit) = self.settings.count(what);
        if u64::try_from(held).unwrap_or(u64::MAX) >= limit {
            let per = match what {
                Counted::GrantsPerKey => " per key",
                Counted::Users => " on this appliance",
                _ => " per user",
            };
            return Err(Error::OverQuota(format!(
                "quota reached: at most {limit} {}{per} ({name} in SSHSIGN_QUOTAS)",
                name.replace('_', " ").replace(" per key", "")
            )));
        }
        Ok(())
    }

    /// Whether there is room for another identity (counts nothing).
    pub fn admits_user(&self) -> Result<(), Error> {
        self.check_count(Counted::Users, self.users.load(Ordering::Acquire))
    }

    /// An identity counted by [`Quotas::register`] was not made after all.
    pub fn unregister(&self) {
        let _ = self
            .users
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Admits a new identity from `from`; counts it.
    pub fn register(&self, from: IpAddr) -> Result<(), Error> {
        self.check_count(Counted::Users, self.users.load(Ordering::Acquire))?;
        self.registrations
            .check(&self.store, &address_key(from).to_string())?
            .map_err(|wait| self.over_rate(Rated::Registrations, wait))?;
        self.users.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Takes room in the token for one more key, or says it is full. Give it back with
    /// [`Quotas::key_gone`] if the key is not made, or when it is destroyed.
    pub fn take_key_room(&self) -> Result<(), Error> {
        let Some(limit) = self.budget.limit else {
            self.budget.live.fetch_add(1, Ordering::AcqRel);
            return Ok(());
        };
        self.budget
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < limit).then_some(live + 1)
            })
            .map(|_| ())
            .map_err(|_| {
                Error::OverQuota(format!(
                    "the token holds all {limit} signing keys it has room for (the rest is kept \
                     for the appliance's own keys); revoke keys no longer used, or add a token"
                ))
            })
    }

    /// A key's room is free again.
    pub fn key_gone(&self) {
        let _ = self
            .budget
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                Some(live.saturating_sub(1))
            });
    }

    /// Every [`TIDY_SECONDS`]: removes the rates' spent timestamps and, on a store other
    /// appliances share (where they make identities and keys too), takes the counts from the
    /// store again. An appliance alone on its store keeps its own counts, which are exact.
    pub fn tidy(&self, now: i64) -> Result<(), crate::store::Error> {
        let last = self.tidied_at.load(Ordering::Acquire);
        if now < last + TIDY_SECONDS
            || self
                .tidied_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return Ok(());
        }
        self.store.remove_spent_rates(SharedLimiter::now())?;
        if matches!(
            self.store.engine(),
            crate::store::engine::Engine::Postgres(_)
        ) {
            let users = self.store.count_users()?;
            let live_keys = self.store.count_live_signing_keys()?;
            self.users.store(users, Ordering::Release);
            self.budget.live.store(live_keys, Ordering::Release);
        }
        Ok(())
    }

    /// Live signing keys, and the most the token may hold (None: no limit).
    pub fn key_usage(&self) -> (usize, Option<usize>) {
        (self.budget.live.load(Ordering::Acquire), self.budget.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_from_names_and_rates() {
        let settings = QuotaSettings::parse(" signatures=100/h , keys=3,users=5").unwrap();
        assert_eq!(
            settings.rate(Rated::Signatures).1,
            Rate {
                count: 100,
                window: HOUR
            }
        );
        assert_eq!(settings.count(Counted::Keys), ("keys", 3));
        assert_eq!(settings.count(Counted::ApiKeys), ("api_keys", 50));
        for bad in [
            "signatures=0/min",
            "signatures=10",
            "keys=1/h",
            "keys=0",
            "nonsense=1",
            "keys",
            "signatures=5/fortnight",
        ] {
            assert!(QuotaSettings::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(QuotaSettings::parse("").unwrap(), QuotaSettings::default());
    }

    #[test]
    fn over_quota_names_the_limit_and_the_budget_gives_room_back() {
        let settings = QuotaSettings::parse("key_creations=2/h,keys=1").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let quotas = Quotas::new(settings, store.clone(), 0, 0, Some(2));
        quotas.charge("u", Rated::KeyCreations).unwrap();
        quotas.charge("u", Rated::KeyCreations).unwrap();
        let Err(Error::OverQuota(message)) = quotas.charge("u", Rated::KeyCreations) else {
            panic!("a third key creation in the hour passed");
        };
        assert!(
            message.contains("key_creations is 2 an hour per user"),
            "{message}"
        );
        quotas.charge("v", Rated::KeyCreations).unwrap();
        let Err(Error::OverQuota(message)) = quotas.check_count(Counted::Keys, 1) else {
            panic!("a second key passed");
        };
        assert!(message.contains("at most 1 keys per user"), "{message}");
        quotas.take_key_room().unwrap();
        quotas.take_key_room().unwrap();
        assert!(quotas.take_key_room().is_err());
        quotas.key_gone();
        quotas.take_key_room().unwrap();
        assert_eq!(quotas.key_usage(), (2, Some(2)));
        // The rates are the store's: another appliance on it sees them spent.
        let other = Quotas::new(
            QuotaSettings::parse("key_creations=2/h").unwrap(),
            store.clone(),
            0,
            0,
            None,
        );
        assert!(other.charge("u", Rated::KeyCreations).is_err());
        let now = crate::limit::SharedLimiter::now();
        assert_eq!(store.remove_spent_rates(now).unwrap(), 0, "not spent yet");
        assert_eq!(
            store
                .remove_spent_rates(crate::limit::SharedLimiter::now() + 7_200_000)
                .unwrap(),
            2
        );
        other.charge("u", Rated::KeyCreations).unwrap();
    }
}
