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

use serde::{Deserialize, Serialize};

use crate::store::{RunRecord, RunStatus};
use crate::suite::Suite;
use crate::suite::schema::Severity;

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;
/// pass^k and pass@k are reported at this k (or the number of runs, if fewer).
pub const K: u32 = 5;
/// Failing runs kept per case for reports (JUnit failure text, markdown).
pub const FAILING_RUNS_KEPT: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseOutcome {
    Pass,
    Flaky,
    Fail,
    Error,
}

impl CaseOutcome {
    pub fn label(self) -> &'static str {
        match self {
            CaseOutcome::Pass => "PASS",
            CaseOutcome::Flaky => "FLAKY",
            CaseOutcome::Fail => "FAIL",
            CaseOutcome::Error => "ERROR",
        }
    }

    pub fn is_failure(self) -> bool {
        matches!(self, CaseOutcome::Fail)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleStats {
    pub id: String,
    pub severity: Severity,
    pub max_rate: f64,
    pub violations: u32,
    pub rate: f64,
    pub exceeded: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceSummary {
    pub precision: f64,
    pub recall: f64,
    pub hit_rate: f64,
    pub mrr: f64,
    pub ndcg: f64,
}

/// A failing run, in a line or two: enough for a CI failure message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailingRun {
    pub run: u32,
    pub seed: u64,
    /// `rule-id: detail` or `expect.x: detail`, one per broken check.
    pub broken: Vec<String>,
    pub retrieved: Vec<String>,
    pub answer: String,
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseStats {
    pub id: String,
    pub question: String,
    pub tags: Vec<String>,
    pub outcome: CaseOutcome,
    /// Why the case failed, one line each.
    pub reasons: Vec<String>,
    pub runs: u32,
    pub evaluated: u32,
    pub errors: u32,
    pub passed: u32,
    pub pass_rate: f64,
    pub pass_rate_ci95: [f64; 2],
    pub min_pass_rate: f64,
    pub k: u32,
    /// Chance that k runs drawn without replacement all pass.
    pub pass_all_k: f64,
    /// Chance that at least one of k runs passes.
    pub pass_at_k: f64,
    pub flaky: bool,
    pub rules: Vec<RuleStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<SourceSummary>,
    pub latency: Latency,
    pub distinct_answers: usize,
    /// The first infrastructure error met, if any run had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_error: Option<String>,
    /// The first failing runs, by run index.
    pub failing_runs: Vec<FailingRun>,
    /// A failing run to show: the one that broke the most checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_failure: Option<RunRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteStats {
    pub suite: String,
    pub cases: Vec<CaseStats>,
    pub runs: u32,
    pub errors: u32,
    pub error_rate: f64,
    pub max_error_rate: f64,
    pub errors_exceeded: bool,
}

impl SuiteStats {
    pub fn failed_cases(&self) -> impl Iterator<Item = &CaseStats> {
        self.cases.iter().filter(|c| c.outcome.is_failure())
    }
}

/// Accumulates one case's records.
#[derive(Default)]
struct Accumulator {
    runs: u32,
    errors: u32,
    latencies: Vec<f64>,
    /// Per rule index: runs violating it.
    violations: Vec<u32>,
    /// Failing runs only: did expectations fail, which error rules did it violate.
    failing: Vec<(bool, Vec<usize>)>,
    source_sums: [f64; 5],
    source_count: u32,
    answers: std::collections::HashSet<u64>,
    example: Option<(usize, RunRecord)>,
    first_error: Option<String>,
    failing_runs: Vec<FailingRun>,
}

/// Aggregates the records of one suite, in any order.
pub fn aggregate(
    suite: &Suite,
    selected: &[String],
    records: impl Iterator<Item = std::io::Result<RunRecord>>,
) -> std::io::Result<SuiteStats> {
    let rules = &suite.spec.rules;
    let mut by_case: HashMap<String, Accumulator> = selected
        .iter()
        .map(|id| {
            (
                id.clone(),
                Accumulator {
                    violations: vec![0; rules.len()],
                    ..Default::default()
                },
            )
        })
        .collect();
    for record in records {
        let record = record?;
        let Some(acc) = by_case.get_mut(&record.case) else {
            continue;
        };
        acc.runs += 1;
        acc.latencies.push(record.duration_ms);
        let verdict = match (&record.status, &record.verdict) {
            (RunStatus::Error, _) | (_, None) => {
                acc.errors += 1;
                if acc.first_error.is_none() {
                    acc.first_error = Some(record.error.unwrap_or_else(|| "no verdict".into()));
                }
                continue;
            }
            (_, Some(verdict)) => verdict,
        };
        acc.answers
            .insert(crate::seed::stable_hash(&[record.answer.as_bytes()]));
        let mut violated_error_rules = Vec::new();
        let mut broken = verdict.failed_expectations.len();
        for result in verdict.rules.iter().filter(|r| !r.passed) {
            if let Some(index) = rules.iter().position(|r| r.id == result.id) {
                acc.violations[index] += 1;
                if rules[index].severity == Severity::Error {
                    violated_error_rules.push(index);
                }
                broken += 1;
            }
        }
        if let Some(sources) = &verdict.sources {
            let values = [
                sources.precision,
                sources.recall,
                f64::from(u8::from(sources.hit)),
                sources.reciprocal_rank,
                sources.ndcg,
            ];
            for (sum, value) in acc.source_sums.iter_mut().zip(values) {
                *sum += value;
            }
            acc.source_count += 1;
        }
        let expectations_failed = !verdict.failed_expectations.is_empty();
        if expectations_failed || !violated_error_rules.is_empty() {
            acc.failing
                .push((expectations_failed, violated_error_rules));
            keep_first_failing(&mut acc.failing_runs, &record);
            let better = match &acc.example {
                None => true,
                Some((score, current)) => {
                    broken > *score || (broken == *score && record.run < current.run)
                }
            };
            if better {
                acc.example = Some((broken, record));
            }
        }
    }

    let mut cases = Vec::new();
    let mut total_runs = 0;
    let mut total_errors = 0;
    for spec in suite.spec.cases.iter().filter(|c| selected.contains(&c.id)) {
        let Some(acc) = by_case.remove(&spec.id) else {
            continue;
        };
        total_runs += acc.runs;
        total_errors += acc.errors;
        let min_pass_rate = spec.min_pass_rate.unwrap_or(suite.spec.min_pass_rate).0;
        cases.push(case_stats(suite, spec, acc, min_pass_rate));
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
    mut acc: Accumulator,
    min_pass_rate: f64,
) -> CaseStats {
    let evaluated = acc.runs - acc.errors;
    let rules: Vec<RuleStats> = suite
        .spec
        .rules
        .iter()
        .zip(&acc.violations)
        .map(|(rule, &violations)| {
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
    let strictly_failed = acc.failing.len() as u32;
    // Runs that failed only on tolerated rules count as passing.
    let effective_failures = acc
        .failing
        .iter()
        .filter(|(expectations_failed, violated)| {
            *expectations_failed || violated.iter().any(|&i| rules[i].exceeded)
        })
        .count() as u32;
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
            acc.runs,
            acc.first_error.as_deref().unwrap_or("none recorded")
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
    acc.latencies.sort_by(f64::total_cmp);
    let sources = (acc.source_count > 0).then(|| {
        let n = f64::from(acc.source_count);
        SourceSummary {
            precision: acc.source_sums[0] / n,
            recall: acc.source_sums[1] / n,
            hit_rate: acc.source_sums[2] / n,
            mrr: acc.source_sums[3] / n,
            ndcg: acc.source_sums[4] / n,
        }
    });
    CaseStats {
        id: spec.id.clone(),
        question: spec.question.clone(),
        tags: spec.tags.clone(),
        outcome,
        reasons,
        runs: acc.runs,
        evaluated,
        errors: acc.errors,
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
            p50_ms: percentile(&acc.latencies, 0.50),
            p95_ms: percentile(&acc.latencies, 0.95),
        },
        distinct_answers: acc.answers.len(),
        example_failure: acc.example.map(|(_, record)| record),
        example_error: acc.first_error,
        failing_runs: acc.failing_runs,
    }
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

/// Keeps the failing runs with the lowest run indices, whatever order records come in.
fn keep_first_failing(kept: &mut Vec<FailingRun>, record: &RunRecord) {
    if kept.len() == FAILING_RUNS_KEPT && kept.last().is_some_and(|last| last.run < record.run) {
        return;
    }
    let at = kept.partition_point(|k| k.run < record.run);
    kept.insert(at, FailingRun::from_record(record));
    kept.truncate(FAILING_RUNS_KEPT);
}

fn ratio(part: u32, whole: u32) -> f64 {
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

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
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
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 10.0);
        assert_eq!(percentile(&v, 0.95), 19.0);
        assert_eq!(percentile(&[3.0], 0.95), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
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
