//! Per-case statistics of a report folder: `results.parquet` read back with polars in
//! slices of rows, each case's numbers accumulated as the slices pass, then the few whole
//! records the reports show read from `runs.jsonl` where the parquet rows point. Memory
//! holds one slice and, per case, the run durations (for exact quantiles) and the distinct
//! answer hashes: it stays flat as runs grow.
//!
//! Policy, in one place:
//! - A run *passes* when its case's expectations hold and no `error` rule is violated.
//!   Errored runs (infrastructure) are left out of pass rates: they are not wrong answers.
//! - A rule's violation rate is violations / evaluated runs. When it is within the rule's
//!   `max_rate`, the rule is *tolerated*: runs that failed only because of tolerated rules
//!   count as passing.
//! - A case **fails** when an `error` rule's rate exceeds its `max_rate`, or when its pass
//!   rate is below `min_pass_rate`. It **errors** when no run could be evaluated. It is
//!   **flaky** when it met its thresholds although some runs failed, and **passes** when
//!   every run passed. `warn` rules are reported and never change an outcome.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use polars::prelude::*;

use crate::model::record::{RunRecord, Severity, Usage};
use crate::model::summary::{
    AdaptiveCase, CaseOutcome, CaseStats, FailingRun, Latency, MeanCi, RuleStats, SourceMeans,
    SourceSummary, SuiteStats, TurnBroken, TurnStats,
};
use crate::results::{RESULTS_FILE, RULE_SEPARATOR, ResultsError};
use crate::sequential::{AdaptiveSettings, Stop, Undecided};
use crate::stats::{all_of_k, mean_ci95, percent, ratio, wilson};
use crate::store::read_at;
use crate::suite::Suite;
use crate::suite::adaptive::{Against, replayed};
use crate::suite::schema::CaseSpec;

/// pass^k and pass@k are reported at this k (or the number of runs, if fewer).
pub const K: u32 = 5;
/// Failing runs kept per case for reports (JUnit failure text, markdown).
pub const FAILING_RUNS_KEPT: usize = 5;
/// Rows read from results.parquet at a time.
const SLICE_ROWS: usize = 65_536;

fn failing_run(record: &RunRecord) -> FailingRun {
    let mut broken = Vec::new();
    if let Some(verdict) = &record.verdict {
        for rule in verdict.rules.iter().filter(|r| !r.passed) {
            broken.push(format!(
                "{} ({}): {}",
                rule.id,
                if rule.severity == Severity::Warn {
                    "warn"
                } else {
                    "error"
                },
                rule.detail.as_deref().unwrap_or("violated")
            ));
        }
        for failure in &verdict.failed_expectations {
            broken.push(format!("{}: {}", failure.check, failure.detail));
        }
    }
    FailingRun {
        run: record.run,
        seed: record.seed,
        broken,
        retrieved: record.retrieved.iter().map(|d| d.id.clone()).collect(),
        answer: record.answer.clone(),
    }
}

/// What one case's rows add up to.
#[derive(Default)]
struct CaseNumbers {
    runs: u32,
    errors: u32,
    /// Sums of precision, recall, hit, reciprocal rank and nDCG over runs that have them.
    source_sums: [f64; 6],
    /// Sums of squares of the same, for their spread across runs.
    source_squares: [f64; 6],
    /// The cutoff of the case's metrics (the largest seen; one per case in practice).
    cutoff: usize,
    source_runs: u32,
    durations: Vec<f64>,
    answers: HashSet<u64>,
    /// Rules violated (joined) → runs with expectations held and failed, over evaluated
    /// runs. Keyed by the text alone so a row is counted without allocating.
    signatures: HashMap<String, [u32; 2]>,
    /// Judged rule → evaluated runs on which the judge's repeats disagreed.
    judge_splits: HashMap<String, u32>,
    /// Calls and tokens over every run (errored ones too: they were paid for).
    usage: Usage,
    /// A run made calls without a price: the case's cost is unknown.
    unpriced: bool,
    /// The failing run to show: most broken checks, lowest run index on ties.
    example: Option<(u32, u32, u64)>,
    /// (run, offset) of the first failing runs by run index, at most FAILING_RUNS_KEPT.
    failing_runs: Vec<(u32, u64)>,
    /// The error of the lowest-numbered errored run.
    first_error: Option<(u32, String)>,
}

