//! Which IP a request comes from: the TCP peer, unless the peer is a configured trusted proxy,
//! in which case the nearest untrusted address in `X-Forwarded-For` (read from the right,
//! since only the entries our own proxies appended can be believed).

use std::net::IpAddr;

/// The client IP of a request from `peer` carrying `forwarded_for` (the raw header value).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let Some(chain) = forwarded_for else {
        return peer;
    };
    let mut nearest = peer;
    for hop in chain.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // A malformed entry cannot be trusted, nor anything left of it.
            return nearest;
        };
        if !trusted.contains(&ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = [ip("10.0.0.1")];
        assert_eq!(
            client_ip(ip("203.0.113.9"), Some("1.2.3.4"), &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let chain = "6.6.6.6, 198.51.100.7, 10.0.0.2";
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some(chain), &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(client_ip(ip("10.0.0.1"), None, &trusted), ip("10.0.0.1"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("10.0.0.2"), &trusted),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn a_malformed_hop_stops_the_walk() {
        let trusted = [ip("10.0.0.1")];
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("1.2.3.4, junk"), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("junk, 5.6.7.8"), &trusted),
            ip("5.6.7.8")
        );
    }

    proptest! {
        #[test]
        fn without_trusted_proxies_the_header_is_ignored(a in any::<[u8; 4]>(), header in "\\PC{0,60}") {
            let peer = IpAddr::from(a);
            prop_assert_eq!(client_ip(peer, Some(&header), &[]), peer);
        }
    }
}
