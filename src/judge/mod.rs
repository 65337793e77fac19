//! Model-judged answer checks: one more non-deterministic component, called through the
//! same backend as the chain's model (retries, rate limits, timeouts), asked for a JSON
//! verdict, repeated when the suite says so, and recorded as an EVALUATOR span per check.

pub mod prompts;
pub mod reply;
pub mod spec;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use minijinja::Environment;
use serde_json::{Value, json};

use crate::chain::config::{LlmConfig, LlmKind};
use crate::chain::openai::{ChatModel, ModelError};
use crate::judge::spec::{JudgeCheck, JudgeSpec};
use crate::model::record::RetrievedDoc;
use crate::seed::stable_hash;
use crate::trace::{Span, SpanKind, SpanStatus, Trace, now_ns};

pub use reply::{Verdict, parse_reply};

/// One check's judgement: the majority of its repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub passed: bool,
    /// The reason of the first repeat that voted with the majority.
    pub reason: String,
    pub score: Option<f64>,
    /// Every repeat's vote, in order.
    pub votes: Vec<bool>,
}

impl Judgement {
    /// Share of repeats that voted with the majority (1 when they all agree).
    pub fn agreement(&self) -> f64 {
        let with = self.votes.iter().filter(|v| **v == self.passed).count();
        with as f64 / self.votes.len().max(1) as f64
    }
}

/// Judgements of one run, by check: a rule's id, or `expect.answer`.
pub type Judgements = BTreeMap<String, Judgement>;

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error("judge for `{check}`: {message}")]
    Failed { check: String, message: String },
}

/// What a judge sees of a run.
pub struct JudgeInputs<'a> {
    /// In a conversation, the messages before the question: a follow-up ("And what does
    /// that cost?") is judged knowing what "that" is.
    pub history: &'a [crate::model::record::Message],
    pub question: &'a str,
    pub answer: &'a str,
    pub documents: &'a [RetrievedDoc],
    pub reference: Option<&'a str>,
}

#[derive(Debug)]
pub struct Judge {
    model: ChatModel,
    repeats: u32,
    /// Built-in prompts and the suite's prompt files, by name.
    templates: Environment<'static>,
    structured: AtomicBool,
}

