//! Reproducing a reported bad answer, and finding which part of the chain caused it.
//!
//! `repro` asks the same question again and again, in batches, until the bad answer's rate
//! is known to the requested precision (the 95% Wilson interval's half-width) or the
//! budget is spent, then contrasts bad runs with good ones. `triage` reruns the question
//! under controlled edits of the context, with the same seeds in every condition (common
//! random numbers: a difference between conditions is the edit's, not the dice's), and
//! attributes the bad answer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::chain::corpus::Corpus;
use crate::chain::pipeline::PipelineChain;
use crate::chain::{Chain, ContextEdit, Intervention};
use crate::checks::check_answer;
use crate::model::record::{RetrievedDoc, RunRecord, RunStatus, Severity};
use crate::plan::{CaseJob, Job};
use crate::rules::Where;
use crate::runner::{RunContext, collect};
use crate::seed::run_seed;
use crate::stats::{fisher_worse, wilson};
use crate::suite::schema::{AnswerCheck, Expect, RetrievedRule, RuleSpec, TurnSpec};
use crate::trace::{SpanKind, TraceBuilder};

/// What makes an answer bad.
#[derive(Debug, Clone)]
pub enum Bad {
    /// The answer satisfies this check (`--bad 'matches: t4g\.micro'`).
    Answer(AnswerCheck),
    /// The run fails its case's rules or expectations.
    FailedVerdict,
    /// The answer fails an error-severity answer rule (these ids) or the case's answer
    /// expectation: what [`Bad::FailedVerdict`] means once the context is edited on
    /// purpose, when retrieval checks fail by construction.
    FailedAnswerChecks(Vec<String>),
}

impl Bad {
    pub fn describe(&self) -> String {
        match self {
            Bad::Answer(check) => format!("the answer satisfies {}", check.describe()),
            Bad::FailedVerdict => "the run fails the case's rules or expectations".into(),
            Bad::FailedAnswerChecks(_) => {
                "the answer fails the case's answer rules or answer expectation".into()
            }
        }
    }

    fn is_bad(&self, record: &RunRecord) -> bool {
        match self {
            Bad::Answer(check) => check_answer(check, &record.answer, &record.retrieved).is_empty(),
            Bad::FailedVerdict => record.verdict.as_ref().is_some_and(|v| !v.passed),
            Bad::FailedAnswerChecks(rules) => record.verdict.as_ref().is_some_and(|v| {
                v.rules.iter().any(|r| !r.passed && rules.contains(&r.id))
                    || v.failed_expectations
                        .iter()
                        .any(|f| f.check.starts_with("expect.answer"))
            }),
        }
    }
}

/// The question to reproduce and everything needed to judge its answers.
#[derive(Clone)]
pub struct Target {
    pub chain: Arc<Chain>,
    /// The suite's model judge, for its judged checks.
    pub judge: Option<Arc<crate::judge::Judge>>,
    pub question: String,
    pub vars: Map<String, Value>,
    pub rules: Vec<RuleSpec>,
    pub expect: Option<Expect>,
    pub corpus: Option<Arc<Corpus>>,
    pub bad: Bad,
    /// Names the runs' seeds and records (the case id, or `repro`).
    pub label: String,
    /// The suite the question comes from, for trace headers.
    pub suite: String,
    pub seed: u64,
    pub concurrency: usize,
    /// Per-run limit, as `run` applies it.
    pub timeout: Duration,
    /// A conversation's turns before the one reproduced (scripted ones are history only);
    /// `None` for a single question. The reproduced turn is asked last, after them, and
    /// the runs are judged on it.
    pub earlier: Option<Vec<TurnSpec>>,
    /// The reproduced turn's rules skipped (`skip:`), for its conversation.
    pub skip: Vec<String>,
    /// With `earlier`: ask the earlier turns once and fix their answers
    /// ([`Target::script_history`]) instead of asking them on every run.
    pub scripted_history: bool,
}

/// One run and whether its answer was bad.
#[derive(Debug, Clone)]
pub struct Sample {
    pub record: RunRecord,
    pub bad: bool,
}

impl Sample {
    fn errored(&self) -> bool {
        self.record.status == RunStatus::Error
    }
}

