//! Which network addresses a request's origins may make the oracle reach.
//!
//! Origins are untrusted: anyone who pays for a request names them. Without a check, one names
//! `http://127.0.0.1:…`, `http://169.254.169.254/` (a cloud's metadata service) or a private
//! name, and the oracle fetches from inside its own network (server-side request forgery). So
//! every origin is resolved first and the addresses it resolves to are checked: loopback,
//! private (RFC 1918, IPv6 unique-local), link-local (and with it the metadata services),
//! carrier-grade NAT, unspecified, multicast, broadcast, documentation, benchmarking and other
//! reserved ranges are refused, and so is an IPv4 address inside an IPv6 one (mapped, NAT64,
//! 6to4) that is one of them. An operator allows ranges back with `--allow-net CIDR` (the local
//! stack and the tests allow loopback). Names are checked when they are resolved, by the HTTP
//! client's resolver, so the address checked is the address connected to (no second lookup
//! for a rebinding name to answer differently); literal addresses are checked by the plan.
//! HTTP redirects are not followed at all, and libp2p peers are dialled only at addresses that
//! pass the same check.
//!
//! The gateways the operator configures (`--gateway`) are trusted and not checked: a kubo
//! gateway on `127.0.0.1:8080` is a common set-up.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use ipnet::IpNet;
use libp2p::{Multiaddr, multiaddr::Protocol};

/// Ranges an operator allows despite the rules (`--allow-net`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPolicy {
    allow: Vec<IpNet>,
}

impl NetPolicy {
    /// The default: every internal range refused.
    pub fn strict() -> Self {
        Self::default()
    }

    /// Refuses internal ranges except those in `allow` (CIDRs, `127.0.0.0/8`, `::1/128`).
    pub fn allowing(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Whether the oracle may connect to `ip` for an untrusted origin.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&ip)) || !is_internal(ip)
    }

    /// Why `ip` is refused, if it is.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        (!self.permits(ip)).then_some(
            "an internal address (loopback, private, link-local, CGNAT or reserved): refused",
        )
    }
}

/// Whether `ip` is an address no untrusted origin may make the oracle reach.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // 100.64.0.0/10, carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24, IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // 198.18.0.0/15, benchmarking
        || a >= 240 // 240.0.0.0/4, reserved
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return is_internal_v4(Ipv4Addr::from(u32::from(s[6]) << 16 | u32::from(s[7])));
    }
    if s[0] == 0x2002 {
        return is_internal_v4(Ipv4Addr::from(u32::from(s[1]) << 16 | u32::from(s[2])));
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7, unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10, link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10, site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // 2001:db8::/32, documentation
        || (s[0] == 0x0100 && s[1..4] == [0; 3]) // 100::/64, discard
        || s[..6] == [0; 6] // ::/96, IPv4-compatible (deprecated)
}

/// A client builder for untrusted URLs (origins, registered providers' URLs): names resolve
/// through a [`CheckedResolver`] under `policy`, redirects are not followed, and no proxy is
/// taken from the environment (a proxy would resolve the names itself, past the resolver's
/// check). The caller adds its timeouts.
pub fn checked_client(policy: Arc<NetPolicy>) -> reqwest::ClientBuilder {
    direct_client().dns_resolver(Arc::new(CheckedResolver::new(policy)))
}

/// A client builder that follows no redirect and takes no proxy from the environment, with the
/// system resolver: for URLs the operator gave. The caller adds its timeouts.
pub fn direct_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none())
}

/// The HTTP client's resolver for origins: resolves with the system resolver and keeps only
/// the addresses the policy permits; a name with none left fails to resolve.
#[derive(Debug, Clone)]
pub struct CheckedResolver {
    policy: Arc<NetPolicy>,
}

