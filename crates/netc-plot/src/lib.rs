//! Plots of runs and sweeps, as PNG and SVG: a run's training and test error per epoch, and a
//! sweep's final errors against the swept parameter with error bars over seeds.
//!
//! Text is drawn with a bundled font (DejaVu Sans, `fonts/LICENSE.txt`), so no system font
//! library is needed.

use netc::train::EpochMetrics;
use netc_sweep::table::{self, Outcome};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Pixel size of the PNG and SVG images.
pub const SIZE: (u32, u32) = (900, 560);

/// The family name plotters looks up for the default text style.
const FAMILY: &str = "sans-serif";
static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

fn register_font() -> Result<(), String> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    ok.then_some(()).ok_or_else(|| "the bundled font cannot be read".to_string())
}

/// One line of a figure: points `(x, y, half-width of the error bar)`.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64, Option<f64>)>,
    pub color: RGBColor,
}

/// A line chart.
#[derive(Clone, Debug)]
pub struct Figure {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Names for x = 0, 1, ... when the x axis is a list of words rather than numbers.
    pub categories: Option<Vec<String>>,
}

const TEST: RGBColor = RGBColor(214, 39, 40);
const TRAIN: RGBColor = RGBColor(31, 119, 180);
/// Further colours for settings of other swept parameters.
const MORE: [RGBColor; 4] =
    [RGBColor(44, 160, 44), RGBColor(255, 127, 14), RGBColor(148, 103, 189), RGBColor(140, 86, 75)];

/// Plots a run folder (holding `metrics.csv`) or a sweep folder (holding `sweep.csv`) into
/// `out` (default: the folder itself); returns the files written.
pub fn plot_dir(dir: &Path, out: Option<&Path>) -> Result<Vec<PathBuf>, String> {
    let out = out.unwrap_or(dir);
    let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    let (figure, stem) = if dir.join(netc_sweep::CSV_FILE).is_file() {
        let (names, outcomes) = table::read_csv(&dir.join(netc_sweep::CSV_FILE))?;
        (sweep_figure(&names, &outcomes, &name)?, "sweep")
    } else if dir.join("metrics.csv").is_file() {
        (run_figure(&netc::train::read_metrics(&dir.join("metrics.csv"))?, &name)?, "errors")
    } else {
        return Err(format!("{} holds neither metrics.csv (a run) nor sweep.csv (a sweep)", dir.display()));
    };
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let (png, svg) = (out.join(format!("{stem}.png")), out.join(format!("{stem}.svg")));
    draw_files(&figure, &png, &svg)?;
    Ok(vec![png, svg])
}

/// Training and test error per epoch (the thesis's Figure 12).
pub fn run_figure(metrics: &[EpochMetrics], name: &str) -> Result<Figure, String> {
    if metrics.is_empty() {
        return Err(format!("{name}: the run has no finished epoch yet"));
    }
    for m in metrics {
        for (what, error) in [("training error", m.train_error), ("test error", m.test_error)] {
            check_fraction(error).map_err(|e| format!("{name}: epoch {}: the {what} {e}", m.epoch))?;
        }
    }
    let line = |label: &str, color, f: fn(&EpochMetrics) -> f64| Series {
        label: label.into(),
        points: metrics.iter().map(|m| (m.epoch as f64, 100.0 * f(m), None)).collect(),
        color,
    };
    Ok(Figure {
        title: format!("{name}: error per epoch"),
        x_label: "epoch".into(),
        y_label: "error %".into(),
        series: vec![line("training error", TRAIN, |m| m.train_error), line("test error", TEST, |m| m.test_error)],
        categories: None,
    })
}

