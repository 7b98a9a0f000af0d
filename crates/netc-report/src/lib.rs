//! The tables of `docs/experiments.md`, computed from the run folders committed under
//! `experiments/mnist-mixlu/`, so that every number on the page can be derived again with one
//! command (`cargo run -p netc-report`) and a test fails when the page and the runs disagree.
//!
//! The page holds generated blocks, each between a line `<!-- netc-report: NAME -->` and a line
//! `<!-- /netc-report -->`; [`update`] replaces their contents with [`blocks`]' and leaves the
//! prose around them alone. Only finished or diverged runs count (`netc_sweep::scan`): a run
//! still training, or one whose folder was not committed, is not on the page.

mod markdown;

use markdown::{interval, mean_sd, Table};
use netc::train::{EpochMetrics, RunFolder};
use netc_sweep::stats::{paired_t, spearman, Summary};
use netc_sweep::table::{compare, Comparison};
use std::fmt;
use std::path::{Path, PathBuf};

/// The page, relative to the repository's root.
pub const PAGE: &str = "docs/experiments.md";
/// The MNIST MixLU runs, relative to the repository's root.
pub const RUNS: &str = "experiments/mnist-mixlu";
/// The thesis's test error per NegLU fraction (its Table 7), transcribed.
const THESIS: &str = "thesis.csv";

#[derive(Debug)]
pub enum Error {
    /// A run folder or one of its files could not be read.
    Runs(String),
    /// The thesis's numbers are missing or malformed.
    Thesis(String),
    /// The page's generated blocks are missing, unclosed or unknown.
    Page(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Error::Runs(m) | Error::Thesis(m) | Error::Page(m) => f.write_str(m),
        }
    }
}

/// One finished or diverged run.
struct Run {
    /// The swept parameter's value as the folder names it (`0.04`), empty for an arm that sweeps
    /// nothing.
    setting: String,
    seed: u64,
    diverged: bool,
    metrics: Vec<EpochMetrics>,
}

impl Run {
    /// The last epoch, unless the run diverged.
    fn last(&self) -> Option<&EpochMetrics> {
        if self.diverged {
            None
        } else {
            self.metrics.last()
        }
    }
}

/// A sweep folder's runs: `params` are the swept parameters in the folder names' order, and
/// `setting` the one whose value tells the runs apart (`None`: the arm sweeps nothing). A folder
/// that does not exist yet has no runs.
fn load(dir: &Path, params: &[&str], setting: Option<&str>) -> Result<Vec<Run>, Error> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = params.iter().map(|p| p.to_string()).collect();
    let report = netc_sweep::scan(dir, &names).map_err(|e| Error::Runs(e.to_string()))?;
    report
        .outcomes
        .iter()
        .map(|outcome| {
            let folder = RunFolder::new(dir.join(outcome.point.name()));
            let metrics = folder.read_metrics_if_any().map_err(Error::Runs)?;
            let value = setting.and_then(|s| outcome.point.params.iter().find(|(n, _)| n == s));
            Ok(Run {
                setting: value.map(|(_, v)| v.clone()).unwrap_or_default(),
                seed: outcome.point.seed,
                diverged: outcome.diverged,
                metrics,
            })
        })
        .collect()
}

/// The runs of one setting.
struct Group<'a> {
    setting: String,
    runs: Vec<&'a Run>,
}

impl Group<'_> {
    fn diverged(&self) -> usize {
        self.runs.iter().filter(|r| r.diverged).count()
    }

    /// A metric of the last epoch in percent, over the runs that did not diverge.
    fn summary(&self, metric: fn(&EpochMetrics) -> Option<f64>) -> Option<Summary> {
        let values: Vec<f64> = self.runs.iter().filter_map(|r| r.last().and_then(metric)).map(|v| 100.0 * v).collect();
        Summary::of(&values)
    }

    fn test(&self) -> Option<Summary> {
        self.summary(|m| Some(m.test_error))
    }

    fn runs_cell(&self) -> String {
        format!("{} / {}", self.runs.len() - self.diverged(), self.runs.len())
    }
}