impl Target {
    /// Runs `runs` (indices into the seed stream) through the runner, `concurrency` at a
    /// time, each with the suite's timeout; `intervention` changes the context or the
    /// retriever's filter.
    pub async fn sample(
        &self,
        runs: std::ops::Range<u32>,
        intervention: Option<Intervention>,
    ) -> Vec<Sample> {
        let turns = match &self.earlier {
            Some(earlier) => {
                let mut turns = earlier.clone();
                turns.push(TurnSpec {
                    question: self.question.clone(),
                    expect: self.expect.clone(),
                    answer: None,
                    skip: self.skip.clone(),
                });
                turns
            }
            None => Vec::new(),
        };
        let question = crate::suite::schema::conversation_title(&turns);
        let case = Arc::new(CaseJob {
            id: self.label.clone(),
            question: if turns.is_empty() {
                self.question.clone()
            } else {
                question
            },
            vars: self.vars.clone(),
            expect: self.expect.clone(),
            turns,
        });
        let jobs: Vec<Job> = runs
            .map(|run| Job {
                seed: run_seed(self.seed, &self.label, run),
                case: Arc::clone(&case),
                run,
            })
            .collect();
        collect(self.context(intervention), jobs, self.concurrency)
            .await
            .into_iter()
            .map(|record| {
                let record = on_last_turn(record);
                let bad = record.status != RunStatus::Error && self.bad.is_bad(&record);
                Sample { record, bad }
            })
            .collect()
    }
}

impl Target {
    /// For a conversation's turn, one line per earlier turn and how it is replayed.
    pub fn history_lines(&self) -> Vec<String> {
        let Some(earlier) = &self.earlier else {
            return Vec::new();
        };
        let turn = earlier.len() + 1;
        if earlier.is_empty() {
            return vec![format!(
                "turn {turn} of case `{}`: the first, no history",
                self.label
            )];
        }
        let how = if self.scripted_history {
            "answers fixed (scripted) for every run"
        } else {
            "asked live on every run, the chain's answers as history"
        };
        let mut lines = vec![format!(
            "turn {turn} of case `{}`, after {} ({how}):",
            self.label,
            crate::text::count(earlier.len() as u64, "earlier turn")
        )];
        for (i, spec) in earlier.iter().enumerate() {
            let answer = match &spec.answer {
                Some(answer) => format!(" → {answer:?}"),
                None => String::new(),
            };
            lines.push(format!("  {}. {:?}{answer}", i + 1, spec.question));
        }
        lines
    }

    fn context(&self, intervention: Option<Intervention>) -> Arc<RunContext> {
        Arc::new(RunContext {
            chain: Arc::clone(&self.chain),
            rules: Arc::new(self.rules.clone()),
            timeout: self.timeout,
            intervention,
            judge: self.judge.clone(),
            prices: crate::chain::config::Prices::default(),
            budget: None,
        })
    }

    /// With `scripted_history`: asks the turns before the reproduced one once (with run
    /// 0's seed) and makes the chain's answers their scripted answers, so every run starts
    /// from the same history. The error says why when that conversation errored.
    pub async fn script_history(&mut self) -> Result<(), String> {
        let Some(earlier) = self.earlier.as_mut().filter(|_| self.scripted_history) else {
            return Ok(());
        };
        if earlier.iter().all(|t| t.answer.is_some()) {
            return Ok(());
        }
        let case = Arc::new(CaseJob {
            id: self.label.clone(),
            question: self.question.clone(),
            vars: self.vars.clone(),
            expect: None,
            turns: earlier.clone(),
        });
        let job = Job {
            seed: run_seed(self.seed, &self.label, 0),
            case,
            run: 0,
        };
        let context = Arc::new(RunContext {
            chain: Arc::clone(&self.chain),
            rules: Arc::new(Vec::new()),
            timeout: self.timeout,
            intervention: None,
            judge: None,
            prices: crate::chain::config::Prices::default(),
            budget: None,
        });
        let record = collect(context, vec![job], 1)
            .await
            .into_iter()
            .next()
            .ok_or("the turns before the reproduced one were not run")?;
        if let Some(error) = &record.error {
            return Err(format!(
                "asking the turns before the reproduced one, to script them: {error}"
            ));
        }
        let Some(earlier) = self.earlier.as_mut() else {
            return Ok(());
        };
        for (spec, turn) in earlier.iter_mut().zip(&record.turns) {
            spec.answer.get_or_insert_with(|| turn.answer.clone());
        }
        Ok(())
    }
}

/// A conversation run judged on its last turn, the one reproduced: that turn's
/// documents, prompt, answer, verdict and status, with the run's turns and trace kept for
/// showing. An error on any turn leaves the run an error.
fn on_last_turn(mut record: RunRecord) -> RunRecord {
    let Some(last) = record
        .turns
        .last()
        .filter(|_| record.status != RunStatus::Error)
    else {
        return record;
    };
    record.retrieved = last.retrieved.clone();
    record.prompt = last.prompt.clone();
    record.answer = last.answer.clone();
    record.verdict = last.verdict.clone();
    record.status = last.status;
    record
}