impl CaseNumbers {
    fn quantile(&self, q: f64) -> f64 {
        crate::stats::nearest_rank(&self.durations, q)
    }
}

/// Aggregates a report folder: numbers from `results.parquet`, then the few example
/// records from `runs.jsonl`.
pub fn aggregate(
    suite: &Suite,
    selected: &[String],
    dir: &Path,
) -> Result<SuiteStats, ResultsError> {
    let mut numbers: HashMap<String, CaseNumbers> = HashMap::new();
    for_each_slice(&dir.join(RESULTS_FILE), |frame| {
        add_slice(&mut numbers, frame)
    })?;
    for n in numbers.values_mut() {
        n.durations.sort_by(f64::total_cmp);
        n.failing_runs.sort_unstable();
    }

    // The few whole records the reports show, read where results.parquet says they are.
    let mut records: HashMap<u64, RunRecord> = HashMap::new();
    for n in numbers.values() {
        let offsets = n.example.iter().map(|e| e.2);
        for offset in offsets.chain(n.failing_runs.iter().map(|(_, o)| *o)) {
            if let std::collections::hash_map::Entry::Vacant(slot) = records.entry(offset) {
                slot.insert(read_at(dir, offset)?);
            }
        }
    }

    let mut turns = turn_stats(dir, suite)?;
    let mut cases = Vec::new();
    let (mut total_runs, mut total_errors) = (0, 0);
    for spec in suite.spec.cases.iter().filter(|c| selected.contains(&c.id)) {
        let n = numbers.remove(&spec.id).unwrap_or_default();
        total_runs += n.runs;
        total_errors += n.errors;
        let min_pass_rate = spec.min_pass_rate.unwrap_or(suite.spec.min_pass_rate).0;
        let mut stats = case_stats(suite, spec, n, &records, min_pass_rate);
        stats.turns = turns.remove(&spec.id).unwrap_or_default();
        cases.push(stats);
    }
    let error_rate = ratio(total_errors, total_runs);
    // The suite's cost is known only when every case that made calls has one.
    let mut usage: Option<Usage> = None;
    let mut unpriced = false;
    for case_usage in cases.iter().filter_map(|c| c.usage.as_ref()) {
        unpriced |= case_usage.cost_usd.is_none();
        usage.get_or_insert_with(Usage::default).add(case_usage);
    }
    if let Some(usage) = usage.as_mut().filter(|_| unpriced) {
        usage.cost_usd = None;
    }
    let sources = source_means(&cases);
    let rates: Vec<(u32, u32)> = cases.iter().map(|c| (c.passed, c.evaluated)).collect();
    let pass_rate = rates
        .iter()
        .any(|(_, n)| *n > 0)
        .then(|| crate::stats::suite_pass_rate(&rates));
    Ok(SuiteStats {
        suite: suite.spec.name.clone(),
        cases,
        runs: total_runs,
        errors: total_errors,
        error_rate,
        max_error_rate: suite.spec.max_error_rate.0,
        errors_exceeded: error_rate > suite.spec.max_error_rate.0 + 1e-12,
        usage,
        sources,
        pass_rate,
    })
}

/// The suite's expected-source metrics: each case's mean over its runs, averaged over the
/// cases that name sources, each with a 95% t-interval over those cases.
fn source_means(cases: &[CaseStats]) -> Option<SourceMeans> {
    let with: Vec<&SourceSummary> = cases.iter().filter_map(|c| c.sources.as_ref()).collect();
    if with.is_empty() {
        return None;
    }
    let over = |f: fn(&SourceSummary) -> f64| {
        let values: Vec<f64> = with.iter().map(|s| f(s)).collect();
        let (mean, [low, high]) = mean_ci95(&values);
        // Every measure lives in [0, 1]; with few cases the t-interval reaches past it.
        MeanCi {
            mean,
            ci95: [low.max(0.0), high.min(1.0)],
        }
    };
    Some(SourceMeans {
        cases: with.len(),
        precision: over(|s| s.precision),
        recall: over(|s| s.recall),
        hit_rate: over(|s| s.hit_rate),
        mrr: over(|s| s.mrr),
        ndcg: over(|s| s.ndcg),
        average_precision: over(|s| s.average_precision),
    })
}

