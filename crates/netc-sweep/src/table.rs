//! A sweep's results: one [`Outcome`] per run, `sweep.csv`, and the per-setting table of mean ±
//! sample standard deviation over seeds, with the 95% interval of the mean and the 95% prediction
//! interval of one more run.

use crate::grid::Point;
use crate::stats::{holm, paired_t, wilcoxon_signed_rank, Summary};
use std::cmp::Ordering;
use std::fmt::Write as _;

/// The columns of `sweep.csv` after the swept parameters. Errors are fractions, as in
/// `metrics.csv`; `gap` is test error minus training error.
pub const CSV_COLUMNS: &str = "seed,epochs,train_error,test_error,gap,best_epoch,best_test_error,diverged";

/// How one run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub point: Point,
    /// Epochs finished.
    pub epochs: usize,
    /// The last finished epoch's errors (a diverged run's last good epoch, if any).
    pub last: Option<Errors>,
    /// The epoch with the lowest test error (the first, on ties) and that error.
    pub best: Option<(usize, f64)>,
    pub diverged: bool,
}

/// Error rates as fractions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Errors {
    pub train: f64,
    pub test: f64,
}

impl Outcome {
    pub fn new(point: Point, metrics: &[netc::train::EpochMetrics], diverged: bool) -> Outcome {
        let last = metrics.last().map(|m| Errors { train: m.train_error, test: m.test_error });
        let best = metrics.iter().fold(None, |best: Option<(usize, f64)>, m| match best {
            Some((_, error)) if error <= m.test_error => best,
            _ => Some((m.epoch, m.test_error)),
        });
        Outcome { point, epochs: metrics.len(), last, best, diverged }
    }
}

/// Orders runs by their parameter values (as numbers where both are numbers), then seed.
pub fn sort(outcomes: &mut [Outcome]) {
    outcomes.sort_by(|a, b| compare_params(&a.point.params, &b.point.params).then(a.point.seed.cmp(&b.point.seed)));
}

fn compare_params(a: &[(String, String)], b: &[(String, String)]) -> Ordering {
    a.iter().zip(b).map(|((_, x), (_, y))| compare_values(x, y)).find(|o| o.is_ne()).unwrap_or(Ordering::Equal)
}

fn compare_values(a: &str, b: &str) -> Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    }
}

/// `sweep.csv`: a header of the parameter names and [`CSV_COLUMNS`], one row per run.
pub fn to_csv(names: &[String], outcomes: &[Outcome]) -> String {
    let mut csv = names.iter().map(|n| format!("{n},")).collect::<String>() + CSV_COLUMNS + "\n";
    let number = |x: Option<f64>| x.map_or(String::new(), |x| x.to_string());
    for o in outcomes {
        for (_, value) in &o.point.params {
            csv += &csv_field(value);
            csv.push(',');
        }
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{}",
            o.point.seed,
            o.epochs,
            number(o.last.map(|e| e.train)),
            number(o.last.map(|e| e.test)),
            number(o.last.map(|e| e.test - e.train)),
            o.best.map_or(String::new(), |(epoch, _)| epoch.to_string()),
            number(o.best.map(|(_, error)| error)),
            if o.diverged { "yes" } else { "no" }
        );
    }
    csv
}

