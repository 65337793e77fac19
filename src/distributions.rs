//! Probability distributions the statistics are built from: log-gamma and log-binomial
//! coefficients, the binomial and hypergeometric laws, the normal distribution, and the
//! beta function. Plain functions, no state; `stats`, `sequential` and the gate's
//! procedures build on them.

/// ln Γ(x), Lanczos approximation (g = 7, n = 9): about 15 significant digits.
pub fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return std::f64::consts::PI.ln()
            - (std::f64::consts::PI * x).sin().ln()
            - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b).
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// ln k! for k = 0..=n, by summing logarithms (exact to rounding, unlike Stirling): the
/// table the exact tests index.
pub fn ln_factorials(n: usize) -> Vec<f64> {
    std::iter::once(0.0)
        .chain((1..=n).scan(0.0, |acc, i| {
            *acc += (i as f64).ln();
            Some(*acc)
        }))
        .collect()
}

/// ln C(n, k) from a table of ln factorials at least n long.
pub fn ln_choose(ln_fact: &[f64], n: u32, k: u32) -> f64 {
    ln_fact[n as usize] - ln_fact[k as usize] - ln_fact[(n - k) as usize]
}

/// The binomial probabilities P(X = x) for x = 0..=n, X ~ Bin(n, p).
pub fn binomial_pmf(n: u32, p: f64, ln_fact: &[f64]) -> Vec<f64> {
    let p = p.clamp(0.0, 1.0);
    (0..=n)
        .map(|x| {
            if p == 0.0 {
                f64::from(u8::from(x == 0))
            } else if p == 1.0 {
                f64::from(u8::from(x == n))
            } else {
                (ln_choose(ln_fact, n, x)
                    + f64::from(x) * p.ln()
                    + f64::from(n - x) * (1.0 - p).ln())
                .exp()
            }
        })
        .collect()
}

/// The law of side A's passes in a 2×2 table with fixed margins: `a_n` and `b_n` runs,
/// `passes` passes in all. Under "both sides pass at the same rate" A's passes are
/// hypergeometric; this is the distribution Fisher's exact test conditions on.
#[derive(Debug, Clone)]
pub struct Hypergeometric {
    /// The smallest possible count of A's passes.
    pub low: u32,
    /// P(X = low + i), i = 0.. up to the largest possible count.
    pub pmf: Vec<f64>,
}

impl Hypergeometric {
    pub fn new(a_n: u32, b_n: u32, passes: u32, ln_fact: &[f64]) -> Hypergeometric {
        let low = passes.saturating_sub(b_n);
        let high = passes.min(a_n);
        let total = ln_choose(ln_fact, a_n + b_n, passes);
        let pmf = (low..=high)
            .map(|x| {
                (ln_choose(ln_fact, a_n, x) + ln_choose(ln_fact, b_n, passes - x) - total).exp()
            })
            .collect();
        Hypergeometric { low, pmf }
    }

    pub fn high(&self) -> u32 {
        self.low + self.pmf.len() as u32 - 1
    }

    /// P(X ≥ x), clamped to [0, 1]: summed from the top down, as [`Self::upper_tails`]
    /// does, so both give the same bits.
    pub fn upper_tail(&self, x: u32) -> f64 {
        if x <= self.low {
            return 1.0;
        }
        let from = (x - self.low) as usize;
        self.pmf[from..].iter().rev().sum::<f64>().min(1.0)
    }

    /// P(X ≥ x) for every x from `low` to the top, in that order.
    pub fn upper_tails(&self) -> Vec<f64> {
        let mut tails = vec![0.0; self.pmf.len()];
        let mut sum = 0.0;
        for (i, p) in self.pmf.iter().enumerate().rev() {
            sum += p;
            tails[i] = sum.min(1.0);
        }
        tails[0] = 1.0;
        tails
    }

    /// P(X ≤ x), clamped to [0, 1].
    pub fn lower_tail(&self, x: u32) -> f64 {
        if x < self.low {
            return 0.0;
        }
        let to = ((x - self.low) as usize + 1).min(self.pmf.len());
        self.pmf[..to].iter().sum::<f64>().min(1.0)
    }
}

/// Φ(z), the standard normal distribution function.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// 1 − Φ(z), computed directly so far tails keep their digits.
pub fn normal_upper(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function by Numerical Recipes' Chebyshev fit (`erfcc`, 6.2):
/// fractional error below 1.2e-7 everywhere, far tails included, which is plenty for
/// p-values.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The standard normal quantile Φ⁻¹(p), by Acklam's rational approximation refined with
/// one Halley step (relative error about 1e-15).
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let low = 0.024_25;
    let x = if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // One Halley step on Φ(x) − p.
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// Two binomial samples, side A's `a_pass` of `a_n` and side B's `b_pass` of `b_n`, and
/// their log-likelihood as a function of the two pass rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TwoSamples {
    pub a_pass: u32,
    pub a_n: u32,
    pub b_pass: u32,
    pub b_n: u32,
}

