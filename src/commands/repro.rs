//! `ragprobe repro` and `ragprobe triage`: inputs resolved into a [`Target`], the work
//! done by `crate::repro`, the findings printed.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::chain::Chain;
use crate::chain::build::load_chain;
use crate::cli::{ReproArgs, ReproTarget, TriageArgs};
use crate::commands::common::runtime;
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::import::read_trace_file;
use crate::report::trace_tree;
use crate::repro::{
    Bad, Reproduction, Stop, Stopping, Target, contrasts, prompt_lengths, reproduce, temperatures,
};
use crate::rules::Where;
use crate::stats::{percent, wilson};
use crate::suite::append::{NewCase, append};
use crate::suite::load::{load_with, merged_vars};
use crate::suite::schema::{AnswerCheck, DEFAULT_TIMEOUT_MS, RetrievedRule, RuleSpec};

pub fn repro(args: ReproArgs) -> Result<Outcome, AppError> {
    if !(args.precision > 0.0 && args.precision < 0.5) {
        return Err(AppError::Usage(
            "--precision is a half-width between 0 and 0.5, e.g. 0.1".into(),
        ));
    }
    if args.max_runs == 0 {
        return Err(AppError::Usage("--max-runs must be at least 1".into()));
    }
    let target = resolve(&args.target)?;
    let runtime = runtime()?;
    let stopping = Stopping {
        precision: args.precision,
        min_runs: args.min_runs.min(args.max_runs),
        max_runs: args.max_runs,
    };
    let result = runtime.block_on(reproduce(&target, stopping));
    print!("{}", render_repro(&target, &result, stopping));
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
    let target = resolve(&args.target)?;
    let Chain::Pipeline(pipeline) = target.chain.as_ref() else {
        return Err(AppError::Usage(
            "triage edits the context between retrieval and generation, so it needs a pipeline chain (http and command chains assemble their own)".into(),
        ));
    };
    if args.runs == 0 {
        return Err(AppError::Usage("--runs must be at least 1".into()));
    }
    let runtime = runtime()?;
    let result = runtime.block_on(crate::repro::triage(&target, pipeline, args.runs));
    let mut out = String::new();
    let _ = writeln!(out, "triage: {:?}", target.question);
    let _ = writeln!(out, "chain: {}", target.chain.describe());
    let _ = writeln!(out, "bad answer: {}", target.bad.describe());
    let _ = writeln!(
        out,
        "{} runs per condition, the same seeds in each\n",
        args.runs
    );
    let _ = writeln!(
        out,
        "{:<44} {:>5} {:>4} {:>7}  95% CI",
        "condition", "runs", "bad", "rate"
    );
    for c in &result.conditions {
        let [low, high] = wilson(c.bad, c.judged);
        let errors = if c.errors > 0 {
            format!("  ({} errors)", c.errors)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:<44} {:>5} {:>4} {:>7}  [{}, {}]{errors}",
            format!("({}) {}", c.key, c.label),
            c.judged,
            c.bad,
            percent(c.rate()),
            percent(low),
            percent(high)
        );
    }
    match &result.replay {
        Some(replay) => {
            let docs: Vec<String> = replay
                .documents
                .iter()
                .map(|d| {
                    let mark = result
                        .violators
                        .iter()
                        .find(|(id, _, _)| id == &d.id)
                        .map(|(_, _, rule)| format!(" ✗ {rule}"))
                        .unwrap_or_default();
                    format!("{} {}{mark}", d.id, Value::Object(d.metadata.clone()))
                })
                .collect();
            let _ = writeln!(
                out,
                "(e) retriever replayed: query = the question verbatim, filter {}: {} — {} on {} replays",
                replay.filter.as_deref().unwrap_or("none"),
                docs.join(", "),
                if replay.deterministic {
                    "the same"
                } else {
                    "different"
                },
                replay.replays
            );
        }
        None => {
            let _ = writeln!(out, "(e) retriever replay failed: see the runs' errors");
        }
    }
    let _ = writeln!(out, "\ncause: {}.", result.cause);
    if let Some(fix) = &result.fix {
        let _ = writeln!(out, "suggested fix: {fix}");
    }
    print!("{out}");
    let reproduced = result.conditions.first().is_some_and(|a| a.bad > 0);
    Ok(if reproduced {
        Outcome::Ok
    } else {
        Outcome::ChecksFailed
    })
}

