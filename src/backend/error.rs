//! Why a request to a backend failed, as a type: callers decide by variant (a 404 from
//! Chroma means "run `ragprobe index`"), never by reading the message.

use std::fmt;

/// A request that failed for good.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct BackendError {
    /// What the backend is, e.g. `chat completions at http://127.0.0.1:8000/v1/…`.
    pub backend: String,
    pub kind: ErrorKind,
    /// Attempts made, 1 when the first one failed for good.
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    /// No connection: refused, reset, unknown host (the innermost cause).
    #[error("{0}")]
    Connect(String),
    /// No complete answer within the per-attempt timeout.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The server answered with an error status.
    #[error("{code} {}: {body}", reason(*.code))]
    Status {
        code: u16,
        /// The reply, cut to one bounded line.
        body: String,
    },
    /// The reply is not what the protocol promises.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The reply was longer than `limits.max_response_bytes`.
    #[error("response larger than {limit} bytes (limits.max_response_bytes)")]
    TooLarge { limit: u64 },
    /// The request could not be built or sent (a bad URL or header).
    #[error("{0}")]
    Request(String),
}

/// `Not Found` for 404, as HTTP names it.
fn reason(code: u16) -> &'static str {
    reqwest::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.backend, self.kind)?;
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

impl BackendError {
    pub fn new(backend: &str, kind: ErrorKind, attempts: u32) -> Self {
        BackendError {
            backend: backend.to_owned(),
            kind,
            attempts,
        }
    }

    /// The HTTP status the server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            ErrorKind::Status { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The HTTP client could not be built (TLS set-up).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(#[from] pub reqwest::Error);

/// A header ragprobe was asked to send that HTTP cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("`{0}` is not a valid header name")]
    Name(String),
    #[error("the value of header `{0}` is not valid in a header")]
    Value(String),
    /// `api_key_env` names a variable that is not set.
    #[error("the environment variable {0} (api_key_env) is not set")]
    KeyUnset(String),
    #[error("the API key in {0} is not a valid header value")]
    KeyInvalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_backend_and_the_attempts() {
        let err = BackendError::new(
            "Chroma at http://127.0.0.1:8000",
            ErrorKind::Status {
                code: 404,
                body: "no such collection".into(),
            },
            1,
        );
        assert_eq!(
            err.to_string(),
            "Chroma at http://127.0.0.1:8000: 404 Not Found: no such collection"
        );
        assert_eq!(err.status(), Some(404));
        let err = BackendError::new("m", ErrorKind::Timeout(50), 5);
        assert_eq!(
            err.to_string(),
            "m: no answer within 50 ms (after 5 attempts)"
        );
        assert_eq!(err.status(), None);
    }
}
