//! Where to fetch a DAG from, in order, decided without I/O: the request's own origins first
//! (trustless gateways named by `/http` multiaddrs, libp2p peers named by `/p2p/…`), then the
//! gateways the operator configured. Origins that name neither are skipped, with the reason.

use libp2p::{Multiaddr, PeerId};

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
    Gateway(String),
}

/// The sources to try, in order, and the origins skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Peers first (a request naming a peer usually names the uploader's node), then gateways.
    pub sources: Vec<Origin>,
    /// Origins that cannot be used, and why.
    pub skipped: Vec<(String, &'static str)>,
}

/// The plan for a request's `origins` (multiaddrs, untrusted) and the configured `gateways`.
pub fn plan(origins: &[String], gateways: &[String]) -> Plan {
    let mut out = Plan::default();
    let mut peers: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
    let mut urls: Vec<String> = Vec::new();
    for origin in origins {
        if let Some(url) = gateway_of_multiaddr(origin) {
            if !urls.contains(&url) {
                urls.push(url);
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
        if !urls.contains(&gateway) {
            urls.push(gateway);
        }
    }
    out.sources.extend(peers.into_iter().map(|(peer, addrs)| Origin::Peer { peer, addrs }));
    out.sources.extend(urls.into_iter().map(Origin::Gateway));
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
    use super::{Origin, gateway_of_multiaddr as g, plan};

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
        let p = plan(
            &[
                "/ip4/10.0.0.1/tcp/8080/http".into(),
                format!("/ip4/10.0.0.2/tcp/4001/p2p/{peer}"),
                format!("/ip4/10.0.0.3/tcp/4001/p2p/{peer}"),
                "/ip4/10.0.0.4/tcp/4001".into(),
                "nonsense".into(),
            ],
            &["http://10.0.0.1:8080/".into(), "http://10.0.0.9:8080".into()],
        );
        assert_eq!(p.sources.len(), 3);
        assert!(matches!(&p.sources[0], Origin::Peer { addrs, .. } if addrs.len() == 2));
        assert_eq!(p.sources[1], Origin::Gateway("http://10.0.0.1:8080".into()));
        assert_eq!(p.sources[2], Origin::Gateway("http://10.0.0.9:8080".into()));
        assert_eq!(p.skipped.len(), 2);
    }
}