/// The columns aggregation reads.
const COLUMNS: [&str; 24] = [
    "case",
    "run",
    "status",
    "error",
    "expect_failed",
    "violations",
    "judge_split",
    "calls",
    "model_input_tokens",
    "model_output_tokens",
    "judge_input_tokens",
    "judge_output_tokens",
    "cost_usd",
    "broken",
    "precision",
    "recall",
    "hit",
    "reciprocal_rank",
    "ndcg",
    "average_precision",
    "k",
    "answer_hash",
    "duration_ms",
    "offset",
];

/// Calls `each` with results.parquet's rows, `SLICE_ROWS` at a time.
fn for_each_slice(
    path: &Path,
    each: impl FnMut(&DataFrame) -> PolarsResult<()>,
) -> Result<(), ResultsError> {
    for_each_slice_of(path, &COLUMNS, each)
}

/// Calls `each` with `columns` of the file's rows, `SLICE_ROWS` at a time.
fn for_each_slice_of(
    path: &Path,
    columns: &[&str],
    mut each: impl FnMut(&DataFrame) -> PolarsResult<()>,
) -> Result<(), ResultsError> {
    let rows = ParquetReader::new(std::fs::File::open(path)?).num_rows()?;
    let mut offset = 0;
    while offset < rows {
        let frame = ParquetReader::new(std::fs::File::open(path)?)
            .with_columns(Some(columns.iter().map(|c| (*c).to_owned()).collect()))
            .with_slice(Some((offset, SLICE_ROWS)))
            .finish()?;
        each(&frame)?;
        offset += SLICE_ROWS;
    }
    Ok(())
}