impl Judge {
    /// The judge of `spec`, with `prompt_files` (name → template text) compiled.
    pub fn new(spec: &JudgeSpec, prompt_files: &[(String, String)]) -> Result<Judge, String> {
        let config = LlmConfig {
            kind: LlmKind::Openai,
            temperature: spec.temperature,
            base_url: spec.base_url.clone(),
            model: spec.model.clone(),
            max_tokens: spec.max_tokens,
            api_key_env: spec.api_key_env.clone(),
            limits: spec.limits.clone(),
            ..LlmConfig::default()
        };
        let model = ChatModel::new(&config).map_err(|e: ModelError| e.to_string())?;
        let mut templates = crate::chain::prompt::template_environment();
        prompts::add_builtins(&mut templates).map_err(|e| e.to_string())?;
        for (name, text) in prompt_files {
            templates
                .add_template_owned(name.clone(), text.clone())
                .map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(Judge {
            model,
            repeats: spec.repeats.max(1),
            templates,
            structured: AtomicBool::new(spec.structured_output),
        })
    }

    pub fn describe(&self) -> String {
        self.model.describe()
    }

    /// The prompt for `check` on `inputs`.
    pub fn render(&self, check: &JudgeCheck, inputs: &JudgeInputs<'_>) -> Result<String, String> {
        let name = prompts::template_name(check);
        let documents: Vec<Value> = inputs
            .documents
            .iter()
            .map(|d| json!({"id": d.id, "text": d.text, "metadata": d.metadata}))
            .collect();
        self.templates
            .get_template(&name)
            .and_then(|t| {
                t.render(minijinja::context! {
                    history => minijinja::Value::from(minijinja::value::Serde(inputs.history)),
                    question => inputs.question,
                    answer => inputs.answer,
                    documents => minijinja::Value::from(minijinja::value::Serde(documents)),
                    reference => inputs.reference,
                    rubric => check.rubric.as_deref(),
                })
            })
            .map_err(|e| format!("prompt {name}: {e}"))
    }

    /// Judges every check on one run and adds an EVALUATOR span per check under the
    /// trace's root. A reply that cannot be read is an error for the run, never a verdict.
    pub async fn judge_run(
        &self,
        checks: &[(String, &JudgeCheck)],
        inputs: &JudgeInputs<'_>,
        seed: u64,
        trace: &mut Trace,
    ) -> Result<Judgements, JudgeError> {
        let mut judgements = Judgements::new();
        let root = trace.spans.first().map(|s| s.span_id.clone());
        for (label, check) in checks {
            let fail = |message: String| JudgeError::Failed {
                check: label.clone(),
                message,
            };
            let prompt = self.render(check, inputs).map_err(fail)?;
            let started = now_ns();
            let mut votes = Vec::new();
            let mut verdicts: Vec<Verdict> = Vec::new();
            let mut replies = Vec::new();
            let (mut input_tokens, mut output_tokens) = (0i64, 0i64);
            for repeat in 0..self.repeats {
                let call_seed =
                    stable_hash(&[&seed.to_le_bytes(), label.as_bytes(), &repeat.to_le_bytes()]);
                let completion = self.call(&prompt, call_seed).await.map_err(fail)?;
                input_tokens += completion.input_tokens.unwrap_or(0);
                output_tokens += completion.output_tokens.unwrap_or(0);
                let verdict = parse_reply(&completion.answer).map_err(fail)?;
                votes.push(verdict.passed);
                replies.push(completion.answer);
                verdicts.push(verdict);
            }
            let passes = votes.iter().filter(|v| **v).count();
            // A tie fails: a judge split in half has not said the answer is good.
            let passed = passes * 2 > votes.len();
            let first = verdicts
                .iter()
                .find(|v| v.passed == passed)
                .cloned()
                .unwrap_or_else(|| verdicts[0].clone());
            let judgement = Judgement {
                passed,
                reason: first.reason.clone(),
                score: first.score,
                votes,
            };
            trace.spans.push(evaluator_span(EvaluatorSpan {
                label,
                check,
                model: self.model.model(),
                prompt: &prompt,
                replies: &replies,
                judgement: &judgement,
                tokens: (input_tokens, output_tokens),
                started,
                parent: root.clone(),
            }));
            judgements.insert(label.clone(), judgement);
        }
        Ok(judgements)
    }

    /// One completion, asking for a JSON object while the server accepts that; a server
    /// that refuses `response_format` (HTTP 400) is asked again without it, from then on.
    async fn call(
        &self,
        prompt: &str,
        seed: u64,
    ) -> Result<crate::chain::openai::Completion, String> {
        if self.structured.load(Ordering::Relaxed) {
            let format = Some(json!({"type": "json_object"}));
            match self.model.complete_with(prompt, seed, format).await {
                Ok(completion) => return Ok(completion),
                Err(error) if error.status() == Some(400) => {
                    self.structured.store(false, Ordering::Relaxed);
                }
                Err(error) => return Err(error.to_string()),
            }
        }
        self.model
            .complete_with(prompt, seed, None)
            .await
            .map_err(|e| e.to_string())
    }
}

struct EvaluatorSpan<'a> {
    label: &'a str,
    check: &'a JudgeCheck,
    model: &'a str,
    prompt: &'a str,
    replies: &'a [String],
    judgement: &'a Judgement,
    tokens: (i64, i64),
    started: u64,
    parent: Option<String>,
}

fn evaluator_span(e: EvaluatorSpan<'_>) -> Span {
    let mut attributes = serde_json::Map::new();
    let mut set = |key: &str, value: Value| {
        attributes.insert(key.to_owned(), value);
    };
    set("check", json!(e.label));
    set("criterion", json!(prompts::describe(e.check)));
    set("model", json!(e.model));
    set("prompt", json!(e.prompt));
    set("replies", json!(e.replies));
    set(
        "verdict",
        json!(if e.judgement.passed { "pass" } else { "fail" }),
    );
    set("reason", json!(e.judgement.reason));
    if let Some(score) = e.judgement.score {
        set("score", json!(score));
    }
    set("votes", json!(e.judgement.votes));
    set("agreement", json!(e.judgement.agreement()));
    set("input_tokens", json!(e.tokens.0));
    set("output_tokens", json!(e.tokens.1));
    Span {
        span_id: format!("{:016x}", fastrand::u64(1..)),
        parent_span_id: e.parent,
        name: format!("judge {}", e.label),
        kind: SpanKind::Evaluator,
        start_ns: e.started,
        end_ns: now_ns().max(e.started),
        status: SpanStatus::Ok,
        attributes,
        service: None,
    }
}
