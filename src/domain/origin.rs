//! Web origins, as browsers send them in `Origin`: what `http.cors_origins` lists.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// Why a text is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an origin: expected http(s)://host[:port], without path or trailing slash")]
pub struct OriginError(String);

/// A web origin: `http` or `https`, a host (a name, an IPv4 address or a bracketed IPv6 one)
/// and an optional port, in lower case, nothing else; so it compares equal to the `Origin`
/// header a browser sends for it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    /// Parses `text` (its case is folded, as browsers serialise origins in lower case).
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let lower = text.trim().to_ascii_lowercase();
        let invalid = || OriginError(text.to_owned());
        let authority = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"))
            .ok_or_else(invalid)?;
        let (host_ok, port) = match authority.strip_prefix('[') {
            // An IPv6 address: `[...]`, then an optional port.
            Some(bracketed) => {
                let (address, rest) = bracketed.split_once(']').ok_or_else(invalid)?;
                let address_ok = !address.is_empty()
                    && address
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b));
                let port = match rest {
                    "" => None,
                    rest => Some(rest.strip_prefix(':').ok_or_else(invalid)?),
                };
                (address_ok, port)
            }
            None => {
                let (host, port) = match authority.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (authority, None),
                };
                let host_ok = !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
                (host_ok, port)
            }
        };
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
        if host_ok && port_ok {
            Ok(Self(lower))
        } else {
            Err(invalid())
        }
    }

    /// The origin as text (visible ASCII only).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_as_browsers_send_them() {
        for ok in [
            "https://shop.example",
            "http://localhost:3000",
            "HTTPS://Shop.Example",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://[::1]",
        ] {
            assert!(Origin::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            Origin::parse("HTTPS://Shop.Example").unwrap().as_str(),
            "https://shop.example"
        );
    }

    #[test]
    fn anything_but_an_origin_is_refused() {
        for bad in [
            "*",
            "null",
            "shop.example",
            "https://",
            "https://shop.example/",
            "https://shop.example/path",
            "https://shop.example:99999",
            "ftp://shop.example",
            "https://shop example",
            "http://a:b:80",
            "http://[::1]x",
            "http://[shop.example]",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }
}
