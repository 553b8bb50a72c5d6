//! Which IP a request comes from: the TCP peer, unless the peer is a configured trusted proxy,
//! in which case the nearest untrusted address in `X-Forwarded-For` (read from the right,
//! since only the entries our own proxies appended can be believed).
//!
//! A request may carry several `X-Forwarded-For` lines: they are one list, the lines joined
//! in order with commas (RFC 9110 §5.3), and a proxy may append its own line rather than
//! extend the last one. Every line is read, so a client cannot hide behind a first line it
//! wrote itself.

use std::net::IpAddr;

use axum::http::HeaderValue;

/// The client IP of a request from `peer` carrying the `forwarded_for` header lines, in the
/// order they were received.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    trusted: &[IpAddr],
) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut nearest = peer;
    for line in forwarded_for.rev() {
        // A malformed entry cannot be trusted, nor anything left of it.
        let Ok(line) = line.to_str() else {
            return nearest;
        };
        for hop in line.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                return nearest;
            };
            if !trusted.contains(&ip) {
                return ip;
            }
            nearest = ip;
        }
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

    fn lines(values: &[&str]) -> Vec<HeaderValue> {
        values
            .iter()
            .map(|v| HeaderValue::from_str(v).unwrap())
            .collect()
    }

    /// The client of a request from `peer` with `values` as its header lines.
    fn client(peer: &str, values: &[&str], trusted: &[IpAddr]) -> IpAddr {
        client_ip(ip(peer), lines(values).iter(), trusted)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = [ip("10.0.0.1")];
        assert_eq!(
            client("203.0.113.9", &["1.2.3.4"], &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let chain = "6.6.6.6, 198.51.100.7, 10.0.0.2";
        assert_eq!(client("10.0.0.1", &[chain], &trusted), ip("198.51.100.7"));
        assert_eq!(client("10.0.0.1", &[], &trusted), ip("10.0.0.1"));
        assert_eq!(client("10.0.0.1", &["10.0.0.2"], &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn a_malformed_hop_stops_the_walk() {
        let trusted = [ip("10.0.0.1")];
        assert_eq!(
            client("10.0.0.1", &["1.2.3.4, junk"], &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client("10.0.0.1", &["junk, 5.6.7.8"], &trusted),
            ip("5.6.7.8")
        );
        let opaque = [HeaderValue::from_bytes(b"\xff1.2.3.4").unwrap()];
        assert_eq!(
            client_ip(ip("10.0.0.1"), opaque.iter(), &trusted),
            ip("10.0.0.1"),
            "a line that is not text is malformed too"
        );
    }

    #[test]
    fn several_lines_are_one_list_read_from_the_last_line() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        // The client wrote the first line; our proxies appended a line each.
        let received = ["6.6.6.6", "198.51.100.7, 10.0.0.2", "10.0.0.2"];
        assert_eq!(client("10.0.0.1", &received, &trusted), ip("198.51.100.7"));
        assert_eq!(
            client("10.0.0.1", &["6.6.6.6", "198.51.100.7"], &trusted),
            ip("198.51.100.7"),
            "not the first line"
        );
        assert_eq!(
            client("10.0.0.1", &["6.6.6.6", "10.0.0.2"], &trusted),
            ip("6.6.6.6"),
            "the walk goes on into earlier lines past trusted hops"
        );
    }

    proptest! {
        #[test]
        fn without_trusted_proxies_the_header_is_ignored(a in any::<[u8; 4]>(), header in "\\PC{0,60}") {
            let peer = IpAddr::from(a);
            let value = HeaderValue::from_bytes(header.as_bytes());
            prop_assume!(value.is_ok());
            let value = value.unwrap();
            prop_assert_eq!(client_ip(peer, std::iter::once(&value), &[]), peer);
        }

        #[test]
        fn lines_read_as_their_comma_joined_list(hops in proptest::collection::vec(any::<[u8; 4]>(), 1..6), split in 0usize..6) {
            let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
            let hops: Vec<String> = hops.iter().map(|h| IpAddr::from(*h).to_string()).collect();
            let split = split.min(hops.len() - 1);
            let joined = [hops.join(", ")];
            let (left, right) = hops.split_at(split);
            let separate: Vec<String> = [left.join(","), right.join(",")]
                .into_iter()
                .filter(|l| !l.is_empty())
                .collect();
            let separate: Vec<&str> = separate.iter().map(String::as_str).collect();
            prop_assert_eq!(
                client("10.0.0.1", &separate, &trusted),
                client("10.0.0.1", &[joined[0].as_str()], &trusted)
            );
        }
    }
}