/// Suite, case, chain, question, trace and flags into one target.
fn resolve(args: &ReproTarget) -> Result<Target, AppError> {
    let mut vars = Map::new();
    for pair in &args.vars {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| AppError::Usage(format!("--var {pair}: write NAME=VALUE")))?;
        vars.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    let mut rules = Vec::new();
    if let Some(text) = &args.rule {
        let filter: Where = serde_yaml::from_str(text)
            .map_err(|e| AppError::Usage(format!("--rule {text}: {e}")))?;
        rules.push(RuleSpec {
            id: "rule".into(),
            description: None,
            severity: Default::default(),
            max_rate: None,
            retrieved: Some(RetrievedRule::Every(filter)),
            answer: None,
        });
    }
    let trace_question = match &args.trace {
        Some(path) => {
            let document = read_trace_file(path).map_err(|e| AppError::Usage(e.to_string()))?;
            let observed = crate::import::observe(&document, None)
                .map_err(|e| AppError::Usage(format!("{}: {e}", path.display())))?;
            Some(observed.question)
        }
        None => None,
    };
    let (chain, corpus, case, label, seed, suite_name, timeout_ms) = match &args.suite {
        Some(path) => {
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
                        .ok_or_else(|| {
                            AppError::Usage(format!("{}: no case `{id}`", path.display()))
                        })?,
                ),
                None => None,
            };
            let mut merged = merged_vars(
                &suite.spec.vars,
                case.as_ref().map(|c| &c.vars).unwrap_or(&Map::new()),
            );
            merged.extend(vars.clone());
            vars = merged;
            let label = case.as_ref().map_or("repro".to_owned(), |c| c.id.clone());
            (
                suite.chain,
                suite.corpus,
                case,
                label,
                suite.spec.seed.unwrap_or(args.seed),
                suite.spec.name.clone(),
                suite.spec.timeout_ms,
            )
        }
        None => {
            let Some(chain) = &args.chain else {
                return Err(AppError::Usage(
                    "give --chain FILE (with --question or --trace), or --suite FILE --case ID"
                        .into(),
                ));
            };
            let loaded = load_chain(chain)?;
            (
                Arc::new(loaded.chain),
                loaded.corpus,
                None,
                "repro".to_owned(),
                args.seed,
                chain.display().to_string(),
                DEFAULT_TIMEOUT_MS,
            )
        }
    };
    let question = args
        .question
        .clone()
        .or(trace_question)
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
    Ok(Target {
        chain,
        question,
        vars,
        rules,
        expect: case.and_then(|c| c.expect),
        corpus,
        bad,
        label,
        suite: suite_name,
        seed: if args.seed != 1 { args.seed } else { seed },
        concurrency: args.concurrency.max(1),
        timeout: std::time::Duration::from_millis(args.timeout_ms.unwrap_or(timeout_ms).max(1)),
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

fn render_repro(target: &Target, result: &Reproduction, stopping: Stopping) -> String {
    let mut out = String::new();
    let (bad, judged) = result.counts();
    let errors = result.samples.len() as u32 - judged;
    let [low, high] = wilson(bad, judged);
    let _ = writeln!(out, "repro: {:?}", target.question);
    let _ = writeln!(out, "chain: {}", target.chain.describe());
    let _ = writeln!(out, "bad answer: {}", target.bad.describe());
    let why = match result.stop {
        Stop::Precise => format!(
            "stopped when the 95% interval was within ±{}",
            percent(stopping.precision)
        ),
        Stop::Budget => format!("stopped at the budget of {} runs", stopping.max_runs),
    };
    let error_note = if errors > 0 {
        format!(", {errors} errors not counted")
    } else {
        String::new()
    };
    let _ = writeln!(out, "runs: {} ({why}{error_note})", result.samples.len());
    let _ = writeln!(
        out,
        "bad runs: {bad} of {judged} · reproduction rate {} [{}, {}] (95% Wilson)",
        percent(f64::from(bad) / f64::from(judged.max(1))),
        percent(low),
        percent(high)
    );
    let Some(first) = result.first_bad() else {
        let _ = match result.stop {
            Stop::Budget => writeln!(out, "\nnot reproduced within the budget"),
            Stop::Precise => writeln!(
                out,
                "\nnot reproduced: at most {} of runs give this answer (95% upper bound)",
                percent(high)
            ),
        };
        return out;
    };
    let _ = writeln!(
        out,
        "\nfirst bad run: run {} (seed {})",
        first.record.run, first.record.seed
    );
    out.push_str(&trace_tree::render(&first.record, &target.suite));

    let _ = writeln!(
        out,
        "\nwhat bad runs have in common (share of bad runs vs good runs):"
    );
    let all = contrasts(&result.samples);
    let telling: Vec<_> = all
        .iter()
        .filter(|c| (c.in_bad - c.in_good).abs() >= 0.2)
        .take(8)
        .collect();
    if judged == bad {
        let _ = writeln!(out, "  every run was bad: nothing to contrast");
    } else if telling.is_empty() {
        let constant: Vec<&str> = all
            .iter()
            .filter(|c| c.in_bad == 1.0 && c.in_good == 1.0 && c.feature.starts_with("document"))
            .map(|c| c.feature.as_str())
            .collect();
        let _ = writeln!(
            out,
            "  no retrieved document or metadata value tells bad runs from good ones{}",
            if constant.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} in every run): the difference arises after retrieval, in generation",
                    constant.join(", ")
                )
            }
        );
    }
    for c in telling {
        let direction = if c.in_bad > c.in_good {
            "over"
        } else {
            "under"
        };
        let _ = writeln!(
            out,
            "  {:<44} {:>6} vs {:>6}  {direction}-represented in bad runs",
            c.feature,
            percent(c.in_bad),
            percent(c.in_good)
        );
    }
    let violating: BTreeSetDisplay = first
        .record
        .verdict
        .iter()
        .flat_map(|v| v.rules.iter())
        .filter(|r| !r.passed)
        .map(|r| r.id.clone())
        .collect();
    if !violating.0.is_empty() {
        let _ = writeln!(
            out,
            "  rules the first bad run broke: {}",
            violating.0.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let (bad_len, good_len) = prompt_lengths(&result.samples);
    if judged > bad {
        let _ = writeln!(
            out,
            "  prompt length: {bad_len:.0} chars in bad runs vs {good_len:.0} in good runs"
        );
    }
    let (bad_t, good_t) = temperatures(&result.samples);
    if !bad_t.is_empty() {
        let join = |s: &std::collections::BTreeSet<String>| {
            s.iter().cloned().collect::<Vec<_>>().join(", ")
        };
        let _ = writeln!(
            out,
            "  temperature: {} in bad runs, {} in good runs",
            join(&bad_t),
            if good_t.is_empty() {
                "-".into()
            } else {
                join(&good_t)
            }
        );
    }
    out
}

struct BTreeSetDisplay(std::collections::BTreeSet<String>);

impl FromIterator<String> for BTreeSetDisplay {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        BTreeSetDisplay(iter.into_iter().collect())
    }
}

/// Appends the question as a case whose answer must not be the bad one.
fn save_case(path: &std::path::Path, target: &Target, args: &ReproTarget) -> Result<(), AppError> {
    let expect = match &target.bad {
        Bad::Answer(check) => {
            let good = invert(check)?;
            let answer = serde_yaml::to_value(&good).map_err(|e| AppError::Usage(e.to_string()))?;
            Some(serde_yaml::Value::Mapping(
                [("answer".into(), answer)].into_iter().collect(),
            ))
        }
        Bad::FailedVerdict => None,
    };
    let case = NewCase {
        id: format!(
            "repro-{:08x}",
            crate::seed::stable_hash(&[target.question.as_bytes()]) as u32
        ),
        question: target.question.clone(),
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
    println!("\nsaved case `{id}` to {}", path.display());
    Ok(())
}

/// The check a good answer passes: the bad check turned around.
fn invert(check: &AnswerCheck) -> Result<AnswerCheck, AppError> {
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