fn add_slice(numbers: &mut HashMap<String, CaseNumbers>, frame: &DataFrame) -> PolarsResult<()> {
    let case = frame.column("case")?.str()?;
    let run = frame.column("run")?.u32()?;
    let status = frame.column("status")?.str()?;
    let error = frame.column("error")?.str()?;
    let expect_failed = frame.column("expect_failed")?.bool()?;
    let violations = frame.column("violations")?.str()?;
    // Absent from report folders written before judges and costs.
    let judge_split = frame.column("judge_split").ok().and_then(|c| c.str().ok());
    let counts: Vec<Option<&UInt64Chunked>> = [
        "calls",
        "model_input_tokens",
        "model_output_tokens",
        "judge_input_tokens",
        "judge_output_tokens",
    ]
    .iter()
    .map(|name| frame.column(name).ok().and_then(|c| c.u64().ok()))
    .collect();
    let cost = frame.column("cost_usd").ok().and_then(|c| c.f64().ok());
    let broken = frame.column("broken")?.u32()?;
    let metrics = [
        frame.column("precision")?.f64()?,
        frame.column("recall")?.f64()?,
        frame.column("reciprocal_rank")?.f64()?,
        frame.column("ndcg")?.f64()?,
    ];
    let hit = frame.column("hit")?.bool()?;
    // Absent from report folders written before trec_eval's cutoff metrics.
    let average_precision = frame
        .column("average_precision")
        .ok()
        .and_then(|c| c.f64().ok());
    let cutoff = frame.column("k").ok().and_then(|c| c.u32().ok());
    let answer_hash = frame.column("answer_hash")?.u64()?;
    let duration = frame.column("duration_ms")?.f64()?;
    let offset = frame.column("offset")?.u64()?;
    for row in 0..frame.height() {
        let Some(case) = case.get(row) else { continue };
        let n = match numbers.get_mut(case) {
            Some(n) => n,
            None => numbers.entry(case.to_owned()).or_default(),
        };
        let run = run.get(row).unwrap_or(0);
        let status = status.get(row).unwrap_or("error");
        let offset = offset.get(row).unwrap_or(0);
        n.runs += 1;
        n.durations.push(duration.get(row).unwrap_or(0.0));
        let count = |i: usize| counts[i].and_then(|c| c.get(row)).unwrap_or(0);
        let run_usage = Usage {
            calls: count(0),
            model_input_tokens: count(1),
            model_output_tokens: count(2),
            judge_input_tokens: count(3),
            judge_output_tokens: count(4),
            cost_usd: cost.and_then(|c| c.get(row)),
        };
        n.unpriced |= run_usage.calls > 0 && run_usage.cost_usd.is_none();
        n.usage.add(&run_usage);
        if status == "error" {
            n.errors += 1;
            if n.first_error.as_ref().is_none_or(|(r, _)| run < *r) {
                let text = error.get(row).unwrap_or("no verdict").to_owned();
                n.first_error = Some((run, text));
            }
            continue;
        }
        n.answers.insert(answer_hash.get(row).unwrap_or(0));
        let slot = usize::from(expect_failed.get(row).unwrap_or(false));
        let violated = violations.get(row).unwrap_or("");
        match n.signatures.get_mut(violated) {
            Some(runs) => runs[slot] += 1,
            None => n.signatures.entry(violated.to_owned()).or_default()[slot] += 1,
        }
        for rule in judge_split
            .and_then(|c| c.get(row))
            .unwrap_or("")
            .split(RULE_SEPARATOR)
            .filter(|r| !r.is_empty())
        {
            *n.judge_splits.entry(rule.to_owned()).or_default() += 1;
        }
        if let (Some(precision), Some(recall), Some(rr), Some(ndcg)) = (
            metrics[0].get(row),
            metrics[1].get(row),
            metrics[2].get(row),
            metrics[3].get(row),
        ) {
            let ap = average_precision.and_then(|c| c.get(row)).unwrap_or(0.0);
            n.cutoff = n
                .cutoff
                .max(cutoff.and_then(|c| c.get(row)).unwrap_or(0) as usize);
            let hit = if hit.get(row).unwrap_or(false) {
                1.0
            } else {
                0.0
            };
            for (slot, value) in [precision, recall, hit, rr, ndcg, ap]
                .into_iter()
                .enumerate()
            {
                n.source_sums[slot] += value;
                n.source_squares[slot] += value * value;
            }
            n.source_runs += 1;
        }
        if status == "failed" {
            let broken = broken.get(row).unwrap_or(0);
            let better = n
                .example
                .is_none_or(|(b, r, _)| broken > b || (broken == b && run < r));
            if better {
                n.example = Some((broken, run, offset));
            }
            n.failing_runs.push((run, offset));
            if n.failing_runs.len() > FAILING_RUNS_KEPT {
                n.failing_runs.sort_unstable();
                n.failing_runs.truncate(FAILING_RUNS_KEPT);
            }
        }
    }
    Ok(())
}

