//! Sweeps: train every combination of swept net parameters and seeds, each as an ordinary run
//! folder inside the sweep folder, and tabulate the errors over seeds.
//!
//! A sweep is resumable: a run that has all its epochs, or that diverged (recorded in its
//! `diverged.json`, [`RunFolder::divergence`]), is skipped when the sweep runs again; a run with a checkpoint but fewer
//! epochs continues from it. The sweep folder may grow: a later sweep over more values of the same
//! parameters adds runs, and `sweep.csv` and the table cover every finished run in the folder.

pub mod grid;
pub mod stats;
pub mod table;

pub use grid::{parse_seeds, parse_values, Grid, GridError, Point, Shard};
pub use table::{Outcome, Row};

use netc::run::{Data, TrainOverrides};
use netc::train::{Backend, Divergence, Event, RunFolder, RunOptions};
use netc::{Error, Model, Source};
use serde::Serialize;
use std::path::{Path, PathBuf};
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
    /// The runs this process trains ([`Shard::ALL`] for every run).
    pub shard: Shard,
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

    /// The table comparing every setting with the one that has `name = value`, run for run by
    /// seed; `None` when no setting has it.
    pub fn comparisons(&self, name: &str, value: &str) -> Option<String> {
        let comparisons = table::compare(&self.outcomes, name, value)?;
        Some(table::render_comparisons(&self.names, &comparisons))
    }
}

/// Runs every point of the grid that is not finished, with a backend from `backend` for each,
/// then writes and returns the folder's results. Every point is checked before any training,
/// so a bad value fails at once. A diverged run is recorded and the sweep goes on; any other
/// error stops it.
pub fn run(sweep: &Sweep, backend: &mut MakeBackend, on_progress: &mut dyn FnMut(Progress)) -> Result<Report, Error> {
    let points: Vec<Point> =
        sweep.grid.points().into_iter().enumerate().filter(|(i, _)| sweep.shard.takes(*i)).map(|(_, p)| p).collect();
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
        let folder = RunFolder::new(sweep.out.join(point.name()));
        let epochs = model.train().epochs;
        let from_epoch = match state(&folder, point, epochs)? {
            State::Done(outcome) => {
                on_progress(Progress::Skipped { index, outcome: &outcome, epochs });
                continue;
            }
            State::Partial { epochs } => epochs,
            State::New => 0,
        };
        on_progress(Progress::Started { index, point, from_epoch, epochs });
        let outcome = train_one(sweep, point, model, &folder, from_epoch > 0, backend, on_progress)?;
        on_progress(Progress::Finished { index, outcome: &outcome });
        write_csv(sweep.out, &names)?;
    }
    write_csv(sweep.out, &names)
}

fn train_one(
    sweep: &Sweep,
    point: &Point,
    model: &Model,
    folder: &RunFolder,
    resume: bool,
    backend: &mut MakeBackend,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Outcome, Error> {
    let mut backend = backend(model)?;
    let options = RunOptions {
        out: folder.clone(),
        resume,
        limit_train: sweep.limit_train,
        limit_test: sweep.limit_test,
        validation: None,
        provenance: sweep.data.provenance(sweep.file, &point.params),
    };
    let mut forward = |event: Event| on_progress(Progress::Train(event));
    match netc::run::train(model, sweep.data, backend.as_mut(), &options, &mut forward) {
        Ok(history) => Ok(Outcome::new(point.clone(), &history, false)),
        Err(e) => match &e {
            Error::Diverged { divergence, .. } => {
                DivergenceRecord::new(divergence, e.render(false)).write(folder)?;
                Ok(Outcome::new(point.clone(), &read_metrics_if_any(folder)?, true))
            }
            _ => Err(e),
        },
    }
}

/// A run folder's `diverged.json`: where the run diverged, and the error as it was shown.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DivergenceRecord {
    /// Counted from 1.
    pub epoch: usize,
    pub step: u64,
    pub layer: String,
    pub error: String,
}

impl DivergenceRecord {
    fn new(divergence: &Divergence, error: String) -> DivergenceRecord {
        DivergenceRecord { epoch: divergence.epoch, step: divergence.step, layer: divergence.layer.clone(), error }
    }

    fn write(&self, folder: &RunFolder) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Internal(format!("cannot encode: {e}")))?;
        netc::train::checkpoint::write_text(&folder.divergence(), &text).map_err(Error::Io)
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

fn state(folder: &RunFolder, point: &Point, epochs: usize) -> Result<State, Error> {
    let metrics = read_metrics_if_any(folder)?;
    if folder.divergence().exists() {
        return Ok(State::Done(Outcome::new(point.clone(), &metrics, true)));
    }
    if metrics.len() >= epochs {
        return Ok(State::Done(Outcome::new(point.clone(), &metrics, false)));
    }
    if folder.has_checkpoint() {
        return Ok(State::Partial { epochs: metrics.len() });
    }
    Ok(State::New)
}

fn read_metrics_if_any(folder: &RunFolder) -> Result<Vec<netc::train::EpochMetrics>, Error> {
    folder.read_metrics_if_any().map_err(Error::Io)
}

/// Reads every run in the folder whose swept parameters are `names` and writes `sweep.csv`:
/// after shards of a sweep have run, one call tabulates all of them.
pub fn write_csv(out: &Path, names: &[String]) -> Result<Report, Error> {
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
    dirs.sort();
    let (mut outcomes, mut unfinished) = (Vec::new(), 0);
    for folder in dirs.into_iter().map(RunFolder::new).filter(|f| f.record().is_file()) {
        let Some((point, epochs)) = run_point(&folder, names)? else { continue };
        match state(&folder, &point, epochs)? {
            State::Done(outcome) => outcomes.push(outcome),
            State::New | State::Partial { .. } => unfinished += 1,
        }
    }
    table::sort(&mut outcomes);
    Ok(Report { names: names.to_vec(), outcomes, unfinished })
}

/// A run's parameters, seed and planned epochs, if its `--set` parameters are exactly `names`.
fn run_point(folder: &RunFolder, names: &[String]) -> Result<Option<(Point, usize)>, Error> {
    let record = folder.read_record().map_err(Error::Io)?;
    let set = &record.provenance.set;
    if set.len() != names.len() {
        return Ok(None);
    }
    let params: Option<Vec<(String, String)>> =
        names.iter().map(|n| set.get(n).map(|v| (n.clone(), v.clone()))).collect();
    Ok(params.map(|params| (Point { params, seed: record.seed }, record.epochs)))
}
