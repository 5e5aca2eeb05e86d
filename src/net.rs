//! Address blocks as operators write them (`10.0.0.0/8`, `2001:db8::/32`, or one address), for
//! trusted proxies and webhook exceptions. The prefix arithmetic is `ipnet`'s; this adds bare
//! addresses and matches IPv4-mapped IPv6 addresses as the IPv4 address they carry.

pub mod slots;

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// The next connection on `listener` (the `what` listener, in logs). A failed accept (out of
/// file descriptors and the like) is logged and retried after a pause, never spun on.
pub async fn accept(
    listener: &tokio::net::TcpListener,
    what: &str,
) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!(%error, "{what} accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// An address block, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressBlock(IpNet);

impl FromStr for AddressBlock {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || format!("{text:?} is not an address or an address/prefix");
        if text.contains('/') {
            return text.parse().map(AddressBlock).map_err(|_| bad());
        }
        text.parse::<IpAddr>()
            .map(|ip| AddressBlock(IpNet::from(ip)))
            .map_err(|_| bad())
    }
}

impl AddressBlock {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_match() {
        let block: AddressBlock = "10.1.0.0/16".parse().unwrap();
        assert!(block.contains(ip("10.1.255.3")));
        assert!(!block.contains(ip("10.2.0.1")));
        assert!(block.contains(ip("::ffff:10.1.0.9")));
        assert!(!block.contains(ip("2001:db8::1")));
        let one: AddressBlock = "2001:db8::1".parse().unwrap();
        assert!(one.contains(ip("2001:db8::1")) && !one.contains(ip("2001:db8::2")));
        let all: AddressBlock = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.5")));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::/129", ""] {
            assert!(bad.parse::<AddressBlock>().is_err(), "{bad}");
        }
    }
}
