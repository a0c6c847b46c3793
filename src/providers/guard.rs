//! Where a tenant-controlled URL may send the server: the guard against server-side
//! request forgery for the `webhook` provider, whose URL a tenant admin sets. Only
//! `https` (and `http` when the operator allows it); and only public addresses —
//! loopback, private, link-local (cloud metadata), carrier-grade NAT, multicast,
//! documentation and other special ranges are refused unless the operator lists their
//! network in `providers.webhook.allowed_networks`. The check is made on the addresses
//! the connection will use: a resolver that drops refused addresses (so a name that
//! resolves to 127.0.0.1, or is re-pointed there after a first check, never reaches it)
//! and a check of IP-literal hosts, which are never resolved.
//!
//! It must not do any I/O but the DNS lookup, and it never decides about operator-set
//! URLs (the WhatsApp and Twilio base URLs are the operator's).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A network in CIDR form (`10.0.0.0/8`, `fd00::/8`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(text: &str) -> Result<Network, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let base: IpAddr = address.parse().map_err(|_| format!("{text:?} is not an IP address or CIDR network"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Network { base, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, canonical(ip)) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => prefix_matches(&base.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(base), IpAddr::V6(ip)) => prefix_matches(&base.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_matches(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (bytes, bits) = ((prefix / 8) as usize, prefix % 8);
    if a[..bytes] != b[..bytes] {
        return false;
    }
    bits == 0 || (a[bytes] ^ b[bytes]) >> (8 - bits) == 0
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Addresses on the public internet: everything but the special-purpose ranges
/// (RFC 6890 and successors) through which a server reaches itself, its network or its
/// cloud's metadata service.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // "this network"
        || a == 10                             // private
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT (Alibaba metadata 100.100.100.200)
        || a == 127                            // loopback
        || (a == 169 && b == 254)              // link-local (cloud metadata 169.254.169.254)
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)      // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)      // documentation
        || (a == 192 && b == 88 && c == 99)    // 6to4 relay anycast
        || (a == 192 && b == 168)              // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100)   // documentation
        || (a == 203 && b == 0 && c == 113)    // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Addresses that embed an IPv4 address are as public as that address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32)); // NAT64
    }
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::from(((s[1] as u32) << 16) | s[2] as u32)); // 6to4
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || s[0..6] == [0, 0, 0, 0, 0, 0]       // IPv4-compatible (deprecated)
        || (s[0] & 0xfe00) == 0xfc00           // unique local (fd00:ec2::254 metadata)
        || (s[0] & 0xffc0) == 0xfe80           // link-local
        || (s[0] & 0xffc0) == 0xfec0           // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00           // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8)  // documentation
        || (s[0] == 0x2001 && s[1] < 0x0200)   // IETF protocol assignments (Teredo, ORCHID, …)
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])) // discard
}

/// The operator's rules for webhook destinations.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    allow_http: bool,
    allowed: Vec<Network>,
}

/// A destination the rules refuse; kept apart from transport failures (it is permanent).
#[derive(Debug, Clone)]
pub struct RefusedDestination(pub String);

impl fmt::Display for RefusedDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RefusedDestination {}

impl Destinations {
    /// `allowed_networks` entries are parsed now; a bad one names its index.
    pub fn new(allow_http: bool, allowed_networks: &[String]) -> anyhow::Result<Destinations> {
        let allowed = allowed_networks
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Network::parse(n).map_err(|e| anyhow::anyhow!("providers.webhook.allowed_networks[{i}]: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Destinations { allow_http, allowed })
    }

    /// Public, or in a network the operator allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allowed.iter().any(|n| n.contains(ip))
    }

    /// The scheme, and the host when it is an IP literal (names are checked when they
    /// are resolved, by [`GuardedResolver`]).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), RefusedDestination> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(RefusedDestination(
                    "http:// webhook URLs are refused; use https:// (or set providers.webhook.allow_http)".into(),
                ));
            }
            other => return Err(RefusedDestination(format!("{other}:// URLs are refused; use https://"))),
        }
        let host = url.host_str().ok_or_else(|| RefusedDestination("the URL has no host".into()))?;
        let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else {
            return Ok(()); // a name: checked when resolved
        };
        if self.permits(ip) { Ok(()) } else { Err(refused(&ip.to_string(), &[ip])) }
    }
}

