//! What one run produced and how it was judged, as stored in `runs.jsonl` and read by
//! every later stage: the record, its retrieved documents and its verdict.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::rules::Metadata;
use crate::trace::Trace;

/// A document as the retriever returned it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RetrievedDoc {
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub metadata: Metadata,
    /// The retriever's score; `None` when it gave none (a service that returns documents
    /// without scores), never a made-up 0.
    #[serde(default)]
    pub score: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Passed,
    Failed,
    /// The chain could not be evaluated (timeout, unreachable service): not a wrong answer.
    Error,
}

/// One finished run, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub case: String,
    pub run: u32,
    pub seed: u64,
    pub question: String,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub retrieved: Vec<RetrievedDoc>,
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub answer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Wall time of the run, from the runner's point of view.
    pub duration_ms: f64,
    pub started_at_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    /// Every rule's result on this run.
    pub rules: Vec<RuleResult>,
    /// Expected-source metrics, when the case names sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<SourceMetrics>,
    /// Expectations that did not hold (empty when they all did).
    #[serde(default)]
    pub failed_expectations: Vec<Failure>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleResult {
    pub id: String,
    pub severity: Severity,
    pub passed: bool,
    /// Ids of the retrieved documents that broke the rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offending_documents: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A model-judged rule: each repeat's vote (true = pass), the verdict their majority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_votes: Option<Vec<bool>>,
}

impl RuleResult {
    /// Whether the judge's repeats disagreed on this run.
    pub fn judge_split(&self) -> bool {
        self.judge_votes
            .as_ref()
            .is_some_and(|votes| votes.iter().any(|v| *v != votes[0]))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub check: String,
    pub detail: String,
}

/// Retrieval quality against the expected document ids (binary relevance).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceMetrics {
    pub precision: f64,
    pub recall: f64,
    pub hit: bool,
    pub reciprocal_rank: f64,
    pub ndcg: f64,
    /// Expected ids that were not retrieved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Fails the case (and the suite) when violated beyond `max_rate`.
    #[default]
    Error,
    /// Reported, never fails anything.
    Warn,
}

/// A document id; corpora use numbers or strings, ragprobe compares them as strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DocId(pub String);

impl<'de> Deserialize<'de> for DocId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DocId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a document id (string or integer)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DocId, E> {
                Ok(DocId(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DocId, E> {
                Ok(DocId(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DocId, E> {
                Ok(DocId(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
