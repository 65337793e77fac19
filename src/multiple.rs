//! Many cases, one verdict: multiple-testing adjustments of per-case p-values.
//!
//! - [`holm`]: Holm's (1979) step-down procedure; adjusted p-values as R's
//!   `p.adjust(p, "holm")` gives them. Controls the family-wise error rate (the chance of
//!   one or more false alarms) under any dependence.
//! - [`discrete_holm`]: the same step-down with each test's exact null distribution in
//!   place of the uniform one (Westfall & Wolfinger 1997; the "discrete Holm" of Döhler,
//!   Durand & Roquain 2018). Fisher's test on 20 runs can reach only a few p-values; a case
//!   whose table cannot reach small ones (every run passing on both sides) uses up none of
//!   the budget, and the others keep their power. With continuous p-values it is Holm.
//! - [`benjamini_hochberg`]: the false discovery rate's q-values (1995), as
//!   `p.adjust(p, "BH")`, for the "which cases moved" list: diagnosis, not the gate.

/// What a test's p-value is under its null hypothesis: the chance that it is at or below t.
#[derive(Debug, Clone, PartialEq)]
pub enum Null {
    /// At most t (a continuous or conservative test).
    Uniform,
    /// A discrete test: the p-values it can give, ascending. The chance of one at or below
    /// t is the largest of them at or below t.
    Attainable(Vec<f64>),
}

impl Null {
    /// P(p ≤ t) under the null.
    pub fn cdf(&self, t: f64) -> f64 {
        match self {
            Null::Uniform => t.clamp(0.0, 1.0),
            Null::Attainable(values) => {
                // A hair of slack so an observed p-value, computed the same way, counts as
                // attainable at itself.
                let at = values.partition_point(|v| *v <= t * (1.0 + 1e-12));
                if at == 0 { 0.0 } else { values[at - 1] }
            }
        }
    }
}

/// The order of `p` ascending (ties by position, so results never depend on sort luck).
fn ascending(p: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|a, b| p[*a].total_cmp(&p[*b]).then(a.cmp(b)));
    order
}

/// Holm's adjusted p-values.
pub fn holm(p: &[f64]) -> Vec<f64> {
    discrete_holm(p, &vec![Null::Uniform; p.len()])
}

/// The discrete Holm step-down's adjusted p-values: for the i-th smallest p-value,
/// the largest over j ≤ i of Σ over the tests ranked j or later of F_k(p_(j)), capped at 1.
/// A case is a regression at level α when its adjusted p-value is at most α.
pub fn discrete_holm(p: &[f64], nulls: &[Null]) -> Vec<f64> {
    let order = ascending(p);
    let mut adjusted = vec![1.0; p.len()];
    let mut running: f64 = 0.0;
    for (rank, &at) in order.iter().enumerate() {
        // Once the running maximum reaches 1 every later one is 1: stop summing (this keeps
        // a 2,000-case family from costing m² evaluations).
        if running < 1.0 {
            let t = p[at];
            let sum: f64 = order[rank..].iter().map(|&k| nulls[k].cdf(t)).sum();
            running = running.max(sum.min(1.0));
        }
        adjusted[at] = running;
    }
    adjusted
}

/// Benjamini–Hochberg q-values: for the i-th smallest of m p-values, the smallest over
/// j ≥ i of m·p_(j)/j, capped at 1.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len() as f64;
    let order = ascending(p);
    let mut q = vec![1.0; p.len()];
    let mut running: f64 = 1.0;
    for (rank, &at) in order.iter().enumerate().rev() {
        running = running.min(m * p[at] / (rank + 1) as f64);
        q[at] = running.min(1.0);
    }
    q
}

