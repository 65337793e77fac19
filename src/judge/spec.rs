//! What a suite says about its model judge: `judge:` (which model, how often, what it
//! costs, its calibration) and the judged checks (`judge: {criterion | rubric |
//! prompt_file}`). Read by the suite's schema, used by the judge.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `judge: {kind: openai, base_url, model, api_key_env, temperature, limits, repeats}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeSpec {
    pub kind: JudgeKind,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// Name of the environment variable holding the API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// 0 unless set: a judge should be as repeatable as the server lets it be.
    #[serde(default)]
    pub temperature: f64,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub limits: Option<crate::backend::Limits>,
    /// Judgements per answer; the verdict is the majority (a tie fails).
    #[serde(default = "JudgeSpec::one")]
    pub repeats: u32,
    /// Ask for a JSON object with `response_format` (turned off by itself when the server
    /// refuses it).
    #[serde(default = "JudgeSpec::yes")]
    pub structured_output: bool,
    /// What the judge's tokens cost (US dollars per million).
    #[serde(default)]
    pub price: Option<crate::chain::config::Price>,
    /// The judge's calibration against people's labels (`ragprobe calibrate --save`),
    /// relative to the suite: reports correct each judged rule's pass rate with it.
    #[serde(default)]
    pub calibration: Option<std::path::PathBuf>,
}

impl JudgeSpec {
    fn one() -> u32 {
        1
    }
    fn yes() -> bool {
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgeKind {
    Openai,
}

/// `judge: {criterion: …}`, `{rubric: "…"}` or `{prompt_file: FILE}` on an answer check.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criterion: Option<Criterion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rubric: Option<String>,
    /// A minijinja template, relative to the suite file, over `question`, `answer`,
    /// `documents`, `reference` and `rubric`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// Every claim of the answer is supported by the retrieved documents.
    Groundedness,
    /// The answer addresses the question.
    Relevance,
    /// The answer agrees with the case's `expect.reference_answer`.
    Correctness,
    /// The retrieved documents hold what is needed to answer.
    ContextSufficiency,
}

impl Criterion {
    pub fn name(self) -> &'static str {
        match self {
            Criterion::Groundedness => "groundedness",
            Criterion::Relevance => "relevance",
            Criterion::Correctness => "correctness",
            Criterion::ContextSufficiency => "context_sufficiency",
        }
    }
}