impl TwoSamples {
    /// ln L(a, b) of the runs in order (no binomial coefficients): Σ x ln p + (n − x) ln(1 − p).
    pub fn log_likelihood(&self, a: f64, b: f64) -> f64 {
        let term = |x: u32, p: f64| {
            if x == 0 { 0.0 } else { f64::from(x) * p.ln() }
        };
        term(self.a_pass, a)
            + term(self.a_n - self.a_pass, 1.0 - a)
            + term(self.b_pass, b)
            + term(self.b_n - self.b_pass, 1.0 - b)
    }

    pub fn rates(&self) -> (f64, f64) {
        let rate = |x: u32, n: u32| {
            if n == 0 {
                0.0
            } else {
                f64::from(x) / f64::from(n)
            }
        };
        (rate(self.a_pass, self.a_n), rate(self.b_pass, self.b_n))
    }

    /// The rates that maximise the likelihood on the line a − b = `drop` (the boundary of
    /// a "B is worse by at most / at least `drop`" hypothesis). The log-likelihood is
    /// concave along the line, so a golden-section search finds the maximum.
    pub fn boundary_mle(&self, drop: f64) -> (f64, f64) {
        let (mut low, mut high) = (drop.max(0.0), (1.0 + drop).min(1.0));
        let along = |a: f64| self.log_likelihood(a, (a - drop).clamp(0.0, 1.0));
        let ratio = (5f64.sqrt() - 1.0) / 2.0;
        for _ in 0..200 {
            if high - low < 1e-13 {
                break;
            }
            let left = high - ratio * (high - low);
            let right = low + ratio * (high - low);
            if along(left) < along(right) {
                low = left;
            } else {
                high = right;
            }
        }
        let a = (low + high) / 2.0;
        (a, (a - drop).clamp(0.0, 1.0))
    }

    /// The largest log-likelihood where B's rate is below A's by at most `drop`
    /// (`at_most`) or by at least `drop`.
    pub fn max_log_likelihood(&self, drop: f64, at_most: bool) -> f64 {
        let (a, b) = self.rates();
        let inside = if at_most {
            a - b <= drop
        } else {
            a - b >= drop
        };
        if inside {
            self.log_likelihood(a, b)
        } else {
            let (a, b) = self.boundary_mle(drop);
            self.log_likelihood(a, b)
        }
    }

    /// ln of the Jeffreys-prior (Beta(½, ½)) marginal likelihood of both sides' runs: the
    /// mixture over every pair of rates.
    pub fn ln_mixture_likelihood(&self) -> f64 {
        let side = |x: u32, n: u32| {
            ln_beta(f64::from(x) + 0.5, f64::from(n - x) + 0.5) - ln_beta(0.5, 0.5)
        };
        side(self.a_pass, self.a_n) + side(self.b_pass, self.b_n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_distribution_matches_tables() {
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-7);
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        // 1 − Φ(5) = 2.8665e-7 (Abramowitz & Stegun 26.2).
        assert!((normal_upper(5.0) / 2.866_515_7e-7 - 1.0).abs() < 1e-6);
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-6);
        assert!((normal_quantile(0.8) - 0.841_621).abs() < 1e-6);
        assert!((normal_quantile(1e-4) + 3.719_016).abs() < 1e-5);
    }

    #[test]
    fn hypergeometric_tails_sum_to_one_and_match_a_hand_count() {
        let ln_fact = ln_factorials(40);
        // 10 and 10 runs, 16 passes: A holds 6..=10 of them; P(A = 10) = C(10,10)C(10,6)/C(20,16)
        // = 210/4845.
        let h = Hypergeometric::new(10, 10, 16, &ln_fact);
        assert_eq!((h.low, h.high()), (6, 10));
        assert!((h.pmf.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((h.upper_tail(10) - 210.0 / 4845.0).abs() < 1e-12);
        assert!((h.lower_tail(10) - 1.0).abs() < 1e-12);
        assert_eq!(h.upper_tail(6), 1.0);
        let b = binomial_pmf(4, 0.5, &ln_fact);
        assert!((b[2] - 6.0 / 16.0).abs() < 1e-12);
        assert_eq!(binomial_pmf(3, 1.0, &ln_fact), vec![0.0, 0.0, 0.0, 1.0]);
    }
}
