//! The statistics ragprobe reports, as plain functions: rates, Wilson intervals, pass^k
//! and pass@k, the per-case tests `diff` and `--baseline` use (Fisher's exact test, the
//! Farrington–Manning score test for a smallest change that matters), Cohen's kappa, the
//! judge correction of Rogan and Gladen, and paired tests over cases.

use crate::distributions::{Hypergeometric, TwoSamples, ln_beta, ln_factorials, normal_upper};
use crate::model::summary::{JudgeCorrected, MeanCi};

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// `part / whole`, and 0 for an empty whole.
pub fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

/// The `q` quantile of sorted values by nearest rank, as polars' `QuantileMethod::Nearest`:
/// index round((n − 1)·q); 0 for no values.
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
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
    match fisher_null(a_n, b_n, a_pass + b_pass) {
        Some(h) => h.upper_tail(a_pass),
        None => 1.0,
    }
}

/// The margins' hypergeometric law of A's passes, or `None` when the table cannot show a
/// difference (a side without runs, or every run passing, or none).
pub fn fisher_null(a_n: u32, b_n: u32, passes: u32) -> Option<Hypergeometric> {
    if a_n == 0 || b_n == 0 || passes == 0 || passes == a_n + b_n {
        return None;
    }
    let ln_fact = ln_factorials((a_n + b_n) as usize);
    Some(Hypergeometric::new(a_n, b_n, passes, &ln_fact))
}

/// Every p-value the one-sided test "B worse" can give with these margins, ascending:
/// under "no change" the chance of a p-value at or below t is the largest of these at or
/// below t (what the discrete procedures use instead of t itself). Just `[1]` when the
/// table cannot show a difference.
pub fn fisher_worse_attainable(a_n: u32, b_n: u32, passes: u32) -> Vec<f64> {
    let Some(h) = fisher_null(a_n, b_n, passes) else {
        return vec![1.0];
    };
    // Tails summed from the top, the same way `upper_tail` sums them, so the observed
    // p-value is one of these to the last bit.
    let mut values = h.upper_tails();
    values.sort_by(f64::total_cmp);
    values.dedup();
    values
}

/// One-sided Farrington–Manning score test of "B passes less often than A by more than
/// `margin`" (H0: p_A − p_B ≤ margin): the score statistic with both rates estimated under
/// H0's boundary, referred to the normal distribution (Farrington & Manning 1990).
pub fn farrington_manning_worse(a_pass: u32, a_n: u32, b_pass: u32, b_n: u32, margin: f64) -> f64 {
    if a_n == 0 || b_n == 0 {
        return 1.0;
    }
    let samples = TwoSamples {
        a_pass,
        a_n,
        b_pass,
        b_n,
    };
    let (a, b) = samples.rates();
    let (a0, b0) = samples.boundary_mle(margin);
    let variance = a0 * (1.0 - a0) / f64::from(a_n) + b0 * (1.0 - b0) / f64::from(b_n);
    let excess = a - b - margin;
    if variance <= 0.0 {
        return if excess > 0.0 { 0.0 } else { 1.0 };
    }
    normal_upper(excess / variance.sqrt()).clamp(0.0, 1.0)
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

/// Agreement between two raters on pass/fail, from the confusion counts
/// `[[both pass, judge pass & human fail], [judge fail & human pass, both fail]]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    pub n: u32,
    /// Observed agreement.
    pub observed: f64,
    /// Cohen's kappa: agreement beyond what the two raters' pass rates give by chance.
    pub kappa: f64,
    /// 95% interval from kappa's large-sample standard error (Cohen 1960), clipped to
    /// [-1, 1]; wide when n is small.
    pub kappa_ci95: [f64; 2],
}

