//! `ragprobe repro` and `ragprobe triage`: inputs resolved into a [`Target`], the work
//! done by `crate::repro`, the findings printed.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::chain::Chain;
use crate::chain::build::load_chain;
use crate::chain::corpus::Corpus;
use crate::cli::{ReproArgs, ReproTarget, TriageArgs};
use crate::commands::common::runtime;
use crate::commands::receive::Receivers;
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::import::read_trace_file;
use crate::out;
use crate::report::repro_text;
use crate::repro::{Bad, Stopping, Target, reproduce};
use crate::rules::Where;
use crate::suite::append::{AnswerExpectation, NewCase, append};
use crate::suite::load::{load_with, merged_vars};
use crate::suite::schema::{AnswerCheck, CaseSpec, DEFAULT_TIMEOUT_MS, RetrievedRule, RuleSpec};

pub fn repro(args: ReproArgs) -> Result<Outcome, AppError> {
    if !(args.precision > 0.0 && args.precision < 0.5) {
        return Err(AppError::Usage(
            "--precision is a half-width between 0 and 0.5, e.g. 0.1".into(),
        ));
    }
    if args.max_runs == 0 {
        return Err(AppError::Usage("--max-runs must be at least 1".into()));
    }
    let mut target = resolve(&args.target)?;
    if args.save_case.is_some() && target.earlier.is_some() {
        return Err(AppError::Usage(
            "--save-case appends a single question; for a conversation, add `expect:` to the turn in its case"
                .into(),
        ));
    }
    let runtime = runtime()?;
    let stopping = Stopping {
        precision: args.precision,
        min_runs: args.min_runs.min(args.max_runs),
        max_runs: args.max_runs,
    };
    let mut receivers = Receivers::default();
    let result = runtime.block_on(async {
        prepare(&mut target, &mut receivers, &args.target).await?;
        Ok::<_, AppError>(reproduce(&target, stopping).await)
    })?;
    out::print(&repro_text::render_repro(&target, &result, stopping));
    receivers.summarize(false);
    let (bad, judged) = result.counts();
    if judged == 0 {
        return Ok(Outcome::Infrastructure);
    }
    if let (Some(path), true) = (&args.save_case, bad > 0) {
        save_case(path, &target, &args.target)?;
    }
    Ok(if bad > 0 {
        Outcome::Ok
    } else {
        Outcome::ChecksFailed
    })
}

pub fn triage(args: TriageArgs) -> Result<Outcome, AppError> {
    let mut target = resolve(&args.target)?.for_edited_context();
    if args.runs == 0 {
        return Err(AppError::Usage("--runs must be at least 1".into()));
    }
    let runtime = runtime()?;
    let mut receivers = Receivers::default();
    let result = runtime.block_on(async {
        prepare(&mut target, &mut receivers, &args.target).await?;
        Ok::<_, AppError>(crate::repro::triage(&target, args.runs).await)
    })?;
    out::print(&repro_text::render_triage(&target, &result, args.runs));
    receivers.summarize(false);
    // Every run of (a) errored: the chain could not be evaluated, as for `repro`.
    if result.conditions.first().is_some_and(|a| a.judged == 0) {
        return Ok(Outcome::Infrastructure);
    }
    let reproduced = result.conditions.first().is_some_and(|a| a.bad > 0);
    Ok(if reproduced {
        Outcome::Ok
    } else {
        Outcome::ChecksFailed
    })
}

/// Before the first run: the receiver for the service's spans, and with `--history
/// scripted` the earlier turns asked once.
async fn prepare(
    target: &mut Target,
    receivers: &mut Receivers,
    args: &ReproTarget,
) -> Result<(), AppError> {
    receivers
        .attach(&target.chain, args.receive_otlp.as_deref(), false)
        .await?;
    target.script_history().await.map_err(AppError::Unavailable)
}

