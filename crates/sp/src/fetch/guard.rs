//! Where the agent may connect when it downloads: origins come from the chain, written by
//! anyone, so by default they may only reach public addresses — not the provider's own
//! network, its cloud's metadata service or the loopback interface — directly, through DNS, or
//! through a redirect. Every name is resolved by [`GuardedResolver`] and its private addresses
//! dropped, so a name that resolves to a public address at check time and a private one at
//! connect time (DNS rebinding) cannot slip through: the address connected to is the one
//! checked. The local stack and tests allow private addresses (`--allow-private-origins`).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};

/// Most redirects followed.
pub const MAX_REDIRECTS: usize = 5;

/// Whether `ip` is a public unicast address (not loopback, private, link-local, shared,
/// multicast, documentation or reserved), for IPv4 and IPv6 (IPv4-mapped addresses as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // 100.64.0.0/10 shared address space (carrier-grade NAT).
        || (a == 100 && (b & 0xc0) == 64)
        // 192.0.0.0/24 IETF protocol assignments; 198.18.0.0/15 benchmarking.
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b & 0xfe) == 18)
        // 240.0.0.0/4 reserved.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local.
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        // 2001:db8::/32 documentation; 64:ff9b:1::/48 local-use NAT64; ::ffff:0:0/96 handled above.
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001))
}

/// The connection policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    /// Allow loopback and private addresses (the local stack, tests).
    pub allow_private: bool,
}

impl Guard {
    /// Whether an address may be connected to.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }

    /// Whether a URL may be requested: HTTP(S), no credentials, and a host that is either a
    /// name (checked when resolved) or an allowed address.
    pub fn check(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("scheme {:?} is not HTTP", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("URLs with credentials are not followed".into());
        }
        match url.host() {
            None => Err("no host".into()),
            Some(url::Host::Ipv4(ip)) if !self.allows(ip.into()) => {
                Err(format!("{ip} is not a public address"))
            }
            Some(url::Host::Ipv6(ip)) if !self.allows(ip.into()) => {
                Err(format!("{ip} is not a public address"))
            }
            Some(_) => Ok(()),
        }
    }

    /// The redirect policy: at most [`MAX_REDIRECTS`], each target checked like the first URL.
    pub fn redirects(self) -> reqwest::redirect::Policy {
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match self.check(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(why) => {
                    let to = attempt.url().to_string();
                    attempt.error(format!("redirect to {to} refused: {why}"))
                }
            }
        })
    }
}

/// A resolver that keeps only the addresses the guard allows.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver(pub Guard);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                .collect();
            let allowed: Vec<SocketAddr> =
                found.iter().copied().filter(|a| guard.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(Refused(format!(
                    "{host} resolves to no public address ({} found)",
                    found.len()
                ))) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client downloads go through.
pub fn client(guard: Guard) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("estuary-sp/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .connect_timeout(std::time::Duration::from_secs(15))
        .redirect(guard.redirects())
        .dns_resolver(Arc::new(GuardedResolver(guard)))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "100.128.0.1", "2606:4700::1111", "::ffff:1.1.1.1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn urls_are_checked_before_any_connection() {
        let strict = Guard { allow_private: false };
        let ok = |u: &str| strict.check(&Url::parse(u).unwrap());
        assert!(ok("https://sp.example/piece/x").is_ok());
        assert!(ok("http://1.1.1.1/x").is_ok());
        assert!(ok("http://127.0.0.1:8080/x").unwrap_err().contains("not a public"));
        assert!(ok("http://[::1]/x").is_err());
        assert!(ok("http://169.254.169.254/latest/meta-data").is_err());
        assert!(ok("ftp://1.1.1.1/x").is_err());
        assert!(ok("http://u:p@1.1.1.1/x").is_err());
        let dev = Guard { allow_private: true };
        assert!(dev.check(&Url::parse("http://127.0.0.1:8080/x").unwrap()).is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let resolver = GuardedResolver(Guard { allow_private: false });
        let name: Name = "localhost".parse().unwrap();
        let err = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost resolved through the guard"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("no public address"), "{err}");
        let open = GuardedResolver(Guard { allow_private: true });
        assert!(open.resolve("localhost".parse().unwrap()).await.is_ok());
    }
}