/// Quotes a value holding a comma or quote (a list or a string parameter).
fn csv_field(value: &str) -> String {
    if value.contains([',', '"']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// Reads `sweep.csv` back: the parameter names and the runs.
pub fn read_csv(path: &std::path::Path) -> Result<(Vec<String>, Vec<Outcome>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(names) = header.strip_suffix(CSV_COLUMNS) else {
        return Err(format!("{}: not a netc sweep.csv (its header does not end in `{CSV_COLUMNS}`)", path.display()));
    };
    let names: Vec<String> = names.split(',').filter(|n| !n.is_empty()).map(String::from).collect();
    let columns = names.len() + CSV_COLUMNS.split(',').count();
    lines
        .enumerate()
        .map(|(i, line)| {
            let bad = || format!("{}:{}: not a sweep.csv row", path.display(), i + 2);
            let fields = split_csv(line);
            if fields.len() != columns {
                return Err(bad());
            }
            let (params, rest) = fields.split_at(names.len());
            let float = |text: &str| if text.is_empty() { Ok(None) } else { text.parse::<f64>().map(Some) };
            let [seed, epochs, train, test, _gap, best_epoch, best_error, diverged] = rest else {
                return Err(bad());
            };
            let (train, test, best_error) = (
                float(train).map_err(|_| bad())?,
                float(test).map_err(|_| bad())?,
                float(best_error).map_err(|_| bad())?,
            );
            let best_epoch: Option<usize> = if best_epoch.is_empty() { None } else { best_epoch.parse().ok() };
            Ok(Outcome {
                point: Point {
                    params: names.iter().cloned().zip(params.iter().cloned()).collect(),
                    seed: seed.parse().map_err(|_| bad())?,
                },
                epochs: epochs.parse().map_err(|_| bad())?,
                last: train.zip(test).map(|(train, test)| Errors { train, test }),
                best: best_epoch.zip(best_error),
                diverged: match diverged.as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(bad()),
                },
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|outcomes| (names, outcomes))
}

fn split_csv(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted, mut chars) = (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// One setting's line of the table, in percent over the runs that did not diverge.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub params: Vec<(String, String)>,
    pub test: Option<Summary>,
    pub train: Option<Summary>,
    pub gap: Option<Summary>,
    pub runs: usize,
    pub diverged: usize,
}

/// Groups sorted runs by setting.
pub fn summarise(outcomes: &[Outcome]) -> Vec<Row> {
    let mut rows: Vec<(Row, Vec<Errors>)> = Vec::new();
    for o in outcomes {
        if rows.last().is_none_or(|(row, _)| row.params != o.point.params) {
            let row = Row { params: o.point.params.clone(), test: None, train: None, gap: None, runs: 0, diverged: 0 };
            rows.push((row, Vec::new()));
        }
        let Some((row, errors)) = rows.last_mut() else { continue };
        row.runs += 1;
        match (o.diverged, o.last) {
            (true, _) => row.diverged += 1,
            (false, Some(e)) => errors.push(e),
            (false, None) => {}
        }
    }
    rows.into_iter()
        .map(|(mut row, errors)| {
            let percent = |f: &dyn Fn(&Errors) -> f64| errors.iter().map(|e| 100.0 * f(e)).collect::<Vec<f64>>();
            row.test = Summary::of(&percent(&|e| e.test));
            row.train = Summary::of(&percent(&|e| e.train));
            row.gap = Summary::of(&percent(&|e| e.test - e.train));
            row
        })
        .collect()
}

/// One setting against the baseline setting, run for run with the same seed (same
/// initialisation and data order): differences of test error in percentage points.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub params: Vec<(String, String)>,
    /// Seeds that both settings finished without diverging.
    pub pairs: usize,
    pub mean_difference: Option<f64>,
    /// Two-sided p-values of the paired t-test and the exact Wilcoxon signed-rank test, and
    /// each Holm-adjusted across the settings compared.
    pub t_p: Option<f64>,
    pub wilcoxon_p: Option<f64>,
    pub t_holm: Option<f64>,
    pub wilcoxon_holm: Option<f64>,
}

/// Compares every setting whose `name` is not `value` with the setting that differs from it
/// only in `name = value`, pairing runs by seed. `None` when no setting has `name = value`.
pub fn compare(outcomes: &[Outcome], name: &str, value: &str) -> Option<Vec<Comparison>> {
    let is_baseline = |o: &Outcome| o.point.params.iter().any(|(n, v)| n == name && v == value);
    if !outcomes.iter().any(is_baseline) {
        return None;
    }
    let test = |o: &Outcome| if o.diverged { None } else { o.last.map(|e| 100.0 * e.test) };
    let mut settings: Vec<Paired> = Vec::new();
    for o in outcomes.iter().filter(|o| !is_baseline(o)) {
        if settings.last().is_none_or(|s| s.params != o.point.params.as_slice()) {
            settings.push(Paired { params: &o.point.params, differences: Vec::new() });
        }
        let baseline: Vec<(String, String)> = o
            .point
            .params
            .iter()
            .map(|(n, v)| (n.clone(), if n == name { value.to_string() } else { v.clone() }))
            .collect();
        let partner = outcomes.iter().find(|b| b.point.params == baseline && b.point.seed == o.point.seed);
        if let (Some(a), Some(b), Some(setting)) = (test(o), partner.and_then(test), settings.last_mut()) {
            setting.differences.push(a - b);
        }
    }
    let mut comparisons: Vec<Comparison> = settings
        .into_iter()
        .map(|Paired { params, differences: d }| Comparison {
            params: params.to_vec(),
            pairs: d.len(),
            mean_difference: Summary::of(&d).map(|s| s.mean),
            t_p: paired_t(&d).map(|(_, p)| p),
            wilcoxon_p: wilcoxon_signed_rank(&d),
            t_holm: None,
            wilcoxon_holm: None,
        })
        .collect();
    adjust(&mut comparisons, |c| c.t_p, |c, p| c.t_holm = Some(p));
    adjust(&mut comparisons, |c| c.wilcoxon_p, |c, p| c.wilcoxon_holm = Some(p));
    Some(comparisons)
}

/// A setting's parameters and its differences from the baseline, seed by seed.
struct Paired<'a> {
    params: &'a [(String, String)],
    differences: Vec<f64>,
}

/// Holm-adjusts the p-values `get` finds, across the comparisons that have one.
fn adjust(comparisons: &mut [Comparison], get: fn(&Comparison) -> Option<f64>, set: fn(&mut Comparison, f64)) {
    let tested: Vec<usize> = (0..comparisons.len()).filter(|&i| get(&comparisons[i]).is_some()).collect();
    let p: Vec<f64> = tested.iter().filter_map(|&i| get(&comparisons[i])).collect();
    for (&i, adjusted) in tested.iter().zip(holm(&p)) {
        set(&mut comparisons[i], adjusted);
    }
}

/// The table of [`compare`]'s comparisons.
pub fn render_comparisons(names: &[String], comparisons: &[Comparison]) -> String {
    let number = |v: Option<f64>, digits: usize| v.map_or("–".to_string(), |v| format!("{v:.digits$}"));
    let mut header: Vec<String> = names.to_vec();
    header.extend(["pairs", "Δ test error (pp)", "paired t p", "Holm", "Wilcoxon p", "Holm"].map(String::from));
    let lines: Vec<Vec<String>> = comparisons
        .iter()
        .map(|c| {
            let mut line: Vec<String> = c.params.iter().map(|(_, v)| v.clone()).collect();
            line.extend([
                c.pairs.to_string(),
                number(c.mean_difference, 2),
                number(c.t_p, 4),
                number(c.t_holm, 4),
                number(c.wilcoxon_p, 4),
                number(c.wilcoxon_holm, 4),
            ]);
            line
        })
        .collect();
    aligned(&header, &lines)
}

/// The table `netc sweep` prints, like the thesis's Table 7.
pub fn render(names: &[String], rows: &[Row]) -> String {
    let cell = |s: Option<Summary>| match s {
        Some(Summary { mean, sd: Some(sd), .. }) => format!("{mean:.2} ± {sd:.2}"),
        Some(Summary { mean, sd: None, .. }) => format!("{mean:.2} ± –"),
        None => "–".to_string(),
    };
    let interval = |i: Option<(f64, f64)>| i.map_or("–".to_string(), |(lo, hi)| format!("[{lo:.2}, {hi:.2}]"));
    let mut header: Vec<String> = names.to_vec();
    header.extend(
        ["test error %", "95% CI", "95% PI", "train error %", "gap (test − train)", "runs", "diverged"]
            .map(String::from),
    );
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut line: Vec<String> = r.params.iter().map(|(_, v)| v.clone()).collect();
            line.extend([
                cell(r.test),
                interval(r.test.and_then(|s| s.confidence)),
                interval(r.test.and_then(|s| s.prediction)),
                cell(r.train),
                cell(r.gap),
                r.runs.to_string(),
                r.diverged.to_string(),
            ]);
            line
        })
        .collect();
    aligned(&header, &lines)
}

