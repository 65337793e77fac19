//! MLflow's REST API, the calls ragprobe makes and nothing else: experiments, runs,
//! metrics/params/tags, artifacts through the server's proxy, traces, their links to runs
//! and their assessments. Only the tracking server's HTTP API is used (no Python).
//!
//! A call that meets a connection error, a 429 or a 5xx is tried again twice (after 0.5 s
//! and 1 s); anything else is answered at once. Routing errors come back from MLflow as
//! HTML pages, so an error body is never assumed to be JSON.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend::client::root_cause;
use crate::backend::error::ClientError;
use crate::secrets::redact_url;

/// The largest MLflow reply read: a summary.json or a page of traces is far smaller; an
/// endless body stops here, not at the machine's memory.
pub const MAX_REPLY_BYTES: u64 = crate::backend::limits::DEFAULT_MAX_RESPONSE_BYTES;

/// Why an MLflow call did not do what was asked. Never holds a credential.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MlflowError {
    #[error("cannot reach the MLflow server at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("MLflow at {url} answered HTTP {code} to {what}: {message}")]
    Status {
        url: String,
        what: String,
        code: u16,
        /// MLflow's `error_code` (`RESOURCE_DOES_NOT_EXIST`, …) when the body had one.
        error_code: Option<String>,
        message: String,
    },
    #[error(
        "{url} does not look like an MLflow tracking server: {what} answered HTTP {code} with an HTML page"
    )]
    NotMlflow {
        url: String,
        what: String,
        code: u16,
    },
    #[error("MLflow's answer to {what} is not what MLflow 3 sends: {cause}")]
    Shape { what: String, cause: String },
    /// Traces sent to the server's OTLP endpoint did not arrive.
    #[error("{0}")]
    Traces(String),
    #[error("MLflow at {url} answered {what} with more than {limit} bytes: not read further")]
    TooLarge {
        url: String,
        what: String,
        limit: u64,
    },
    #[error("MLflow at {url} kept paging {what} ({why}): stopped")]
    Paging {
        url: String,
        what: String,
        why: String,
    },
}

impl MlflowError {
    pub fn error_code(&self) -> Option<&str> {
        match self {
            MlflowError::Status { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }

    /// The server said the request itself is wrong (401, 403, an unknown experiment, a URL
    /// that is not MLflow): a retry changes nothing. 5xx and 429 may pass.
    pub fn is_config(&self) -> bool {
        match self {
            MlflowError::Status { code, .. } => *code < 500 && *code != 429,
            MlflowError::NotMlflow { .. } => true,
            _ => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, MlflowError::Status { code: 404, .. })
            || self.error_code() == Some("RESOURCE_DOES_NOT_EXIST")
    }
}

/// A tracking server: its base URL, the HTTP client, and the credential every call sends.
#[derive(Clone)]
pub struct Mlflow {
    base: String,
    http: reqwest::Client,
    /// `Authorization` value (from `MLFLOW_TRACKING_TOKEN` or the username and password).
    auth: Option<String>,
}

impl std::fmt::Debug for Mlflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mlflow({})", redact_url(&self.base))
    }
}

/// Tries per call for errors that may pass (connection, 429, 5xx).
const ATTEMPTS: u32 = 3;

