//! The one scheduler: runs jobs on tokio with bounded concurrency and a per-run timeout,
//! judges each invocation, and emits one event per finished run. `run`, `repro` and
//! `triage` all go through it. Dropping the future returned by [`execute`] (as the Ctrl-C
//! handler does) aborts the runs in flight; finished runs have already been sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

pub use crate::chain::config::Prices;
use crate::chain::error::ChainError;
use crate::chain::{Chain, ChainFailure, ChainOutput, Intervention};
use crate::checks::judge;
use crate::events::Event;
use crate::judge::{Judge, JudgeInputs, Judgements};
use crate::model::record::{RunRecord, RunStatus, Usage};
use crate::plan::Job;
use crate::secrets;
use crate::suite::schema::{Expect, RuleSpec};
use crate::trace::now_ns;

/// What every run needs, shared between tasks.
pub struct RunContext {
    pub chain: Arc<Chain>,
    pub rules: Arc<Vec<RuleSpec>>,
    pub timeout: Duration,
    /// An edit of the context or of the retriever's filter (triage's conditions); `None`
    /// runs the chain as it is.
    pub intervention: Option<Intervention>,
    /// The suite's model judge, for checks with `judge:`.
    pub judge: Option<Arc<Judge>>,
    /// What the chain's model and the judge charge, to price each run.
    pub prices: Prices,
    /// `--max-cost` / `--max-calls`: no new run starts once spent.
    pub budget: Option<Arc<Budget>>,
}

/// A spending limit over a whole `run`. Runs already in flight when it is reached finish
/// (so it can be passed by up to `concurrency` runs' worth); no new run starts.
#[derive(Debug, Default)]
pub struct Budget {
    pub max_cost_usd: Option<f64>,
    pub max_calls: Option<u64>,
    calls: std::sync::atomic::AtomicU64,
    /// Micro-dollars, so that an atomic integer can hold them.
    micro_usd: std::sync::atomic::AtomicU64,
    stopped: std::sync::atomic::AtomicBool,
}

impl Budget {
    pub fn new(max_cost_usd: Option<f64>, max_calls: Option<u64>) -> Self {
        Budget {
            max_cost_usd,
            max_calls,
            ..Budget::default()
        }
    }

    pub fn spend(&self, usage: &Usage) {
        use std::sync::atomic::Ordering::Relaxed;
        self.calls.fetch_add(usage.calls, Relaxed);
        if let Some(cost) = usage.cost_usd {
            self.micro_usd
                .fetch_add((cost * 1e6).round() as u64, Relaxed);
        }
    }

    /// (calls, US dollars) spent so far.
    pub fn spent(&self) -> (u64, f64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.calls.load(Relaxed),
            self.micro_usd.load(Relaxed) as f64 / 1e6,
        )
    }

    fn exhausted(&self) -> bool {
        let (calls, cost) = self.spent();
        self.max_calls.is_some_and(|max| calls >= max)
            || self.max_cost_usd.is_some_and(|max| cost >= max)
    }

    /// Whether the budget kept runs from starting.
    pub fn stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `--max-cost $0.50` / `--max-calls 100`, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(cost) = self.max_cost_usd {
            parts.push(format!("--max-cost {cost}"));
        }
        if let Some(calls) = self.max_calls {
            parts.push(format!("--max-calls {calls}"));
        }
        parts.join(" ")
    }
}