/// Why `repro` stopped asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The interval's half-width reached the requested precision.
    Precise,
    /// The run budget is spent.
    Budget,
}

#[derive(Debug, Clone, Copy)]
pub struct Stopping {
    /// Wanted half-width of the 95% interval of the bad-answer rate.
    pub precision: f64,
    pub min_runs: u32,
    pub max_runs: u32,
}

pub struct Reproduction {
    pub samples: Vec<Sample>,
    pub stop: Stop,
}

impl Reproduction {
    pub fn judged(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(|s| !s.errored())
    }

    pub fn counts(&self) -> (u32, u32) {
        counts(&self.samples)
    }

    pub fn first_bad(&self) -> Option<&Sample> {
        self.samples.iter().find(|s| s.bad)
    }
}

/// (bad runs, judged runs): runs that errored are neither.
pub fn counts(samples: &[Sample]) -> (u32, u32) {
    let judged = samples.iter().filter(|s| !s.errored()).count() as u32;
    let bad = samples.iter().filter(|s| s.bad).count() as u32;
    (bad, judged)
}

pub fn half_width(bad: u32, n: u32) -> f64 {
    let [low, high] = wilson(bad, n);
    (high - low) / 2.0
}

/// Asks in batches of `concurrency` until the rate is precise enough or the budget is
/// spent. Errors do not count towards precision but do count towards the budget.
pub async fn reproduce(target: &Target, stopping: Stopping) -> Reproduction {
    let mut samples = Vec::new();
    let mut next = 0u32;
    let batch = (target.concurrency as u32).max(1);
    loop {
        let end = (next + batch).min(stopping.max_runs);
        samples.extend(target.sample(next..end, None).await);
        next = end;
        let (bad, judged) = counts(&samples);
        if judged >= stopping.min_runs
            && judged > 0
            && half_width(bad, judged) <= stopping.precision
        {
            return Reproduction {
                samples,
                stop: Stop::Precise,
            };
        }
        if next >= stopping.max_runs {
            return Reproduction {
                samples,
                stop: Stop::Budget,
            };
        }
    }
}

/// One thing that differs between bad and good runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Contrast {
    pub feature: String,
    pub in_bad: f64,
    pub in_good: f64,
}

/// What bad runs have in common that good runs lack, and the other way round: retrieved
/// documents and metadata values by how often they are present, strongest first.
pub fn contrasts(samples: &[Sample]) -> Vec<Contrast> {
    let bad: Vec<&Sample> = samples.iter().filter(|s| s.bad).collect();
    let good: Vec<&Sample> = samples.iter().filter(|s| !s.bad && !s.errored()).collect();
    if bad.is_empty() || good.is_empty() {
        return Vec::new();
    }
    let features = |sample: &Sample| -> BTreeSet<String> {
        let mut set = BTreeSet::new();
        for doc in &sample.record.retrieved {
            set.insert(format!("document {} retrieved", doc.id));
            for (key, value) in &doc.metadata {
                set.insert(format!("a document with {key}={} retrieved", plain(value)));
            }
        }
        set
    };
    let mut presence: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for sample in &bad {
        for feature in features(sample) {
            presence.entry(feature).or_default().0 += 1;
        }
    }
    for sample in &good {
        for feature in features(sample) {
            presence.entry(feature).or_default().1 += 1;
        }
    }
    let mut out: Vec<Contrast> = presence
        .into_iter()
        .map(|(feature, (b, g))| Contrast {
            feature,
            in_bad: f64::from(b) / bad.len() as f64,
            in_good: f64::from(g) / good.len() as f64,
        })
        .collect();
    out.sort_by(|a, b| {
        let gap = |c: &Contrast| (c.in_bad - c.in_good).abs();
        gap(b)
            .partial_cmp(&gap(a))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.feature.cmp(&b.feature))
    });
    out
}

/// Mean prompt length (chars) of bad and of good runs.
pub fn prompt_lengths(samples: &[Sample]) -> (f64, f64) {
    let mean = |bad: bool| {
        let lengths: Vec<f64> = samples
            .iter()
            .filter(|s| s.bad == bad && !s.errored())
            .map(|s| s.record.prompt.chars().count() as f64)
            .collect();
        if lengths.is_empty() {
            0.0
        } else {
            lengths.iter().sum::<f64>() / lengths.len() as f64
        }
    };
    (mean(true), mean(false))
}