/// One case's verdict and numbers, by the policy at the top of this file.
fn case_stats(
    suite: &Suite,
    spec: &CaseSpec,
    n: CaseNumbers,
    records: &HashMap<u64, RunRecord>,
    min_pass_rate: f64,
) -> CaseStats {
    let evaluated = n.runs - n.errors;
    // (expectations failed, rules violated, runs): few per case, whatever the runs.
    let signatures: Vec<(bool, Vec<&str>, u32)> = n
        .signatures
        .iter()
        .flat_map(|(joined, runs)| {
            let rules: Vec<&str> = joined
                .split(RULE_SEPARATOR)
                .filter(|r| !r.is_empty())
                .collect();
            [(false, rules.clone(), runs[0]), (true, rules, runs[1])]
        })
        .filter(|(_, _, runs)| *runs > 0)
        .collect();
    let rules = rule_stats(suite, spec, &signatures, evaluated, &n.judge_splits);
    let verdict = judge_case(&rules, &signatures, &n, min_pass_rate);
    let k = K.min(evaluated);
    let record = |offset: u64| records.get(&offset);
    let mean = |slot: usize| n.source_sums[slot] / f64::from(n.source_runs.max(1));
    // Sample standard deviation across runs: 0 for a deterministic retriever.
    let spread = |slot: usize| {
        let runs = f64::from(n.source_runs);
        if n.source_runs < 2 {
            return 0.0;
        }
        let m = n.source_sums[slot] / runs;
        ((n.source_squares[slot] - runs * m * m) / (runs - 1.0))
            .max(0.0)
            .sqrt()
    };
    let sources = (n.source_runs > 0).then(|| SourceSummary {
        precision: mean(0),
        recall: mean(1),
        hit_rate: mean(2),
        mrr: mean(3),
        ndcg: mean(4),
        average_precision: mean(5),
        k: n.cutoff,
        ndcg_sd: spread(4),
        average_precision_sd: spread(5),
        recall_sd: spread(1),
    });
    let passed = verdict.passed;
    CaseStats {
        id: spec.id.clone(),
        question: spec.question.clone(),
        tags: spec.tags.clone(),
        outcome: verdict.outcome,
        reasons: verdict.reasons,
        runs: n.runs,
        evaluated,
        errors: n.errors,
        passed,
        pass_rate: ratio(passed, evaluated),
        pass_rate_ci95: wilson(passed, evaluated),
        min_pass_rate,
        k,
        pass_all_k: all_of_k(passed, evaluated, k),
        pass_at_k: 1.0 - all_of_k(evaluated - passed, evaluated, k),
        flaky: passed > 0 && passed < evaluated,
        rules,
        sources,
        latency: Latency {
            p50_ms: n.quantile(0.5),
            p95_ms: n.quantile(0.95),
            max_ms: n.durations.last().copied().unwrap_or(0.0),
            histogram: histogram(&n.durations),
        },
        distinct_answers: n.answers.len(),
        example_error: n.first_error.as_ref().map(|(_, text)| text.clone()),
        failing_runs: n
            .failing_runs
            .iter()
            .filter_map(|&(_, offset)| record(offset))
            .map(failing_run)
            .collect(),
        example_failure: n.example.and_then(|(_, _, offset)| record(offset).cloned()),
        usage: (!n.usage.is_empty()).then_some(Usage {
            cost_usd: n.usage.cost_usd.filter(|_| !n.unpriced),
            ..n.usage
        }),
        adaptive: None,
        turns: Vec::new(),
    }
}

/// Each conversation case's turns, from turns.parquet (absent when the suite has none).
fn turn_stats(dir: &Path, suite: &Suite) -> Result<HashMap<String, Vec<TurnStats>>, ResultsError> {
    let path = dir.join(crate::store::TURNS_FILE);
    let mut out: HashMap<String, Vec<TurnStats>> = HashMap::new();
    if !path.exists() {
        return Ok(out);
    }
    for case in &suite.spec.cases {
        let Some(turns) = &case.turns else { continue };
        let stats = turns
            .iter()
            .enumerate()
            .map(|(t, turn)| TurnStats {
                turn: t as u32 + 1,
                question: turn.question.clone(),
                scripted: turn.answer.is_some(),
                asked: 0,
                passed: 0,
                errors: 0,
                broken: Vec::new(),
            })
            .collect();
        out.insert(case.id.clone(), stats);
    }
    let columns = [
        "case",
        "turn",
        "scripted",
        "status",
        "violations",
        "failed_expectations",
    ];
    for_each_slice_of(&path, &columns, |frame| {
        let case = frame.column("case")?.str()?;
        let turn = frame.column("turn")?.u32()?;
        let scripted = frame.column("scripted")?.bool()?;
        let status = frame.column("status")?.str()?;
        let violations = frame.column("violations")?.str()?;
        let expectations = frame.column("failed_expectations")?.str()?;
        for row in 0..frame.height() {
            let (Some(case), Some(turn)) = (case.get(row), turn.get(row)) else {
                continue;
            };
            let Some(stats) = out
                .get_mut(case)
                .and_then(|turns| turns.get_mut(turn as usize - 1))
            else {
                continue;
            };
            if scripted.get(row) == Some(true) {
                continue;
            }
            stats.asked += 1;
            match status.get(row) {
                Some("passed") => stats.passed += 1,
                Some("error") => stats.errors += 1,
                _ => {}
            }
            let broken = [violations.get(row), expectations.get(row)];
            for check in broken
                .into_iter()
                .flatten()
                .flat_map(|joined| joined.split(RULE_SEPARATOR))
                .filter(|c| !c.is_empty())
            {
                match stats.broken.iter_mut().find(|b| b.check == check) {
                    Some(b) => b.runs += 1,
                    None => stats.broken.push(TurnBroken {
                        check: check.to_owned(),
                        runs: 1,
                    }),
                }
            }
        }
        Ok(())
    })?;
    for turns in out.values_mut() {
        for stats in turns.iter_mut() {
            stats
                .broken
                .sort_by(|a, b| b.runs.cmp(&a.runs).then(a.check.cmp(&b.check)));
        }
    }
    Ok(out)
}