/// The calls and tokens a run's trace reports: the chain's model calls (ragprobe's own LLM
/// spans, or a service's as OpenInference and the GenAI conventions name their tokens) and
/// the judge's (its EVALUATOR spans, one call per vote). Priced when every model called has
/// a price.
pub fn usage_of(trace: &crate::trace::Trace, prices: &Prices) -> Usage {
    use crate::trace::SpanKind;
    let mut usage = Usage::default();
    let number = |span: &crate::trace::Span, keys: &[&str]| {
        keys.iter()
            .find_map(|k| span.attributes.get(*k).and_then(serde_json::Value::as_u64))
            .unwrap_or(0)
    };
    for span in &trace.spans {
        match span.kind {
            // A model call: ragprobe's own call to a model (the extractive reference
            // generator calls none), or a service's LLM span; not a span derived from a
            // service's response.
            SpanKind::Llm
                if (span.service.is_some() || span.attributes.contains_key("model"))
                    && !span.attributes.contains_key("ragprobe.derived_from") =>
            {
                usage.calls += 1;
                usage.model_input_tokens += number(
                    span,
                    &[
                        "input_tokens",
                        "llm.token_count.prompt",
                        "gen_ai.usage.input_tokens",
                    ],
                );
                usage.model_output_tokens += number(
                    span,
                    &[
                        "output_tokens",
                        "llm.token_count.completion",
                        "gen_ai.usage.output_tokens",
                    ],
                );
            }
            SpanKind::Evaluator => {
                usage.calls += span
                    .attributes
                    .get("votes")
                    .and_then(serde_json::Value::as_array)
                    .map_or(1, |v| v.len() as u64);
                usage.judge_input_tokens += number(span, &["input_tokens"]);
                usage.judge_output_tokens += number(span, &["output_tokens"]);
            }
            _ => {}
        }
    }
    let model_calls = usage.model_input_tokens + usage.model_output_tokens > 0;
    let judge_calls = usage.judge_input_tokens + usage.judge_output_tokens > 0;
    let model_cost = match (model_calls, prices.model) {
        (false, _) => Some(0.0),
        (true, Some(p)) => Some(p.cost(usage.model_input_tokens, usage.model_output_tokens)),
        (true, None) => None,
    };
    let judge_cost = match (judge_calls, prices.judge) {
        (false, _) => Some(0.0),
        (true, Some(p)) => Some(p.cost(usage.judge_input_tokens, usage.judge_output_tokens)),
        (true, None) => None,
    };
    usage.cost_usd = model_cost
        .zip(judge_cost)
        .map(|(m, j)| m + j)
        .filter(|_| prices.model.is_some() || prices.judge.is_some());
    usage
}