/// Suite, case, chain, question, trace and flags into one target.
fn resolve(args: &ReproTarget) -> Result<Target, AppError> {
    let mut rules = Vec::new();
    if let Some(text) = &args.rule {
        rules.push(rule_flag(text)?);
    }
    let source = match &args.suite {
        Some(path) => from_suite(path, args, &mut rules)?,
        None => from_chain(args)?,
    };
    let trace_question = match &args.trace {
        Some(path) => {
            let document = read_trace_file(path).map_err(|e| AppError::Usage(e.to_string()))?;
            let observed = crate::import::observe(&document, None)
                .map_err(|e| AppError::Usage(format!("{}: {e}", path.display())))?;
            Some(observed.question)
        }
        None => None,
    };
    let case = source.case;
    let turn = conversation_turn(case.as_ref(), args)?;
    let question = args
        .question
        .clone()
        .or(trace_question)
        .or_else(|| turn.as_ref().map(|t| t.asked.question.clone()))
        .or_else(|| case.as_ref().map(|c| c.question.clone()))
        .ok_or_else(|| AppError::Usage("give --question, --trace or --case".into()))?;
    let bad = match &args.bad {
        Some(text) => Bad::Answer(parse_check(text)?),
        None if case.is_some() => Bad::FailedVerdict,
        None => {
            return Err(AppError::Usage(
                "give --bad 'matches: …' (what makes an answer bad), or --suite with --case".into(),
            ));
        }
    };
    let mut vars = source.vars;
    vars.extend(var_flags(&args.vars)?);
    // A template that fails for this question would fail every one of up to --max-runs
    // runs: found now, as `validate` finds it, before the first run.
    let sample: Vec<&crate::chain::corpus::Document> = source
        .corpus
        .iter()
        .flat_map(|c| c.documents.iter())
        .take(4)
        .collect();
    let history = turn
        .as_ref()
        .map(|t| crate::suite::load::sample_history(&t.earlier));
    let conversation =
        turn.as_ref()
            .zip(history.as_deref())
            .map(|(t, history)| crate::chain::Conversation {
                session: "ragprobe-repro",
                history,
                turn: t.number,
            });
    if turn.is_some()
        && let Err(why) = source.chain.carries_history()
    {
        return Err(AppError::Usage(format!(
            "{}: the case is a conversation, but the chain cannot carry its history: {why}",
            source.name
        )));
    }
    source
        .chain
        .check_render(&question, &vars, &sample, conversation)
        .map_err(|err| {
            AppError::Usage(format!(
                "{}: {err} (variables: the suite's `vars`, and --var NAME=VALUE)",
                source.name
            ))
        })?;
    Ok(Target {
        chain: source.chain,
        judge: source.judge,
        question,
        vars,
        rules,
        expect: match &turn {
            Some(turn) => turn.asked.expect.clone(),
            None => case.and_then(|c| c.expect),
        },
        skip: turn
            .as_ref()
            .map(|t| t.asked.skip.clone())
            .unwrap_or_default(),
        scripted_history: args.history == crate::cli::HistoryArg::Scripted,
        earlier: turn.map(|t| t.earlier),
        corpus: source.corpus,
        bad,
        label: source.label,
        suite: source.name,
        seed: if args.seed != 1 {
            args.seed
        } else {
            source.seed
        },
        concurrency: args.concurrency.max(1),
        timeout: std::time::Duration::from_millis(
            args.timeout_ms.unwrap_or(source.timeout_ms).max(1),
        ),
    })
}

/// The turn of a conversation case to reproduce, and the turns before it.
struct ChosenTurn {
    number: u32,
    asked: crate::suite::schema::TurnSpec,
    earlier: Vec<crate::suite::schema::TurnSpec>,
}

