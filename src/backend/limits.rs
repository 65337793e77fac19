//! How ragprobe treats one backend, as configured under `limits:`: a timeout per request,
//! retries with backoff, a cap on the reply's size, and client-side limits on requests per
//! second, tokens per minute and requests in flight, so a suite never floods a shared
//! endpoint.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What `limits:` holds, for a model endpoint, an embedder, a Chroma server or a service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Per request (each retry gets its own).
    #[serde(default = "default_request_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries after a connection error, a timeout, a 5xx or a 429.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First backoff; doubled on each retry, with full jitter, at most `max_backoff_ms`.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<f64>,
    /// Requests in flight to this backend at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// The largest reply read, in bytes; a longer one ends the request as an error
    /// (an endless body must not take the machine's memory).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: default_request_timeout_ms(),
            retries: default_retries(),
            backoff_ms: default_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            requests_per_second: None,
            tokens_per_minute: None,
            concurrency: None,
            max_response_bytes: default_max_response_bytes(),
        }
    }
}

fn default_request_timeout_ms() -> u64 {
    60_000
}

fn default_retries() -> u32 {
    4
}

fn default_backoff_ms() -> u64 {
    250
}

fn default_max_backoff_ms() -> u64 {
    8_000
}

/// 64 MiB: far above any chat completion, embedding batch or RAG reply.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 << 20;

fn default_max_response_bytes() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

/// A token bucket that hands out reservations: a caller takes its cost at once and waits
/// for the debt to be refilled, so callers are served in arrival order.
#[derive(Debug)]
pub(crate) struct Pacer {
    per_second: f64,
    capacity: f64,
    available: f64,
    updated: Instant,
}

impl Pacer {
    pub(crate) fn new(per_second: f64, capacity: f64) -> Self {
        Pacer {
            per_second,
            capacity,
            available: capacity,
            updated: Instant::now(),
        }
    }

    pub(crate) fn reserve(&mut self, cost: f64) -> Duration {
        let now = Instant::now();
        let refill = now.duration_since(self.updated).as_secs_f64() * self.per_second;
        self.available = (self.available + refill).min(self.capacity);
        self.updated = now;
        self.available -= cost;
        if self.available >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.available / self.per_second)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spaces_requests_at_the_rate() {
        let mut pacer = Pacer::new(10.0, 1.0);
        assert_eq!(pacer.reserve(1.0), Duration::ZERO);
        let second = pacer.reserve(1.0);
        let third = pacer.reserve(1.0);
        assert!(second > Duration::from_millis(90) && second <= Duration::from_millis(100));
        assert!(third > Duration::from_millis(190) && third <= Duration::from_millis(200));
    }
}
