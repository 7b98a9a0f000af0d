//! Sweeps: train every combination of swept net parameters and seeds, each as an ordinary run
//! folder inside the sweep folder, and tabulate the errors over seeds.
//!
//! A sweep is resumable: a run that has all its epochs, or that diverged (recorded in its
//! `diverged.json`), is skipped when the sweep runs again; a run with a checkpoint but fewer
//! epochs continues from it. The sweep folder may grow: a later sweep over more values of the same
//! parameters adds runs, and `sweep.csv` and the table cover every finished run in the folder.

pub mod grid;
pub mod table;

pub use grid::{parse_seeds, parse_values, Grid, GridError, Point};
pub use table::{Outcome, Row, Stat};

use netc::run::{Data, TrainOverrides};
use netc::train::{Backend, Event, RunOptions};
use netc::{Error, Model, Source};
use std::path::{Path, PathBuf};

/// The file in a run folder that records a divergence, so that a rerun does not retry it.
pub const DIVERGED_FILE: &str = "diverged.json";
/// The sweep's table of runs, in the sweep folder.
pub const CSV_FILE: &str = "sweep.csv";

impl From<GridError> for Error {
    fn from(e: GridError) -> Error {
        Error::Usage { source: None, diagnostics: vec![netc::syntax::Diagnostic::error().with_message(e.0)] }
    }
}

/// Makes the executor for one run's model.
pub type MakeBackend<'b> = dyn FnMut(&Model) -> Result<Box<dyn Backend>, Error> + 'b;

/// What to sweep and where.
pub struct Sweep<'a> {
    pub source: &'a Source,
    /// The `.net` file, as run.json records it.
    pub file: &'a Path,
    pub net: Option<&'a str>,
    pub grid: &'a Grid,
    /// Settings for every run; the seed comes from the grid.
    pub overrides: TrainOverrides,
    pub data: &'a Data,
    pub out: &'a Path,
    pub limit_train: Option<usize>,
    pub limit_test: Option<usize>,
}

/// What a sweep reports as it goes. `index` counts runs from 0.
#[derive(Debug)]
pub enum Progress<'e> {
    /// Every run checked; `epochs` is the total over all runs, finished ones included.
    Planned {
        runs: usize,
        epochs: usize,
    },
    /// A finished or diverged run, left as it is; `epochs` is what it was planned to have.
    Skipped {
        index: usize,
        outcome: &'e Outcome,
        epochs: usize,
    },
    /// A run starts training, fresh (`from_epoch` 0) or from its checkpoint.
    Started {
        index: usize,
        point: &'e Point,
        from_epoch: usize,
        epochs: usize,
    },
    Train(Event<'e>),
    Finished {
        index: usize,
        outcome: &'e Outcome,
    },
}

/// The sweep folder's runs after a sweep.
#[derive(Debug)]
pub struct Report {
    /// The swept parameters, in grid order.
    pub names: Vec<String>,
    /// Every finished or diverged run in the folder with these parameters, sorted.
    pub outcomes: Vec<Outcome>,
    /// Runs in the folder with these parameters that are neither finished nor diverged.
    pub unfinished: usize,
}

impl Report {
    pub fn rows(&self) -> Vec<Row> {
        table::summarise(&self.outcomes)
    }

    pub fn table(&self) -> String {
        table::render(&self.names, &self.rows())
    }
}

/// Runs every point of the grid that is not finished, with a backend from `backend` for each,
/// then writes and returns the folder's results. Every point is checked before any training,
/// so a bad value fails at once. A diverged run is recorded and the sweep goes on; any other
/// error stops it.
pub fn run(sweep: &Sweep, backend: &mut MakeBackend, on_progress: &mut dyn FnMut(Progress)) -> Result<Report, Error> {
    let points = sweep.grid.points();
    let mut models = Vec::with_capacity(points.len());
    for point in &points {
        let mut model = netc::model(sweep.source, &point.params, sweep.net)?;
        TrainOverrides { seed: Some(point.seed), ..sweep.overrides.clone() }.apply(&mut model.checked.train);
        models.push(model);
    }
    let epochs = models.iter().map(|m| m.train().epochs).sum();
    on_progress(Progress::Planned { runs: points.len(), epochs });
    let names: Vec<String> = sweep.grid.axes.iter().map(|a| a.name.clone()).collect();

    for (index, (point, model)) in points.iter().zip(&models).enumerate() {
        let dir = sweep.out.join(point.name());
        let epochs = model.train().epochs;
        let from_epoch = match state(&dir, point, epochs)? {
            State::Done(outcome) => {
                on_progress(Progress::Skipped { index, outcome: &outcome, epochs });
                continue;
            }
            State::Partial { epochs } => epochs,
            State::New => 0,
        };
        on_progress(Progress::Started { index, point, from_epoch, epochs });
        let outcome = train_one(sweep, point, model, &dir, from_epoch > 0, backend, on_progress)?;
        on_progress(Progress::Finished { index, outcome: &outcome });
        write_csv(sweep.out, &names)?;
    }
    write_csv(sweep.out, &names)
}