/// Final test and training error against the first swept parameter, mean ± sample std over
/// seeds; a line per setting of the other swept parameters. Diverged runs are left out.
pub fn sweep_figure(names: &[String], outcomes: &[Outcome], name: &str) -> Result<Figure, String> {
    let Some(swept) = names.first() else {
        return Err(format!("{name}: the sweep has no swept parameter to plot against"));
    };
    for outcome in outcomes.iter().filter(|o| !o.diverged) {
        let run = outcome.point.name();
        for (what, error) in outcome.last.iter().flat_map(|e| [("training error", e.train), ("test error", e.test)]) {
            check_fraction(error).map_err(|e| format!("{name}: {run}: the {what} {e}"))?;
        }
    }
    let mut outcomes = outcomes.to_vec();
    table::sort(&mut outcomes);
    let rows = table::summarise(&outcomes);
    let mut xs: Vec<String> = Vec::new();
    for row in &rows {
        if !xs.contains(&row.params[0].1) {
            xs.push(row.params[0].1.clone());
        }
    }
    // Values that are not finite numbers (`inf`) make the axis one of words.
    let numbers: Option<Vec<f64>> = xs.iter().map(|x| x.parse::<f64>().ok().filter(|v| v.is_finite())).collect();
    let x_of = |value: &str| match &numbers {
        Some(numbers) => xs.iter().position(|x| x == value).map_or(0.0, |i| numbers[i]),
        None => xs.iter().position(|x| x == value).unwrap_or(0) as f64,
    };
    let mut groups: Vec<String> = Vec::new();
    for row in &rows {
        let rest = row.params[1..].iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
        if !groups.contains(&rest) {
            groups.push(rest);
        }
    }
    let mut series = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        let in_group = || {
            rows.iter().filter(move |r| {
                r.params[1..].iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ") == *group
            })
        };
        let suffix = if group.is_empty() { String::new() } else { format!(" ({group})") };
        let (test_color, train_color) = if g == 0 { (TEST, TRAIN) } else { (MORE[(2 * g) % 4], MORE[(2 * g + 1) % 4]) };
        for (label, color, stat) in [
            (
                "test error",
                test_color,
                (|r: &table::Row| r.test) as fn(&table::Row) -> Option<netc_sweep::stats::Summary>,
            ),
            ("training error", train_color, |r: &table::Row| r.train),
        ] {
            let points =
                in_group().filter_map(|r| stat(r).map(|s| (x_of(&r.params[0].1), s.mean, s.sd))).collect::<Vec<_>>();
            series.push(Series { label: format!("{label}{suffix}"), points, color });
        }
    }
    if series.iter().all(|s| s.points.is_empty()) {
        return Err(format!("{name}: no finished run that did not diverge"));
    }
    Ok(Figure {
        title: format!("{name}: final error against {swept} (mean ± std over seeds)"),
        x_label: swept.clone(),
        y_label: "error %".into(),
        series,
        categories: numbers.is_none().then_some(xs),
    })
}

/// `Err` saying why `error` is not an error rate: a finite fraction between 0 and 1.
fn check_fraction(error: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&error) {
        Ok(())
    } else {
        Err(format!("is {error}, not a fraction between 0 and 1; is the file damaged?"))
    }
}

/// The x range and the highest y of `figure`'s points (error bars included), all finite: a
/// range the axes can be divided into ticks over.
fn extent(figure: &Figure) -> Result<((f64, f64), f64), String> {
    let points = || figure.series.iter().flat_map(|s| &s.points);
    if let Some(p) = points().find(|p| !(p.0.is_finite() && p.1.is_finite() && p.2.is_none_or(f64::is_finite))) {
        return Err(format!("cannot plot the point ({}, {}): coordinates must be finite numbers", p.0, p.1));
    }
    let (x_min, x_max) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let y_max = points().map(|p| p.1 + p.2.unwrap_or(0.0)).fold(0.0, f64::max);
    if !(x_max - x_min).is_finite() || !(y_max * 1.3).is_finite() {
        return Err(format!("cannot plot x from {x_min} to {x_max} and y up to {y_max}: the range is too wide"));
    }
    Ok(((x_min, x_max), y_max))
}