pub fn cohen_kappa(confusion: [[u32; 2]; 2]) -> Agreement {
    let n = confusion.iter().flatten().sum::<u32>();
    if n == 0 {
        return Agreement {
            n,
            observed: 0.0,
            kappa: 0.0,
            kappa_ci95: [-1.0, 1.0],
        };
    }
    let total = f64::from(n);
    let cell = |r: usize, c: usize| f64::from(confusion[r][c]) / total;
    let observed = cell(0, 0) + cell(1, 1);
    let judge_pass = cell(0, 0) + cell(0, 1);
    let human_pass = cell(0, 0) + cell(1, 0);
    let chance = judge_pass * human_pass + (1.0 - judge_pass) * (1.0 - human_pass);
    if (1.0 - chance).abs() < 1e-12 {
        // Both raters gave one label to everything: kappa is undefined; agreement is all
        // there is to say.
        return Agreement {
            n,
            observed,
            kappa: if observed >= 1.0 - 1e-12 { 1.0 } else { 0.0 },
            kappa_ci95: [-1.0, 1.0],
        };
    }
    let kappa = (observed - chance) / (1.0 - chance);
    let se = (observed * (1.0 - observed) / (total * (1.0 - chance).powi(2))).sqrt();
    Agreement {
        n,
        observed,
        kappa,
        kappa_ci95: [(kappa - 1.96 * se).max(-1.0), (kappa + 1.96 * se).min(1.0)],
    }
}

#[cfg(test)]
mod kappa_tests {
    use super::*;

    #[test]
    fn kappa_matches_a_worked_example() {
        // Cohen's kappa on the classic 50-item example: 20 both yes, 5 and 10 disagreements,
        // 15 both no: p_o = 0.7, p_e = 0.5, kappa = 0.4.
        let a = cohen_kappa([[20, 5], [10, 15]]);
        assert_eq!(a.n, 50);
        assert!((a.observed - 0.7).abs() < 1e-12);
        assert!((a.kappa - 0.4).abs() < 1e-12);
        // SE = sqrt(0.7 * 0.3 / (50 * 0.25)) = 0.1296.
        assert!((a.kappa_ci95[0] - (0.4 - 1.96 * 0.129_615)).abs() < 1e-4);
        assert!((a.kappa_ci95[1] - (0.4 + 1.96 * 0.129_615)).abs() < 1e-4);
        let perfect = cohen_kappa([[10, 0], [0, 10]]);
        assert_eq!(perfect.kappa, 1.0);
        let one_label = cohen_kappa([[10, 0], [0, 0]]);
        assert_eq!((one_label.kappa, one_label.observed), (1.0, 1.0));
    }
}

/// The mean of `values` with its 95% interval from Student's t (the spread of case means
/// around the suite mean); the mean alone, twice, for fewer than two values.
pub fn mean_ci95(values: &[f64]) -> (f64, [f64; 2]) {
    let n = values.len();
    if n == 0 {
        return (0.0, [0.0, 0.0]);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, [mean, mean]);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t_975(n - 1) * (variance / n as f64).sqrt();
    (mean, [mean - half, mean + half])
}

/// Student's t 97.5% quantile for `df` degrees of freedom (a table to 30, then the normal
/// quantile corrected by 1/df terms, within 0.001 of the exact value).
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        _ => {
            let z: f64 = 1.959_964;
            let d = df as f64;
            z + (z.powi(3) + z) / (4.0 * d)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
        }
    }
}

#[cfg(test)]
mod mean_tests {
    use super::*;