/// The first step's critical value: the largest t with Σ_k F_k(t) ≤ α. A test whose
/// p-value is at or below it is rejected whatever the others do; the power figures use it
/// as the level a single regressed case faces.
pub fn first_step_threshold(nulls: &[Null], alpha: f64) -> f64 {
    let uniform = nulls.iter().filter(|n| **n == Null::Uniform).count() as f64;
    let mut jumps: Vec<f64> = nulls
        .iter()
        .filter_map(|n| match n {
            Null::Attainable(values) => Some(values.iter().copied()),
            Null::Uniform => None,
        })
        .flatten()
        .filter(|v| *v <= alpha)
        .collect();
    jumps.sort_by(f64::total_cmp);
    jumps.dedup();
    let discrete_sum = |t: f64| -> f64 {
        nulls
            .iter()
            .filter(|n| **n != Null::Uniform)
            .map(|n| n.cdf(t))
            .sum()
    };
    // Between two jumps the sum is D + u·t: the threshold is where it reaches α, or just
    // below the next jump.
    let mut best = 0.0;
    let mut starts = vec![0.0];
    starts.extend(jumps.iter().copied());
    for (i, start) in starts.iter().enumerate() {
        let d = discrete_sum(*start);
        if d + uniform * start > alpha {
            break;
        }
        // The next jump itself is not reached: there the sum has already grown.
        let end = starts.get(i + 1).map_or(alpha, |next| next * (1.0 - 1e-9));
        let reach = if uniform > 0.0 {
            ((alpha - d) / uniform).min(end)
        } else {
            // Within [start, next jump) no discrete test adds mass: any t there is as good
            // as `start`, the last attainable value counted.
            *start
        };
        best = f64::max(best, reach.max(*start));
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from R 4.3 (`p.adjust(p, "holm")`, `p.adjust(p, "BH")`), which
    // scipy.stats.false_discovery_control and statsmodels' multipletests reproduce.
    const P: [f64; 10] = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10];

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn holm_matches_r_p_adjust() {
        close(
            &holm(&P),
            &[0.10, 0.18, 0.24, 0.28, 0.30, 0.30, 0.30, 0.30, 0.30, 0.30],
        );
        // Order does not matter; ties keep their values.
        close(&holm(&[0.04, 0.01, 0.04]), &[0.08, 0.03, 0.08]);
        close(&holm(&[0.5, 0.9]), &[1.0, 1.0]);
    }

    #[test]
    fn benjamini_hochberg_matches_r_p_adjust() {
        close(&benjamini_hochberg(&P), &[0.10; 10]);
        close(
            &benjamini_hochberg(&[0.001, 0.008, 0.039, 0.041, 0.042, 0.060, 0.074, 0.205]),
            &[
                0.008,
                0.032,
                0.0672,
                0.0672,
                0.0672,
                0.08,
                0.08457142857142857,
                0.205,
            ],
        );
    }

    #[test]
    fn discrete_holm_uses_what_each_test_can_reach() {
        // A test that can only give 1 (every run passing on both sides) costs nothing;
        // the other one is then judged alone, as if it were the only case.
        let nulls = vec![
            Null::Attainable(vec![0.004, 0.03, 0.2, 1.0]),
            Null::Attainable(vec![1.0]),
            Null::Attainable(vec![1.0]),
        ];
        let adjusted = discrete_holm(&[0.004, 1.0, 1.0], &nulls);
        assert!((adjusted[0] - 0.004).abs() < 1e-15, "{adjusted:?}");
        // Plain Holm would charge it three times.
        assert!((holm(&[0.004, 1.0, 1.0])[0] - 0.012).abs() < 1e-15);
        // Two discrete tests: at t = 0.01 the second can reach 0.008 at most.
        let nulls = vec![
            Null::Attainable(vec![0.01, 0.3, 1.0]),
            Null::Attainable(vec![0.008, 0.5, 1.0]),
        ];
        let adjusted = discrete_holm(&[0.01, 0.5], &nulls);
        assert!((adjusted[0] - 0.018).abs() < 1e-15, "{adjusted:?}");
        // Second step: only itself left, F(0.5) = 0.5; the running maximum keeps it ≥ 0.018.
        assert!((adjusted[1] - 0.5).abs() < 1e-15);
        // Never more than Holm.
        let holm = holm(&[0.01, 0.5]);
        assert!(adjusted.iter().zip(&holm).all(|(d, h)| d <= h));
    }

    #[test]
    fn the_first_step_threshold_spends_the_budget_on_reachable_values() {
        // Uniform only: Bonferroni's α/m.
        let t = first_step_threshold(&vec![Null::Uniform; 4], 0.05);
        assert!((t - 0.0125).abs() < 1e-15);
        // One discrete test reaching 0.004 then 0.03, and one uniform: below 0.004 only the
        // uniform counts; from 0.004 the sum is 0.004 + t, within 0.05 up to 0.046, but at
        // 0.03 the discrete test jumps to 0.03 + 0.03 > 0.05: t stops just below 0.03.
        let nulls = vec![Null::Attainable(vec![0.004, 0.03, 1.0]), Null::Uniform];
        let t = first_step_threshold(&nulls, 0.05);
        assert!(t < 0.03 && t > 0.03 - 1e-9, "{t}");
        assert!(nulls.iter().map(|n| n.cdf(t)).sum::<f64>() <= 0.05);
        // Tests that reach nothing small leave the whole α to the rest.
        let nulls = vec![Null::Attainable(vec![1.0]), Null::Uniform];
        assert!((first_step_threshold(&nulls, 0.05) - 0.05).abs() < 1e-15);
    }
}