/// Draws `figure` into a PNG and an SVG file.
pub fn draw_files(figure: &Figure, png: &Path, svg: &Path) -> Result<(), String> {
    register_font()?;
    extent(figure)?;
    let failed = |path: &Path, e: String| format!("cannot draw {}: {e}", path.display());
    draw(BitMapBackend::new(png, SIZE).into_drawing_area(), figure).map_err(|e| failed(png, e))?;
    draw(SVGBackend::new(svg, SIZE).into_drawing_area(), figure).map_err(|e| failed(svg, e))
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, figure: &Figure) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let ((x_min, x_max), y_max) = extent(figure)?;
    let pad = if x_max > x_min { (x_max - x_min) * 0.05 } else { 0.5 };
    // Headroom for the legend in the upper right corner.
    let y_top = if y_max > 0.0 { y_max * 1.3 } else { 1.0 };
    let mut chart = ChartBuilder::on(&root)
        .caption(&figure.title, (FAMILY, 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((x_min - pad)..(x_max + pad), 0.0..y_top)
        .map_err(e)?;
    let categories = figure.categories.clone();
    let x_format = move |x: &f64| match &categories {
        Some(names) if (x - x.round()).abs() < 1e-9 && x.round() >= 0.0 => {
            names.get(x.round() as usize).cloned().unwrap_or_default()
        }
        Some(_) => String::new(),
        None => format!("{}", (x * 1e6).round() / 1e6),
    };
    let x_labels = figure.categories.as_ref().map_or(10, Vec::len);
    chart
        .configure_mesh()
        .x_desc(&figure.x_label)
        .y_desc(&figure.y_label)
        .x_labels(x_labels)
        .x_label_formatter(&x_format)
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .draw()
        .map_err(e)?;
    for s in &figure.series {
        let color = s.color;
        let xy: Vec<(f64, f64)> = s.points.iter().map(|&(x, y, _)| (x, y)).collect();
        chart
            .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(&s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(xy.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(e)?;
        let bars = s.points.iter().filter_map(|&(x, y, std)| std.map(|d| (x, y, d)));
        chart
            .draw_series(bars.map(|(x, y, d)| ErrorBar::new_vertical(x, (y - d).max(0.0), y, y + d, color, 8)))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netc_sweep::table::Errors;
    use netc_sweep::Point;

    fn outcome(params: &[(&str, &str)], seed: u64, train: f64, test: f64, diverged: bool) -> Outcome {
        Outcome {
            point: Point { params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), seed },
            epochs: 3,
            last: Some(Errors { train, test }),
            best: Some((3, test)),
            diverged,
        }
    }

    #[test]
    fn sweep_figure_averages_over_seeds_and_skips_diverged_runs() {
        let runs = [
            outcome(&[("negfrac", "0.1")], 0, 0.5, 0.9, true),
            outcome(&[("negfrac", "0")], 0, 0.01, 0.02, false),
            outcome(&[("negfrac", "0")], 1, 0.03, 0.04, false),
            outcome(&[("negfrac", "0.1")], 1, 0.02, 0.05, false),
        ];
        let figure = sweep_figure(&["negfrac".into()], &runs, "sweep").unwrap();
        assert_eq!(figure.series.len(), 2);
        let test = &figure.series[0];
        assert_eq!(test.label, "test error");
        assert_eq!(test.points.len(), 2);
        assert_eq!(test.points[0].0, 0.0);
        assert!((test.points[0].1 - 3.0).abs() < 1e-9);
        assert!((test.points[0].2.unwrap() - 2f64.sqrt()).abs() < 1e-9);
        assert_eq!((test.points[1].0, test.points[1].2), (0.1, None));
        assert!(figure.categories.is_none());
    }

    fn epoch(epoch: usize, train_error: f64, test_error: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 0.1,
            train_error,
            test_loss: 0.1,
            test_error,
            seconds: 1.0,
            images_per_sec: 1.0,
            clean: None,
            validation: None,
        }
    }

    #[test]
    fn errors_that_are_not_fractions_are_refused_not_plotted() {
        for bad in [f64::INFINITY, f64::NAN, 1e300, -0.5] {
            let err = run_figure(&[epoch(1, 0.1, 0.1), epoch(2, 0.1, bad)], "run").unwrap_err();
            assert_eq!(
                err,
                format!("run: epoch 2: the test error is {bad}, not a fraction between 0 and 1; is the file damaged?")
            );
            let runs = [outcome(&[("w", "1")], 0, bad, 0.1, false)];
            let err = sweep_figure(&["w".into()], &runs, "sweep").unwrap_err();
            assert!(err.starts_with("sweep: w=1,seed=0: the training error is "), "{err}");
        }
        // A diverged run is left out of the figure, whatever its numbers.
        let runs = [outcome(&[("w", "1")], 0, f64::NAN, f64::NAN, true), outcome(&[("w", "2")], 0, 0.1, 0.1, false)];
        assert!(sweep_figure(&["w".into()], &runs, "sweep").is_ok());
    }

    #[test]
    fn figures_with_points_that_cannot_be_drawn_are_errors_not_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let (png, svg) = (dir.path().join("f.png"), dir.path().join("f.svg"));
        let figure = |points: Vec<(f64, f64, Option<f64>)>| Figure {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series { label: "s".into(), points, color: TEST }],
            categories: None,
        };
        for points in [
            vec![(0.0, f64::INFINITY, None)],
            vec![(f64::NAN, 1.0, None)],
            vec![(0.0, 1.0, Some(f64::INFINITY))],
            vec![(-1e308, 1.0, None), (1e308, 1.0, None)],
            vec![(0.0, 1.5e308, None)],
        ] {
            let err = draw_files(&figure(points.clone()), &png, &svg).unwrap_err();
            assert!(err.starts_with("cannot plot"), "{points:?}: {err}");
        }
        draw_files(&figure(vec![(0.0, 1.0, None), (1e300, 2.0, None)]), &png, &svg).unwrap();
        assert!(png.is_file() && svg.is_file());
    }

    #[test]
    fn a_swept_value_that_is_no_finite_number_is_a_category() {
        let runs = [outcome(&[("w", "inf")], 0, 0.1, 0.1, false), outcome(&[("w", "1")], 0, 0.1, 0.1, false)];
        let figure = sweep_figure(&["w".into()], &runs, "sweep").unwrap();
        assert!(figure.categories.is_some());
    }

    #[test]
    fn words_on_the_x_axis_become_categories_and_other_parameters_lines() {
        let runs = [
            outcome(&[("mask", "fixed"), ("negfrac", "0.04")], 0, 0.01, 0.02, false),
            outcome(&[("mask", "resample"), ("negfrac", "0.04")], 0, 0.01, 0.03, false),
            outcome(&[("mask", "fixed"), ("negfrac", "0.08")], 0, 0.01, 0.02, false),
        ];
        let figure = sweep_figure(&["mask".into(), "negfrac".into()], &runs, "sweep").unwrap();
        assert_eq!(figure.categories, Some(vec!["fixed".into(), "resample".into()]));
        let labels: Vec<&str> = figure.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "test error (negfrac=0.04)",
                "training error (negfrac=0.04)",
                "test error (negfrac=0.08)",
                "training error (negfrac=0.08)"
            ]
        );
        assert_eq!(figure.series[0].points.iter().map(|p| p.0).collect::<Vec<_>>(), [0.0, 1.0]);
    }
}
