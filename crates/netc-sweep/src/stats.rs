//! Statistics over seeds: Student-t intervals for the mean and for one new run, paired tests
//! by seed (t-test, exact Wilcoxon signed-rank), Holm's correction across settings, and
//! Spearman's rank correlation for a trend across settings.

/// The mean of `values`, with a 95% confidence interval for it and a 95% prediction interval
/// for one more run (both need two or more values).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// The sample standard deviation (divisor n − 1).
    pub sd: Option<f64>,
    /// `mean ± t·sd/√n`.
    pub confidence: Option<(f64, f64)>,
    /// `mean ± t·sd·√(1 + 1/n)`: where one new run lands, with probability 0.95.
    pub prediction: Option<(f64, f64)>,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Summary> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Some(Summary { n, mean, sd: None, confidence: None, prediction: None });
        }
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        let t = t_quantile(0.975, (n - 1) as f64);
        let half = |scale: f64| (mean - t * sd * scale, mean + t * sd * scale);
        let n_f = n as f64;
        Some(Summary {
            n,
            mean,
            sd: Some(sd),
            confidence: Some(half(1.0 / n_f.sqrt())),
            prediction: Some(half((1.0 + 1.0 / n_f).sqrt())),
        })
    }
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, nine terms: about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
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
        // Reflection: Γ(x)Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + G + 0.5;
    let sum = C[1..].iter().enumerate().fold(C[0], |s, (i, c)| s + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The regularized incomplete beta function `I_x(a, b)`, by its continued fraction (modified
/// Lentz), on the side of `x` where it converges fast.
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - incomplete_beta(b, a, 1.0 - x);
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp() / a;
    const TINY: f64 = 1e-300;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (mut c, mut d) = (1.0, 1.0 / guard(1.0 - (a + b) * x / (a + 1.0)));
    let mut f = d;
    for m in 1..=300 {
        let m = f64::from(m);
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        f *= c * d;
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let step = c * d;
        f *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    front * f
}

/// `P(|T| ≥ |t|)` for Student's t with `df` degrees of freedom.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// The `p`-quantile of Student's t with `df` degrees of freedom, for `p` in (0.5, 1).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    let tail = 2.0 * (1.0 - p);
    let (mut lo, mut hi) = (0.0, 1e6);
    // P(|T| ≥ t) falls from 1 to 0 as t grows: bisect to full precision.
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_two_sided_p(mid, df) > tail {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The paired t-test of differences against 0: `(t, two-sided p)`; `None` for fewer than two
/// differences or differences that are all equal.
pub fn paired_t(differences: &[f64]) -> Option<(f64, f64)> {
    let s = Summary::of(differences)?;
    let sd = s.sd.filter(|&sd| sd > 0.0)?;
    let t = s.mean / (sd / (s.n as f64).sqrt());
    Some((t, t_two_sided_p(t, (s.n - 1) as f64)))
}

/// The exact two-sided p-value of the Wilcoxon signed-rank test of differences against 0:
/// zero differences are dropped, tied magnitudes get their average rank, and every assignment
/// of signs to the ranks is counted (so at most 24 non-zero differences). `None` without a
/// non-zero difference or with too many.
pub fn wilcoxon_signed_rank(differences: &[f64]) -> Option<f64> {
    let mut nonzero: Vec<f64> = differences.iter().copied().filter(|d| *d != 0.0).collect();
    let n = nonzero.len();
    if n == 0 || n > 24 {
        return None;
    }
    nonzero.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    // Average ranks of ties, doubled so they stay integers.
    let mut ranks2 = vec![0u64; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && nonzero[j + 1].abs() == nonzero[i].abs() {
            j += 1;
        }
        for r in &mut ranks2[i..=j] {
            *r = (i + j + 2) as u64; // (i + 1 + j + 1) / 2, doubled
        }
        i = j + 1;
    }
    let positive: u64 = (0..n).filter(|&k| nonzero[k] > 0.0).map(|k| ranks2[k]).sum();
    let total: u64 = ranks2.iter().sum();
    // The statistic's distance from its mean under the null, doubled.
    let observed = (2 * positive).abs_diff(total);
    let extreme = (0u64..1 << n)
        .filter(|signs| {
            let w: u64 = (0..n).filter(|&k| signs & (1 << k) != 0).map(|k| ranks2[k]).sum();
            (2 * w).abs_diff(total) >= observed
        })
        .count();
    Some(extreme as f64 / (1u64 << n) as f64)
}

/// Spearman's rank correlation of `x` and `y` (pairs), with ties given their average rank:
/// `(ρ, two-sided p)`, the p-value from the t approximation `t = ρ·√((n − 2)/(1 − ρ²))` with
/// n − 2 degrees of freedom. `None` for fewer than three pairs, lengths that differ, or a side
/// whose values are all equal.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let n = x.len();
    if n < 3 || y.len() != n {
        return None;
    }
    let (rx, ry) = (average_ranks(x), average_ranks(y));
    let mean = (n as f64 + 1.0) / 2.0;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mean) * (b - mean);
        sxx += (a - mean) * (a - mean);
        syy += (b - mean) * (b - mean);
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    let rho = (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0);
    let df = (n - 2) as f64;
    let p = if rho.abs() == 1.0 { 0.0 } else { t_two_sided_p(rho * (df / (1.0 - rho * rho)).sqrt(), df) };
    Some((rho, p))
}

/// Ranks from 1, ties sharing their average rank.
fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            ranks[k] = (i + j + 2) as f64 / 2.0;
        }
        i = j + 1;
    }
    ranks
}

