//! Cross-origin requests from browser frontends served from another origin
//! (`http.cors_origins`): preflight `OPTIONS` requests are answered, and
//! `Access-Control-Allow-Origin` is sent to the configured origins only. With no origin
//! configured (the default) there is no layer at all, so requests pay nothing.

use std::fmt;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use serde::{Deserialize, Deserializer};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Why a text is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an origin: expected http(s)://host[:port], without path or trailing slash")]
pub struct OriginError(String);

/// A web origin as browsers send it in `Origin`: `http` or `https`, a host and an optional
/// port, lower case, nothing else.
#[derive(Clone, PartialEq, Eq)]
pub struct CorsOrigin(HeaderValue);

impl CorsOrigin {
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
        if !host_ok || !port_ok {
            return Err(invalid());
        }
        HeaderValue::from_str(&lower)
            .map(Self)
            .map_err(|_| invalid())
    }
}

impl fmt::Debug for CorsOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.to_str().unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for CorsOrigin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The request headers the API reads.
const ALLOWED_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    HeaderName::from_static("idempotency-key"),
    HeaderName::from_static("x-request-id"),
];

/// The response headers beyond the CORS-safelisted ones a frontend may read: when to retry,
/// the rate-limit fields and the request id.
const EXPOSED_HEADERS: [HeaderName; 4] = [
    header::RETRY_AFTER,
    HeaderName::from_static("ratelimit"),
    HeaderName::from_static("ratelimit-policy"),
    HeaderName::from_static("x-request-id"),
];

/// The CORS layer for `origins`, or `None` (no layer) when there are none.
pub fn layer(origins: &[CorsOrigin]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins = origins.iter().map(|o| o.0.clone());
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers(ALLOWED_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .max_age(PREFLIGHT_MAX_AGE),
    )
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
            assert!(CorsOrigin::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            CorsOrigin::parse("HTTPS://Shop.Example").unwrap(),
            CorsOrigin::parse("https://shop.example").unwrap()
        );
    }

    #[test]
    fn anything_but_an_origin_is_refused() {
        for bad in [
            "*",
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
            assert!(CorsOrigin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_origins_means_no_layer() {
        assert!(layer(&[]).is_none());
    }
}