/// Runs grouped by setting, in the settings' numeric order.
fn groups(runs: &[Run]) -> Vec<Group<'_>> {
    let mut settings: Vec<&str> = runs.iter().map(|r| r.setting.as_str()).collect();
    settings.sort_by(|a, b| number(a).total_cmp(&number(b)).then(a.cmp(b)));
    settings.dedup();
    settings
        .into_iter()
        .map(|s| Group { setting: s.to_string(), runs: runs.iter().filter(|r| r.setting == s).collect() })
        .collect()
}

fn number(text: &str) -> f64 {
    text.parse().unwrap_or(f64::NAN)
}

/// How a MixLU layer was computed (docs/language.md, `mixlu`), and where its runs are.
struct Reading {
    name: &'static str,
    folder: &'static str,
    params: &'static [&'static str],
}

const THESIS_CODE: Reading =
    Reading { name: "thesis code", folder: "thesis-code", params: &["negfrac", "grad", "eval"] };
const RESAMPLE_EXACT: Reading =
    Reading { name: "resample + exact", folder: "resample-exact", params: &["negfrac", "grad", "eval"] };
const FIXED: Reading = Reading { name: "fixed (null control)", folder: "fixed", params: &["negfrac", "mask", "grad"] };
const READINGS: [&Reading; 3] = [&THESIS_CODE, &RESAMPLE_EXACT, &FIXED];

/// The thesis's test error (percent) and whether it diverged, per NegLU fraction.
struct Thesis(Vec<(f64, f64, bool)>);