/// Columns padded to their widest cell, under a rule.
fn aligned(header: &[String], lines: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| lines.iter().map(|l| l[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let format_line = |cells: &[String]| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, &w)| format!("{c}{}", " ".repeat(w - c.chars().count()))).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut text = format_line(header);
    text += &format_line(&widths.iter().map(|&w| "─".repeat(w)).collect::<Vec<_>>());
    for line in lines {
        text += &format_line(line);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(negfrac: &str, seed: u64, train: f64, test: f64, diverged: bool) -> Outcome {
        Outcome {
            point: Point { params: vec![("negfrac".into(), negfrac.into())], seed },
            epochs: 5,
            last: Some(Errors { train, test }),
            best: Some((4, test)),
            diverged,
        }
    }

    #[test]
    fn rows_group_settings_and_leave_diverged_runs_out_of_the_means() {
        let mut runs = vec![
            outcome("0.1", 0, 0.9, 0.9, true),
            outcome("0.04", 1, 0.01, 0.02, false),
            outcome("0", 0, 0.0, 0.01, false),
            outcome("0.04", 0, 0.03, 0.04, false),
            outcome("0.1", 1, 0.02, 0.05, false),
        ];
        sort(&mut runs);
        let order: Vec<(String, u64)> = runs.iter().map(|o| (o.point.params[0].1.clone(), o.point.seed)).collect();
        assert_eq!(order[..3], [("0".into(), 0), ("0.04".into(), 0), ("0.04".into(), 1)]);
        let rows = summarise(&runs);
        assert_eq!(rows.len(), 3);
        let row = &rows[1];
        assert_eq!((row.runs, row.diverged), (2, 0));
        assert!((row.test.unwrap().mean - 3.0).abs() < 1e-9);
        assert!((row.test.unwrap().sd.unwrap() - 2f64.sqrt()).abs() < 1e-9);
        assert!((row.gap.unwrap().mean - 1.0).abs() < 1e-9);
        assert_eq!((rows[2].runs, rows[2].diverged), (2, 1));
        assert!((rows[2].test.unwrap().mean - 5.0).abs() < 1e-9);
        assert_eq!(rows[2].test.unwrap().sd, None);

        let table = render(&["negfrac".into()], &rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("negfrac  test error %"), "{table}");
        // Two runs at 2% and 4%: t(0.975, 1) = 12.706, so the mean's interval is 3 ± 12.71 and
        // one more run's 3 ± 12.71·√1.5 = 3 ± 22.01.
        let want = "0.04     3.00 ± 1.41   [-9.71, 15.71]  [-19.01, 25.01]  2.00 ± 1.41    1.00 ± 0.00";
        assert!(lines[3].starts_with(want), "{table}");
        assert!(lines[4].contains("5.00 ± –") && lines[4].ends_with("2     1"), "{table}");
    }

    #[test]
    fn settings_compare_with_the_baseline_run_for_run_by_seed() {
        // Test errors in percent: baseline 1.0, 1.2, 0.9, 1.1, 1.0; 4% NegLUs +0.1, +0.3, +0.2,
        // +0.4, +0.5 above them; 10% NegLUs, with seed 4 diverged.
        let base = [1.0, 1.2, 0.9, 1.1, 1.0];
        let mut runs = Vec::new();
        for (seed, &b) in base.iter().enumerate() {
            runs.push(outcome("0", seed as u64, 0.0, b / 100.0, false));
            runs.push(outcome("0.04", seed as u64, 0.0, (b + [0.1, 0.3, 0.2, 0.4, 0.5][seed]) / 100.0, false));
            runs.push(outcome("0.1", seed as u64, 0.0, (b - [0.2, 0.1, 0.3, -0.1, 0.0][seed]) / 100.0, seed == 4));
        }
        sort(&mut runs);
        let comparisons = compare(&runs, "negfrac", "0").unwrap();
        assert_eq!(comparisons.len(), 2);
        let (four, ten) = (&comparisons[0], &comparisons[1]);
        assert_eq!((four.pairs, ten.pairs), (5, 4), "the diverged run has no pair");
        assert!((four.mean_difference.unwrap() - 0.3).abs() < 1e-9);
        let d4 = [0.1, 0.3, 0.2, 0.4, 0.5];
        let (_, t4) = paired_t(&d4).unwrap();
        assert!((four.t_p.unwrap() - t4).abs() < 1e-9);
        // All five differences positive: 2 of 32 sign assignments are as extreme.
        assert_eq!(four.wilcoxon_p, Some(0.0625));
        let (_, t10) = paired_t(&[-0.2, -0.1, -0.3, 0.1]).unwrap();
        // Holm over the two settings: the smaller p doubled, the larger kept (and monotone).
        let (small, large) = (t4.min(t10), t4.max(t10));
        let holm_of = |p: f64| if p == small { 2.0 * small } else { large.max(2.0 * small) };
        assert!((four.t_holm.unwrap() - holm_of(t4)).abs() < 1e-9);
        assert!((ten.t_holm.unwrap() - holm_of(t10)).abs() < 1e-9);
        assert!(compare(&runs, "negfrac", "0.5").is_none());
        let table = render_comparisons(&["negfrac".into()], &comparisons);
        assert!(table.lines().nth(2).unwrap().starts_with("0.04     5      0.30"), "{table}");
    }

    #[test]
    fn csv_round_trips() {
        let mut runs = vec![outcome("0.04", 1, 0.01, 0.02, false), outcome("0.1", 0, 0.5, 0.9, true)];
        runs[1].last = None;
        runs[1].best = None;
        runs[1].epochs = 0;
        let names = vec!["negfrac".to_string()];
        let csv = to_csv(&names, &runs);
        assert!(csv.starts_with("negfrac,seed,epochs,train_error,test_error,gap,best_epoch,best_test_error,diverged\n"));
        assert!(csv.contains("\n0.04,1,5,0.01,0.02,0.01,4,0.02,no\n"), "{csv}");
        assert!(csv.contains("\n0.1,0,0,,,,,,yes\n"), "{csv}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.csv");
        std::fs::write(&path, &csv).unwrap();
        assert_eq!(read_csv(&path).unwrap(), (names, runs));
    }

    #[test]
    fn best_epoch_is_the_first_lowest_test_error() {
        let m = |epoch, test_error| netc::train::EpochMetrics {
            epoch,
            train_loss: 0.0,
            train_error: 0.0,
            test_loss: 0.0,
            test_error,
            seconds: 0.0,
            images_per_sec: 0.0,
            clean: None,
            validation: None,
        };
        let point = Point { params: vec![], seed: 0 };
        let o = Outcome::new(point, &[m(1, 0.3), m(2, 0.1), m(3, 0.1), m(4, 0.2)], false);
        assert_eq!(o.best, Some((2, 0.1)));
        assert_eq!(o.last, Some(Errors { train: 0.0, test: 0.2 }));
        assert_eq!(o.epochs, 4);
    }
}
