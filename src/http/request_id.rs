//! Request ids, the outermost layer of every request: the id comes from the request's
//! `X-Request-Id` when it carries a usable one (1 to 128 visible ASCII characters), and is
//! generated otherwise. It goes back in the answer's `X-Request-Id`, is the current request
//! id ([`crate::logging::request`]) while everything the request does runs (so every log
//! line of the request carries it, the sold-out shortcut's and the failure log's included),
//! and goes into every problem answer as its `instance` member (RFC 9457: the occurrence of
//! the problem).
//!
//! A generated id is this thread's random 64-bit prefix and its running count, in hex
//! (`5f0c2d9e1b7a4c33-1a2b`): unique without a shared counter, and cheap enough for every
//! request (no UUID, no syscall, rendered only when written). With `log.access = true` the layer also logs one line per
//! request at `info` (target `flashgate::access`): method, path, status and microseconds.
//!
//! The id reaches the problem body without parsing it: every problem response carries its
//! JSON as a [`ProblemJson`] extension, to which this layer appends the member.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, Method, Uri, header};
use axum::response::Response;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use super::error::ProblemJson;
use super::gate::Answered;
use crate::logging::request::{self, RequestId};

/// The request and response header that carries the id.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming id honoured; a longer one is replaced.
pub const MAX_LEN: usize = 128;

/// Whether ids are given, and whether each request is logged.
#[derive(Debug, Clone, Copy)]
pub struct RequestIdLayer {
    enabled: bool,
    access_log: bool,
}

impl RequestIdLayer {
    /// Ids on every request (when `enabled`), and an access log line per request (when
    /// `access_log`, and ids are on).
    pub fn new(enabled: bool, access_log: bool) -> Self {
        Self {
            enabled,
            access_log: enabled && access_log,
        }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIds<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIds {
            inner,
            layer: *self,
        }
    }
}

/// The service made by [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIds<S> {
    inner: S,
    layer: RequestIdLayer,
}

impl<S> Service<Request> for RequestIds<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = IdentifiedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if !self.layer.enabled {
            return IdentifiedFuture::Plain {
                inner: self.inner.call(req),
            };
        }
        let id = incoming(req.headers()).unwrap_or_else(generate);
        let access = self.layer.access_log.then(|| Access::of(&req));
        // Gates answer inside `call` (the sold-out shortcut): their logs carry the id too.
        let inner = request::sync_scope(id.clone(), || self.inner.call(req));
        IdentifiedFuture::Identified {
            inner: request::scope(id, inner),
            access,
        }
    }
}

pin_project! {
    /// The answer of [`RequestIds`]: the inner answer, with the request's id when ids are on.
    #[project = IdentifiedProj]
    pub enum IdentifiedFuture<F> {
        /// Ids are off: the inner answer as it is.
        Plain { #[pin] inner: F },
        /// The inner answer, run with the request's id current.
        Identified {
            #[pin]
            inner: TaskLocalFuture<RequestId, F>,
            access: Option<Access>,
        },
    }
}

impl<F> Future for IdentifiedFuture<F>
where
    F: Future<Output = Answered>,
{
    type Output = Answered;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answered> {
        match self.project() {
            IdentifiedProj::Plain { inner } => inner.poll(cx),
            IdentifiedProj::Identified { mut inner, access } => {
                let Ok(response) = ready!(inner.as_mut().poll(cx));
                let id = inner
                    .take_value()
                    .expect("the id is taken once, when the answer is ready");
                if let Some(access) = access.take() {
                    request::sync_scope(id.clone(), || access.log(&response));
                }
                Poll::Ready(Ok(identified(response, &id)))
            }
        }
    }
}

/// What the access log line says of a request.
#[derive(Debug)]
pub struct Access {
    method: Method,
    uri: Uri,
    started: Instant,
}

impl Access {
    fn of(req: &Request) -> Self {
        Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            started: Instant::now(),
        }
    }

    fn log(self, response: &Response) {
        tracing::info!(
            target: "flashgate::access",
            method = %self.method,
            path = self.uri.path(),
            status = response.status().as_u16(),
            micros = self.started.elapsed().as_micros() as u64,
            "request answered"
        );
    }
}

/// The request's usable `X-Request-Id`, if it has one.
fn incoming(headers: &HeaderMap) -> Option<RequestId> {
    let value = headers.get(&X_REQUEST_ID)?;
    is_usable(value.as_bytes()).then(|| RequestId::Given(value.clone()))
}

