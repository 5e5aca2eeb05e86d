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

/// IPv6 blocks refused whole. The transition forms carry or reach an IPv4 address (6to4 and
/// NAT64 embed it, Teredo obfuscates it, SIIT translates it), so a relay or translator could
/// take a webhook to an internal IPv4 host; no webhook receiver needs them.
const INTERNAL_V6: &[(u128, u32, &str)] = &[
    (
        0x0064_ff9b << 96,
        32,
        "NAT64, 64:ff9b::/96 and 64:ff9b:1::/48 (RFC 6052, 8215)",
    ),
    (
        0x0000_0000_0000_0000_ffff_0000 << 32,
        96,
        "IPv4-translated, ::ffff:0:0:0/96 (RFC 2765)",
    ),
    (0x0100 << 112, 64, "discard-only, 100::/64 (RFC 6666)"),
    (0x2001_0000 << 96, 32, "Teredo, 2001::/32 (RFC 4380)"),
    (
        0x2001_0002 << 96,
        48,
        "benchmarking, 2001:2::/48 (RFC 5180)",
    ),
    (0x2001_0db8 << 96, 32, "documentation, 2001:db8::/32"),
    (0x2002 << 112, 16, "6to4, 2002::/16 (RFC 3056)"),
    (0xfc00 << 112, 7, "unique local, fc00::/7"),
    (0xfe80 << 112, 10, "link-local, fe80::/10"),
    (0xfec0 << 112, 10, "site-local, fec0::/10 (deprecated)"),
];

fn internal_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || INTERNAL_V6
            .iter()
            .any(|&(prefix, length, _)| bits >> (128 - length) == prefix >> (128 - length))
        || ip.to_ipv4().is_some_and(internal_v4) // IPv4-compatible, ::a.b.c.d
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
            // Every IPv6 form that carries or reaches an IPv4 address.
            "64:ff9b:1::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "::ffff:0:808:808",
            "2002:7f00:1::",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "::127.0.0.1",
            "100::1",
            "2001:2::1",
            "2001:db8::1",
            "fec0::1",
        ] {
            assert!(is_internal(ip(internal)), "{internal}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "2001:4860:4860::8888",
            "2003::1",
            "64:ff9a::1",
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
        // The auditor's policy: wherever its user points it.
        for anywhere in ["127.0.0.1", "::1", "10.0.0.1", "fd00::1", "93.184.216.34"] {
            assert!(Policy::anywhere().permits(ip(anywhere)), "{anywhere}");
        }
    }
}
