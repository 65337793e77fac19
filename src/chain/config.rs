//! The chain under test, as configured in YAML (inline in a suite or in its own file).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::rules::Where;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    pub retriever: RetrieverConfig,
    /// A minijinja template; it receives `question`, `documents` and `vars`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A file holding the template, relative to the file that names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_file: Option<PathBuf>,
    #[serde(default)]
    pub llm: LlmConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetrieverKind {
    /// In-process BM25 over a corpus file.
    Memory,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetrieverConfig {
    pub kind: RetrieverKind,
    /// JSONL or YAML file of `{id, text, metadata}`, relative to the file that names it.
    pub corpus: PathBuf,
    /// How many documents to return.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Only documents matching this `where` expression can be retrieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Where>,
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
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            kind: LlmKind::Extractive,
            temperature: default_temperature(),
            max_sentences: default_max_sentences(),
            latency_ms: 0,
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
