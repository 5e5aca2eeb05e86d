//! Connection slots: at most so many connections at once overall and from one source, each
//! held from accept to close. A source is an IPv4 address, or an IPv6 /64 (one host is usually
//! given a whole /64, so counting single IPv6 addresses would count nothing).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::limit::address_key;

/// Where connections come from, for counting: the key the rate limits use too
/// ([`address_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        Source(address_key(ip))
    }

    /// The source as text (the address, or the /64's first address), for keys in the store.
    pub fn key(&self) -> String {
        self.0.to_string()
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error("all {0} connection slots are taken")]
    Total(usize),
    #[error("this source holds all {0} of its connection slots")]
    Source(usize),
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    by_source: HashMap<Source, usize>,
}

/// The slots of one listener.
#[derive(Debug, Clone)]
pub struct Slots {
    counts: Arc<Mutex<Counts>>,
    total: usize,
    per_source: usize,
}

/// One admitted connection; its slot is free again when this is dropped.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    source: Source,
}

impl Slots {
    pub fn new(total: usize, per_source: usize) -> Self {
        Slots {
            counts: Arc::default(),
            total,
            per_source,
        }
    }

    /// A slot for a connection from `ip`, if both limits allow one.
    pub fn admit(&self, ip: IpAddr) -> Result<Slot, Full> {
        let source = Source::of(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.open >= self.total {
            return Err(Full::Total(self.total));
        }
        let held = counts.by_source.entry(source).or_default();
        if *held >= self.per_source {
            return Err(Full::Source(self.per_source));
        }
        *held += 1;
        counts.open += 1;
        Ok(Slot {
            counts: Arc::clone(&self.counts),
            source,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).open
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.open = counts.open.saturating_sub(1);
        if let Some(held) = counts.by_source.get_mut(&self.source) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn each_source_and_the_whole_are_capped_and_slots_come_back() {
        let slots = Slots::new(5, 2);
        let a1 = slots.admit(ip("192.0.2.1")).unwrap();
        let _a2 = slots.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(slots.admit(ip("192.0.2.1")).unwrap_err(), Full::Source(2));
        // One IPv6 /64 is one source.
        let _b1 = slots.admit(ip("2001:db8:1:2::1")).unwrap();
        let _b2 = slots.admit(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert_eq!(
            slots.admit(ip("2001:db8:1:2::77")).unwrap_err(),
            Full::Source(2)
        );
        let _c1 = slots.admit(ip("2001:db8:1:3::1")).unwrap();
        assert_eq!(slots.admit(ip("198.51.100.7")).unwrap_err(), Full::Total(5));
        assert_eq!(slots.open(), 5);
        drop(a1);
        assert_eq!(slots.open(), 4);
        let _a3 = slots.admit(ip("192.0.2.1")).unwrap();
    }
}
