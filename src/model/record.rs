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

impl RunStatus {
    /// How traces, results.parquet and `show` name it.
    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Passed => "passed",
            RunStatus::Failed => "failed",
            RunStatus::Error => "error",
        }
    }
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
    /// Model calls and tokens the run spent (the chain's model and the judge), and their
    /// price where the suite gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// A conversation case's turns, in order. The run's own `question` then names the
    /// conversation, its `retrieved`, `prompt` and `answer` are those of the turn that
    /// decided it (the first that failed, else the last asked), and its verdict joins the
    /// turns' verdicts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<TurnRecord>,
}

/// Who said a message of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation, as chains receive the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    /// A turn as history: the user's question and the assistant's answer.
    pub fn exchange(question: &str, answer: &str) -> [Message; 2] {
        [
            Message {
                role: Role::User,
                content: question.to_owned(),
            },
            Message {
                role: Role::Assistant,
                content: answer.to_owned(),
            },
        ]
    }
}

/// One turn of a conversation run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TurnRecord {
    /// 1 for the first turn.
    pub turn: u32,
    pub question: String,
    /// The suite gave this turn's answer (`answer:`): it was history, not asked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scripted: bool,
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
    pub duration_ms: f64,
    /// The turn's span in the run's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
}

impl RunRecord {
    /// Whether this run is a conversation's.
    pub fn is_conversation(&self) -> bool {
        !self.turns.is_empty()
    }

    /// The turns that were asked (not scripted), with their number.
    pub fn asked_turns(&self) -> impl Iterator<Item = &TurnRecord> {
        self.turns.iter().filter(|t| !t.scripted)
    }

    /// The run as one of its turns, for the places that take one question at a time: the
    /// turn's question, documents, prompt, answer, verdict and status, and (with
    /// `trace_id`) the subtree of the turn's span as its trace, rooted at the turn.
    pub fn turn_as_run(&self, turn: &TurnRecord, trace_id: Option<String>) -> RunRecord {
        let trace = self
            .trace
            .as_ref()
            .zip(turn.span_id.as_ref())
            .zip(trace_id)
            .map(|((trace, root), trace_id)| {
                let mut spans = trace.subtree(root);
                for span in spans.iter_mut().filter(|s| s.span_id == *root) {
                    span.parent_span_id = None;
                }
                crate::trace::Trace { trace_id, spans }
            });
        let started_at_ns = trace
            .as_ref()
            .and_then(|t| t.spans.first())
            .map_or(self.started_at_ns, |root| root.start_ns);
        RunRecord {
            case: self.case.clone(),
            run: self.run,
            seed: self.seed,
            question: turn.question.clone(),
            status: turn.status,
            error: turn.error.clone(),
            retrieved: turn.retrieved.clone(),
            prompt: turn.prompt.clone(),
            answer: turn.answer.clone(),
            verdict: turn.verdict.clone(),
            duration_ms: turn.duration_ms,
            started_at_ns,
            trace,
            usage: None,
            turns: Vec::new(),
        }
    }

    /// The turn a conversation run is shown by: the first that failed or errored, else
    /// the last asked.
    pub fn deciding_turn(&self) -> Option<&TurnRecord> {
        self.turns
            .iter()
            .find(|t| t.status != RunStatus::Passed)
            .or_else(|| self.asked_turns().last())
    }
}

#[cfg(test)]
impl RunRecord {
    /// A run with only its case, index and status, for tests to fill in.
    pub fn blank(case: &str, run: u32, status: RunStatus) -> RunRecord {
        RunRecord {
            case: case.into(),
            run,
            seed: 0,
            question: String::new(),
            status,
            error: None,
            retrieved: Vec::new(),
            prompt: String::new(),
            answer: String::new(),
            verdict: None,
            duration_ms: 0.0,
            started_at_ns: 0,
            trace: None,
            usage: None,
            turns: Vec::new(),
        }
    }
}

/// What one run (or, summed, a case or suite) cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Chat calls: the chain's model (as its spans report them) and the judge's.
    pub calls: u64,
    pub model_input_tokens: u64,
    pub model_output_tokens: u64,
    pub judge_input_tokens: u64,
    pub judge_output_tokens: u64,
    /// US dollars, when every model that was called has a price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.calls += other.calls;
        self.model_input_tokens += other.model_input_tokens;
        self.model_output_tokens += other.model_output_tokens;
        self.judge_input_tokens += other.judge_input_tokens;
        self.judge_output_tokens += other.judge_output_tokens;
        self.cost_usd = match (self.cost_usd, other.cost_usd) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }

    pub fn is_empty(&self) -> bool {
        self.calls == 0
    }
}

impl Verdict {
    /// The status of a run (or turn) this verdict judged.
    pub fn status(&self) -> RunStatus {
        if self.passed {
            RunStatus::Passed
        } else {
            RunStatus::Failed
        }
    }
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
    /// trec_eval's map_cut at k (absent from runs recorded before it).
    #[serde(default)]
    pub average_precision: f64,
    /// The cutoff the metrics were computed at.
    #[serde(default)]
    pub k: usize,
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

/// A case's judged documents: `sources: ["1", "2"]` (each relevant, grade 1) or
/// `sources: {"1": 3, "2": 1, "7": 0}` (graded; 0 is judged not relevant), in the order
/// written. An id given twice, or a negative grade, is refused where it is written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sources(pub Vec<(DocId, u32)>, pub SourcesForm);

/// How the sources were written, so a problem can point at the list item or the key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SourcesForm {
    #[default]
    List,
    Graded,
}

impl Sources {
    /// Ids judged relevant at `level` (grade ≥ level), in the order written.
    pub fn relevant(&self, level: u32) -> impl Iterator<Item = &DocId> {
        self.0
            .iter()
            .filter(move |(_, grade)| *grade >= level.max(1))
            .map(|(id, _)| id)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &DocId> {
        self.0.iter().map(|(id, _)| id)
    }

    /// The grade of `id`, 0 when it is not judged.
    pub fn grade(&self, id: &str) -> u32 {
        self.0
            .iter()
            .find(|(d, _)| d.0 == id)
            .map_or(0, |(_, grade)| *grade)
    }
}

impl<'de> Deserialize<'de> for Sources {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Sources;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of document ids, or a mapping of document id to grade")
            }
            // A set beside the list: a linear scan per id made 200,000 judged documents
            // take minutes to read.
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Sources, A::Error> {
                let mut out: Vec<(DocId, u32)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(id) = seq.next_element::<DocId>()? {
                    if !seen.insert(id.0.clone()) {
                        return Err(de::Error::custom(format!(
                            "document `{id}` is listed twice in sources"
                        )));
                    }
                    out.push((id, 1));
                }
                Ok(Sources(out, SourcesForm::List))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Sources, A::Error> {
                let mut out: Vec<(DocId, u32)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(id) = map.next_key::<DocId>()? {
                    let grade: i64 = map.next_value()?;
                    if grade < 0 {
                        return Err(de::Error::custom(format!(
                            "document `{id}` has grade {grade}: grades are 0 (not relevant) or more"
                        )));
                    }
                    if !seen.insert(id.0.clone()) {
                        return Err(de::Error::custom(format!(
                            "document `{id}` is graded twice in sources"
                        )));
                    }
                    out.push((id, u32::try_from(grade).unwrap_or(u32::MAX)));
                }
                Ok(Sources(out, SourcesForm::Graded))
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