/// 1 to [`MAX_LEN`] visible ASCII characters (no spaces, no control characters).
fn is_usable(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A fresh id: this thread's random prefix and its count of ids so far.
fn generate() -> RequestId {
    thread_local! {
        static IDS: (u64, Cell<u64>) = (rand::random(), Cell::new(0));
    }
    IDS.with(|(prefix, count)| {
        let n = count.get();
        count.set(n.wrapping_add(1));
        RequestId::Generated {
            prefix: *prefix,
            count: n,
        }
    })
}

/// `response` with its id: in the `X-Request-Id` header, and as the `instance` of a
/// problem body.
fn identified(mut response: Response, id: &RequestId) -> Response {
    let id = id.to_header_value();
    if let Some(ProblemJson(json)) = response.extensions_mut().remove::<ProblemJson>()
        && let Some(body) = with_instance(&json, id.to_str().unwrap_or_default())
    {
        *response.body_mut() = Body::from(body);
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }
    response.headers_mut().insert(X_REQUEST_ID.clone(), id);
    response
}

/// The JSON object `json` with `"instance": id` as its last member (`None` if `json` is
/// not an object).
fn with_instance(json: &[u8], id: &str) -> Option<Vec<u8>> {
    let head = json.strip_suffix(b"}")?;
    if !head.starts_with(b"{") {
        return None;
    }
    let mut out = Vec::with_capacity(json.len() + id.len() + 16);
    out.extend_from_slice(head);
    if head.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"instance\":");
    serde_json::to_writer(&mut out, id).ok()?;
    out.push(b'}');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::ApiError;
    use axum::response::IntoResponse;
    use proptest::prelude::*;
    use serde_json::Value;
    use tower::ServiceExt;

    type Answer = futures_util::future::Ready<Answered>;
    type Inner = tower::util::ServiceFn<fn(Request) -> Answer>;

    fn answer(req: Request) -> Answer {
        let response = match req.uri().path() {
            "/problem" => ApiError::NotFound("no such thing").into_response(),
            "/sold-out" => ApiError::SoldOut.into_response(),
            _ => Response::new(Body::from("ok")),
        };
        futures_util::future::ready(Ok(response))
    }

    fn service(enabled: bool) -> RequestIds<Inner> {
        RequestIdLayer::new(enabled, false).layer(tower::service_fn(answer as fn(_) -> _))
    }

    async fn call(enabled: bool, path: &str, id: Option<&str>) -> (Option<String>, Value) {
        let mut request = axum::http::Request::get(path);
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        let response = service(enabled)
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let echoed = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        (echoed, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn a_usable_incoming_id_is_echoed_and_becomes_the_problems_instance() {
        let (echoed, body) = call(true, "/problem", Some("abc-123")).await;
        assert_eq!(echoed.as_deref(), Some("abc-123"));
        assert_eq!(body["instance"], "abc-123");
        assert_eq!(body["type"], "/problems/not-found");
        let (_, body) = call(true, "/sold-out", Some("so-1")).await;
        assert_eq!(body["instance"], "so-1");
        assert_eq!(body["detail"], "no stock left");
    }

    #[tokio::test]
    async fn a_missing_or_unusable_id_is_replaced_by_a_fresh_one() {
        for sent in [None, Some("has space"), Some(&"x".repeat(MAX_LEN + 1)[..])] {
            let (echoed, body) = call(true, "/problem", sent).await;
            let echoed = echoed.expect("an id is always returned");
            assert_ne!(Some(echoed.as_str()), sent);
            assert_eq!(body["instance"], echoed.as_str());
        }
    }

    #[tokio::test]
    async fn with_ids_off_nothing_is_added() {
        let (echoed, body) = call(false, "/problem", Some("abc")).await;
        assert_eq!(echoed, None);
        assert!(body.get("instance").is_none(), "{body}");
    }

    #[test]
    fn generated_ids_differ_and_are_usable() {
        let ids: Vec<_> = (0..1000).map(|_| generate().to_string()).collect();
        let mut texts: Vec<_> = ids.iter().map(String::as_str).collect();
        assert!(texts.iter().all(|t| is_usable(t.as_bytes())));
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), ids.len());
    }

    proptest! {
        #[test]
        fn any_usable_id_ends_up_as_the_instance_of_valid_json(id in "[!-~]{1,128}") {
            let json = br#"{"type":"/problems/x","status":409}"#;
            let out = with_instance(json, &id).unwrap();
            let value: Value = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(value["instance"].as_str(), Some(id.as_str()));
            prop_assert_eq!(value["status"].as_u64(), Some(409));
        }

        #[test]
        fn only_short_visible_ascii_is_usable(id in proptest::collection::vec(any::<u8>(), 0..200)) {
            let visible = id.iter().all(|b| (0x21..=0x7e).contains(b));
            prop_assert_eq!(is_usable(&id), visible && !id.is_empty() && id.len() <= MAX_LEN);
        }
    }
}