/// `runs: auto`: replays each adaptive case's recorded runs (in run order, from run 0)
/// through its tests, records why it stopped, and makes its outcome the decision's: a case
/// decided pass passes (as flaky when some runs failed), one decided fail fails; an
/// undecided one keeps its observed outcome unless `undecided:` says pass or fail.
pub fn apply_adaptive(
    suite: &Suite,
    baseline: Option<&crate::model::summary::SuiteReport>,
    settings: AdaptiveSettings,
    adaptive_ids: &HashSet<String>,
    records: &[RunRecord],
    stats: &mut SuiteStats,
) {
    let against = baseline.map(|b| Against::new(suite, b));
    for case in stats
        .cases
        .iter_mut()
        .filter(|c| adaptive_ids.contains(&c.id))
    {
        let Some(spec) = suite.spec.cases.iter().find(|s| s.id == case.id) else {
            continue;
        };
        let (tests, _) = replayed(suite, spec, settings, against.as_ref(), records);
        let stop = tests.stop();
        case.adaptive = Some(AdaptiveCase {
            runs_used: tests.runs(),
            max_runs: settings.max_runs,
            stop,
            // An open case (interrupted, or stopped by a budget) saved nothing yet.
            runs_saved: if stop.is_final() {
                settings.max_runs.saturating_sub(tests.runs())
            } else {
                0
            },
        });
        let verdict = match (stop, settings.undecided) {
            (Stop::DecidedPass, _) | (Stop::Undecided, Undecided::Pass) => Some(true),
            (Stop::DecidedFail, _) | (Stop::Undecided, Undecided::Fail) => Some(false),
            _ => None,
        };
        match verdict {
            Some(true) if case.outcome == CaseOutcome::Fail => {
                case.outcome = CaseOutcome::Flaky;
                case.reasons.clear();
            }
            Some(false) if matches!(case.outcome, CaseOutcome::Pass | CaseOutcome::Flaky) => {
                case.outcome = CaseOutcome::Fail;
                case.reasons.push(format!(
                    "{} after {} runs (runs: auto, tolerance {}, significance {})",
                    stop.label(),
                    tests.runs(),
                    percent(settings.tolerance),
                    settings.alpha
                ));
            }
            _ => {}
        }
    }
}

/// Sorted durations in `LATENCY_BINS` equal bins from 0 to the largest.
fn histogram(sorted: &[f64]) -> Vec<u32> {
    let Some(&most) = sorted.last() else {
        return Vec::new();
    };
    let count = crate::model::summary::LATENCY_BINS;
    let mut bins = vec![0u32; count];
    for &d in sorted {
        let at = if most > 0.0 {
            ((d / most) * count as f64) as usize
        } else {
            0
        };
        bins[at.min(count - 1)] += 1;
    }
    bins
}