impl Thesis {
    fn read(path: &Path) -> Result<Thesis, Error> {
        let bad =
            |line: usize| Error::Thesis(format!("{}:{line}: expected `negfrac,test_error,diverged`", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| Error::Thesis(format!("{}: {e}", path.display())))?;
        let mut lines = text.lines().enumerate();
        if lines.next().map(|(_, header)| header) != Some("negfrac,test_error,diverged") {
            return Err(bad(1));
        }
        let rows = lines.map(|(i, line)| {
            let fields: Vec<&str> = line.split(',').collect();
            match fields[..] {
                [negfrac, error, diverged @ ("yes" | "no")] => {
                    let (Ok(negfrac), Ok(error)) = (negfrac.parse::<f64>(), error.parse::<f64>()) else {
                        return Err(bad(i + 1));
                    };
                    Ok((negfrac, 100.0 * error, diverged == "yes"))
                }
                _ => Err(bad(i + 1)),
            }
        });
        Ok(Thesis(rows.collect::<Result<_, _>>()?))
    }

    fn at(&self, setting: &str) -> Option<(f64, bool)> {
        let negfrac = number(setting);
        self.0.iter().find(|(f, _, _)| (f - negfrac).abs() < 1e-9).map(|&(_, error, diverged)| (error, diverged))
    }
}

/// The thesis's test error as a table cell.
fn thesis_cell(thesis: Option<(f64, bool)>) -> String {
    match thesis {
        Some((error, true)) => format!("{error:.2} (diverged)"),
        Some((error, false)) => format!("{error:.2}"),
        None => "–".into(),
    }
}

/// Whether the thesis's run is one netc would expect: inside netc's 95% prediction interval for
/// one more run, or diverged where netc's runs diverge.
fn verdict(thesis: Option<(f64, bool)>, group: &Group) -> String {
    let diverged = group.diverged();
    match thesis {
        None => "–".into(),
        Some((_, true)) if diverged == group.runs.len() => "both diverge".into(),
        Some((_, true)) => format!("thesis diverged, netc {diverged} of {}", group.runs.len()),
        Some((error, false)) => match group.test() {
            Some(stats) => match stats.prediction {
                Some((lo, hi)) if (lo..=hi).contains(&error) => "inside".into(),
                Some(_) => "**outside**".into(),
                None => "one finished run: no interval".into(),
            },
            None if diverged > 0 => format!("netc {diverged} of {} diverged", group.runs.len()),
            None => "–".into(),
        },
    }
}

/// The fraction as the page writes it: `0.04` is `4%`.
fn fraction(setting: &str) -> String {
    format!("{}%", (100.0 * number(setting)).round())
}

/// Everything the page's blocks are computed from.
struct Results {
    thesis: Thesis,
    /// Per reading; the thesis code's 0% runs serve every reading (at 0% every reading is one
    /// program: `tests/equivalence.rs`).
    readings: Vec<(&'static Reading, Vec<Run>)>,
    /// The arms of the comparison with noise, each with its runs.
    arms: Vec<(Arm, Vec<Run>)>,
}

/// A unit compared with MixLU's NegLUs (`experiments/mnist-mixlu/compare/compare.net`).
struct Arm {
    name: &'static str,
    /// The sweep folder under [`RUNS`].
    folder: &'static str,
    params: &'static [&'static str],
    /// Whether the arm's parameter is the NegLU fraction p (else it has one setting).
    per_p: bool,
}

const ARMS: [Arm; 5] = [
    Arm { name: "dropout(p)", folder: "compare/dropout_lenet", params: &["p"], per_p: true },
    Arm { name: "leaky ReLU, slope p/(1 − p)", folder: "compare/leaky_lenet", params: &["p"], per_p: true },
    Arm { name: "Gaussian, MixLU's mean and variance", folder: "compare/gauss_lenet", params: &["p"], per_p: true },
    Arm { name: "noisy_relu(std=0.1)", folder: "compare/noisy_lenet", params: &["std"], per_p: false },
    Arm { name: "PReLU (learned slope)", folder: "compare/prelu_lenet", params: &[], per_p: false },
];

/// The fractions of the comparison with noise.
const NOISE_P: [&str; 2] = ["0.04", "0.08"];

impl Results {
    fn read(root: &Path) -> Result<Results, Error> {
        let runs = root.join(RUNS);
        let thesis = Thesis::read(&runs.join(THESIS))?;
        let mut readings = Vec::new();
        for reading in READINGS {
            let mut loaded = load(&runs.join(reading.folder), reading.params, Some("negfrac"))?;
            if reading.folder != THESIS_CODE.folder {
                loaded.retain(|r| number(&r.setting) != 0.0);
                let shared = load(&runs.join(THESIS_CODE.folder), THESIS_CODE.params, Some("negfrac"))?;
                loaded.extend(shared.into_iter().filter(|r| number(&r.setting) == 0.0));
            }
            readings.push((reading, loaded));
        }
        let mut arms = Vec::new();
        for arm in ARMS {
            let loaded = load(&runs.join(arm.folder), arm.params, if arm.per_p { Some("p") } else { None })?;
            arms.push((arm, loaded));
        }
        Ok(Results { thesis, readings, arms })
    }

    fn reading(&self, reading: &Reading) -> &[Run] {
        self.readings.iter().find(|(r, _)| r.folder == reading.folder).map_or(&[], |(_, runs)| runs)
    }

    /// One reading's table: per fraction, netc's runs beside the thesis's.
    fn reading_table(&self, reading: &Reading) -> String {
        let mut table = Table::new(&[
            "NegLUs",
            "runs (finished / all)",
            "test error %",
            "95% CI",
            "95% PI",
            "thesis test error %",
            "thesis run",
            "train error % (running)",
            "train error % (clean)",
        ]);
        for group in groups(self.reading(reading)) {
            let test = group.test();
            let thesis = self.thesis.at(&group.setting);
            table.row(vec![
                fraction(&group.setting),
                group.runs_cell(),
                mean_sd(test),
                interval(test.and_then(|s| s.confidence)),
                interval(test.and_then(|s| s.prediction)),
                thesis_cell(thesis),
                verdict(thesis, &group),
                mean_sd(group.summary(|m| Some(m.train_error))),
                mean_sd(group.summary(|m| m.clean.map(|c| c.error))),
            ]);
        }
        table.render()
    }

