//! Per-case statistics over repeated runs, read back from the store one record at a time.
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

use std::collections::HashMap;
use std::path::Path;

use polars::prelude::*;

use crate::model::record::RunRecord;
use crate::model::record::Severity;
use crate::model::summary::{
    CaseOutcome, CaseStats, FailingRun, Latency, RuleStats, SourceSummary, SuiteStats,
};
use crate::results::{RESULTS_FILE, RULE_SEPARATOR, ResultsError};
use crate::store::read_at;
use crate::suite::Suite;

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;
/// pass^k and pass@k are reported at this k (or the number of runs, if fewer).
pub const K: u32 = 5;
/// Failing runs kept per case for reports (JUnit failure text, markdown).
pub const FAILING_RUNS_KEPT: usize = 5;

impl FailingRun {
    fn from_record(record: &RunRecord) -> FailingRun {
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
}

/// What polars computes per case.
#[derive(Default)]
struct CaseNumbers {
    runs: u32,
    errors: u32,
    source_runs: u32,
    sources: [f64; 5],
    p50_ms: f64,
    p95_ms: f64,
    distinct_answers: u32,
    /// (expectations failed, rules violated, runs) over evaluated runs.
    signatures: Vec<(bool, Vec<String>, u32)>,
    /// Offset in runs.jsonl of the failing run to show.
    example: Option<u64>,
    /// Offsets of the first failing runs.
    failing_runs: Vec<u64>,
    first_error: Option<String>,
}

/// Runs a query on polars' streaming engine, which reads the file in chunks so memory
/// does not grow with the number of runs.
fn collect(frame: LazyFrame) -> PolarsResult<DataFrame> {
    frame.with_streaming(true).collect()
}

/// Aggregates a report folder: numbers from `results.parquet` with polars, then the few
/// example records from `runs.jsonl`.
pub fn aggregate(
    suite: &Suite,
    selected: &[String],
    dir: &Path,
) -> Result<SuiteStats, ResultsError> {
    let path = dir.join(RESULTS_FILE);
    let frame = LazyFrame::scan_parquet(
        PlRefPath::new(path.to_string_lossy().as_ref()),
        ScanArgsParquet::default(),
    )?;
    let mut numbers: HashMap<String, CaseNumbers> = HashMap::new();

    let per_case = frame.clone().group_by([col("case")]).agg([
        len().alias("runs"),
        col("status").eq(lit("error")).sum().alias("errors"),
        col("precision").count().alias("source_runs"),
        col("precision").mean().alias("precision"),
        col("recall").mean().alias("recall"),
        col("hit").cast(DataType::Float64).mean().alias("hit_rate"),
        col("reciprocal_rank").mean().alias("mrr"),
        col("ndcg").mean().alias("ndcg"),
        col("duration_ms")
            .quantile(lit(0.5), QuantileMethod::Nearest)
            .alias("p50"),
        col("duration_ms")
            .quantile(lit(0.95), QuantileMethod::Nearest)
            .alias("p95"),
        // Hashes, not texts: counting distinct answers need not load them all.
        col("answer_hash")
            .filter(col("status").neq(lit("error")))
            .n_unique()
            .alias("distinct_answers"),
    ]);
    let per_case = collect(per_case)?;
    let f64_at = |column: &str, row: usize| -> PolarsResult<f64> {
        Ok(per_case
            .column(column)?
            .get(row)?
            .extract::<f64>()
            .unwrap_or(0.0))
    };
    let u32_at = |column: &str, row: usize| -> PolarsResult<u32> {
        Ok(per_case
            .column(column)?
            .get(row)?
            .extract::<u32>()
            .unwrap_or(0))
    };
    let cases = per_case.column("case")?.str()?.clone();
    for (row, case) in cases.iter().enumerate() {
        let Some(case) = case else { continue };
        let entry = numbers.entry(case.to_owned()).or_default();
        entry.runs = u32_at("runs", row)?;
        entry.errors = u32_at("errors", row)?;
        entry.source_runs = u32_at("source_runs", row)?;
        for (slot, column) in ["precision", "recall", "hit_rate", "mrr", "ndcg"]
            .iter()
            .enumerate()
        {
            entry.sources[slot] = f64_at(column, row)?;
        }
        entry.p50_ms = f64_at("p50", row)?;
        entry.p95_ms = f64_at("p95", row)?;
        entry.distinct_answers = u32_at("distinct_answers", row)?;
    }

    // Failure signatures: few distinct (expectations failed, rules violated) pairs per
    // case, whatever the number of runs. The tolerance policy works on these.
    let signatures = frame
        .clone()
        .filter(col("status").neq(lit("error")))
        .group_by([col("case"), col("expect_failed"), col("violations")])
        .agg([len().alias("runs")]);
    let signatures = collect(signatures)?;
    let sig_case = signatures.column("case")?.str()?.clone();
    let sig_expect = signatures.column("expect_failed")?.bool()?.clone();
    let sig_rules = signatures.column("violations")?.str()?.clone();
    let sig_runs = signatures.column("runs")?.cast(&DataType::UInt32)?;
    let sig_runs = sig_runs.u32()?.clone();
    for (((case, expect_failed), rules), runs) in sig_case
        .iter()
        .zip(sig_expect.iter())
        .zip(sig_rules.iter())
        .zip(sig_runs.iter())
    {
        let (Some(case), Some(runs)) = (case, runs) else {
            continue;
        };
        let rules: Vec<String> = rules
            .unwrap_or_default()
            .split(RULE_SEPARATOR)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        numbers
            .entry(case.to_owned())
            .or_default()
            .signatures
            .push((expect_failed.unwrap_or(false), rules, runs));
    }

    // The failing run to show per case (most broken checks, lowest run index on ties) and
    // the first failing runs by index: a few rows per case, whatever the number of runs.
    let rank = col("broken").cast(DataType::UInt64) * lit(1u64 << 32)
        + (lit(u64::from(u32::MAX)) - col("run").cast(DataType::UInt64));
    let examples = collect(
        frame
            .clone()
            .filter(col("status").eq(lit("failed")))
            .group_by([col("case")])
            .agg([
                col("offset").get(rank.arg_max(), false).alias("example"),
                col("offset")
                    .sort_by([col("run")], SortMultipleOptions::default())
                    .head(Some(FAILING_RUNS_KEPT))
                    .alias("first"),
            ]),
    )?;
    let e_case = examples.column("case")?.str()?.clone();
    let e_example = examples.column("example")?.u64()?.clone();
    let e_first = examples.column("first")?.list()?.clone();
    for ((case, example), first) in e_case
        .iter()
        .zip(e_example.iter())
        .zip(e_first.amortized_iter())
    {
        let Some(case) = case else { continue };
        let entry = numbers.entry(case.to_owned()).or_default();
        entry.example = example;
        if let Some(first) = first {
            entry.failing_runs = first.as_ref().u64()?.iter().flatten().collect();
        }
    }
    let errors = collect(
        frame
            .filter(col("status").eq(lit("error")))
            .group_by([col("case")])
            .agg([col("error")
                .sort_by([col("run")], SortMultipleOptions::default())
                .first()
                .alias("first_error")]),
    )?;
    let x_case = errors.column("case")?.str()?.clone();
    let x_error = errors.column("first_error")?.str()?.clone();
    for (case, error) in x_case.iter().zip(x_error.iter()) {
        if let Some(case) = case {
            numbers.entry(case.to_owned()).or_default().first_error =
                Some(error.unwrap_or("no verdict").to_owned());
        }
    }

    // The few whole records the reports show, read where results.parquet says they are.
    let mut records: HashMap<u64, RunRecord> = HashMap::new();
    for n in numbers.values() {
        for offset in n
            .example
            .iter()
            .copied()
            .chain(n.failing_runs.iter().copied())
        {
            if let std::collections::hash_map::Entry::Vacant(slot) = records.entry(offset) {
                slot.insert(read_at(dir, offset)?);
            }
        }
    }

    let mut cases = Vec::new();
    let (mut total_runs, mut total_errors) = (0, 0);
    for spec in suite.spec.cases.iter().filter(|c| selected.contains(&c.id)) {
        let n = numbers.remove(&spec.id).unwrap_or_default();
        total_runs += n.runs;
        total_errors += n.errors;
        let min_pass_rate = spec.min_pass_rate.unwrap_or(suite.spec.min_pass_rate).0;
        cases.push(case_stats(suite, spec, n, &records, min_pass_rate));
    }
    let error_rate = ratio(total_errors, total_runs);
    Ok(SuiteStats {
        suite: suite.spec.name.clone(),
        cases,
        runs: total_runs,
        errors: total_errors,
        error_rate,
        max_error_rate: suite.spec.max_error_rate.0,
        errors_exceeded: error_rate > suite.spec.max_error_rate.0 + 1e-12,
    })
}

fn case_stats(
    suite: &Suite,
    spec: &crate::suite::schema::CaseSpec,
    n: CaseNumbers,
    records: &HashMap<u64, RunRecord>,
    min_pass_rate: f64,
) -> CaseStats {
    let evaluated = n.runs - n.errors;
    let rules: Vec<RuleStats> = suite
        .spec
        .rules
        .iter()
        .map(|rule| {
            let violations: u32 = n
                .signatures
                .iter()
                .filter(|(_, violated, _)| violated.contains(&rule.id))
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
            }
        })
        .collect();
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
    for (expect_failed, violated, runs) in &n.signatures {
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
    let first_error = n.first_error;
    let outcome = if evaluated == 0 {
        reasons.push(format!(
            "all {} runs ended in errors: {}",
            n.runs,
            first_error.as_deref().unwrap_or("none recorded")
        ));
        CaseOutcome::Error
    } else if !reasons.is_empty() {
        CaseOutcome::Fail
    } else if strictly_failed > 0 {
        CaseOutcome::Flaky
    } else {
        CaseOutcome::Pass
    };

    let k = K.min(evaluated);
    let record = |offset: u64| records.get(&offset);
    let sources = (n.source_runs > 0).then(|| SourceSummary {
        precision: n.sources[0],
        recall: n.sources[1],
        hit_rate: n.sources[2],
        mrr: n.sources[3],
        ndcg: n.sources[4],
    });
    CaseStats {
        id: spec.id.clone(),
        question: spec.question.clone(),
        tags: spec.tags.clone(),
        outcome,
        reasons,
        runs: n.runs,
        evaluated,
        errors: n.errors,
        passed,
        pass_rate,
        pass_rate_ci95: wilson(passed, evaluated),
        min_pass_rate,
        k,
        pass_all_k: all_of_k(passed, evaluated, k),
        pass_at_k: 1.0 - all_of_k(evaluated - passed, evaluated, k),
        flaky: passed > 0 && passed < evaluated,
        rules,
        sources,
        latency: Latency {
            p50_ms: n.p50_ms,
            p95_ms: n.p95_ms,
        },
        distinct_answers: n.distinct_answers as usize,
        example_error: first_error,
        failing_runs: n
            .failing_runs
            .iter()
            .filter_map(|&offset| record(offset))
            .map(FailingRun::from_record)
            .collect(),
        example_failure: n.example.and_then(|offset| record(offset).cloned()),
    }
}

/// `part / whole`, and 0 for an empty whole.
pub fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

pub fn percent(rate: f64) -> String {
    let p = rate * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// Wilson score interval for `successes` of `n` at 95%; [0, 1] when n is 0.
pub fn wilson(successes: u32, n: u32) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let n = f64::from(n);
    let p = f64::from(successes) / n;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

/// Probability that k of n runs drawn without replacement are all among the `good` ones:
/// C(good, k) / C(n, k). With `good` = passes this is pass^k; 1 minus it for the failures
/// is pass@k.
pub fn all_of_k(good: u32, n: u32, k: u32) -> f64 {
    if k == 0 || n == 0 {
        return 1.0;
    }
    if good < k {
        return 0.0;
    }
    (0..k).fold(1.0, |acc, i| acc * f64::from(good - i) / f64::from(n - i))
}

/// A rule's own `max_rate`, else the case's, else the suite's `max_violation_rate`, else 0.
pub fn allowed_rate(
    suite: &Suite,
    case: &crate::suite::schema::CaseSpec,
    rule: &crate::suite::schema::RuleSpec,
) -> f64 {
    rule.max_rate
        .or(case.max_violation_rate)
        .or(suite.spec.max_violation_rate)
        .map_or(0.0, |rate| rate.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // 0/20: upper bound 16.1%; 20/20: lower bound 83.9% (Wilson 1927, as tabulated).
        let [lo, hi] = wilson(0, 20);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.1611).abs() < 1e-3, "{hi}");
        let [lo, hi] = wilson(20, 20);
        assert!((lo - 0.8389).abs() < 1e-3, "{lo}");
        assert!((hi - 1.0).abs() < 1e-12);
        // 7/20 = 35%: [18.1%, 56.7%].
        let [lo, hi] = wilson(7, 20);
        assert!(
            (lo - 0.1812).abs() < 1e-3 && (hi - 0.5671).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), [0.0, 1.0]);
    }

    #[test]
    fn pass_k_estimators() {
        assert_eq!(all_of_k(10, 10, 5), 1.0);
        assert_eq!(all_of_k(4, 10, 5), 0.0);
        // C(8,2)/C(10,2) = 28/45.
        assert!((all_of_k(8, 10, 2) - 28.0 / 45.0).abs() < 1e-12);
        // pass@2 with 2 passes of 10: 1 - C(8,2)/C(10,2).
        assert!((1.0 - all_of_k(8, 10, 2) - 17.0 / 45.0).abs() < 1e-12);
    }

    #[test]
    fn percent_formatting() {
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.35), "35%");
        assert_eq!(percent(1.0 / 3.0), "33.3%");
    }
}

