//! The id of the request being served, for every log line logged while serving it.
//!
//! The id lives in a tokio task-local for the time the request's future runs (set by
//! `http::request_id`), and the log format reads it when a line is written
//! ([`super::format`]). Nothing is done per request beyond moving the id in and out of the
//! task-local on each poll: no span is created, entered or formatted, which is what makes
//! ids affordable on every purchase (a span per request cost about 2.8 µs of a sold-out
//! answer's 11).
//!
//! Like a span, the id stays with the request's own task: work the request hands to another
//! task (the purchase batcher, the writer) logs without it.

use std::fmt;
use std::future::Future;

use axum::http::HeaderValue;
use tokio::task::futures::TaskLocalFuture;

tokio::task_local! {
    static CURRENT: RequestId;
}

/// A request's id: one the client sent, or one generated for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    /// A usable `X-Request-Id` the client sent (visible ASCII, kept as it came).
    Given(HeaderValue),
    /// A generated id, `<prefix as 16 hex digits>-<count in hex>`: kept as its two numbers
    /// so that carrying it costs no allocation; rendered only when written.
    Generated {
        /// The generating thread's random prefix.
        prefix: u64,
        /// The thread's count of ids before this one.
        count: u64,
    },
}

impl RequestId {
    /// The id as a header value (generated ids are rendered here).
    pub fn to_header_value(&self) -> HeaderValue {
        match self {
            Self::Given(value) => value.clone(),
            Self::Generated { prefix, count } => {
                let mut text = [0u8; 33];
                let len = hex_id(*prefix, *count, &mut text);
                HeaderValue::from_bytes(&text[..len]).expect("hex digits and a dash")
            }
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A given id is visible ASCII (`http::request_id` checks it), so it is text.
            Self::Given(value) => f.write_str(value.to_str().unwrap_or_default()),
            Self::Generated { prefix, count } => write!(f, "{prefix:016x}-{count:x}"),
        }
    }
}

/// Writes `<prefix as 16 hex digits>-<n in hex>` into `out`; returns its length.
fn hex_id(prefix: u64, n: u64, out: &mut [u8; 33]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, slot) in out[..16].iter_mut().enumerate() {
        *slot = HEX[((prefix >> (60 - 4 * i)) & 0xf) as usize];
    }
    out[16] = b'-';
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, slot) in out[17..17 + digits].iter_mut().enumerate() {
        *slot = HEX[((n >> (4 * (digits - 1 - i))) & 0xf) as usize];
    }
    17 + digits
}

/// The future `fut`, run with `id` as the current request's id.
pub fn scope<F: Future>(id: RequestId, fut: F) -> TaskLocalFuture<RequestId, F> {
    CURRENT.scope(id, fut)
}

/// `f` run with `id` as the current request's id.
pub fn sync_scope<R>(id: RequestId, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(id, f)
}

/// `f` applied to the current request's id, if a request is being served.
pub fn with_current<R>(f: impl FnOnce(&RequestId) -> R) -> Option<R> {
    CURRENT.try_with(f).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_id_is_the_prefix_and_the_count_in_hex() {
        let cases = [
            (0x0123_4567_89ab_cdef, 0, "0123456789abcdef-0"),
            (u64::MAX, u64::MAX, "ffffffffffffffff-ffffffffffffffff"),
            (0, 0x1a2b, "0000000000000000-1a2b"),
        ];
        for (prefix, count, text) in cases {
            let id = RequestId::Generated { prefix, count };
            assert_eq!(id.to_header_value(), text);
            assert_eq!(id.to_string(), text);
        }
    }

    #[tokio::test]
    async fn the_id_is_current_inside_its_scope_only() {
        let id = RequestId::Given(HeaderValue::from_static("abc"));
        let seen = scope(id.clone(), async {
            tokio::task::yield_now().await;
            with_current(RequestId::to_string)
        })
        .await;
        assert_eq!(seen.as_deref(), Some("abc"));
        assert_eq!(sync_scope(id, || with_current(|_| ())), Some(()));
        assert_eq!(with_current(|_| ()), None);
    }
}
