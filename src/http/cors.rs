//! Cross-origin requests from browser frontends served from another origin
//! (`http.cors_origins`): preflight `OPTIONS` requests are answered, and
//! `Access-Control-Allow-Origin` is sent to the configured origins only. With no origin
//! configured (the default) there is no layer at all, so requests pay nothing.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::domain::Origin;

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
pub fn layer(origins: &[Origin]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins = origins.iter().map(|o| {
        HeaderValue::from_str(o.as_str()).expect("an origin is visible ASCII, a header value")
    });
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
    fn no_origins_means_no_layer() {
        assert!(layer(&[]).is_none());
    }
}
