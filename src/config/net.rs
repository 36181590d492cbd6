//! Network values in the config: CIDR blocks (`server.trusted_proxies`) and
//! Paragon base URLs (`paragon.*_url`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::uri::{Authority, Scheme};

/// An IP block like `10.0.0.0/8` or `::1/128`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block. IPv4-mapped IPv6 addresses
    /// (`::ffff:10.0.0.1`, what a dual-stack socket reports) match IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has a bad prefix length"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One Paragon host: scheme, authority and an optional path prefix, split
/// once at load so the hot path only concatenates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamBase {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Empty, or a prefix like `/paragon` without a trailing slash.
    pub path_prefix: String,
    /// The URL as written (normalised), for printing.
    pub text: String,
}

impl UpstreamBase {
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }
}

impl FromStr for UpstreamBase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
        let scheme = match url.scheme() {
            "https" => Scheme::HTTPS,
            "http" => Scheme::HTTP,
            other => return Err(format!("`{s}`: scheme {other} is not http or https")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("`{s}`: credentials in the URL are not allowed"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("`{s}`: a base URL takes no query or fragment"));
        }
        let host = url.host_str().ok_or_else(|| format!("`{s}` has no host"))?;
        let authority_text = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let authority = authority_text
            .parse::<Authority>()
            .map_err(|e| format!("`{s}`: bad host: {e}"))?;
        let path_prefix = url.path().trim_end_matches('/').to_string();
        Ok(UpstreamBase {
            scheme,
            authority,
            path_prefix,
            text: url.to_string().trim_end_matches('/').to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matches_v4_v6_and_mapped_addresses() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.9.9".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn cidr_rejects_garbage() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "example.com",
            "10.0.0/8",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn upstream_base_splits_url() {
        let b: UpstreamBase = "https://zeus.useparagon.com".parse().unwrap();
        assert!(b.is_https());
        assert_eq!(b.authority.as_str(), "zeus.useparagon.com");
        assert_eq!(b.path_prefix, "");
        let b: UpstreamBase = "http://127.0.0.1:8080/base/".parse().unwrap();
        assert_eq!(b.authority.as_str(), "127.0.0.1:8080");
        assert_eq!(b.path_prefix, "/base");
        for bad in ["ftp://x", "https://u:p@x", "https://x/?q=1", "not a url"] {
            assert!(bad.parse::<UpstreamBase>().is_err(), "{bad}");
        }
    }
}