/// The generator's temperatures seen in bad and in good runs.
pub fn temperatures(samples: &[Sample]) -> (BTreeSet<String>, BTreeSet<String>) {
    let seen = |bad: bool| {
        samples
            .iter()
            .filter(|s| s.bad == bad && !s.errored())
            .flat_map(|s| s.record.trace.iter().flat_map(|t| t.spans.iter()))
            .filter(|span| span.kind == SpanKind::Llm)
            .filter_map(|span| span.attributes.get("temperature").map(plain))
            .collect()
    };
    (seen(true), seen(false))
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Triage

/// One condition's result.
#[derive(Debug, Clone)]
pub struct Condition {
    pub key: char,
    pub label: String,
    pub bad: u32,
    pub judged: u32,
    pub errors: u32,
    /// The first error met, when a run errored.
    pub first_error: Option<String>,
}

impl Condition {
    pub fn rate(&self) -> f64 {
        if self.judged == 0 {
            0.0
        } else {
            f64::from(self.bad) / f64::from(self.judged)
        }
    }

    /// Whether this condition's bad rate is significantly below `other`'s (one-sided
    /// Fisher exact test at 5%).
    fn clearly_below(&self, other: &Condition) -> bool {
        fisher_worse(
            self.judged - self.bad,
            self.judged,
            other.judged - other.bad,
            other.judged,
        ) < 0.05
    }
}

/// The retriever's query and filter replayed on their own.
#[derive(Debug, Clone)]
pub struct Replay {
    pub query: String,
    pub filter: Option<String>,
    pub documents: Vec<RetrievedDoc>,
    /// Same documents, same order, on every replay.
    pub deterministic: bool,
    pub replays: u32,
    /// A service's retriever cannot be called alone: its documents are the ones the
    /// service returned in condition (a).
    pub from_responses: bool,
}

pub struct Triage {
    pub conditions: Vec<Condition>,
    /// Conditions the chain cannot run, with the reason.
    pub unsupported: Vec<(char, String, String)>,
    pub replay: Option<Replay>,
    /// Documents (id, metadata) that break a `retrieved` rule, seen in condition (a).
    pub violators: Vec<(String, Map<String, Value>, String)>,
    pub cause: String,
    pub fix: Option<String>,
}

/// Whether `rule` objects to `doc` on its own (as the run's verdict judged it).
fn violates(rule: &RuleSpec, doc: &RetrievedDoc) -> bool {
    rule.retrieved
        .as_ref()
        .is_some_and(|r| r.objects_to(&doc.metadata))
}

/// The retriever filter that keeps out what `rule` objects to.
fn filter_for(rule: &RuleSpec) -> Option<Value> {
    match &rule.retrieved {
        Some(RetrievedRule::Every(w)) => Some(w.to_json()),
        Some(RetrievedRule::None(w)) => Some(serde_json::json!({"$not": w.to_json()})),
        _ => None,
    }
}

fn field_names(filter: &Where) -> Vec<String> {
    let mut names = Vec::new();
    for clause in &filter.clauses {
        match clause {
            crate::rules::Clause::Field { name, .. } => names.push(name.clone()),
            crate::rules::Clause::And(items) | crate::rules::Clause::Or(items) => {
                names.extend(items.iter().flat_map(field_names));
            }
            crate::rules::Clause::Not(inner) => names.extend(field_names(inner)),
        }
    }
    names
}

impl Target {
    /// The target as triage judges it: triage removes documents and whole contexts on
    /// purpose, so "the run fails its case" would count every edited run as bad through
    /// the retrieval checks alone (and blame the model). Only answer checks judge there.
    pub fn for_edited_context(&self) -> Target {
        let mut target = self.clone();
        if matches!(target.bad, Bad::FailedVerdict) {
            target.bad = Bad::FailedAnswerChecks(
                self.rules
                    .iter()
                    .filter(|r| r.answer.is_some() && r.severity == Severity::Error)
                    .map(|r| r.id.clone())
                    .collect(),
            );
        }
        target
    }
}

pub async fn triage(target: &Target, runs: u32) -> Triage {
    let supports = target.chain.supports();
    let mut unsupported: Vec<(char, String, String)> = Vec::new();
    let retrieved_rules: Vec<RuleSpec> = target
        .rules
        .iter()
        .filter(|r| {
            matches!(
                r.retrieved,
                Some(RetrievedRule::Every(_) | RetrievedRule::None(_))
            )
        })
        .cloned()
        .collect();
    let mut conditions = Vec::new();
    let mut run_condition = |key: char, label: String, samples: Vec<Sample>| {
        let (bad, judged) = counts(&samples);
        let errors = samples.len() as u32 - judged;
        let first_error = samples
            .iter()
            .filter(|s| s.errored())
            .find_map(|s| s.record.error.clone());
        conditions.push(Condition {
            key,
            label,
            bad,
            judged,
            errors,
            first_error,
        });
        samples
    };

    let as_retrieved = target.sample(0..runs, None).await;
    let as_retrieved = run_condition('a', "context as retrieved".into(), as_retrieved);

    let mut violators: Vec<(String, Map<String, Value>, String)> = Vec::new();
    for sample in &as_retrieved {
        for doc in &sample.record.retrieved {
            for rule in &retrieved_rules {
                if violates(rule, doc) && !violators.iter().any(|(id, _, _)| id == &doc.id) {
                    violators.push((doc.id.clone(), doc.metadata.clone(), rule.id.clone()));
                }
            }
        }
    }

    let edit_ok = supports.edit.is_ok();
    let cannot = |unsupported: &mut Vec<(char, String, String)>,
                  key: char,
                  label: &str,
                  why: &Result<(), String>| {
        if let Err(reason) = why {
            unsupported.push((key, label.to_owned(), reason.clone()));
        }
    };
    if !retrieved_rules.is_empty() {
        if edit_ok {
            let rules = retrieved_rules.clone();
            let edit: ContextEdit = Arc::new(move |docs: Vec<RetrievedDoc>| {
                docs.into_iter()
                    .filter(|d| !rules.iter().any(|r| violates(r, d)))
                    .collect()
            });
            let samples = target.sample(0..runs, Some(Intervention::Edit(edit))).await;
            run_condition('b', "rule-violating documents removed".into(), samples);
        } else {
            cannot(
                &mut unsupported,
                'b',
                "rule-violating documents removed",
                &supports.edit,
            );
        }
    }

    let sources: Vec<String> = target
        .expect
        .as_ref()
        .map(|e| {
            e.sources
                .relevant(e.relevance_level)
                .map(|s| s.0.clone())
                .collect()
        })
        .unwrap_or_default();
    // The expected sources' texts: from the corpus, else as the service returned them in (a).
    let known: Vec<RetrievedDoc> = sources
        .iter()
        .filter_map(|id| match &target.corpus {
            Some(corpus) => corpus
                .documents
                .iter()
                .find(|d| &d.id == id)
                .map(|d| RetrievedDoc {
                    id: d.id.clone(),
                    text: d.text.clone(),
                    metadata: d.metadata.clone(),
                    score: None,
                }),
            None => as_retrieved
                .iter()
                .flat_map(|s| s.record.retrieved.iter())
                .find(|d| &d.id == id)
                .map(|d| RetrievedDoc {
                    score: None,
                    ..d.clone()
                }),
        })
        .collect();
    if !sources.is_empty() && !edit_ok {
        cannot(
            &mut unsupported,
            'c',
            "expected sources only",
            &supports.edit,
        );
    } else if !sources.is_empty() && known.len() < sources.len() {
        let missing: Vec<&str> = sources
            .iter()
            .filter(|id| !known.iter().any(|d| &&d.id == id))
            .map(String::as_str)
            .collect();
        unsupported.push((
            'c',
            "expected sources only".into(),
            match target.corpus {
                Some(_) => format!("{} not in the chain's corpus", missing.join(", ")),
                None => format!(
                    "the text of {} is unknown: the chain has no corpus and its responses in (a) never returned {}",
                    missing.join(", "),
                    if missing.len() == 1 { "it" } else { "them" }
                ),
            },
        ));
    } else if !sources.is_empty() {
        // Put in by hand, not scored by any retriever.
        let docs = known;
        let edit: ContextEdit = Arc::new(move |_| docs.clone());
        let samples = target.sample(0..runs, Some(Intervention::Edit(edit))).await;
        run_condition(
            'c',
            format!("expected sources only ({})", sources.join(", ")),
            samples,
        );
    }

    if edit_ok {
        let edit: ContextEdit = Arc::new(|_| Vec::new());
        let samples = target.sample(0..runs, Some(Intervention::Edit(edit))).await;
        run_condition('d', "no context".into(), samples);
    } else {
        cannot(&mut unsupported, 'd', "no context", &supports.edit);
    }

    // The suggested fix, tried for real where the chain takes a retriever filter.
    let filter = retrieved_rules
        .iter()
        .find(|r| violators.iter().any(|(_, _, rule)| rule == &r.id))
        .and_then(|r| match &r.retrieved {
            Some(RetrievedRule::Every(w)) => Some(w.to_json()),
            _ => None,
        });
    if let Some(filter) = filter {
        match &supports.filter {
            Ok(()) => {
                let label = format!("with filter {filter} (the suggested fix)");
                let samples = target
                    .sample(0..runs, Some(Intervention::Filter(filter)))
                    .await;
                run_condition('f', label, samples);
            }
            Err(_) if matches!(target.chain.as_ref(), Chain::Pipeline(_)) => {}
            Err(_) => cannot(
                &mut unsupported,
                'f',
                "with the suggested filter",
                &supports.filter,
            ),
        }
    }

    let replay = match target.chain.as_ref() {
        Chain::Pipeline(pipeline) => {
            // In a conversation the retriever was asked what its history setting built
            // from the turn: the query the first answered run recorded.
            let query = match &target.earlier {
                Some(_) => recorded_query(&as_retrieved).unwrap_or_else(|| target.question.clone()),
                None => target.question.clone(),
            };
            replay(pipeline, &query, 3).await
        }
        _ => replay_from_responses(target, &as_retrieved),
    };
    let (cause, fix) = attribute(
        &conditions,
        &violators,
        &retrieved_rules,
        replay.as_ref(),
        &unsupported,
    );
    Triage {
        conditions,
        unsupported,
        replay,
        violators,
        cause,
        fix,
    }
}

/// A service's retriever as it showed in condition (a): the documents its runs returned.
fn replay_from_responses(target: &Target, samples: &[Sample]) -> Option<Replay> {
    let answered: Vec<&Sample> = samples.iter().filter(|s| !s.errored()).collect();
    let first = answered.first()?;
    let ids = |docs: &[RetrievedDoc]| docs.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
    Some(Replay {
        query: target.question.clone(),
        filter: None,
        documents: first.record.retrieved.clone(),
        deterministic: answered
            .iter()
            .all(|s| ids(&s.record.retrieved) == ids(&first.record.retrieved)),
        replays: answered.len() as u32,
        from_responses: true,
    })
}

/// The query the last RETRIEVER span of the first answered run was asked (a
/// conversation's last turn).
fn recorded_query(samples: &[Sample]) -> Option<String> {
    let sample = samples.iter().find(|s| !s.errored())?;
    let trace = sample.record.trace.as_ref()?;
    trace
        .spans
        .iter()
        .filter(|s| s.kind == SpanKind::Retriever && s.service.is_none())
        .max_by_key(|s| s.start_ns)
        .and_then(|s| s.attributes.get("query")?.as_str().map(str::to_owned))
}

/// Calls the retriever alone with `query`, `times` times.
async fn replay(pipeline: &PipelineChain, query: &str, times: u32) -> Option<Replay> {
    let mut results: Vec<Vec<RetrievedDoc>> = Vec::new();
    for _ in 0..times {
        let mut trace = TraceBuilder::new();
        let root = trace.start("replay", SpanKind::Chain, None);
        if let Ok(docs) = pipeline.retriever.retrieve(query, &mut trace, &root).await {
            results.push(docs);
        }
    }
    let first = results.first()?.clone();
    let ids = |docs: &[RetrievedDoc]| docs.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
    Some(Replay {
        query: query.to_owned(),
        filter: pipeline.retriever.filter().map(|f| f.to_string()),
        deterministic: results.iter().all(|r| ids(r) == ids(&first)),
        documents: first,
        replays: results.len() as u32,
        from_responses: false,
    })
}

fn attribute(
    conditions: &[Condition],
    violators: &[(String, Map<String, Value>, String)],
    rules: &[RuleSpec],
    replay: Option<&Replay>,
    unsupported: &[(char, String, String)],
) -> (String, Option<String>) {
    // A condition whose every run errored says nothing: as if it had not run.
    let get = |key: char| conditions.iter().find(|c| c.key == key && c.judged > 0);
    let Some(a) = get('a') else {
        let errored = conditions.iter().find(|c| c.key == 'a' && c.errors > 0);
        return match errored.and_then(|a| a.first_error.as_deref()) {
            Some(error) => (
                format!(
                    "every run of (a) errored, so there was no answer to judge: {}",
                    error.replace(['\n', '\r'], " ")
                ),
                None,
            ),
            None => ("nothing was run".into(), None),
        };
    };
    if a.bad == 0 {
        return (
            "the bad answer did not appear with the context as retrieved; run `ragprobe repro` with a larger budget first".into(),
            None,
        );
    }
    let none = get('d');
    let without_context = match none {
        Some(d) if d.bad == 0 => "does not appear without context",
        Some(d) if d.clearly_below(a) => "is rarer without context",
        _ => "",
    };
    if let Some(d) = none
        && d.bad > 0
        && !d.clearly_below(a)
    {
        return (
            format!(
                "the bad answer appears without any context ({:.0}% of runs): it comes from the model's trained-in knowledge or the prompt, not from retrieval",
                d.rate() * 100.0
            ),
            None,
        );
    }
    let good_query = match replay {
        Some(r) if r.deterministic => "for a good query",
        _ => "for the query",
    };
    // Removing the documents (b), or the filter that keeps them out (f), where the chain
    // could run either.
    let tried_fix = get('f');
    if let Some(b) = get('b').or(tried_fix)
        && !violators.is_empty()
        && b.clearly_below(a)
    {
        let rule_id = &violators[0].2;
        let rule = rules.iter().find(|r| &r.id == rule_id);
        let keys: Vec<String> = rule
            .and_then(|r| match &r.retrieved {
                Some(RetrievedRule::Every(w) | RetrievedRule::None(w)) => Some(field_names(w)),
                _ => None,
            })
            .unwrap_or_default();
        let tags: BTreeSet<String> = violators
            .iter()
            .flat_map(|(_, metadata, _)| {
                keys.iter()
                    .filter_map(|k| metadata.get(k).map(plain))
                    .collect::<Vec<_>>()
            })
            .collect();
        let ids: Vec<&str> = violators.iter().map(|(id, _, _)| id.as_str()).collect();
        let tag = tags.into_iter().collect::<Vec<_>>().join("/");
        let (noun, pronoun) = if ids.len() == 1 {
            (format!("an {tag}-tagged document ({})", ids[0]), "it is")
        } else {
            (
                format!("{tag}-tagged documents ({})", ids.join(", ")),
                "they are",
            )
        };
        let noun = if tag.is_empty() {
            noun.replace(&format!("an {tag}-tagged"), "a rule-violating")
                .replace(&format!("{tag}-tagged"), "rule-violating")
        } else if !tag.starts_with(['a', 'e', 'i', 'o', 'u']) {
            noun.replacen("an ", "a ", 1)
        } else {
            noun
        };
        let mut cause = if b.key == 'f' {
            format!(
                "the retriever returned {noun} {good_query}; the bad answer disappears with the filter that keeps {} out",
                if ids.len() == 1 { "it" } else { "them" }
            )
        } else {
            format!(
                "the retriever returned {noun} {good_query}; the bad answer disappears when {pronoun} removed"
            )
        };
        if b.bad > 0 {
            cause = cause.replace("disappears", "becomes rarer");
        }
        if !without_context.is_empty() {
            cause.push_str(&format!(", and {without_context}"));
        }
        let fix = rule.and_then(filter_for).map(|filter| {
            let tried = match tried_fix {
                Some(f) => format!(
                    "; tried: {} of {} runs bad with it, {} of {} without",
                    f.bad, f.judged, a.bad, a.judged
                ),
                None => String::new(),
            };
            format!(
                "retriever filter {filter} (what rule `{rule_id}` requires of every document){tried}"
            )
        });
        return (cause, fix);
    }
    if let Some(c) = get('c')
        && c.clearly_below(a)
    {
        return (
            format!(
                "the retriever returned the wrong documents {good_query}: with only the expected sources the bad answer {}; look at the query and the ranking",
                if c.bad == 0 {
                    "disappears"
                } else {
                    "becomes rarer"
                }
            ),
            None,
        );
    }
    // An edit that removed every bad answer without reaching significance says "too few
    // runs", not "the generator": blaming the model needs bad answers that survive the edit.
    let edited: Vec<&Condition> = ['b', 'c', 'f'].iter().filter_map(|k| get(*k)).collect();
    if edited.is_empty() {
        // Only the context as retrieved (and perhaps none) ran: nothing tested whether the
        // documents cause it, so nothing can be blamed.
        let why: Vec<String> = unsupported
            .iter()
            .map(|(key, label, reason)| format!("({key}) {label}: {reason}"))
            .collect();
        return (
            format!(
                "inconclusive: {} of {} runs were bad with the context as retrieved, but no condition that edits the context or the filter ran, so neither the documents nor the generator can be blamed{}",
                a.bad,
                a.judged,
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", why.join("; "))
                }
            ),
            None,
        );
    }
    if !edited.is_empty() && edited.iter().any(|c| c.bad == 0) {
        return (
            format!(
                "inconclusive: {} of {} runs were bad with the context as retrieved and fewer with it edited, but not significantly at {} runs; run triage with more --runs",
                a.bad, a.judged, a.judged
            ),
            None,
        );
    }
    (
        "the bad answer persists with the right documents in context: the generator (prompt or model) makes it from good context".into(),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(key: char, bad: u32, judged: u32) -> Condition {
        Condition {
            key,
            label: String::new(),
            bad,
            judged,
            errors: 0,
            first_error: None,
        }
    }

    fn rule() -> RuleSpec {
        serde_yaml::from_str("{id: only-databricks-docs, retrieved: {every: {docs: databricks}}}")
            .expect("rule")
    }

    fn aws() -> Vec<(String, Map<String, Value>, String)> {
        let metadata: Map<String, Value> =
            serde_json::from_str(r#"{"docs": "aws"}"#).expect("metadata");
        vec![("4".into(), metadata, "only-databricks-docs".into())]
    }

    #[test]
    fn a_violating_document_that_explains_the_answer_is_named_with_its_fix() {
        let conditions = [
            condition('a', 9, 30),
            condition('b', 0, 30),
            condition('d', 0, 30),
        ];
        let (cause, fix) = attribute(&conditions, &aws(), &[rule()], None, &[]);
        assert_eq!(
            cause,
            "the retriever returned an aws-tagged document (4) for the query; the bad answer disappears when it is removed, and does not appear without context"
        );
        assert!(fix.expect("fix").contains(r#"{"docs":"databricks"}"#));
    }

    #[test]
    fn an_answer_without_context_is_the_models_own() {
        let conditions = [
            condition('a', 9, 30),
            condition('b', 8, 30),
            condition('d', 10, 30),
        ];
        let (cause, fix) = attribute(&conditions, &aws(), &[rule()], None, &[]);
        assert!(cause.contains("trained-in knowledge"), "{cause}");
        assert!(fix.is_none());
    }

    #[test]
    fn an_edit_that_removes_few_bad_answers_is_inconclusive_not_the_model() {
        let conditions = [
            condition('a', 2, 16),
            condition('b', 0, 16),
            condition('d', 0, 16),
        ];
        let (cause, fix) = attribute(&conditions, &aws(), &[rule()], None, &[]);
        assert!(cause.starts_with("inconclusive: 2 of 16"), "{cause}");
        assert!(fix.is_none());
    }

    /// A chain whose body carries neither `filter` nor `documents`: only (a) could run, so
    /// the generator is not blamed; the verdict says why nothing else ran. Nor does a
    /// condition whose every run errored count as run.
    #[test]
    fn triage_names_a_cause_no_condition_tested_only_when_one_did() {
        let conditions = [condition('a', 9, 30)];
        let unsupported = [(
            'b',
            "without the violating documents".to_owned(),
            "the chain's body does not use `documents`".to_owned(),
        )];
        let (cause, fix) = attribute(&conditions, &aws(), &[rule()], None, &unsupported);
        assert!(cause.starts_with("inconclusive: 9 of 30"), "{cause}");
        assert!(cause.contains("does not use `documents`"), "{cause}");
        assert!(!cause.contains("generator (prompt"), "{cause}");
        assert!(fix.is_none());
        let errored = [condition('a', 9, 30), condition('b', 0, 0)];
        let (cause, _) = attribute(&errored, &aws(), &[rule()], None, &[]);
        assert!(cause.starts_with("inconclusive"), "{cause}");
    }

    #[test]
    fn noise_is_not_a_cause() {
        // 3/30 against 1/30 is no evidence that removing the document helped.
        let conditions = [
            condition('a', 3, 30),
            condition('b', 1, 30),
            condition('d', 0, 30),
        ];
        let (cause, _) = attribute(&conditions, &aws(), &[rule()], None, &[]);
        assert!(cause.contains("generator"), "{cause}");
    }

    #[test]
    fn the_expected_sources_point_at_ranking() {
        let conditions = [
            condition('a', 12, 30),
            condition('c', 0, 30),
            condition('d', 0, 30),
        ];
        let (cause, _) = attribute(&conditions, &[], &[], None, &[]);
        assert!(cause.contains("wrong documents"), "{cause}");
    }

    #[test]
    fn precision_tightens_with_runs() {
        assert!(half_width(5, 20) > half_width(25, 100));
        assert!(half_width(0, 40) < 0.05);
    }
}