    #[test]
    fn t_intervals_match_tables() {
        assert!((t_975(40) - 2.021).abs() < 1e-3);
        assert!((t_975(120) - 1.980).abs() < 1e-3);
        let (mean, [low, high]) = mean_ci95(&[1.0, 2.0, 3.0]);
        // sd 1, se 1/sqrt(3), t(2) 4.303.
        assert_eq!(mean, 2.0);
        assert!((high - 2.0 - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert!((mean - low - (high - mean)).abs() < 1e-12);
        assert_eq!(mean_ci95(&[0.5]), (0.5, [0.5, 0.5]));
    }
}

pub use crate::model::summary::PairedTest;

pub fn paired_test(a: &[f64], b: &[f64]) -> PairedTest {
    let n = a.len().min(b.len());
    let differences: Vec<f64> = (0..n).map(|i| b[i] - a[i]).collect();
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let mean_difference = mean(&differences);
    let sd = if n > 1 {
        (differences
            .iter()
            .map(|d| (d - mean_difference).powi(2))
            .sum::<f64>()
            / (n - 1) as f64)
            .sqrt()
    } else {
        0.0
    };
    let observed = mean_difference.abs();
    let at_least = |flipped: f64| flipped.abs() >= observed - 1e-12;
    let p_randomization = if n == 0 {
        1.0
    } else if n <= 16 {
        let total = 1u32 << n;
        let extreme = (0..total)
            .filter(|signs| {
                let sum: f64 = differences
                    .iter()
                    .enumerate()
                    .map(|(i, d)| if signs & (1 << i) != 0 { -d } else { *d })
                    .sum();
                at_least(sum / n as f64)
            })
            .count();
        extreme as f64 / f64::from(total)
    } else {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let rounds = 10_000;
        let extreme = (0..rounds)
            .filter(|_| {
                let sum: f64 = differences
                    .iter()
                    .map(|d| if rng.bool() { -d } else { *d })
                    .sum();
                at_least(sum / n as f64)
            })
            .count();
        (extreme + 1) as f64 / f64::from(rounds + 1)
    };
    let p_t = if n < 2 {
        1.0
    } else if sd == 0.0 {
        if mean_difference == 0.0 { 1.0 } else { 0.0 }
    } else {
        let t = mean_difference / (sd / (n as f64).sqrt());
        two_sided_t(t, (n - 1) as f64)
    };
    PairedTest {
        cases: n,
        mean_a: mean(&a[..n]),
        mean_b: mean(&b[..n]),
        mean_difference,
        effect_size: if sd > 0.0 { mean_difference / sd } else { 0.0 },
        p_randomization,
        p_t,
    }
}

/// P(|T| ≥ |t|) for Student's t with `df` degrees of freedom: I_{df/(df+t²)}(df/2, 1/2).
pub fn two_sided_t(t: f64, df: f64) -> f64 {
    regularized_beta(df / (df + t * t), df / 2.0, 0.5).clamp(0.0, 1.0)
}

/// The regularized incomplete beta function I_x(a, b), by Lentz's continued fraction
/// (Numerical Recipes' `betai`).
fn regularized_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = -ln_beta(a, b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    // Lentz's method divides by these terms: keep them off zero.
    let off_zero = |v: f64| if v.abs() < 1e-300 { 1e-300 } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / off_zero(1.0 - (a + b) * x / (a + 1.0));
    let mut h = d;
    for m in 1..300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let even = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 / off_zero(1.0 + even * d);
        c = off_zero(1.0 + even / c);
        h *= d * c;
        let odd = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 / off_zero(1.0 + odd * d);
        c = off_zero(1.0 + odd / c);
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-12 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod paired_tests {
    use super::*;

    #[test]
    fn the_t_distribution_matches_tables() {
        // t(10) = 2.228 is the 97.5% quantile: two-sided p = 0.05.
        assert!((two_sided_t(2.228, 10.0) - 0.05).abs() < 5e-4);
        assert!((two_sided_t(12.706, 1.0) - 0.05).abs() < 5e-4);
        assert!((two_sided_t(0.0, 5.0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn paired_tests_on_a_worked_example() {
        let a = [0.50, 0.60, 0.40, 0.70, 0.55, 0.45];
        let b = [0.60, 0.70, 0.45, 0.80, 0.60, 0.55];
        let test = paired_test(&a, &b);
        // Every difference is positive: of the 64 sign patterns only all-plus and
        // all-minus are as extreme, p = 2/64.
        assert!((test.p_randomization - 2.0 / 64.0).abs() < 1e-12);
        assert!((test.mean_difference - 0.5 / 6.0).abs() < 1e-12);
        // d = [.1, .1, .05, .1, .05, .1]: sd 0.02582, t = 7.906 on 5 df; the t table puts
        // two-sided 0.001 at 6.869 and 0.0005 at 7.976.
        assert!(test.p_t > 0.0005 && test.p_t < 0.001, "{}", test.p_t);
        assert!(test.effect_size > 2.0);
        let same = paired_test(&a, &a);
        assert_eq!((same.p_randomization, same.p_t), (1.0, 1.0));
    }
}

/// Fewer labels of either human verdict than this and no correction is made.
pub const MIN_LABELS_EACH: u32 = 10;
/// A judge whose sensitivity + specificity − 1 (Youden's J) is below this is too close to
/// chance for a correction to mean anything: it would divide by almost nothing.
pub const MIN_YOUDEN: f64 = 0.2;

/// The Rogan–Gladen correction of `passed` of `n` judged runs, given the judge's
/// calibration: π = (p + Sp − 1) / (Se + Sp − 1), clipped to [0, 1], with
/// Var(π) = [p(1−p)/n + π²·Var(Se) + (1−π)²·Var(Sp)] / (Se + Sp − 1)². The calibration
/// variances use (x + 1)/(m + 2) so a perfect score on few labels still counts as uncertain.
pub fn rogan_gladen(passed: u32, n: u32, confusion: [[u32; 2]; 2]) -> JudgeCorrected {
    let labelled_pass = confusion[0][0] + confusion[1][0];
    let labelled_fail = confusion[0][1] + confusion[1][1];
    let sensitivity = ratio(confusion[0][0], labelled_pass);
    let specificity = ratio(confusion[1][1], labelled_fail);
    let observed = ratio(passed, n);
    let mut corrected = JudgeCorrected {
        observed,
        pass_rate: None,
        ci95: None,
        sensitivity,
        specificity,
        labelled_pass,
        labelled_fail,
        note: None,
    };
    let youden = sensitivity + specificity - 1.0;
    if labelled_pass < MIN_LABELS_EACH || labelled_fail < MIN_LABELS_EACH {
        corrected.note = Some(format!(
            "too few labels to correct ({labelled_pass} passed and {labelled_fail} failed by people; {MIN_LABELS_EACH} of each at least)"
        ));
        return corrected;
    }
    if youden < MIN_YOUDEN || n == 0 {
        corrected.note = Some(format!(
            "the judge is too close to chance to correct for (sensitivity {sensitivity:.2} + specificity {specificity:.2} − 1 = {youden:.2})"
        ));
        return corrected;
    }
    let pi = ((observed + specificity - 1.0) / youden).clamp(0.0, 1.0);
    let shrunk = |x: u32, m: u32| (f64::from(x) + 1.0) / (f64::from(m) + 2.0);
    let var_se = {
        let s = shrunk(confusion[0][0], labelled_pass);
        s * (1.0 - s) / f64::from(labelled_pass)
    };
    let var_sp = {
        let s = shrunk(confusion[1][1], labelled_fail);
        s * (1.0 - s) / f64::from(labelled_fail)
    };
    let var_p = {
        let s = shrunk(passed, n);
        s * (1.0 - s) / f64::from(n)
    };
    let variance = (var_p + pi * pi * var_se + (1.0 - pi).powi(2) * var_sp) / (youden * youden);
    let half = Z95 * variance.sqrt();
    corrected.pass_rate = Some(pi);
    corrected.ci95 = Some([(pi - half).max(0.0), (pi + half).min(1.0)]);
    corrected
}

/// Newcombe's hybrid score interval (1998, method 10) for B's rate minus A's, from the two
/// Wilson intervals: 95%, within [−1, 1], sensible at 0% and 100%.
pub fn newcombe(a_pass: u32, a_n: u32, b_pass: u32, b_n: u32) -> [f64; 2] {
    let (a, b) = (ratio(a_pass, a_n), ratio(b_pass, b_n));
    let [la, ua] = wilson(a_pass, a_n);
    let [lb, ub] = wilson(b_pass, b_n);
    let delta = b - a;
    let low = delta - ((b - lb).powi(2) + (ua - a).powi(2)).sqrt();
    let high = delta + ((ub - b).powi(2) + (a - la).powi(2)).sqrt();
    [low.max(-1.0), high.min(1.0)]
}

/// The mean of the cases' pass rates, `(passed, evaluated)` each, with a 95% interval that
/// clusters each case's runs: the spread of the case rates around the mean (the
/// cluster-robust standard error of Miller's "Adding Error Bars to Evals", 2024, for
/// equally weighted questions), never narrower than the Wilson interval of all runs taken
/// as independent (its widths, about this mean). Cases without evaluated runs are left out; one case gets its Wilson
/// interval.
pub fn suite_pass_rate(cases: &[(u32, u32)]) -> MeanCi {
    let cases: Vec<(u32, u32)> = cases.iter().copied().filter(|(_, n)| *n > 0).collect();
    let c = cases.len();
    if c == 0 {
        return MeanCi {
            mean: 0.0,
            ci95: [0.0, 1.0],
        };
    }
    if c == 1 {
        let (passed, n) = cases[0];
        return MeanCi {
            mean: ratio(passed, n),
            ci95: wilson(passed, n),
        };
    }
    let rates: Vec<f64> = cases.iter().map(|(p, n)| ratio(*p, *n)).collect();
    let mean = rates.iter().sum::<f64>() / c as f64;
    let clustered = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (c * (c - 1)) as f64;
    let half = t_975(c - 1) * clustered.sqrt();
    // The floor: the Wilson interval of all runs pooled, its widths moved onto this mean.
    let (passed, n) = (
        cases.iter().map(|(p, _)| p).sum(),
        cases.iter().map(|(_, n)| n).sum(),
    );
    let pooled = ratio(passed, n);
    let [low, high] = wilson(passed, n);
    MeanCi {
        mean,
        ci95: [
            (mean - half.max(pooled - low)).max(0.0),
            (mean + half.max(high - pooled)).min(1.0),
        ],
    }
}

/// The change in the mean of the cases' pass rates, after − before, paired by case
/// (`(before passed, before evaluated, after passed, after evaluated)` each), with a 95%
/// interval from the spread of the per-case differences (clustered by case, as
/// [`suite_pass_rate`]), never narrower than Newcombe's interval for all runs taken as
/// independent.
pub fn paired_pass_rate_change(cases: &[(u32, u32, u32, u32)]) -> MeanCi {
    let cases: Vec<(u32, u32, u32, u32)> = cases
        .iter()
        .copied()
        .filter(|(_, a_n, _, b_n)| *a_n > 0 && *b_n > 0)
        .collect();
    let c = cases.len();
    if c == 0 {
        return MeanCi {
            mean: 0.0,
            ci95: [-1.0, 1.0],
        };
    }
    let differences: Vec<f64> = cases
        .iter()
        .map(|(a, a_n, b, b_n)| ratio(*b, *b_n) - ratio(*a, *a_n))
        .collect();
    let mean = differences.iter().sum::<f64>() / c as f64;
    let (clustered, quantile) = if c > 1 {
        (
            differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (c * (c - 1)) as f64,
            t_975(c - 1),
        )
    } else {
        (0.0, Z95)
    };
    let half = quantile * clustered.sqrt();
    let total = |pick: fn(&(u32, u32, u32, u32)) -> u32| cases.iter().map(pick).sum::<u32>();
    let [low, high] = newcombe(
        total(|x| x.0),
        total(|x| x.1),
        total(|x| x.2),
        total(|x| x.3),
    );
    // Newcombe's interval is about the pooled rates; centre it on this mean.
    let pooled = ratio(total(|x| x.2), total(|x| x.3)) - ratio(total(|x| x.0), total(|x| x.1));
    MeanCi {
        mean,
        ci95: [
            (mean - half).min(mean + low - pooled).max(-1.0),
            (mean + half).max(mean + high - pooled).min(1.0),
        ],
    }
}

#[cfg(test)]
mod cluster_tests {
    use super::*;

    #[test]
    fn clustered_intervals_widen_when_cases_differ() {
        // Ten cases of 20 runs, half always passing and half never: 50% overall. Runs
        // treated as 200 independent draws would give ±6.9 points; the cases disagree
        // completely, so the clustered interval is t(9) · 0.5/√10 · ... = ±37.7 points.
        let cases: Vec<(u32, u32)> = (0..10).map(|i| (if i < 5 { 20 } else { 0 }, 20)).collect();
        let m = suite_pass_rate(&cases);
        assert!((m.mean - 0.5).abs() < 1e-12);
        let sd = (10.0 * 0.25 / 9.0f64).sqrt();
        let half = 2.262 * sd / 10f64.sqrt();
        assert!((m.ci95[1] - 0.5 - half).abs() < 1e-9, "{m:?}");
        // Identical cases: no spread between them, so the Wilson interval of the 200 runs
        // stands; at 100% it still has width.
        let same: Vec<(u32, u32)> = (0..10).map(|_| (15, 20)).collect();
        assert_eq!(suite_pass_rate(&same).ci95, wilson(150, 200));
        let all: Vec<(u32, u32)> = (0..10).map(|_| (20, 20)).collect();
        assert!(suite_pass_rate(&all).ci95[0] < 0.99);
        // One case: its Wilson interval.
        assert_eq!(suite_pass_rate(&[(7, 20)]).ci95, wilson(7, 20));
    }

    #[test]
    fn a_paired_change_uses_the_per_case_differences() {
        // Every case drops by exactly 5 points (20 → 19 of 20): no spread in the
        // differences, so Newcombe's interval for the 200 runs is the floor.
        let cases: Vec<(u32, u32, u32, u32)> = (0..10).map(|_| (20, 20, 19, 20)).collect();
        let change = paired_pass_rate_change(&cases);
        assert!((change.mean + 0.05).abs() < 1e-12);
        let floor = newcombe(200, 200, 190, 200);
        assert!(
            (change.ci95[0] - floor[0]).abs() < 1e-12 && (change.ci95[1] - floor[1]).abs() < 1e-12
        );
        // Differences of ±50 points around 0: wide.
        let cases: Vec<(u32, u32, u32, u32)> = (0..10)
            .map(|i| {
                if i % 2 == 0 {
                    (10, 20, 20, 20)
                } else {
                    (10, 20, 0, 20)
                }
            })
            .collect();
        let change = paired_pass_rate_change(&cases);
        assert!(change.mean.abs() < 1e-12);
        assert!(change.ci95[1] > 0.3, "{change:?}");
    }
}

#[cfg(test)]
mod rogan_gladen_tests {
    use super::*;

    #[test]
    fn a_judge_that_fails_good_answers_is_corrected_upwards() {
        // Se 0.8 (it passes 40 of 50 answers people pass), Sp 0.9 (45 of 50 people fail).
        // Judged pass rate 0.5 on 100 runs: π = (0.5 + 0.9 − 1)/(0.8 + 0.9 − 1) = 0.4/0.7.
        let c = rogan_gladen(50, 100, [[40, 5], [10, 45]]);
        let pi = c.pass_rate.expect("enough labels");
        assert!((pi - 0.4 / 0.7).abs() < 1e-12);
        assert!((c.sensitivity - 0.8).abs() < 1e-12 && (c.specificity - 0.9).abs() < 1e-12);
        let [low, high] = c.ci95.expect("an interval");
        // Wider than the binomial interval of the runs alone (±0.098 on the raw scale,
        // ±0.14 once divided by J = 0.7): the calibration's uncertainty is in it.
        assert!(high - low > 2.0 * 0.14, "{low} {high}");
        assert!(low < pi && pi < high);
        // A perfect judge changes nothing.
        let perfect = rogan_gladen(30, 60, [[20, 0], [0, 20]]);
        assert!((perfect.pass_rate.expect("labels") - 0.5).abs() < 1e-12);
    }

    #[test]
    fn too_few_labels_or_a_coin_flip_judge_are_not_corrected() {
        let few = rogan_gladen(50, 100, [[8, 1], [1, 9]]);
        assert!(few.pass_rate.is_none());
        assert!(
            few.note
                .as_deref()
                .is_some_and(|n| n.contains("too few labels"))
        );
        let chance = rogan_gladen(50, 100, [[10, 10], [10, 10]]);
        assert!(chance.pass_rate.is_none());
        assert!(chance.note.as_deref().is_some_and(|n| n.contains("chance")));
    }
}