/// Runs `jobs`, at most `concurrency` at a time, sending a `RunFinished` event for each.
pub async fn execute(
    context: Arc<RunContext>,
    jobs: impl Iterator<Item = Job> + Send,
    concurrency: usize,
    events: mpsc::Sender<Event>,
) {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut jobs = jobs;
    loop {
        // Waiting for a slot before spawning keeps at most `concurrency` tasks alive; the
        // job is taken only then, so an adaptive schedule picks it knowing the latest runs.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let Some(job) = jobs.next() else {
            break;
        };
        if let Some(budget) = &context.budget
            && budget.exhausted()
        {
            budget
                .stopped
                .store(true, std::sync::atomic::Ordering::Relaxed);
            break;
        }
        let context = Arc::clone(&context);
        let events = events.clone();
        tasks.spawn(async move {
            let mut record = run_one(&context, &job).await;
            record.usage = record
                .trace
                .as_ref()
                .map(|trace| usage_of(trace, &context.prices))
                .filter(|usage| !usage.is_empty());
            if let (Some(budget), Some(usage)) = (&context.budget, &record.usage) {
                budget.spend(usage);
            }
            let record = without_secrets(record);
            // A closed channel means the receiver is shutting down; nothing to do.
            let _ = events.send(Event::RunFinished(Box::new(record))).await;
            // The slot is held until the record is handed over: when the writer is slower
            // than the chain, runs wait instead of piling up in memory.
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Runs `jobs` and returns their records in job order: for callers that look at runs
/// together (repro, triage) rather than stream them to disk.
pub async fn collect(
    context: Arc<RunContext>,
    jobs: Vec<Job>,
    concurrency: usize,
) -> Vec<RunRecord> {
    let order: std::collections::HashMap<(String, u32), usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| ((j.case.id.clone(), j.run), i))
        .collect();
    let (sender, mut receiver) = mpsc::channel(jobs.len().max(1));
    let runner = execute(context, jobs.into_iter(), concurrency, sender);
    let gather = async {
        let mut records = Vec::new();
        while let Some(event) = receiver.recv().await {
            if let Event::RunFinished(record) = event {
                records.push(*record);
            }
        }
        records
    };
    let ((), mut records) = tokio::join!(runner, gather);
    records.sort_by_key(|r| order.get(&(r.case.clone(), r.run)).copied());
    records
}

async fn run_one(context: &RunContext, job: &Job) -> RunRecord {
    if !job.case.turns.is_empty() {
        return run_conversation(context, job).await;
    }
    let started_at_ns = now_ns();
    let asked = Asked {
        history: &[],
        question: &job.case.question,
        expect: job.case.expect.as_ref(),
        rules: &context.rules,
        seed: job.seed,
    };
    let answered = ask(
        context,
        &job.case.vars,
        &asked,
        None,
        context.intervention.as_ref(),
    )
    .await;
    let identity = RunIdentity {
        case: &job.case.id,
        run: job.run,
        seed: job.seed,
        question: &job.case.question,
        started_at_ns,
        duration_ms: answered.chain_ms,
    };
    record(identity, answered.outcome, &context.rules, asked.expect)
}

/// What one question (a case's, or a turn's) was judged against.
struct Asked<'a> {
    /// The conversation before the question (empty for a single question).
    history: &'a [crate::model::record::Message],
    question: &'a str,
    expect: Option<&'a Expect>,
    rules: &'a [RuleSpec],
    seed: u64,
}

/// The judge's verdicts on every judged check of the run (rules by id, the case's answer
/// expectation as `expect.answer`), each with its EVALUATOR span in the output's trace.
async fn judge_output(
    judge: &Judge,
    asked: &Asked<'_>,
    output: &mut ChainOutput,
) -> Result<Judgements, crate::judge::JudgeError> {
    let expect = asked.expect;
    let mut checks: Vec<(String, &crate::suite::schema::JudgeCheck)> = asked
        .rules
        .iter()
        .filter_map(|r| Some((r.id.clone(), r.answer.as_ref()?.judge.as_ref()?)))
        .collect();
    if let Some(check) = expect.and_then(|e| e.answer.as_ref()?.judge.as_ref()) {
        checks.push((crate::checks::EXPECT_ANSWER.to_owned(), check));
    }
    if checks.is_empty() {
        return Ok(Judgements::new());
    }
    let inputs = JudgeInputs {
        history: asked.history,
        question: asked.question,
        answer: &output.answer,
        documents: &output.retrieved,
        reference: expect.and_then(|e| e.reference_answer.as_deref()),
    };
    judge
        .judge_run(&checks, &inputs, asked.seed, &mut output.trace)
        .await
}

/// One run of a conversation case: its turns in order, each asked with the history before
/// it (the chain's own answers, or the suite's scripted ones), under one trace with a span
/// per turn. A turn that errors ends the run (the turns after it would have no history);
/// a turn that fails does not.
async fn run_conversation(context: &RunContext, job: &Job) -> RunRecord {
    use crate::model::record::{Message, TurnRecord};
    use crate::trace::{SpanKind, SpanStatus, TraceBuilder};
    let started_at_ns = now_ns();
    let clock = Instant::now();
    let mut trace = TraceBuilder::new();
    let mut root = trace.start("conversation", SpanKind::Chain, None);
    // The session id exported traces carry (`otlp::exported`), given to the chain too.
    let session = format!("ragprobe-{}", trace.trace_id());
    root.set("case", job.case.id.as_str());
    root.set("turns", job.case.turns.len());
    let mut history: Vec<Message> = Vec::new();
    let mut turns: Vec<TurnRecord> = Vec::new();
    let mut waited_ms = 0.0;
    for (index, spec) in job.case.turns.iter().enumerate() {
        let number = index as u32 + 1;
        let mut span = trace.start(&format!("turn {number}"), SpanKind::Chain, Some(&root));
        span.set("turn", number);
        span.set("question", spec.question.as_str());
        let turn_clock = Instant::now();
        let mut turn = TurnRecord {
            turn: number,
            question: spec.question.clone(),
            scripted: false,
            status: RunStatus::Error,
            error: None,
            retrieved: Vec::new(),
            prompt: String::new(),
            answer: String::new(),
            verdict: None,
            duration_ms: 0.0,
            span_id: Some(span.id().to_owned()),
        };
        if let Some(answer) = &spec.answer {
            span.set("scripted", true);
            turn.scripted = true;
            turn.status = RunStatus::Passed;
            turn.answer = answer.clone();
        } else {
            let seed = turn_seed(job.seed, number);
            let rules: Vec<RuleSpec> = context
                .rules
                .iter()
                .filter(|r| !spec.skip.contains(&r.id))
                .cloned()
                .collect();
            let asked = Asked {
                history: &history,
                question: &spec.question,
                expect: spec.expect.as_ref(),
                rules: &rules,
                seed,
            };
            let conversation = crate::chain::Conversation {
                session: &session,
                history: &history,
                turn: number,
            };
            // Triage's edits are about the turn under test, the last one.
            let last = index + 1 == job.case.turns.len();
            let intervention = context.intervention.as_ref().filter(|_| last);
            let outcome = ask(
                context,
                &job.case.vars,
                &asked,
                Some(conversation),
                intervention,
            )
            .await
            .outcome;
            let sub_trace = match &outcome {
                Ok(judged) => Some(&judged.output.trace),
                Err(failure) => failure.trace.as_ref(),
            };
            waited_ms += span_wait_ms(sub_trace);
            for adopted in sub_trace.into_iter().flat_map(|t| t.spans.iter()) {
                trace.adopt(adopted.clone(), span.id());
            }
            match outcome {
                Ok(JudgedOutput { output, judgements }) => {
                    let verdict = judge(
                        &rules,
                        spec.expect.as_ref(),
                        &output.retrieved,
                        &output.answer,
                        &judgements,
                    );
                    turn.status = verdict.status();
                    turn.verdict = Some(verdict);
                    turn.retrieved = output.retrieved;
                    turn.prompt = output.prompt;
                    turn.answer = output.answer;
                }
                Err(failure) => turn.error = Some(failure.error.to_string()),
            }
        }
        turn.duration_ms = turn_clock.elapsed().as_secs_f64() * 1000.0;
        let status = match &turn.error {
            Some(message) => SpanStatus::Error {
                message: message.clone(),
            },
            None => SpanStatus::Ok,
        };
        span.set("status", turn.status.label());
        trace.end(span, status);
        let ended = turn.error.is_some();
        if !ended {
            history.extend(Message::exchange(&turn.question, &turn.answer));
        }
        turns.push(turn);
        if ended {
            break;
        }
    }
    let duration_ms = (clock.elapsed().as_secs_f64() * 1000.0 - waited_ms).max(0.0);
    let mut record = unanswered(RunIdentity {
        case: &job.case.id,
        run: job.run,
        seed: job.seed,
        question: &job.case.question,
        started_at_ns,
        duration_ms,
    });
    record.turns = turns;
    let errored = record.turns.iter().find(|t| t.error.is_some()).cloned();
    if let Some((retrieved, prompt, answer)) = record
        .deciding_turn()
        .map(|t| (t.retrieved.clone(), t.prompt.clone(), t.answer.clone()))
    {
        record.retrieved = retrieved;
        record.prompt = prompt;
        record.answer = answer;
    }
    // A turn that failed before one that errored is a wrong answer the run did give: the
    // run fails (the error kept beside it) rather than vanish among the errors.
    let failed_before = record.turns.iter().any(|t| t.status == RunStatus::Failed);
    match errored {
        Some(turn) if failed_before => {
            let message = turn.error.clone().unwrap_or_default();
            record.error = Some(format!("turn {}: {message}", turn.turn));
            record.verdict = Some(crate::checks::join_turns(&record.turns));
            record.status = RunStatus::Failed;
            root.set("status", "failed");
            trace.end(root, SpanStatus::Error { message });
        }
        Some(turn) => {
            let message = turn.error.clone().unwrap_or_default();
            record.error = Some(format!("turn {}: {message}", turn.turn));
            root.set("status", "error");
            trace.end(root, SpanStatus::Error { message });
        }
        None => {
            let verdict = crate::checks::join_turns(&record.turns);
            record.status = verdict.status();
            record.verdict = Some(verdict);
            trace.end(root, SpanStatus::Ok);
        }
    }
    record.trace = Some(trace.finish());
    record
}

/// A turn's seed: the run's for the first turn, a different one for each turn after, so
/// a sampling chain does not answer every turn with the same draw.
fn turn_seed(seed: u64, turn: u32) -> u64 {
    seed.wrapping_add(u64::from(turn - 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// A chain's output with the judge's verdicts on it.
struct JudgedOutput {
    output: ChainOutput,
    judgements: Judgements,
}

/// One question asked: its output (or why there is none), and how long the chain took.
struct Answered {
    outcome: Result<JudgedOutput, ChainFailure>,
    /// The chain's answer time: the wait for a service's exported spans (a batch processor
    /// sends them seconds later) is its own figure, `received_wait_ms` on the root span,
    /// and the judge's time is not the chain's.
    chain_ms: f64,
}

/// Asks one question (a case's, or a conversation's turn) within the run's timeout (each
/// turn has the whole `timeout_ms`) and judges its answer.
async fn ask(
    context: &RunContext,
    vars: &serde_json::Map<String, serde_json::Value>,
    asked: &Asked<'_>,
    conversation: Option<crate::chain::Conversation<'_>>,
    intervention: Option<&Intervention>,
) -> Answered {
    let clock = Instant::now();
    let invocation = tokio::time::timeout(
        context.timeout,
        context
            .chain
            .invoke(asked.question, vars, asked.seed, intervention, conversation),
    )
    .await;
    let waited_ms = match &invocation {
        Ok(Ok(output)) => span_wait_ms(Some(&output.trace)),
        Ok(Err(failure)) => span_wait_ms(failure.trace.as_ref()),
        Err(_) => 0.0,
    };
    let chain_ms = (clock.elapsed().as_secs_f64() * 1000.0 - waited_ms).max(0.0);
    let mut output = match invocation {
        Ok(Ok(output)) => output,
        Ok(Err(failure)) => {
            return Answered {
                outcome: Err(failure),
                chain_ms,
            };
        }
        Err(_elapsed) => {
            let failure = ChainFailure {
                error: ChainError::TimedOut(context.timeout.as_millis()),
                trace: None,
            };
            return Answered {
                outcome: Err(failure),
                chain_ms,
            };
        }
    };
    let judgements = match &context.judge {
        Some(judge) => match judge_output(judge, asked, &mut output).await {
            Ok(judgements) => judgements,
            Err(error) => {
                let failure = ChainFailure {
                    error: ChainError::Judge(error.to_string()),
                    trace: Some(output.trace),
                };
                return Answered {
                    outcome: Err(failure),
                    chain_ms,
                };
            }
        },
        None => Judgements::new(),
    };
    Answered {
        outcome: Ok(JudgedOutput { output, judgements }),
        chain_ms,
    }
}

/// The record with every secret ragprobe holds replaced, in every string it carries
/// (answer, error, documents, trace attributes): a server that echoes the request's
/// headers into its reply must not put the API key into runs.jsonl or any report. Every
/// reporter sees the record after this.
fn without_secrets(record: RunRecord) -> RunRecord {
    if !secrets::holds_secrets() {
        return record;
    }
    let Ok(mut value) = serde_json::to_value(&record) else {
        return record;
    };
    scrub_strings(&mut value);
    serde_json::from_value(value).unwrap_or(record)
}

fn scrub_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let std::borrow::Cow::Owned(clean) = secrets::scrub(text) {
                *text = clean;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub_strings),
        serde_json::Value::Object(map) => map.values_mut().for_each(scrub_strings),
        _ => {}
    }
}

/// Which run a record is, and when it ran.
/// How long the run waited for the service's spans, as its root span records it.
fn span_wait_ms(trace: Option<&crate::trace::Trace>) -> f64 {
    trace
        .and_then(|t| t.spans.iter().find(|s| s.parent_span_id.is_none()))
        .and_then(|root| root.attributes.get("received_wait_ms"))
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0)
}

struct RunIdentity<'a> {
    case: &'a str,
    run: u32,
    seed: u64,
    question: &'a str,
    started_at_ns: u64,
    duration_ms: f64,
}

