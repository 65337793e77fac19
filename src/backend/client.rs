//! Requests to one backend (a model endpoint, a Chroma server, a RAG service), made
//! reliably: a timeout per attempt, retries with exponential backoff and full jitter for
//! connection errors, timeouts, 5xx and 429 (waiting as long as `Retry-After` asks), a cap
//! on the reply's size, and client-side limits on requests per second, tokens per minute
//! and requests in flight.
//!
//! What cannot be retried (another 4xx, a body that is not what the protocol says) fails at
//! once with the server's own words, so a run records *why* it is an error.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::backend::body::BodyError;
use crate::backend::error::{BackendError, ClientError, ErrorKind, HeaderError};
use crate::backend::limits::{Limits, Pacer};
use crate::secrets::quote;

#[derive(Debug)]
pub struct Backend {
    /// For messages: what this backend is, e.g. `chat completions at http://…/v1`.
    label: String,
    client: reqwest::Client,
    limits: Limits,
    in_flight: Option<Semaphore>,
    request_rate: Option<Mutex<Pacer>>,
    token_rate: Option<Mutex<Pacer>>,
    pub counters: Counters,
}

/// What happened on the wire, for traces and the benchmark.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    pub server_errors: AtomicU64,
}

/// A successful exchange.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub text: String,
    /// 1 when the first attempt succeeded.
    pub attempts: u32,
}

/// How one attempt ended.
enum Attempt {
    Done(Reply),
    Retry {
        cause: ErrorKind,
        wait: Option<Duration>,
    },
    Fail(ErrorKind),
}

