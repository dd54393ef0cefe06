//! A small HTTP client for Tessera's API, shared by the `tessera` CLI, the cluster tests and the
//! benchmarks so that none of them re-implements request plumbing.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

pub use hyper::Method;

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a request got no response at all.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad request: {0}")]
    Build(String),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("request timed out")]
    Timeout,
    #[error("refused: {0}")]
    Refused(String),
}

/// `host:port` or a URL, as a base URL with its scheme.
fn with_scheme(base: &str) -> String {
    if base.starts_with("http://") {
        base.to_string()
    } else {
        format!("http://{base}")
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A keep-alive HTTP/1.1 client for one node.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    token: Option<String>,
}

impl Client {
    /// `base` is `host:port` or `http://host:port`.
    pub fn new(base: &str) -> Client {
        let base = with_scheme(base);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Client {
            base,
            http,
            timeout: Duration::from_secs(30),
            token: None,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Sends `Authorization: Bearer <token>` with every request that does not set its own.
    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The same client (token included) talking to another node.
    pub fn with_base(&self, base: &str) -> Client {
        Client {
            base: with_scheme(base),
            ..self.clone()
        }
    }

    /// The same client without a token.
    pub fn anonymous(&self) -> Client {
        Client {
            token: None,
            ..self.clone()
        }
    }

    /// Logs in with the OAuth2 password grant; returns the access token.
    pub async fn login(&self, username: &str, password: &str) -> Result<String, ClientError> {
        let form = format!(
            "grant_type=password&username={}&password={}",
            form_encode(username),
            form_encode(password)
        );
        let reply = self
            .send(
                Method::POST,
                "/oauth/token",
                &[("content-type", "application/x-www-form-urlencoded")],
                Bytes::from(form),
            )
            .await?;
        match reply.json()["access_token"].as_str() {
            Some(token) if reply.status.is_success() => Ok(token.to_string()),
            _ => Err(ClientError::Refused(format!(
                "{} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ))),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            {
                req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
            }
        }
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientError::Build(e.to_string()))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| ClientError::Build(e.to_string()))?;
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// `GET path` whose body is handed over as it arrives instead of read whole (a backup's
    /// catalogue dump): the status, the headers and the body. Only the wait for the headers is
    /// bounded by the client's timeout.
    pub async fn get_streaming(
        &self,
        path: &str,
    ) -> Result<(StatusCode, HeaderMap, hyper::body::Incoming), ClientError> {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        Ok((parts.status, parts.headers, body))
    }

    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    /// Uploads an image: `POST /api/v1/objects`.
    pub async fn put_object(&self, bytes: Bytes) -> Result<Reply, ClientError> {
        self.send(
            Method::POST,
            "/api/v1/objects",
            &[("content-type", "application/octet-stream")],
            bytes,
        )
        .await
    }
}