impl CheckedResolver {
    /// A resolver under `policy`.
    pub fn new(policy: Arc<NetPolicy>) -> Self {
        Self { policy }
    }
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> =
                found.iter().copied().filter(|a| policy.permits(a.ip())).collect();
            if permitted.is_empty() {
                let shown: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{host} resolves only to internal addresses ({}): refused",
                    shown.join(", ")
                )
                .into());
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The addresses a libp2p peer may be dialled at: `/dns*` names resolved (the policy checks the
/// addresses they resolve to), `/ip4` and `/ip6` checked as they are; what is refused is left
/// out. Returns the addresses kept and, for each one refused, why.
pub async fn dialable(
    addrs: Vec<Multiaddr>,
    policy: &NetPolicy,
) -> (Vec<Multiaddr>, Vec<(Multiaddr, String)>) {
    let mut keep = Vec::new();
    let mut refused = Vec::new();
    for addr in addrs {
        let mut parts = addr.iter();
        let first = parts.next();
        let rest: Vec<Protocol<'_>> = parts.collect();
        let want_v4 = !matches!(first, Some(Protocol::Dns6(_)));
        let want_v6 = !matches!(first, Some(Protocol::Dns4(_)));
        let ips: Vec<IpAddr> = match first {
            Some(Protocol::Ip4(ip)) => vec![ip.into()],
            Some(Protocol::Ip6(ip)) => vec![ip.into()],
            Some(Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name)) => {
                match tokio::net::lookup_host((name.as_ref(), 0)).await {
                    Ok(found) => found
                        .map(|a| a.ip())
                        .filter(|ip| (ip.is_ipv4() && want_v4) || (ip.is_ipv6() && want_v6))
                        .collect(),
                    Err(e) => {
                        refused.push((addr.clone(), format!("cannot resolve {name}: {e}")));
                        continue;
                    }
                }
            }
            _ => {
                refused.push((addr.clone(), "names no IP address or DNS name".into()));
                continue;
            }
        };
        let before = keep.len();
        for ip in ips {
            if let Some(why) = policy.refusal(ip) {
                refused.push((addr.clone(), format!("{ip}: {why}")));
                continue;
            }
            let head = match ip {
                IpAddr::V4(v4) => Protocol::Ip4(v4),
                IpAddr::V6(v6) => Protocol::Ip6(v6),
            };
            let resolved: Multiaddr = std::iter::once(head).chain(rest.iter().cloned()).collect();
            if !keep.contains(&resolved) {
                keep.push(resolved);
            }
        }
        if keep.len() == before && !refused.iter().any(|(a, _)| *a == addr) {
            refused.push((addr.clone(), "resolves to no address".into()));
        }
    }
    (keep, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges_are_refused_and_public_ones_allowed() {
        let strict = NetPolicy::strict();
        for bad in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.0.170",
            "::",
            "::1",
            "fe80::1",
            "fd00::1",
            "fc00::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "::127.0.0.1",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(!strict.permits(ip), "{bad} must be refused");
        }
        for good in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = good.parse().unwrap();
            assert!(strict.permits(ip), "{good} must be allowed");
        }
        let dev = NetPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(dev.permits("127.0.0.1".parse().unwrap()));
        assert!(!dev.permits("10.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn peers_are_dialled_only_at_permitted_addresses() {
        let strict = NetPolicy::strict();
        let addrs: Vec<Multiaddr> = vec![
            "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
            "/ip4/1.2.3.4/tcp/4001".parse().unwrap(),
            "/dns4/localhost/tcp/4001".parse().unwrap(),
            "/ip6/fe80::1/tcp/4001".parse().unwrap(),
        ];
        let (keep, refused) = dialable(addrs, &strict).await;
        assert_eq!(keep, vec!["/ip4/1.2.3.4/tcp/4001".parse::<Multiaddr>().unwrap()]);
        assert_eq!(refused.len(), 3, "{refused:?}");
        let dev = NetPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap()]);
        let (keep, _) = dialable(vec!["/dns4/localhost/tcp/4001".parse().unwrap()], &dev).await;
        assert_eq!(keep, vec!["/ip4/127.0.0.1/tcp/4001".parse::<Multiaddr>().unwrap()]);
    }
}