    /// Fraction × reading: mean ± sd (finished runs) and whether the thesis's run is inside.
    fn headline(&self) -> String {
        let mut header = vec!["NegLUs".to_string(), "thesis test error %".to_string()];
        header.extend(READINGS.iter().map(|r| format!("netc, {}", r.name)));
        let mut table = Table::new(&header.iter().map(String::as_str).collect::<Vec<_>>());
        let mut settings: Vec<String> =
            self.readings.iter().flat_map(|(_, runs)| runs.iter().map(|r| r.setting.clone())).collect();
        settings.sort_by(|a, b| number(a).total_cmp(&number(b)));
        settings.dedup_by(|a, b| number(a) == number(b));
        for setting in settings {
            let thesis = self.thesis.at(&setting);
            let mut row = vec![fraction(&setting), thesis_cell(thesis)];
            for reading in READINGS {
                let group = groups(self.reading(reading)).into_iter().find(|g| number(&g.setting) == number(&setting));
                row.push(group.map_or("–".into(), |g| match g.test() {
                    None if thesis.is_some_and(|(_, diverged)| diverged) => {
                        format!("all {} diverged, as the thesis's", g.runs.len())
                    }
                    None => format!("all {} diverged, the thesis's not", g.runs.len()),
                    Some(s) => {
                        let diverged = match g.diverged() {
                            0 => String::new(),
                            d => format!(", {d} of {} diverged", g.runs.len()),
                        };
                        format!("{} (n = {}){diverged}; {}", mean_sd(Some(s)), s.n, verdict(thesis, &g))
                    }
                }));
            }
            table.row(row);
        }
        table.render()
    }

    /// Spearman's ρ of fraction against test error per reading, diverged runs ranked worst.
    fn trend(&self) -> String {
        let mut table = Table::new(&["reading", "runs", "fractions", "Spearman ρ", "p (t approximation)"]);
        let rank_worst = |runs: &[&Run]| -> (Vec<f64>, Vec<f64>) {
            runs.iter().map(|r| (number(&r.setting), r.last().map_or(f64::INFINITY, |m| m.test_error))).unzip()
        };
        let mut line = |name: String, (x, y): (Vec<f64>, Vec<f64>)| {
            let mut fractions: Vec<f64> = x.clone();
            fractions.sort_by(f64::total_cmp);
            fractions.dedup();
            let (rho, p) =
                spearman(&x, &y).map_or(("–".into(), "–".into()), |(r, p)| (format!("{r:.2}"), format!("{p:.2e}")));
            table.row(vec![name, x.len().to_string(), fractions.len().to_string(), rho, p]);
        };
        line(
            "the thesis (Table 7, one run per fraction)".into(),
            self.thesis.0.iter().map(|&(f, e, d)| (f, if d { f64::INFINITY } else { e })).unzip(),
        );
        for (reading, runs) in &self.readings {
            line(format!("netc, {}", reading.name), rank_worst(&runs.iter().collect::<Vec<_>>()));
        }
        table.render()
    }

    /// Every fraction against 0%, run for run by seed, per reading.
    fn baseline(&self) -> String {
        let mut table = Table::new(&[
            "reading",
            "NegLUs",
            "pairs",
            "Δ test error (pp)",
            "paired t p",
            "Holm",
            "Wilcoxon p",
            "Holm",
        ]);
        for (reading, runs) in &self.readings {
            let mut outcomes: Vec<netc_sweep::Outcome> = runs.iter().map(as_outcome).collect();
            netc_sweep::table::sort(&mut outcomes);
            for c in compare(&outcomes, "negfrac", &zero_setting(runs)).unwrap_or_default() {
                table.row(comparison_row(reading.name, &c));
            }
        }
        table.render()
    }