fn refused(host: &str, addresses: &[IpAddr]) -> RefusedDestination {
    let list: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
    RefusedDestination(format!(
        "{host} is a non-public address ({}); webhooks reach only public addresses unless the network is listed \
         in providers.webhook.allowed_networks",
        list.join(", ")
    ))
}

/// Resolves names with the system resolver and keeps only the addresses the rules
/// permit; a name with none left is a [`RefusedDestination`].
pub struct GuardedResolver {
    pub rules: Arc<Destinations>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let rules = self.rules.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (permitted, refused_addresses): (Vec<SocketAddr>, Vec<SocketAddr>) =
                found.into_iter().partition(|a| rules.permits(a.ip()));
            if permitted.is_empty() && !refused_addresses.is_empty() {
                let ips: Vec<IpAddr> = refused_addresses.iter().map(SocketAddr::ip).collect();
                return Err(Box::new(refused(&host, &ips)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// The refusal somewhere in an error's source chain, if that is why it failed.
pub fn refusal_in<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e RefusedDestination> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<RefusedDestination>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_private_link_local_metadata_and_special_ranges_are_not_public() {
        for special in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.10",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(special)), "{special} counted as public");
        }
        for public in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "64:ff9b::808:808"] {
            assert!(is_public(ip(public)), "{public} counted as special");
        }
    }

    #[test]
    fn networks_parse_as_cidr_and_contain_their_addresses() {
        let n = Network::parse("10.96.0.0/12").unwrap();
        assert!(n.contains(ip("10.96.0.1")) && n.contains(ip("10.111.255.255")) && !n.contains(ip("10.112.0.0")));
        assert!(Network::parse("127.0.0.1").unwrap().contains(ip("::ffff:127.0.0.1")));
        assert!(Network::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains(ip("127.0.0.1")));
        for bad in ["10.0.0.0/33", "fd00::/129", "gateway.local", "10.0.0.0/x", ""] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_https_by_default_and_ip_literals_are_checked_against_the_rules() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        let strict = Destinations::default();
        assert!(strict.check_url(&url("https://hooks.example.com/x")).is_ok());
        assert!(strict.check_url(&url("https://8.8.8.8/x")).is_ok());
        for refused in [
            "http://hooks.example.com/x",
            "file:///etc/passwd",
            "gopher://127.0.0.1:70/",
            "https://127.0.0.1:8443/",
            "https://[::1]:22/",
            "https://169.254.169.254/latest/meta-data/",
        ] {
            assert!(strict.check_url(&url(refused)).is_err(), "{refused}");
        }
        let relaxed = Destinations::new(true, &["127.0.0.0/8".into()]).unwrap();
        assert!(relaxed.check_url(&url("http://127.0.0.1:9/hook")).is_ok());
        assert!(relaxed.check_url(&url("http://169.254.169.254/")).is_err(), "only the listed network");
        let err = Destinations::new(false, &["nope".into()]).unwrap_err().to_string();
        assert!(err.contains("providers.webhook.allowed_networks[0]"), "{err}");
    }

    #[tokio::test]
    async fn a_name_that_resolves_only_to_refused_addresses_is_a_refusal() {
        let resolver = GuardedResolver { rules: Arc::new(Destinations::default()) };
        let err = resolver.resolve("localhost".parse().unwrap()).await.err().expect("refused");
        let refusal = refusal_in(&*err).expect("a RefusedDestination");
        assert!(refusal.0.contains("localhost") && refusal.0.contains("allowed_networks"), "{}", refusal.0);
        let allowed = GuardedResolver { rules: Arc::new(Destinations::new(false, &["127.0.0.0/8".into()]).unwrap()) };
        assert!(allowed.resolve("localhost".parse().unwrap()).await.is_ok());
    }
}