/// `--turn N` of a conversation `--case` (the last by default); `None` for a single
/// question, where `--turn` is refused.
fn conversation_turn(
    case: Option<&CaseSpec>,
    args: &ReproTarget,
) -> Result<Option<ChosenTurn>, AppError> {
    let Some(turns) = case.and_then(|c| c.turns.as_ref()) else {
        if args.turn.is_some() || args.history == crate::cli::HistoryArg::Scripted {
            return Err(AppError::Usage(
                "--turn and --history are for a conversation case; this case has one question"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let number = args.turn.unwrap_or(turns.len() as u32);
    let Some(asked) = turns.get(number as usize - 1) else {
        return Err(AppError::Usage(format!(
            "--turn {number}: the conversation has {} turns",
            turns.len()
        )));
    };
    if asked.answer.is_some() {
        return Err(AppError::Usage(format!(
            "--turn {number}: that turn's answer is scripted, so it is never asked; pick a turn the chain answers"
        )));
    }
    Ok(Some(ChosenTurn {
        number,
        asked: asked.clone(),
        earlier: turns[..number as usize - 1].to_vec(),
    }))
}

/// What the question is asked of, and the defaults that come with it.
struct Source {
    chain: Arc<Chain>,
    judge: Option<Arc<crate::judge::Judge>>,
    corpus: Option<Arc<Corpus>>,
    case: Option<CaseSpec>,
    /// The case id, or `repro`.
    label: String,
    seed: u64,
    /// The suite's name, or the chain file.
    name: String,
    timeout_ms: u64,
    vars: Map<String, Value>,
}

/// A suite (and `--case`): its chain, rules, case, variables and settings.
fn from_suite(
    path: &std::path::Path,
    args: &ReproTarget,
    rules: &mut Vec<RuleSpec>,
) -> Result<Source, AppError> {
    let suite = load_with(path, args.chain.as_deref())?;
    rules.extend(suite.spec.rules.iter().cloned());
    let case = match &args.case {
        Some(id) => Some(
            suite
                .spec
                .cases
                .iter()
                .find(|c| &c.id == id)
                .cloned()
                .ok_or_else(|| AppError::Usage(format!("{}: no case `{id}`", path.display())))?,
        ),
        None => None,
    };
    let vars = merged_vars(
        &suite.spec.vars,
        case.as_ref().map(|c| &c.vars).unwrap_or(&Map::new()),
    );
    Ok(Source {
        label: case.as_ref().map_or("repro".to_owned(), |c| c.id.clone()),
        case,
        chain: suite.chain,
        judge: suite.judge,
        corpus: suite.corpus,
        seed: suite.spec.seed.unwrap_or(args.seed),
        name: suite.spec.name.clone(),
        timeout_ms: suite.spec.timeout_ms,
        vars,
    })
}

/// A chain file on its own.
fn from_chain(args: &ReproTarget) -> Result<Source, AppError> {
    let Some(chain) = &args.chain else {
        return Err(AppError::Usage(
            "give --chain FILE (with --question or --trace), or --suite FILE --case ID".into(),
        ));
    };
    let loaded = load_chain(chain)?;
    Ok(Source {
        chain: Arc::new(loaded.chain),
        judge: None,
        corpus: loaded.corpus,
        case: None,
        label: "repro".to_owned(),
        seed: args.seed,
        name: chain.display().to_string(),
        timeout_ms: DEFAULT_TIMEOUT_MS,
        vars: Map::new(),
    })
}

/// `--var NAME=VALUE`, each.
fn var_flags(pairs: &[String]) -> Result<Map<String, Value>, AppError> {
    let mut vars = Map::new();
    for pair in pairs {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| AppError::Usage(format!("--var {pair}: write NAME=VALUE")))?;
        vars.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    Ok(vars)
}

/// `--rule WHERE`: every retrieved document must match.
fn rule_flag(text: &str) -> Result<RuleSpec, AppError> {
    let filter: Where =
        serde_yaml::from_str(text).map_err(|e| AppError::Usage(format!("--rule {text}: {e}")))?;
    Ok(RuleSpec {
        id: "rule".into(),
        description: None,
        severity: Default::default(),
        max_rate: None,
        retrieved: Some(RetrievedRule::Every(filter)),
        // The bad answer is a document that does not match; none at all is not it.
        allow_empty: true,
        answer: None,
    })
}

/// `matches: t4g\.micro` or `{contains: [AWS]}` into an answer check.
fn parse_check(text: &str) -> Result<AnswerCheck, AppError> {
    let yaml = if text.trim_start().starts_with('{') {
        text.to_owned()
    } else {
        format!("{{{text}}}")
    };
    let check: AnswerCheck = serde_yaml::from_str(&yaml).map_err(|e| {
        AppError::Usage(format!(
            "--bad {text}: {e}; write e.g. 'matches: t4g\\.micro' or 'contains: [AWS]'"
        ))
    })?;
    if check.is_empty() {
        return Err(AppError::Usage(format!("--bad {text}: checks nothing")));
    }
    Ok(check)
}

/// Appends the question as a case whose answer must not be the bad one.
fn save_case(path: &std::path::Path, target: &Target, args: &ReproTarget) -> Result<(), AppError> {
    let expect = match &target.bad {
        Bad::Answer(check) => Some(AnswerExpectation {
            answer: invert(check)?,
        }),
        Bad::FailedVerdict | Bad::FailedAnswerChecks(_) => None,
    };
    let case = NewCase {
        id: format!(
            "repro-{:08x}",
            crate::seed::stable_hash(&[target.question.as_bytes()]) as u32
        ),
        question: target.question.clone(),
        turns: Vec::new(),
        tags: vec!["repro".into(), "regression".into()],
        expect,
    };
    let comments = [format!(
        "Reproduced by `ragprobe repro`: {}.",
        target.bad.describe()
    )];
    let id = append(
        path,
        args.chain.as_deref().or(args.suite.as_deref()),
        &comments,
        case,
    )?;
    out::println(&format!("\nsaved case `{id}` to {}", path.display()));
    Ok(())
}

/// The check a good answer passes: the bad check turned around.
fn invert(check: &AnswerCheck) -> Result<AnswerCheck, AppError> {
    if check.grounded.is_some() {
        return Err(AppError::Usage(
            "--save-case: `grounded` has no inverse (an answer is not \"ungrounded\" by rule); write the case by hand".into(),
        ));
    }
    let mut good = AnswerCheck {
        ignore_case: check.ignore_case,
        ..Default::default()
    };
    good.not_matches = check.matches.clone();
    good.matches = check.not_matches.clone();
    good.not_contains = check.contains.clone();
    good.contains_any = check.not_contains.clone();
    if check.contains_any.is_some() {
        if good.not_contains.is_some() {
            return Err(AppError::Usage(
                "--save-case: a --bad with both contains and contains_any has no single inverse; write the case by hand".into(),
            ));
        }
        good.not_contains = check.contains_any.clone();
    }
    Ok(good)
}