/// Each rule's violations over the evaluated runs, against its allowed rate.
fn rule_stats(
    suite: &Suite,
    spec: &CaseSpec,
    signatures: &[(bool, Vec<&str>, u32)],
    evaluated: u32,
    judge_splits: &HashMap<String, u32>,
) -> Vec<RuleStats> {
    // The judge's flip rate is observable only when it judges each answer more than once.
    let repeats = suite.spec.judge.as_ref().map_or(1, |j| j.repeats);
    suite
        .spec
        .rules
        .iter()
        .map(|rule| {
            let violations: u32 = signatures
                .iter()
                .filter(|(_, violated, _)| violated.contains(&rule.id.as_str()))
                .map(|(_, _, runs)| runs)
                .sum();
            let rate = ratio(violations, evaluated);
            let max_rate = allowed_rate(suite, spec, rule);
            RuleStats {
                id: rule.id.clone(),
                severity: rule.severity,
                max_rate,
                violations,
                rate,
                exceeded: rule.severity == Severity::Error
                    && violations > 0
                    && rate > max_rate + 1e-12,
                judge_flip_rate: rule
                    .answer
                    .as_ref()
                    .and_then(|a| a.judge.as_ref())
                    .filter(|_| repeats > 1)
                    .map(|_| ratio(judge_splits.get(&rule.id).copied().unwrap_or(0), evaluated)),
                judge_corrected: suite
                    .calibration
                    .as_ref()
                    .and_then(|c| c.rules.get(&rule.id))
                    .filter(|_| evaluated > 0)
                    .map(|confusion| {
                        crate::stats::rogan_gladen(
                            evaluated - violations,
                            evaluated,
                            confusion.matrix(),
                        )
                    }),
            }
        })
        .collect()
}

/// A case's outcome, the runs that count as passed, and why it failed.
struct CaseVerdict {
    outcome: CaseOutcome,
    passed: u32,
    reasons: Vec<String>,
}

fn judge_case(
    rules: &[RuleStats],
    signatures: &[(bool, Vec<&str>, u32)],
    n: &CaseNumbers,
    min_pass_rate: f64,
) -> CaseVerdict {
    let evaluated = n.runs - n.errors;
    let is_error_rule = |id: &str| {
        rules
            .iter()
            .any(|r| r.id == id && r.severity == Severity::Error)
    };
    let exceeded = |id: &str| rules.iter().any(|r| r.id == id && r.exceeded);
    // A run fails strictly on a failed expectation or any error rule; it still counts as
    // passing when every rule it broke is tolerated.
    let mut strictly_failed = 0;
    let mut effective_failures = 0;
    for (expect_failed, violated, runs) in signatures {
        if *expect_failed || violated.iter().any(|id| is_error_rule(id)) {
            strictly_failed += runs;
        }
        if *expect_failed || violated.iter().any(|id| exceeded(id)) {
            effective_failures += runs;
        }
    }
    let passed = evaluated - effective_failures;
    let pass_rate = ratio(passed, evaluated);
    let mut reasons = Vec::new();
    for rule in rules.iter().filter(|r| r.exceeded) {
        reasons.push(format!(
            "rule `{}` violated on {}/{} runs ({}), allowed {}",
            rule.id,
            rule.violations,
            evaluated,
            percent(rule.rate),
            percent(rule.max_rate)
        ));
    }
    if evaluated > 0 && pass_rate + 1e-12 < min_pass_rate {
        reasons.push(format!(
            "pass rate {} ({passed}/{evaluated}) below the required {}",
            percent(pass_rate),
            percent(min_pass_rate)
        ));
    }
    let outcome = if evaluated == 0 {
        reasons.push(format!(
            "all {} runs ended in errors: {}",
            n.runs,
            n.first_error
                .as_ref()
                .map_or("none recorded", |(_, text)| text.as_str())
        ));
        CaseOutcome::Error
    } else if !reasons.is_empty() {
        CaseOutcome::Fail
    } else if strictly_failed > 0 {
        CaseOutcome::Flaky
    } else {
        CaseOutcome::Pass
    };
    CaseVerdict {
        outcome,
        passed,
        reasons,
    }
}

pub use crate::suite::adaptive::allowed_rate;
