//! Where webhooks may go. A destination is refused if any address its host resolves to is
//! loopback, private, link-local, shared (CGNAT), unspecified, multicast, broadcast or
//! reserved, unless the operator allowed that block (`SSHSIGN_WEBHOOK_ALLOW`). The check runs
//! when a URL is given, and again on every delivery, where the connection goes to the very
//! address that was checked (so a name that changes its answer cannot slip past).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::net::AddressBlock;

/// Blocks no webhook may reach unless allowed.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b // NAT64 (embeds IPv4)
        || ip.to_ipv4().is_some_and(internal_v4) // IPv4-compatible
}

/// The operator's exceptions.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allowed: Vec<AddressBlock>,
}

impl Policy {
    /// Every address: for the auditor, which goes where its user points it.
    pub fn anywhere() -> Self {
        Policy {
            allowed: ["0.0.0.0/0", "::/0"]
                .iter()
                .filter_map(|block| block.parse().ok())
                .collect(),
        }
    }

    /// Whether a webhook may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allowed.iter().any(|c| c.contains(ip))
    }

    /// The first of `addresses` this policy refuses, if any.
    pub fn refused(&self, addresses: &[IpAddr]) -> Option<IpAddr> {
        addresses.iter().copied().find(|ip| !self.permits(*ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_internal(ip(internal)), "{internal}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_internal(ip(public)), "{public}");
        }
    }

    #[test]
    fn the_operator_may_allow_a_block() {
        let policy = Policy {
            allowed: vec!["127.0.0.0/8".parse().unwrap()],
        };
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(!policy.permits(ip("10.0.0.1")));
        assert_eq!(
            policy.refused(&[ip("127.0.0.1"), ip("10.0.0.1")]),
            Some(ip("10.0.0.1"))
        );
        assert!(Policy::default().refused(&[ip("127.0.0.1")]).is_some());
    }
}
