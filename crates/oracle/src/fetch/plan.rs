//! Where to fetch a DAG from, in order, decided without I/O: the request's own origins first
//! (trustless gateways named by `/http` multiaddrs, libp2p peers named by `/p2p/…`), then the
//! gateways the operator configured. Origins that name neither, and origins at a literal
//! address the [`NetPolicy`] refuses (loopback, private, link-local, …), are skipped with the
//! reason; names are checked when they are resolved (see [`super::net`]).

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

use super::net::NetPolicy;

/// One place to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A libp2p peer over Bitswap, at these addresses (none: it must already be connected, as
    /// a browser node that dialled in is).
    Peer {
        /// The peer.
        peer: PeerId,
        /// Where to dial it.
        addrs: Vec<Multiaddr>,
    },
    /// A trustless gateway (base URL).
    Gateway {
        /// Its base URL.
        url: String,
        /// Configured by the operator (not checked against the [`NetPolicy`]), rather than
        /// named by a request.
        trusted: bool,
    },
}

/// The sources to try, in order, and the origins skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Peers first (a request naming a peer usually names the uploader's node), then gateways.
    pub sources: Vec<Origin>,
    /// Origins that cannot be used, and why.
    pub skipped: Vec<(String, &'static str)>,
}

/// The literal IP address a multiaddr starts with, if it does.
fn literal_ip(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    }
}

/// The plan for a request's `origins` (multiaddrs, untrusted, checked against `policy`) and the
/// configured `gateways` (trusted).
pub fn plan(origins: &[String], gateways: &[String], policy: &NetPolicy) -> Plan {
    let mut out = Plan::default();
    let mut peers: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
    let mut urls: Vec<(String, bool)> = Vec::new();
    for origin in origins {
        if let Some(url) = gateway_of_multiaddr(origin) {
            let refused = origin
                .parse::<Multiaddr>()
                .ok()
                .as_ref()
                .and_then(literal_ip)
                .and_then(|ip| policy.refusal(ip));
            if let Some(why) = refused {
                out.skipped.push((origin.clone(), why));
            } else if !urls.iter().any(|(u, _)| *u == url) {
                urls.push((url, false));
            }
            continue;
        }
        let Ok(mut addr) = origin.parse::<Multiaddr>() else {
            out.skipped.push((origin.clone(), "not a multiaddr"));
            continue;
        };
        let Some(peer) = estuary_p2p::peer_of(&addr) else {
            out.skipped.push((origin.clone(), "names no peer (/p2p/…) and no HTTP gateway"));
            continue;
        };
        addr.pop();
        if let Some(why) = literal_ip(&addr).and_then(|ip| policy.refusal(ip)) {
            out.skipped.push((origin.clone(), why));
            continue;
        }
        let i = match peers.iter().position(|(p, _)| *p == peer) {
            Some(i) => i,
            None => {
                peers.push((peer, Vec::new()));
                peers.len() - 1
            }
        };
        if !addr.is_empty() && !peers[i].1.contains(&addr) {
            peers[i].1.push(addr);
        }
    }
    for gateway in gateways {
        let gateway = gateway.trim_end_matches('/').to_owned();
        match urls.iter_mut().find(|(u, _)| *u == gateway) {
            // Named by the request too: the operator's trust wins.
            Some((_, trusted)) => *trusted = true,
            None => urls.push((gateway, true)),
        }
    }
    // A peer whose every address was refused is not asked (with no address at all, it is one
    // that dialled in).
    let refused_peers: Vec<PeerId> = out
        .skipped
        .iter()
        .filter_map(|(o, _)| o.parse::<Multiaddr>().ok().as_ref().and_then(estuary_p2p::peer_of))
        .collect();
    out.sources.extend(
        peers
            .into_iter()
            .filter(|(peer, addrs)| !(addrs.is_empty() && refused_peers.contains(peer)))
            .map(|(peer, addrs)| Origin::Peer { peer, addrs }),
    );
    out.sources.extend(urls.into_iter().map(|(url, trusted)| Origin::Gateway { url, trusted }));
    out
}

