//! A small client of a running gateway's admin API (`/admin/v1`), for `flashgate sale`:
//! plain HTTP/1 over hyper, the admin token as a Bearer credential, answers as JSON, and
//! problem+json answers turned into an error naming the problem.

use std::time::Duration;

use axum::body::Body;
use hyper::http::uri::InvalidUri;
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Longest wait for one answer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("the gateway URL {url:?} is not an http://host:port URL")]
    Url {
        url: String,
        #[source]
        source: Option<InvalidUri>,
    },
    #[error("the gateway at {gateway} could not be reached")]
    Unreachable {
        gateway: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("the gateway at {gateway} did not answer within {TIMEOUT:?}")]
    Timeout { gateway: String },
    #[error("the gateway's answer could not be read")]
    Body(#[source] axum::Error),
    #[error("the gateway answered {status} with a body that is not JSON")]
    NotJson {
        status: StatusCode,
        #[source]
        source: serde_json::Error,
    },
    /// The gateway refused: its problem's title and detail.
    #[error("{title} ({status}): {detail}")]
    Problem {
        status: StatusCode,
        title: String,
        detail: String,
    },
}

/// A gateway's admin API, as one operator credential sees it.
pub struct AdminClient {
    gateway: String,
    token: String,
    client: Client<HttpConnector, Body>,
}

impl AdminClient {
    /// A client of the gateway at `gateway` (`http://host:port`), presenting `token`.
    pub fn new(gateway: &str, token: String) -> Result<Self, AdminClientError> {
        let bad = |source| AdminClientError::Url {
            url: gateway.to_owned(),
            source,
        };
        let uri: Uri = gateway.parse().map_err(|e| bad(Some(e)))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(bad(None));
        }
        Ok(Self {
            gateway: gateway.trim_end_matches('/').to_owned(),
            token,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// `GET path`: the JSON answer.
    pub async fn get(&self, path: &str) -> Result<Value, AdminClientError> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with `body` (JSON, if any): the JSON answer.
    pub async fn post(&self, path: &str, body: Option<Value>) -> Result<Value, AdminClientError> {
        self.call(Method::POST, path, body).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminClientError> {
        let url = format!("{}{path}", self.gateway);
        let builder = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::ACCEPT, "application/json");
        let request = match body {
            Some(json) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json.to_string())),
            None => builder.body(Body::empty()),
        }
        .map_err(|_| AdminClientError::Url { url, source: None })?;
        let gateway = self.gateway.clone();
        let response = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| AdminClientError::Timeout {
                gateway: gateway.clone(),
            })?
            .map_err(|source| AdminClientError::Unreachable { gateway, source })?;
        let status = response.status();
        let bytes = axum::body::to_bytes(Body::new(response.into_body()), MAX_ANSWER_BYTES)
            .await
            .map_err(AdminClientError::Body)?;
        answer(status, &bytes)
    }
}

/// The JSON of a successful answer, or the problem of a refusal.
fn answer(status: StatusCode, bytes: &[u8]) -> Result<Value, AdminClientError> {
    if status == StatusCode::NO_CONTENT {
        return Ok(Value::Null);
    }
    let json: Value = serde_json::from_slice(bytes)
        .map_err(|source| AdminClientError::NotJson { status, source })?;
    if status.is_success() {
        return Ok(json);
    }
    let text = |field: &str| json[field].as_str().unwrap_or_default().to_owned();
    Err(AdminClientError::Problem {
        status,
        title: text("title"),
        detail: text("detail"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_gateways_are_accepted() {
        assert!(AdminClient::new("http://127.0.0.1:8080", "t".into()).is_ok());
        for bad in ["https://gw:8443", "127.0.0.1:8080", "not a url", ""] {
            assert!(
                matches!(
                    AdminClient::new(bad, "t".into()),
                    Err(AdminClientError::Url { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_problem_answer_names_its_title_and_detail() {
        let body = br#"{"type":"/problems/not-found","title":"Not found","status":404,"detail":"no such sale"}"#;
        let error = answer(StatusCode::NOT_FOUND, body).unwrap_err();
        assert_eq!(error.to_string(), "Not found (404 Not Found): no such sale");
        assert_eq!(answer(StatusCode::OK, b"{\"a\":1}").unwrap()["a"], 1);
    }
}