fn train_one(
    sweep: &Sweep,
    point: &Point,
    model: &Model,
    dir: &Path,
    resume: bool,
    backend: &mut MakeBackend,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Outcome, Error> {
    let mut backend = backend(model)?;
    let program = netc::run::compile(model, netc::ir::Mode::Train, false)?;
    let init = || netc::run::init_params(model, &program);
    let options = RunOptions {
        out: dir.to_path_buf(),
        resume,
        limit_train: sweep.limit_train,
        limit_test: sweep.limit_test,
        provenance: netc::run::provenance(sweep.file, sweep.data, &point.params),
    };
    let mut forward = |event: Event| on_progress(Progress::Train(event));
    match netc::run::train(model, sweep.data, backend.as_mut(), &init, &options, &mut forward) {
        Ok(history) => Ok(Outcome::new(point.clone(), &history, false)),
        Err(e) if e.is_divergence() => {
            let record = serde_json::json!({ "diverged": true, "error": e.render(false) });
            let text = serde_json::to_string_pretty(&record).unwrap_or_default();
            netc::train::checkpoint::write_text(&dir.join(DIVERGED_FILE), &text).map_err(Error::Io)?;
            Ok(Outcome::new(point.clone(), &read_metrics_if_any(dir)?, true))
        }
        Err(e) => Err(e),
    }
}

/// Where a run folder stands.
enum State {
    New,
    /// Has a checkpoint after `epochs` epochs but not all of them.
    Partial {
        epochs: usize,
    },
    /// Has all its epochs, or diverged.
    Done(Outcome),
}

fn state(dir: &Path, point: &Point, epochs: usize) -> Result<State, Error> {
    let metrics = read_metrics_if_any(dir)?;
    if dir.join(DIVERGED_FILE).exists() {
        return Ok(State::Done(Outcome::new(point.clone(), &metrics, true)));
    }
    if metrics.len() >= epochs {
        return Ok(State::Done(Outcome::new(point.clone(), &metrics, false)));
    }
    if dir.join("checkpoint.safetensors").exists() {
        return Ok(State::Partial { epochs: metrics.len() });
    }
    Ok(State::New)
}

fn read_metrics_if_any(dir: &Path) -> Result<Vec<netc::train::EpochMetrics>, Error> {
    let path = dir.join("metrics.csv");
    if !path.exists() {
        return Ok(Vec::new());
    }
    netc::train::read_metrics(&path).map_err(Error::Io)
}

/// Reads every run in the folder whose swept parameters are `names` and writes `sweep.csv`.
fn write_csv(out: &Path, names: &[String]) -> Result<Report, Error> {
    let report = scan(out, names)?;
    let csv = table::to_csv(names, &report.outcomes);
    netc::train::checkpoint::write_text(&out.join(CSV_FILE), &csv).map_err(Error::Io)?;
    Ok(report)
}

/// The runs in a sweep folder with exactly the parameters `names`, by their `run.json`.
pub fn scan(out: &Path, names: &[String]) -> Result<Report, Error> {
    let io = |e: std::io::Error| Error::Io(format!("cannot read {}: {e}", out.display()));
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(out).map_err(io)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>().map_err(io)?;
    dirs.retain(|d| d.join("run.json").is_file());
    let (mut outcomes, mut unfinished) = (Vec::new(), 0);
    for dir in dirs {
        let Some((point, epochs)) = run_point(&dir.join("run.json"), names)? else { continue };
        match state(&dir, &point, epochs)? {
            State::Done(outcome) => outcomes.push(outcome),
            State::New | State::Partial { .. } => unfinished += 1,
        }
    }
    table::sort(&mut outcomes);
    Ok(Report { names: names.to_vec(), outcomes, unfinished })
}

/// A run's parameters, seed and planned epochs, if its `--set` parameters are exactly `names`.
fn run_point(path: &Path, names: &[String]) -> Result<Option<(Point, usize)>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
    let bad = || Error::Io(format!("{}: not a netc run.json", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|_| bad())?;
    let set: Vec<(String, String)> = json["provenance"]
        .as_object()
        .ok_or_else(bad)?
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("set:")?.to_string(), v.as_str()?.to_string())))
        .collect();
    if set.len() != names.len() {
        return Ok(None);
    }
    let params: Option<Vec<(String, String)>> =
        names.iter().map(|n| set.iter().find(|(k, _)| k == n).cloned()).collect();
    let (Some(params), Some(seed), Some(epochs)) = (params, json["seed"].as_u64(), json["epochs"].as_u64()) else {
        return Ok(None);
    };
    Ok(Some((Point { params, seed }, epochs as usize)))
}