/// The record of one invocation: judged when it produced an output, an error (never a
/// wrong answer) when it did not.
fn record(
    identity: RunIdentity<'_>,
    outcome: Result<JudgedOutput, ChainFailure>,
    rules: &[RuleSpec],
    expect: Option<&Expect>,
) -> RunRecord {
    let mut record = unanswered(identity);
    match outcome {
        Ok(JudgedOutput { output, judgements }) => {
            let verdict = judge(
                rules,
                expect,
                &output.retrieved,
                &output.answer,
                &judgements,
            );
            record.status = verdict.status();
            record.verdict = Some(verdict);
            record.retrieved = output.retrieved;
            record.prompt = output.prompt;
            record.answer = output.answer;
            record.trace = Some(output.trace);
        }
        Err(failure) => {
            record.error = Some(failure.error.to_string());
            record.trace = failure.trace;
        }
    }
    record
}

/// A run's record before anything is known of its answer: an error until judged.
fn unanswered(identity: RunIdentity<'_>) -> RunRecord {
    RunRecord {
        case: identity.case.to_owned(),
        run: identity.run,
        seed: identity.seed,
        question: identity.question.to_owned(),
        status: RunStatus::Error,
        error: None,
        retrieved: Vec::new(),
        prompt: String::new(),
        answer: String::new(),
        verdict: None,
        duration_ms: identity.duration_ms,
        started_at_ns: identity.started_at_ns,
        trace: None,
        usage: None,
        turns: Vec::new(),
    }
}