/// Holm's step-down adjustment of p-values for testing several settings at once, in the
/// order given.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn t_quantiles_match_the_tables() {
        // Student's t tables (two-sided 95%).
        for (df, t) in [
            (1.0, 12.706_204_736),
            (2.0, 4.302_652_730),
            (4.0, 2.776_445_105),
            (9.0, 2.262_157_163),
            (30.0, 2.042_272_456),
        ] {
            assert!(close(t_quantile(0.975, df), t, 1e-8), "df {df}: {} vs {t}", t_quantile(0.975, df));
        }
        // df = 1 is the Cauchy distribution: P(|T| ≥ 1) = 1/2.
        assert!(close(t_two_sided_p(1.0, 1.0), 0.5, 1e-12));
    }

    #[test]
    fn intervals_of_a_small_sample_by_hand() {
        // Mean 3, sd √2.5; t(0.975, 4) = 2.776445105.
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let sd = 2.5f64.sqrt();
        assert_eq!((s.n, s.mean), (5, 3.0));
        assert!(close(s.sd.unwrap(), sd, 1e-12));
        let (lo, hi) = s.confidence.unwrap();
        assert!(close(hi - 3.0, 2.776_445_105 * sd / 5f64.sqrt(), 1e-8) && close(3.0 - lo, hi - 3.0, 1e-12));
        let (lo, hi) = s.prediction.unwrap();
        assert!(close(hi - 3.0, 2.776_445_105 * sd * 1.2f64.sqrt(), 1e-8) && close(3.0 - lo, hi - 3.0, 1e-12));
        let one = Summary::of(&[0.9]).unwrap();
        assert_eq!((one.sd, one.confidence, one.prediction), (None, None, None));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn paired_t_of_a_known_sample() {
        // t = 3 / (√2.5 / √5) = 4.242640687; two-sided p with 4 df = 0.013236 (t tables).
        let (t, p) = paired_t(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert!(close(t, 18f64.sqrt(), 1e-12));
        assert!(close(p, 0.013_236, 5e-6), "{p}");
        assert!(paired_t(&[2.0, 2.0, 2.0]).is_none(), "no spread, no test");
    }

    #[test]
    fn wilcoxon_counts_sign_assignments_exactly() {
        // Five positive differences: only the all-positive and all-negative assignments are as
        // extreme, 2 of 32.
        assert_eq!(wilcoxon_signed_rank(&[1.0, 2.0, 3.0, 4.0, 5.0]), Some(2.0 / 32.0));
        // Ranks 1, 2, 3 with signs −, +, +: W+ = 5 of 6, |2W+ − 6| = 4; assignments at least as
        // far: W+ ∈ {0, 1, 5, 6} → 4 of 8.
        assert_eq!(wilcoxon_signed_rank(&[-0.1, 0.2, 0.3]), Some(0.5));
        // Zeros are dropped; tied magnitudes share a rank.
        assert_eq!(wilcoxon_signed_rank(&[0.0, 1.0, -1.0]), Some(1.0));
        assert_eq!(wilcoxon_signed_rank(&[0.0]), None);
    }

    #[test]
    fn holm_multiplies_by_the_remaining_count_and_stays_monotone() {
        assert_eq!(holm(&[0.01, 0.04, 0.03]), vec![0.03, 0.06, 0.06]);
        assert_eq!(holm(&[0.5, 0.9]), vec![1.0, 1.0]);
        assert_eq!(holm(&[]), Vec::<f64>::new());
    }

    #[test]
    fn spearman_ranks_ties_by_their_average() {
        // Monotone but not linear: ρ = 1.
        assert_eq!(spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 4.0, 9.0, 100.0]).map(|(r, _)| r), Some(1.0));
        // x ranks 1 2 3 4 5, y = [2, 1, 4, 3, 5] ranks 2 1 4 3 5: Σd² = 4, ρ = 1 − 6·4/(5·24) = 0.8;
        // t = 0.8·√(3/0.36) = 2.3094, two-sided p with 3 df = 0.10409 (the closed form of t with 3 df).
        let (rho, p) = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 1.0, 4.0, 3.0, 5.0]).unwrap();
        assert!(close(rho, 0.8, 1e-12), "{rho}");
        assert!(close(p, 0.10409, 1e-4), "{p}");
        // Ties: y = [1, 1, 2, 2] ranks 1.5 1.5 3.5 3.5 against 1 2 3 4: ρ = 4/√(5·4) = 0.8944.
        let (rho, _) = spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 1.0, 2.0, 2.0]).unwrap();
        assert!(close(rho, 4.0 / 20f64.sqrt(), 1e-12), "{rho}");
        assert!(spearman(&[1.0, 2.0, 3.0], &[5.0, 5.0, 5.0]).is_none());
        assert!(spearman(&[1.0, 2.0], &[1.0, 2.0]).is_none());
    }
}
