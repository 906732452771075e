//! Where a CAR can be downloaded from: an order's origins and a proposal's `location_ref` are
//! URLs (`http://…`, `https://…`) or HTTP multiaddrs (`/ip4/…/tcp/…/http`, `/dns/…/tcp/443/https`),
//! which name a server answering `GET /piece/{pieceCid}` the way Boost, Curio and Estuary's
//! oracle do. Other origins (`/p2p/…` Bitswap peers) are not for this agent and are left out.

/// Longest URL followed.
pub const MAX_URL: usize = 2048;

/// The URL to GET for `origin`, given the piece's v2 CID (for multiaddr origins); `None` if the
/// origin is not an HTTP location.
pub fn http_url(origin: &str, piece_v2: &str) -> Option<String> {
    let origin = origin.trim();
    if origin.len() > MAX_URL || origin.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return None;
    }
    if let Some(rest) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        return (!host.is_empty() && !host.contains('@')).then(|| origin.to_owned());
    }
    let parts: Vec<&str> = origin.strip_prefix('/')?.split('/').collect();
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
    let scheme = match rest {
        ["http"] | ["http", "p2p", _] => "http",
        ["https"] | ["https", "p2p", _] | ["tls", "http"] | ["tls", "http", "p2p", _] => "https",
        _ => return None,
    };
    Some(format!("{scheme}://{host}:{port}/piece/{piece_v2}"))
}

/// The HTTP URLs among `origins`, in order, without repeats.
pub fn http_urls(origins: &[String], piece_v2: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for url in origins.iter().filter_map(|o| http_url(o, piece_v2)) {
        if !out.contains(&url) {
            out.push(url);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_http_multiaddrs_are_locations() {
        let p = "bafkzcibpiece";
        assert_eq!(
            http_url("http://127.0.0.1:8080/a.car", p).as_deref(),
            Some("http://127.0.0.1:8080/a.car")
        );
        assert_eq!(
            http_url(" https://x.example/a.car ", p).as_deref(),
            Some("https://x.example/a.car")
        );
        assert_eq!(
            http_url("/ip4/10.0.0.1/tcp/3000/http", p).as_deref(),
            Some("http://10.0.0.1:3000/piece/bafkzcibpiece")
        );
        assert_eq!(
            http_url("/dns/sp.example/tcp/443/https", p).as_deref(),
            Some("https://sp.example:443/piece/bafkzcibpiece")
        );
        assert_eq!(
            http_url("/ip6/::1/tcp/80/http/p2p/12D3KooW", p).as_deref(),
            Some("http://[::1]:80/piece/bafkzcibpiece")
        );
        for not in [
            "/p2p/12D3KooWabc",
            "/ip4/1.2.3.4/tcp/4001",
            "/ip4/1.2.3.4/udp/1/quic",
            "ftp://x/y",
            "http://",
            "http://user:pw@host/x",
            "http://a b/c",
            "",
        ] {
            assert_eq!(http_url(not, p), None, "{not}");
        }
        assert_eq!(http_url(&format!("http://h/{}", "a".repeat(MAX_URL)), p), None);
        let urls = http_urls(
            &[
                "/p2p/x".into(),
                "http://a/c".into(),
                "http://a/c".into(),
                "/ip4/1.1.1.1/tcp/1/http".into(),
            ],
            p,
        );
        assert_eq!(urls, ["http://a/c", "http://1.1.1.1:1/piece/bafkzcibpiece"]);
    }
}