    /// The thesis's Table 8: test error by epoch at 0% and 1% NegLUs (the thesis code's reading).
    fn epochs(&self) -> String {
        let all = groups(self.reading(&THESIS_CODE));
        let pick = |f: f64| all.iter().find(|g| number(&g.setting) == f);
        let (Some(zero), Some(one)) = (pick(0.0), pick(0.01)) else {
            return "No runs at 0% and 1% yet.\n".into();
        };
        let mut table =
            Table::new(&["epoch", "0%: test error %", "1%: test error %", "Δ (pp), paired by seed", "paired t p"]);
        let epochs = zero.runs.iter().chain(&one.runs).map(|r| r.metrics.len()).max().unwrap_or(0);
        let at = |g: &Group, e: usize| -> Vec<(u64, f64)> {
            g.runs.iter().filter_map(|r| r.metrics.get(e).map(|m| (r.seed, 100.0 * m.test_error))).collect()
        };
        for e in 0..epochs {
            let (a, b) = (at(zero, e), at(one, e));
            let values = |v: &[(u64, f64)]| Summary::of(&v.iter().map(|&(_, x)| x).collect::<Vec<_>>());
            let d: Vec<f64> =
                b.iter().filter_map(|&(s, x)| a.iter().find(|&&(t, _)| t == s).map(|&(_, y)| x - y)).collect();
            table.row(vec![
                (e + 1).to_string(),
                mean_sd(values(&a)),
                mean_sd(values(&b)),
                difference(&d),
                paired_p(&d),
            ]);
        }
        table.render()
    }

    /// MixLU against the noise it is predicted to act like, at each p.
    fn noise(&self) -> String {
        let mut table = Table::new(&[
            "unit",
            "p",
            "runs (finished / all)",
            "test error %",
            "95% CI",
            "train error % (clean)",
            "Δ vs ReLU (pp)",
            "p",
            "Δ vs MixLU, thesis code (pp)",
            "p",
        ]);
        let relu: Vec<&Run> = self.reading(&THESIS_CODE).iter().filter(|r| number(&r.setting) == 0.0).collect();
        let mixlu = |p: &str| -> Vec<&Run> {
            self.reading(&THESIS_CODE).iter().filter(|r| number(&r.setting) == number(p)).collect()
        };
        let mut line = |name: &str, p: &str, runs: Vec<&Run>, against_which: Against| {
            let group = Group { setting: p.into(), runs };
            let test = group.test();
            let against = |other: &[&Run]| {
                let d = paired(&group.runs, other);
                (difference(&d), paired_p(&d))
            };
            let none = || ("–".to_string(), "–".to_string());
            let (d_relu, p_relu) = if against_which == Against::Neither { none() } else { against(&relu) };
            let (d_mixlu, p_mixlu) = if against_which == Against::Both { against(&mixlu(p)) } else { none() };
            table.row(vec![
                name.into(),
                if p == "–" { "–".into() } else { fraction(p) },
                group.runs_cell(),
                mean_sd(test),
                interval(test.and_then(|s| s.confidence)),
                mean_sd(group.summary(|m| m.clean.map(|c| c.error))),
                d_relu,
                p_relu,
                d_mixlu,
                p_mixlu,
            ]);
        };
        line("ReLU (MixLU at 0%)", "–", relu.clone(), Against::Neither);
        for p in NOISE_P {
            for (reading, against_which) in [(&THESIS_CODE, Against::Relu), (&RESAMPLE_EXACT, Against::Both)] {
                let runs = self.reading(reading).iter().filter(|r| number(&r.setting) == number(p)).collect();
                line(&format!("MixLU, {}", reading.name), p, runs, against_which);
            }
            for (arm, runs) in self.arms.iter().filter(|(a, _)| a.per_p) {
                line(arm.name, p, runs.iter().filter(|r| number(&r.setting) == number(p)).collect(), Against::Both);
            }
        }
        for (arm, runs) in self.arms.iter().filter(|(a, _)| !a.per_p) {
            line(arm.name, "–", runs.iter().collect(), Against::Relu);
        }
        table.render()
    }