/// The base URL of a trustless gateway named by a multiaddr: `/ip4|ip6|dns|dns4|dns6/<host>/tcp/
/// <port>/http` (or `/https`, or `/tls/http`), optionally followed by `/p2p/<peer>`. Other
/// multiaddrs (libp2p transports) give `None`.
pub fn gateway_of_multiaddr(addr: &str) -> Option<String> {
    let parts: Vec<&str> = addr.strip_prefix('/')?.split('/').collect();
    let (host, rest) = match parts.as_slice() {
        ["ip4", ip, rest @ ..] => (ip.parse::<std::net::Ipv4Addr>().ok()?.to_string(), rest),
        ["ip6", ip, rest @ ..] => (format!("[{}]", ip.parse::<std::net::Ipv6Addr>().ok()?), rest),
        ["dns" | "dns4" | "dns6", name, rest @ ..]
            if !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
        {
            ((*name).to_owned(), rest)
        }
        _ => return None,
    };
    let (port, rest) = match rest {
        ["tcp", port, rest @ ..] => (port.parse::<u16>().ok()?, rest),
        _ => return None,
    };
    let (scheme, rest) = match rest {
        ["http", rest @ ..] => ("http", rest),
        ["https", rest @ ..] | ["tls", "http", rest @ ..] => ("https", rest),
        _ => return None,
    };
    match rest {
        [] | ["p2p", _] => Some(format!("{scheme}://{host}:{port}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{NetPolicy, Origin, gateway_of_multiaddr as g, plan};

    #[test]
    fn http_multiaddrs_name_gateways() {
        assert_eq!(g("/ip4/127.0.0.1/tcp/8080/http").as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(g("/ip6/::1/tcp/80/http").as_deref(), Some("http://[::1]:80"));
        assert_eq!(
            g("/dns4/example.org/tcp/443/https").as_deref(),
            Some("https://example.org:443")
        );
        assert_eq!(
            g("/dns/example.org/tcp/443/tls/http/p2p/Qm").as_deref(),
            Some("https://example.org:443")
        );
        for bad in [
            "",
            "/",
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/127.0.0.1/tcp/4001/p2p/QmX",
            "/ip4/127.0.0.1/udp/4001/quic-v1",
            "/ip4/999.0.0.1/tcp/80/http",
            "/ip4/127.0.0.1/tcp/99999/http",
            "/dns/a@b/tcp/80/http",
            "/dns//tcp/80/http",
            "/ip4/127.0.0.1/tcp/80/http/extra",
            "http://127.0.0.1:8080",
        ] {
            assert_eq!(g(bad), None, "{bad}");
        }
    }

    #[test]
    fn origins_come_first_then_gateways_each_once() {
        let peer = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        let private = NetPolicy::allowing(vec!["10.0.0.0/8".parse().unwrap()]);
        let p = plan(
            &[
                "/ip4/10.0.0.1/tcp/8080/http".into(),
                format!("/ip4/10.0.0.2/tcp/4001/p2p/{peer}"),
                format!("/ip4/10.0.0.3/tcp/4001/p2p/{peer}"),
                "/ip4/10.0.0.4/tcp/4001".into(),
                "nonsense".into(),
            ],
            &["http://10.0.0.1:8080/".into(), "http://10.0.0.9:8080".into()],
            &private,
        );
        assert_eq!(p.sources.len(), 3);
        assert!(matches!(&p.sources[0], Origin::Peer { addrs, .. } if addrs.len() == 2));
        assert_eq!(
            p.sources[1],
            Origin::Gateway { url: "http://10.0.0.1:8080".into(), trusted: true }
        );
        assert_eq!(
            p.sources[2],
            Origin::Gateway { url: "http://10.0.0.9:8080".into(), trusted: true }
        );
        assert_eq!(p.skipped.len(), 2);
    }

    #[test]
    fn origins_at_internal_addresses_are_skipped_but_configured_gateways_are_not() {
        let peer = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        let p = plan(
            &[
                "/ip4/127.0.0.1/tcp/8080/http".into(),
                "/ip4/169.254.169.254/tcp/80/http".into(),
                "/ip6/::1/tcp/80/http".into(),
                "/ip4/10.1.2.3/tcp/443/https".into(),
                format!("/ip4/192.168.0.2/tcp/4001/p2p/{peer}"),
                "/ip4/203.0.113.7/tcp/8080/http".into(),
                "/dns4/gateway.example/tcp/443/https".into(),
            ],
            &["http://127.0.0.1:8080".into()],
            &NetPolicy::strict(),
        );
        // 203.0.113.0/24 is a documentation range: refused too.
        assert_eq!(p.skipped.len(), 6, "{:?}", p.skipped);
        assert_eq!(
            p.sources,
            [
                Origin::Gateway { url: "https://gateway.example:443".into(), trusted: false },
                Origin::Gateway { url: "http://127.0.0.1:8080".into(), trusted: true },
            ]
        );
    }
}