/// One-sided Fisher exact test for "B passes less often than A": the probability, with
/// the table's margins fixed, of A having at least as many of the passes as it did.
/// `a_pass` of `a_n` runs passed on side A, `b_pass` of `b_n` on side B.
pub fn fisher_worse(a_pass: u32, a_n: u32, b_pass: u32, b_n: u32) -> f64 {
    let n = (a_n + b_n) as usize;
    let passes = a_pass + b_pass;
    if a_n == 0 || b_n == 0 || passes == 0 || passes == a_n + b_n {
        return 1.0;
    }
    let ln_fact: Vec<f64> = std::iter::once(0.0)
        .chain((1..=n).scan(0.0, |acc, i| {
            *acc += (i as f64).ln();
            Some(*acc)
        }))
        .collect();
    let ln_choose =
        |n: u32, k: u32| ln_fact[n as usize] - ln_fact[k as usize] - ln_fact[(n - k) as usize];
    let total = ln_choose(a_n + b_n, passes);
    let low = passes.saturating_sub(b_n);
    let high = passes.min(a_n);
    let p: f64 = (a_pass.max(low)..=high)
        .map(|x| (ln_choose(a_n, x) + ln_choose(b_n, passes - x) - total).exp())
        .sum();
    p.min(1.0)
}

#[cfg(test)]
mod fisher_tests {
    use super::fisher_worse;

    #[test]
    fn matches_reference_values() {
        // Exact hypergeometric tails, computed independently with integer binomials:
        // [[20, 0], [10, 10]] → 0.000218; [[8, 2], [6, 4]] → 0.3142.
        let p = fisher_worse(20, 20, 10, 20);
        assert!((p - 0.000_218).abs() < 1e-6, "{p}");
        let p = fisher_worse(8, 10, 6, 10);
        assert!((p - 0.3142).abs() < 1e-3, "{p}");
        // No difference, or B better: not significant.
        assert!(fisher_worse(10, 20, 10, 20) > 0.5);
        assert!(fisher_worse(5, 20, 20, 20) > 0.99);
        assert_eq!(fisher_worse(0, 0, 3, 5), 1.0);
    }
}
