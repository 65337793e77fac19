//! OpenAI-compatible clients: `/chat/completions` and `/embeddings`, as served by OpenAI,
//! vLLM, Ollama, LiteLLM and Databricks model serving.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::backend::error::{ClientError, HeaderError};
use crate::backend::{Backend, BackendError, ErrorKind, Limits};
use crate::chain::config::{EmbedderConfig, LlmConfig};
use crate::secrets::{quote, redact_url};

#[derive(Debug)]
pub struct ChatModel {
    connection: Connection,
    pub temperature: f64,
    pub max_tokens: Option<u32>,
    pub system: Option<String>,
}

/// One completion and what the server said about it.
#[derive(Debug, Clone)]
pub struct Completion {
    pub answer: String,
    pub finish_reason: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub attempts: u32,
    pub messages: Value,
}

/// A model client that cannot be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// `base_url` or `model` is missing (`what` is `llm` or `embedder`).
    #[error("{what} kind openai needs `{key}`")]
    Missing {
        what: &'static str,
        key: &'static str,
    },
    #[error(transparent)]
    Auth(#[from] HeaderError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What both clients need: the endpoint, its backend, the auth header and the model.
#[derive(Debug)]
struct Connection {
    backend: Backend,
    url: String,
    headers: HeaderMap,
    model: String,
}

impl Connection {
    fn open(
        what: &'static str,
        path: &str,
        base_url: Option<&str>,
        model: Option<&str>,
        api_key_env: Option<&str>,
        limits: Option<&Limits>,
    ) -> Result<Self, ModelError> {
        let missing = |key| ModelError::Missing { what, key };
        let base_url = base_url.ok_or_else(|| missing("base_url"))?;
        let model = model.ok_or_else(|| missing("model"))?;
        let url = format!("{}/{path}", base_url.trim_end_matches('/'));
        Ok(Connection {
            backend: Backend::new(
                format!("{} at {}", path.replace('/', " "), redact_url(&url)),
                limits.cloned().unwrap_or_default(),
            )?,
            headers: crate::backend::client::bearer(api_key_env)?,
            url,
            model: model.to_owned(),
        })
    }
}

impl Connection {
    async fn post(&self, body: &Value, tokens: f64) -> Result<(Value, u32), BackendError> {
        self.backend
            .post_json(&self.url, &self.headers, body, tokens)
            .await
    }

    /// A reply that parsed as JSON but is not what the protocol promises.
    fn malformed(&self, what: &str, reply: &Value, attempts: u32) -> BackendError {
        self.backend.error(
            ErrorKind::Malformed(format!("{what}: {}", quote(&reply.to_string()))),
            attempts,
        )
    }
}

impl ChatModel {
    pub fn model(&self) -> &str {
        &self.connection.model
    }

    pub fn new(config: &LlmConfig) -> Result<Self, ModelError> {
        let connection = Connection::open(
            "llm",
            "chat/completions",
            config.base_url.as_deref(),
            config.model.as_deref(),
            config.api_key_env.as_deref(),
            config.limits.as_ref(),
        )?;
        Ok(ChatModel {
            connection,
            temperature: config.temperature,
            max_tokens: config.max_tokens,
            system: config.system.clone(),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "model {} at {} (temperature {})",
            self.connection.model,
            redact_url(&self.connection.url),
            self.temperature
        )
    }

    /// Asks for one completion. The run's seed is sent too: servers that honour it
    /// (OpenAI, vLLM) then sample the same way when the run is repeated.
    /// In a conversation, `history` (the earlier questions and answers) goes before the
    /// prompt as chat messages; the prompt, with its retrieved context, is the last one.
    pub async fn complete(
        &self,
        history: &[crate::model::record::Message],
        prompt: &str,
        seed: u64,
    ) -> Result<Completion, BackendError> {
        self.chat(history, prompt, seed, None).await
    }

    /// `complete`, with `response_format` sent as given (a judge asks for a JSON object).
    pub async fn complete_with(
        &self,
        prompt: &str,
        seed: u64,
        response_format: Option<Value>,
    ) -> Result<Completion, BackendError> {
        self.chat(&[], prompt, seed, response_format).await
    }

    async fn chat(
        &self,
        history: &[crate::model::record::Message],
        prompt: &str,
        seed: u64,
        response_format: Option<Value>,
    ) -> Result<Completion, BackendError> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        for message in history {
            messages.push(json!({"role": message.role.label(), "content": message.content}));
        }
        messages.push(json!({"role": "user", "content": prompt}));
        let mut body = json!({
            "model": self.connection.model,
            "messages": messages,
            "temperature": self.temperature,
            // Servers take the seed as a signed 64-bit integer.
            "seed": seed & (i64::MAX as u64),
        });
        if let Some(max_tokens) = self.max_tokens {
            body["max_tokens"] = max_tokens.into();
        }
        if let Some(format) = response_format {
            body["response_format"] = format;
        }
        // Rough token estimate for the tokens-per-minute limit: four characters a token.
        let estimate = prompt.len() as f64 / 4.0 + f64::from(self.max_tokens.unwrap_or(256));
        let (reply, attempts) = self.connection.post(&body, estimate).await?;
        let malformed = |what: &str| self.connection.malformed(what, &reply, attempts);
        let choice = reply
            .pointer("/choices/0")
            .ok_or_else(|| malformed("no choices[0]"))?;
        let answer = match choice.pointer("/message/content") {
            Some(Value::String(text)) => text.clone(),
            // A refusal or tool call has no content; the run still has an answer: empty.
            Some(Value::Null) => String::new(),
            _ => return Err(malformed("choices[0].message.content is missing")),
        };
        let usage = |key: &str| {
            reply
                .pointer(&format!("/usage/{key}"))
                .and_then(Value::as_i64)
        };
        Ok(Completion {
            answer,
            finish_reason: choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
            input_tokens: usage("prompt_tokens"),
            output_tokens: usage("completion_tokens"),
            attempts,
            messages: Value::Array(messages),
        })
    }
}

#[derive(Debug)]
pub struct EmbeddingModel {
    connection: Connection,
    input_type: Option<crate::chain::config::InputTypes>,
    query_prefix: String,
    document_prefix: String,
}

impl EmbeddingModel {
    pub fn model(&self) -> &str {
        &self.connection.model
    }

    pub fn new(config: &EmbedderConfig) -> Result<Self, ModelError> {
        let connection = Connection::open(
            "embedder",
            "embeddings",
            config.base_url.as_deref(),
            config.model.as_deref(),
            config.api_key_env.as_deref(),
            config.limits.as_ref(),
        )?;
        Ok(EmbeddingModel {
            connection,
            input_type: config.input_type.clone(),
            query_prefix: config.query_prefix.clone().unwrap_or_default(),
            document_prefix: config.document_prefix.clone().unwrap_or_default(),
        })
    }

    pub fn describe(&self) -> String {
        let mut sides = Vec::new();
        if let Some(types) = &self.input_type {
            sides.push(format!("input_type {}/{}", types.query, types.document));
        }
        if !self.query_prefix.is_empty() || !self.document_prefix.is_empty() {
            sides.push(format!(
                "prefixes {:?}/{:?}",
                self.query_prefix, self.document_prefix
            ));
        }
        let sides = if sides.is_empty() {
            String::new()
        } else {
            format!(", {}", sides.join(", "))
        };
        format!(
            "embeddings {} at {}{sides}",
            self.connection.model,
            redact_url(&self.connection.url)
        )
    }

    /// One vector per input, in input order; a query or a document as the model is told
    /// (`input_type`) or shown (a prefix).
    pub async fn embed(
        &self,
        inputs: &[String],
        purpose: crate::chain::config::Purpose,
    ) -> Result<Vec<Vec<f32>>, BackendError> {
        use crate::chain::config::Purpose;
        let prefix = match purpose {
            Purpose::Query => &self.query_prefix,
            Purpose::Document => &self.document_prefix,
        };
        let prefixed: Vec<String>;
        let inputs = if prefix.is_empty() {
            inputs
        } else {
            prefixed = inputs.iter().map(|t| format!("{prefix}{t}")).collect();
            &prefixed
        };
        let mut body = json!({"model": self.connection.model, "input": inputs});
        if let Some(types) = &self.input_type {
            body["input_type"] = match purpose {
                Purpose::Query => types.query.clone(),
                Purpose::Document => types.document.clone(),
            }
            .into();
        }
        let estimate = inputs.iter().map(|t| t.len() as f64 / 4.0).sum();
        let (reply, attempts) = self.connection.post(&body, estimate).await?;
        let malformed = |what: &str| self.connection.malformed(what, &reply, attempts);
        let data = reply
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("no `data` list"))?;
        if data.len() != inputs.len() {
            return Err(malformed(&format!(
                "{} embeddings for {} inputs",
                data.len(),
                inputs.len()
            )));
        }
        let mut vectors = vec![Vec::new(); inputs.len()];
        for (position, item) in data.iter().enumerate() {
            // `index` says which input an item belongs to; servers may reorder.
            let index = item
                .get("index")
                .and_then(Value::as_u64)
                .map_or(position, |i| i as usize);
            let vector = item
                .get("embedding")
                .and_then(Value::as_array)
                .ok_or_else(|| malformed("an item has no `embedding` list"))?
                .iter()
                .map(|x| x.as_f64().map(|x| x as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| malformed("an embedding holds a non-number"))?;
            let slot = vectors
                .get_mut(index)
                .ok_or_else(|| malformed("an item's `index` is out of range"))?;
            *slot = vector;
        }
        Ok(vectors)
    }
}