impl Backend {
    pub fn new(label: impl Into<String>, limits: Limits) -> Result<Self, ClientError> {
        let client = http_client(None)?;
        Ok(Backend {
            label: label.into(),
            client,
            in_flight: limits.concurrency.map(|n| Semaphore::new(n.max(1))),
            request_rate: limits
                .requests_per_second
                .filter(|r| *r > 0.0)
                .map(|rate| Mutex::new(Pacer::new(rate, rate.max(1.0)))),
            token_rate: limits
                .tokens_per_minute
                .filter(|r| *r > 0.0)
                .map(|per_minute| Mutex::new(Pacer::new(per_minute / 60.0, per_minute))),
            limits,
            counters: Counters::default(),
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// An error about this backend that no request produced (a reply that parsed but
    /// breaks the protocol).
    pub fn error(&self, kind: ErrorKind, attempts: u32) -> BackendError {
        BackendError::new(&self.label, kind, attempts)
    }

    /// POSTs JSON and parses the JSON reply.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &HeaderMap,
        body: &Value,
        tokens: f64,
    ) -> Result<(Value, u32), BackendError> {
        let reply = self
            .send(
                reqwest::Method::POST,
                url,
                headers,
                Some(body.to_string()),
                tokens,
            )
            .await?;
        let value = parse_json(&reply.text)
            .map_err(|cause| self.error(ErrorKind::Malformed(cause), reply.attempts))?;
        Ok((value, reply.attempts))
    }

    /// Sends one request, retrying what may succeed on another try. `tokens` is the
    /// estimated token cost, for the tokens-per-minute limit.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &HeaderMap,
        body: Option<String>,
        tokens: f64,
    ) -> Result<Reply, BackendError> {
        crate::secrets::remember_url(url);
        let _slot = match &self.in_flight {
            Some(semaphore) => semaphore.acquire().await.ok(),
            None => None,
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.pace(tokens).await;
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = self
                .attempt(method.clone(), url, headers, body.clone(), attempt)
                .await;
            match outcome {
                Attempt::Done(reply) => return Ok(reply),
                Attempt::Fail(kind) => return Err(self.error(kind, attempt)),
                Attempt::Retry { cause, wait } => {
                    if attempt > self.limits.retries {
                        return Err(self.error(cause, attempt));
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = wait.unwrap_or_else(|| self.backoff(attempt));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &HeaderMap,
        body: Option<String>,
        attempt: u32,
    ) -> Attempt {
        let timeout = Duration::from_millis(self.limits.timeout_ms);
        let mut request = self
            .client
            .request(method, url)
            .headers(headers.clone())
            .timeout(timeout);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let timed_out = || Attempt::Retry {
            cause: ErrorKind::Timeout(self.limits.timeout_ms),
            wait: None,
        };
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(err) if err.is_timeout() => return timed_out(),
            Err(err) if err.is_builder() => {
                return Attempt::Fail(ErrorKind::Request(root_cause(&err)));
            }
            Err(err) => {
                return Attempt::Retry {
                    cause: ErrorKind::Connect(root_cause(&err)),
                    wait: None,
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let limit = self.limits.max_response_bytes;
        let bytes = match super::body::read_capped(&mut response, limit).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge { limit }) => {
                return Attempt::Fail(ErrorKind::TooLarge { limit });
            }
            Err(BodyError::Timeout) => return timed_out(),
            Err(BodyError::Read(cause)) => {
                return Attempt::Retry {
                    cause: ErrorKind::Connect(format!("reading the reply: {cause}")),
                    wait: None,
                };
            }
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let said = || ErrorKind::Status {
            code: status.as_u16(),
            body: quote(&text),
        };
        if status.is_success() {
            return Attempt::Done(Reply {
                status: status.as_u16(),
                text,
                attempts: attempt,
            });
        }
        if status.as_u16() == 429 {
            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
            let cap = Duration::from_millis(self.limits.timeout_ms.max(self.limits.max_backoff_ms));
            return Attempt::Retry {
                cause: said(),
                wait: retry_after.map(|d| d.min(cap)),
            };
        }
        if status.is_server_error() || status.as_u16() == 408 {
            self.counters.server_errors.fetch_add(1, Ordering::Relaxed);
            return Attempt::Retry {
                cause: said(),
                wait: retry_after,
            };
        }
        Attempt::Fail(said())
    }

    /// Full jitter: a uniform wait up to the exponential ceiling, so clients that failed
    /// together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .limits
            .backoff_ms
            .saturating_mul(1u64 << (attempt - 1).min(20))
            .min(self.limits.max_backoff_ms);
        Duration::from_millis(fastrand::u64(ceiling / 2..=ceiling.max(1)))
    }

    async fn pace(&self, tokens: f64) {
        let mut wait = Duration::ZERO;
        if let Some(pacer) = &self.request_rate
            && let Ok(mut pacer) = pacer.lock()
        {
            wait = wait.max(pacer.reserve(1.0));
        }
        if let Some(pacer) = &self.token_rate
            && let Ok(mut pacer) = pacer.lock()
        {
            wait = wait.max(pacer.reserve(tokens));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The one way ragprobe builds an HTTP client; installs the TLS crypto provider once.
/// `timeout` bounds each request (backends set theirs per attempt instead).
pub fn http_client(timeout: Option<Duration>) -> Result<reqwest::Client, ClientError> {
    // Ignore "already installed": another client may have done it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder().pool_max_idle_per_host(64);
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    Ok(builder.build()?)
}

/// The answer is an HTML page: a router's 404 or a proxy's error, not the API's own answer.
pub fn is_html(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

/// `Retry-After` as seconds (the form rate limiters send); an HTTP date falls back to
/// the backoff.
fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|err| format!("not JSON ({err}): {}", quote(text)))
}

/// The innermost cause, which is the informative one (`Connection refused`, not
/// `error sending request`).
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.is_empty() {
        err.to_string()
    } else {
        text
    }
}

/// `Authorization: Bearer <key>` from the environment variable a config names; a named
/// variable that is unset is an error before any run.
pub fn bearer(api_key_env: Option<&str>) -> Result<HeaderMap, HeaderError> {
    let mut headers = HeaderMap::new();
    if let Some(name) = api_key_env {
        let key = std::env::var(name).map_err(|_| HeaderError::KeyUnset(name.to_owned()))?;
        crate::secrets::remember_secret(&key);
        let value = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| HeaderError::KeyInvalid(name.to_owned()))?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

/// Headers from config strings, checked once.
pub fn header_map(pairs: &[(String, String)]) -> Result<HeaderMap, HeaderError> {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        let header =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| HeaderError::Name(name.clone()))?;
        crate::secrets::remember_header(name, value);
        let value = HeaderValue::from_str(value).map_err(|_| HeaderError::Value(name.clone()))?;
        headers.insert(header, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let limits = Limits {
            backoff_ms: 100,
            max_backoff_ms: 1_000,
            ..Limits::default()
        };
        let backend = Backend::new("test", limits).expect("client");
        for _ in 0..50 {
            let first = backend.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let tenth = backend.backoff(10);
            assert!(tenth >= Duration::from_millis(500) && tenth <= Duration::from_millis(1_000));
        }
    }
}
