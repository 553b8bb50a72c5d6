//! Where a JWKS document comes from: a file (kept current by whatever deploys the gateway)
//! or an `http://` URL (the login service's, or a mirror of it), read with hyper's client.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use hyper::{Request, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::keys::{KeySet, KeySetError};

/// Longest wait for a JWKS answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Why a JWKS could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read the JWKS file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the JWKS URL {url:?} is not an http://host[:port]/path URL")]
    Url { url: String },
    #[error("cannot fetch the JWKS from {url}")]
    Fetch {
        url: String,
        #[source]
        source: Box<hyper_util::client::legacy::Error>,
    },
    #[error("the JWKS at {url} did not answer within {FETCH_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("the JWKS at {url} answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("cannot read the JWKS answer from {url}")]
    Body {
        url: String,
        #[source]
        source: axum::Error,
    },
    #[error("the JWKS from {origin} is not usable")]
    Keys {
        origin: String,
        #[source]
        source: KeySetError,
    },
}

/// One place a JWKS is read from.
#[derive(Debug)]
pub enum JwksSource {
    File(PathBuf),
    Url {
        url: Uri,
        client: Client<HttpConnector, Body>,
    },
}

impl JwksSource {
    /// The JWKS file at `path`.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File(path.into())
    }

    /// The JWKS served at `url` (`http://` only: the gateway carries no TLS client).
    pub fn url(url: &str) -> Result<Self, JwksError> {
        let bad = || JwksError::Url {
            url: url.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(bad());
        }
        Ok(Self::Url {
            url: uri,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// The source's usable keys now.
    pub async fn load(&self) -> Result<KeySet, JwksError> {
        let (origin, bytes) = match self {
            Self::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|source| JwksError::Read {
                        path: path.clone(),
                        source,
                    })?;
                (path.display().to_string(), bytes)
            }
            Self::Url { url, client } => (url.to_string(), fetch(client, url).await?),
        };
        KeySet::parse(&bytes).map_err(|source| JwksError::Keys { origin, source })
    }
}

async fn fetch(client: &Client<HttpConnector, Body>, url: &Uri) -> Result<Vec<u8>, JwksError> {
    let request = Request::get(url.clone())
        .header(header::ACCEPT, "application/json")
        .body(Body::empty())
        .expect("a GET of a parsed URI is a valid request");
    let response = tokio::time::timeout(FETCH_TIMEOUT, client.request(request))
        .await
        .map_err(|_| JwksError::Timeout {
            url: url.to_string(),
        })?
        .map_err(|source| JwksError::Fetch {
            url: url.to_string(),
            source: Box::new(source),
        })?;
    if response.status() != StatusCode::OK {
        return Err(JwksError::Status {
            url: url.to_string(),
            status: response.status(),
        });
    }
    let body = axum::body::to_bytes(Body::new(response.into_body()), MAX_JWKS_BYTES);
    let bytes = tokio::time::timeout(FETCH_TIMEOUT, body)
        .await
        .map_err(|_| JwksError::Timeout {
            url: url.to_string(),
        })?
        .map_err(|source| JwksError::Body {
            url: url.to_string(),
            source,
        })?;
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_jwks_urls() {
        assert!(JwksSource::url("http://127.0.0.1:8080/.well-known/jwks.json").is_ok());
        for bad in [
            "https://login.example/jwks",
            "login.example/jwks",
            "not a url",
            "",
        ] {
            assert!(
                matches!(JwksSource::url(bad), Err(JwksError::Url { .. })),
                "{bad}"
            );
        }
    }
}
