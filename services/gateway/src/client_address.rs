//! Which address a request comes from, for limiting what is done before logging in. Behind a
//! proxy (an Ingress) every request comes from the proxy, so the gateway trusts
//! `X-Forwarded-For` from the proxies named by `--trusted-proxies`, and only from them: the
//! client is the rightmost address in the header that is not a trusted proxy (entries to
//! its left could have been written by the client itself).

use ipnet::IpNet;
use std::net::IpAddr;

/// Longest `X-Forwarded-For` read; a longer one is ignored (the peer's address counts).
const MAX_HEADER: usize = 2048;

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From `--trusted-proxies`: comma-separated addresses or CIDR blocks (empty: none).
    pub fn parse(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<IpNet>()
                    .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("--trusted-proxies: {part:?} is not an address or a CIDR block"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address: `peer`, unless `peer` is a trusted proxy and says who it
    /// forwards for.
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let Some(header) = forwarded_for.filter(|h| h.len() <= MAX_HEADER) else {
            return peer;
        };
        let mut client = peer;
        for hop in header.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(address) => {
                    client = address;
                    if !self.trusts(address) {
                        break;
                    }
                }
                // A hop we cannot read: nothing to its left can be believed.
                Err(_) => break,
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.5").unwrap();
        let proxy = ip("10.1.2.3");
        assert_eq!(trusted.client(proxy, Some("203.0.113.7")), ip("203.0.113.7"));
        // The client wrote an address of its own; the proxy appended the real one.
        assert_eq!(trusted.client(proxy, Some("1.1.1.1, 203.0.113.7")), ip("203.0.113.7"));
        // Two trusted proxies in a row.
        assert_eq!(
            trusted.client(proxy, Some("203.0.113.7, 192.168.1.5")),
            ip("203.0.113.7")
        );
        // Not from a proxy: the header is the client's own words.
        assert_eq!(trusted.client(ip("203.0.113.9"), Some("1.1.1.1")), ip("203.0.113.9"));
        // No header, junk, or a header longer than any proxy writes.
        assert_eq!(trusted.client(proxy, None), proxy);
        assert_eq!(trusted.client(proxy, Some("not-an-address")), proxy);
        assert_eq!(trusted.client(proxy, Some(&"1.1.1.1,".repeat(500))), proxy);
        assert_eq!(TrustedProxies::default().client(proxy, Some("1.1.1.1")), proxy);
    }

    #[test]
    fn bad_flags_are_named() {
        assert!(TrustedProxies::parse("").unwrap() == TrustedProxies::default());
        assert!(TrustedProxies::parse("::1, fd00::/8").is_ok());
        let error = TrustedProxies::parse("10.0.0.0/8, proxy.local").unwrap_err();
        assert!(error.contains("proxy.local"), "{error}");
    }
}