impl Mlflow {
    pub fn new(base: &str, auth: Option<String>) -> Result<Mlflow, ClientError> {
        Ok(Mlflow {
            base: base.trim_end_matches('/').to_owned(),
            // Artifacts (results.parquet, runs.jsonl) may take a while to upload.
            http: crate::backend::client::http_client(Some(Duration::from_secs(60)))?,
            auth,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The `Authorization` value, for the OTLP exporter that sends traces to this server.
    pub fn auth(&self) -> Option<&str> {
        self.auth.as_deref()
    }

    /// The UI page of a run.
    pub fn run_url(&self, experiment_id: &str, run_id: &str) -> String {
        format!(
            "{}/#/experiments/{experiment_id}/runs/{run_id}",
            redact_url(&self.base)
        )
    }

    /// A JSON call; `what` names it in errors ("runs/create").
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, MlflowError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let text = self
            .send(method, path, bytes, "application/json", what)
            .await?;
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&text).map_err(|e| MlflowError::Shape {
            what: what.to_owned(),
            cause: e.to_string(),
        })
    }

    pub async fn get(&self, path: &str, what: &str) -> Result<Value, MlflowError> {
        self.call(Method::GET, path, None, what).await
    }

    pub async fn post(&self, path: &str, body: &Value, what: &str) -> Result<Value, MlflowError> {
        self.call(Method::POST, path, Some(body), what).await
    }

    /// Raw bytes in (artifact upload) or out (artifact download).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: &str,
        what: &str,
    ) -> Result<Vec<u8>, MlflowError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.http.request(method.clone(), &url);
            if let Some(body) = &body {
                request = request
                    .header("content-type", content_type)
                    .body(body.clone());
            }
            if let Some(auth) = &self.auth {
                request = request.header("authorization", auth.as_str());
            }
            let failure = match request.send().await {
                Err(error) => MlflowError::Unreachable {
                    url: redact_url(&self.base),
                    cause: root_cause(&error),
                },
                Ok(mut response) => {
                    let status = response.status();
                    let html = crate::backend::client::is_html(&response);
                    let bytes =
                        match crate::backend::read_capped(&mut response, MAX_REPLY_BYTES).await {
                            Ok(bytes) => bytes,
                            Err(crate::backend::BodyError::TooLarge { limit }) => {
                                return Err(MlflowError::TooLarge {
                                    url: redact_url(&self.base),
                                    what: what.to_owned(),
                                    limit,
                                });
                            }
                            Err(error) => {
                                return Err(MlflowError::Unreachable {
                                    url: redact_url(&self.base),
                                    cause: error.to_string(),
                                });
                            }
                        };
                    if status.is_success() {
                        return Ok(bytes);
                    }
                    let passing = status.is_server_error() || status.as_u16() == 429;
                    let failure = if html && !passing {
                        MlflowError::NotMlflow {
                            url: redact_url(&self.base),
                            what: what.to_owned(),
                            code: status.as_u16(),
                        }
                    } else {
                        status_error(&self.base, what, status.as_u16(), &bytes)
                    };
                    if !passing {
                        return Err(failure);
                    }
                    failure
                }
            };
            if attempt >= ATTEMPTS {
                return Err(failure);
            }
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }
}

/// An HTTP error with MLflow's `{"error_code", "message"}` (or FastAPI's `{"detail"}`)
/// when the body has it.
fn status_error(base: &str, what: &str, code: u16, body: &[u8]) -> MlflowError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error_code = parsed
        .as_ref()
        .and_then(|v| v["error_code"].as_str())
        .map(str::to_owned);
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v["message"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| v.get("detail").map(|d| d.to_string()))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    MlflowError::Status {
        url: redact_url(base),
        what: what.to_owned(),
        code,
        error_code,
        message: crate::secrets::quote(&message),
    }
}

/// `s` as a quoted string in MLflow's search filters. MLflow strips the outer quotes and
/// unescapes nothing, so the quote is one `s` does not hold; `None` when it holds both.
pub fn filter_string(s: &str) -> Option<String> {
    if !s.contains('\'') {
        Some(format!("'{s}'"))
    } else if !s.contains('"') {
        Some(format!("\"{s}\""))
    } else {
        None
    }
}

/// The body of `traces/search` for one experiment.
pub fn trace_search(experiment_id: &str, filter: &str, page_token: Option<&str>) -> Value {
    json!({
        "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}],
        "filter": filter,
        "max_results": 500,
        "order_by": ["timestamp_ms DESC"],
        "page_token": page_token.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_strings_are_quoted_and_escaped() {
        assert_eq!(
            filter_string("support bot").as_deref(),
            Some("'support bot'")
        );
        assert_eq!(filter_string("it's").as_deref(), Some("\"it's\""));
        assert_eq!(filter_string("a\\b").as_deref(), Some("'a\\b'"));
        assert_eq!(filter_string("it's \"x\""), None);
    }

    #[test]
    fn error_bodies_are_read_as_mlflow_or_fastapi_json_or_text() {
        let e = status_error(
            "http://h",
            "x",
            404,
            br#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"no"}"#,
        );
        assert!(e.is_not_found());
        assert_eq!(e.error_code(), Some("RESOURCE_DOES_NOT_EXIST"));
        let e = status_error("http://h", "x", 422, br#"{"detail":"bad"}"#);
        assert!(e.to_string().contains("\"bad\""), "{e}");
        let e = status_error("http://h", "x", 500, b"boom\nline");
        assert!(e.to_string().ends_with("boom line"), "{e}");
    }
}
