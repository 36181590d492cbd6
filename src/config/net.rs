//! Network values in the config: CIDR blocks (`server.trusted_proxies`),
//! host names (`server.admin_hosts`) and Paragon base URLs
//! (`paragon.*_url`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// A host as the admin listener compares it (`server.admin_hosts`, and the
/// host part of a request's `Host` or `Origin`): an IP address, or a DNS
/// name in lower case without its trailing dot. Never a wildcard, a port,
/// a scheme or a path: a name matches exactly that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostName {
    Ip(IpAddr),
    Name(String),
}

impl FromStr for HostName {
    type Err = String;

    /// `admin.example`, `Admin.Example.` (read as `admin.example`),
    /// `10.0.0.7`, `fd00::7` or `[fd00::7]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{s}` is not a host name or IP address (no scheme, port, path or wildcard)")
        };
        if let Some(inner) = s.strip_prefix('[') {
            let v6 = inner.strip_suffix(']').ok_or_else(bad)?;
            return v6
                .parse::<Ipv6Addr>()
                .map(|ip| HostName::Ip(IpAddr::V6(ip)))
                .map_err(|_| bad());
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(HostName::Ip(ip));
        }
        // One trailing dot names the same host (a fully qualified name).
        let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let labels: Vec<&str> = name.split('.').collect();
        let last = labels.last().copied().unwrap_or_default();
        // A last label that is a number makes the WHATWG URL parser read the
        // whole host as an IPv4 address (`127.1`, `0x7f.1`): such a "name"
        // never reaches a server as written, so it is refused, not guessed.
        let numeric = !last.is_empty()
            && (last.bytes().all(|b| b.is_ascii_digit())
                || last.starts_with("0x")
                || last.parse::<Ipv4Addr>().is_ok());
        if name.is_empty() || name.len() > 253 || numeric || !labels.iter().all(|l| label_ok(l)) {
            return Err(bad());
        }
        Ok(HostName::Name(name))
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostName::Ip(ip) => write!(f, "{ip}"),
            HostName::Name(n) => f.write_str(n),
        }
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
    fn host_names_are_plain_names_or_ip_literals() {
        let name = |s: &str| s.parse::<HostName>();
        for (text, want) in [
            ("admin.example", "admin.example"),
            ("Admin.EXAMPLE.", "admin.example"),
            ("credgate-admin", "credgate-admin"),
            ("credgate_admin.ns.svc", "credgate_admin.ns.svc"),
            ("10.0.0.7", "10.0.0.7"),
            ("fd00::7", "fd00::7"),
            ("[FD00::7]", "fd00::7"),
        ] {
            assert_eq!(name(text).map(|h| h.to_string()), Ok(want.into()), "{text}");
        }
        assert_eq!(
            name("10.0.0.7"),
            Ok(HostName::Ip("10.0.0.7".parse().unwrap()))
        );
        for bad in [
            "",
            ".",
            "*.example",
            "admin.example:9901",
            "http://admin.example",
            "admin.example/",
            "user@admin.example",
            "a..example",
            "-a.example",
            "a-.example",
            "a b",
            "127.1",
            "0x7f.0.0.1",
            "1.2.3.4.5",
            "fd00::7]",
            "[10.0.0.7]",
            "[fd00::7]:9901",
            "admin.example..",
            &"a".repeat(64),
            &format!("{}.example", "a.".repeat(130)),
        ] {
            assert!(name(bad).is_err(), "{bad:?}");
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