    /// How many runs, epochs and core-hours of training the page rests on.
    fn compute(&self) -> String {
        let runs: Vec<&Run> = self
            .readings
            .iter()
            .filter(|(r, _)| r.folder == THESIS_CODE.folder)
            .flat_map(|(_, runs)| runs)
            .chain(
                self.readings
                    .iter()
                    .filter(|(r, _)| r.folder != THESIS_CODE.folder)
                    .flat_map(|(_, runs)| runs.iter().filter(|r| number(&r.setting) != 0.0)),
            )
            .chain(self.arms.iter().flat_map(|(_, runs)| runs))
            .collect();
        let epochs: usize = runs.iter().map(|r| r.metrics.len()).sum();
        let seconds: f64 = runs.iter().flat_map(|r| &r.metrics).map(|m| m.seconds).sum();
        let diverged = runs.iter().filter(|r| r.diverged).count();
        format!(
            "{} runs ({} diverged), {} epochs, {:.1} core-hours of training passes (the sum of \
             metrics.csv's `seconds`, one thread per run; test passes not counted).\n",
            runs.len(),
            diverged,
            epochs,
            seconds / 3600.0
        )
    }
}

/// Which of the comparison's references a row is paired with.
#[derive(Clone, Copy, PartialEq)]
enum Against {
    Neither,
    Relu,
    /// ReLU and the thesis code's MixLU at the row's p.
    Both,
}

/// The value of the 0% setting as the runs spell it (`0`).
fn zero_setting(runs: &[Run]) -> String {
    runs.iter().find(|r| number(&r.setting) == 0.0).map_or("0".into(), |r| r.setting.clone())
}

fn as_outcome(run: &Run) -> netc_sweep::Outcome {
    let point = netc_sweep::Point { params: vec![("negfrac".into(), run.setting.clone())], seed: run.seed };
    netc_sweep::Outcome::new(point, &run.metrics, run.diverged)
}

fn comparison_row(reading: &str, c: &Comparison) -> Vec<String> {
    let number = |v: Option<f64>, digits: usize| v.map_or("–".to_string(), |v| format!("{v:.digits$}"));
    let setting = c.params.iter().find(|(n, _)| n == "negfrac").map_or("–".into(), |(_, v)| fraction(v));
    vec![
        reading.into(),
        setting,
        c.pairs.to_string(),
        c.mean_difference.map_or("–".into(), |d| format!("{d:+.2}")),
        number(c.t_p, 3),
        number(c.t_holm, 3),
        number(c.wilcoxon_p, 3),
        number(c.wilcoxon_holm, 3),
    ]
}

/// The mean of paired differences and how many pairs there are.
fn difference(d: &[f64]) -> String {
    Summary::of(d).map_or("–".into(), |s| format!("{:+.2} (n = {})", s.mean, s.n))
}

/// The paired t-test's two-sided p-value of the differences.
fn paired_p(d: &[f64]) -> String {
    paired_t(d).map_or("–".into(), |(_, p)| format!("{p:.3}"))
}

/// Test error differences a − b in percentage points, run for run by seed, over the seeds
/// where neither diverged.
fn paired(a: &[&Run], b: &[&Run]) -> Vec<f64> {
    a.iter()
        .filter_map(|x| {
            let y = b.iter().find(|y| y.seed == x.seed)?;
            Some(100.0 * (x.last()?.test_error - y.last()?.test_error))
        })
        .collect()
}

/// The page's generated blocks by name, computed from the runs under `root`.
pub fn blocks(root: &Path) -> Result<Vec<(&'static str, String)>, Error> {
    let results = Results::read(root)?;
    Ok(vec![
        ("headline", results.headline()),
        ("thesis-code", results.reading_table(&THESIS_CODE)),
        ("resample-exact", results.reading_table(&RESAMPLE_EXACT)),
        ("fixed", results.reading_table(&FIXED)),
        ("trend", results.trend()),
        ("baseline", results.baseline()),
        ("epochs", results.epochs()),
        ("noise", results.noise()),
        ("compute", results.compute()),
    ])
}

/// Where the page's figures are, relative to the repository's root.
pub const FIGURES: &str = "docs/img/mnist-mixlu";

/// Draws each reading's final errors against the fraction (the thesis's Figure 12) from its
/// committed runs, as `FIGURES/FOLDER.svg` and `.png`; a reading with no runs yet has none.
pub fn figures(root: &Path) -> Result<Vec<PathBuf>, Error> {
    let out = root.join(FIGURES);
    std::fs::create_dir_all(&out).map_err(|e| Error::Runs(format!("cannot create {}: {e}", out.display())))?;
    let mut written = Vec::new();
    for reading in READINGS {
        let dir = root.join(RUNS).join(reading.folder);
        if !dir.is_dir() {
            continue;
        }
        let names: Vec<String> = reading.params.iter().map(|p| p.to_string()).collect();
        let report = netc_sweep::scan(&dir, &names).map_err(|e| Error::Runs(e.to_string()))?;
        let figure = netc_plot::sweep_figure(&names, &report.outcomes, reading.folder).map_err(Error::Runs)?;
        let (png, svg) = (out.join(format!("{}.png", reading.folder)), out.join(format!("{}.svg", reading.folder)));
        netc_plot::draw_files(&figure, &png, &svg).map_err(Error::Runs)?;
        written.extend([png, svg]);
    }
    Ok(written)
}

const OPEN: &str = "<!-- netc-report: ";
const CLOSE: &str = "<!-- /netc-report -->";

/// `page` with each generated block's contents replaced by its entry in `blocks`. Every block
/// must appear on the page exactly once, and the page may hold no other.
pub fn update(page: &str, blocks: &[(&str, String)]) -> Result<String, Error> {
    let mut out = String::with_capacity(page.len());
    let mut seen: Vec<&str> = Vec::new();
    let mut lines = page.split_inclusive('\n').enumerate();
    while let Some((i, line)) = lines.next() {
        out.push_str(line);
        let Some(name) = line.trim_end().strip_prefix(OPEN).and_then(|rest| rest.strip_suffix(" -->")) else {
            continue;
        };
        let Some((_, contents)) = blocks.iter().find(|(n, _)| *n == name) else {
            return Err(Error::Page(format!("{PAGE}:{}: no generated block is called `{name}`", i + 1)));
        };
        if seen.contains(&name) {
            return Err(Error::Page(format!("{PAGE}:{}: block `{name}` appears twice", i + 1)));
        }
        seen.push(name);
        out.push_str(contents);
        match lines.find(|(_, l)| l.trim_end() == CLOSE) {
            Some((_, close)) => out.push_str(close),
            None => return Err(Error::Page(format!("{PAGE}:{}: block `{name}` is not closed by `{CLOSE}`", i + 1))),
        }
    }
    match blocks.iter().find(|(n, _)| !seen.contains(n)) {
        Some((missing, _)) => Err(Error::Page(format!("{PAGE}: block `{missing}` is missing (`{OPEN}{missing} -->`)"))),
        None => Ok(out),
    }
}

/// The page's path under `root`.
pub fn page_path(root: &Path) -> PathBuf {
    root.join(PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(setting: &str, seed: u64, test_error: Option<f64>) -> Run {
        let metrics = vec![EpochMetrics {
            epoch: 1,
            train_loss: 0.0,
            train_error: 0.0,
            test_loss: 0.0,
            test_error: test_error.unwrap_or(0.0),
            seconds: 1.0,
            images_per_sec: 0.0,
            clean: None,
            validation: None,
        }];
        Run { setting: setting.into(), seed, diverged: test_error.is_none(), metrics }
    }

    #[test]
    fn blocks_are_replaced_and_the_prose_kept() {
        let page = "intro\n<!-- netc-report: a -->\nold\nlines\n<!-- /netc-report -->\nmiddle\n<!-- netc-report: b -->\n<!-- /netc-report -->\nend\n";
        let blocks = [("a", "new\n".to_string()), ("b", "B\n".to_string())];
        let want = "intro\n<!-- netc-report: a -->\nnew\n<!-- /netc-report -->\nmiddle\n<!-- netc-report: b -->\nB\n<!-- /netc-report -->\nend\n";
        assert_eq!(update(page, &blocks).unwrap(), want);
        assert_eq!(update(want, &blocks).unwrap(), want, "updating is idempotent");
    }

    #[test]
    fn a_missing_unknown_or_unclosed_block_is_an_error() {
        let blocks = [("a", "x\n".to_string())];
        let message = |page: &str| update(page, &blocks).unwrap_err().to_string();
        assert!(message("text\n").contains("block `a` is missing"));
        assert!(message("<!-- netc-report: a -->\n<!-- /netc-report -->\n<!-- netc-report: z -->\n")
            .contains(":3: no generated block is called `z`"));
        assert!(message("<!-- netc-report: a -->\nnever closed\n").contains(":1: block `a` is not closed"));
        assert!(message(
            "<!-- netc-report: a -->\n<!-- /netc-report -->\n<!-- netc-report: a -->\n<!-- /netc-report -->\n"
        )
        .contains("appears twice"));
    }

    #[test]
    fn the_verdict_compares_the_thesis_with_the_prediction_interval() {
        // 1.0, 1.2, 1.1: mean 1.1, sd 0.1, PI 1.1 ± 4.303·0.1·√(4/3) = [0.603, 1.597].
        let runs = [run("0.02", 0, Some(0.010)), run("0.02", 1, Some(0.012)), run("0.02", 2, Some(0.011))];
        let group = Group { setting: "0.02".into(), runs: runs.iter().collect() };
        assert_eq!(verdict(Some((1.5, false)), &group), "inside");
        assert_eq!(verdict(Some((1.7, false)), &group), "**outside**");
        assert_eq!(verdict(Some((90.2, true)), &group), "thesis diverged, netc 0 of 3");
        let diverged = [run("0.1", 0, None), run("0.1", 1, None)];
        let group = Group { setting: "0.1".into(), runs: diverged.iter().collect() };
        assert_eq!(verdict(Some((90.2, true)), &group), "both diverge");
        assert_eq!(verdict(Some((1.0, false)), &group), "netc 2 of 2 diverged");
        assert_eq!(verdict(None, &group), "–");
        let one = [run("0.09", 0, None), run("0.09", 1, Some(0.048))];
        let group = Group { setting: "0.09".into(), runs: one.iter().collect() };
        assert_eq!(verdict(Some((2.68, false)), &group), "one finished run: no interval");
    }

    #[test]
    fn groups_follow_the_fractions_numerically() {
        let runs =
            [run("0.1", 0, Some(0.01)), run("0.02", 0, Some(0.01)), run("0", 0, Some(0.01)), run("0.02", 1, None)];
        let order: Vec<(String, usize)> = groups(&runs).iter().map(|g| (g.setting.clone(), g.runs.len())).collect();
        assert_eq!(order, [("0".into(), 1), ("0.02".into(), 2), ("0.1".into(), 1)]);
        assert_eq!(fraction("0.07"), "7%");
    }

    #[test]
    fn pairs_match_seeds_and_skip_diverged_runs() {
        let a = [run("0.04", 0, Some(0.012)), run("0.04", 1, Some(0.011)), run("0.04", 2, None)];
        let b = [run("0", 1, Some(0.009)), run("0", 0, Some(0.010)), run("0", 2, Some(0.010))];
        let d = paired(&a.iter().collect::<Vec<_>>(), &b.iter().collect::<Vec<_>>());
        assert_eq!(d.len(), 2);
        assert!((d[0] - 0.2).abs() < 1e-9 && (d[1] - 0.2).abs() < 1e-9, "{d:?}");
    }
}
