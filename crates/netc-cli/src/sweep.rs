//! `netc sweep`: every combination of swept `--set` values and seeds as a run folder, with
//! overall progress, then `sweep.csv` and the per-setting table.

use crate::processes::Processes;
use crate::train::epoch_line;
use crate::{DataArgs, Failure, FileArgs, RecipeArgs};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use netc_sweep::{Grid, Progress};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(mut_arg("set", |a| a.help(
    "Sweep a net parameter over values `0,0.01,0.02` and/or ranges `0:0.1:0.01` (repeatable: a grid)"
)))]
pub struct SweepArgs {
    #[command(flatten)]
    file: FileArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    recipe: RecipeArgs,
    /// The seeds every setting runs with: `0,1,2` or `0:4:1` (default: the train block's seed).
    #[arg(long, value_name = "LIST")]
    seeds: Option<String>,
    /// The sweep folder (default: runs/sweep-<file name>). Rerunning a sweep skips its finished
    /// runs and resumes unfinished ones.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Compare every setting with the one that has NAME=VALUE, run for run with the same seed:
    /// the mean difference of test error, a paired t-test and a Wilcoxon signed-rank test,
    /// Holm-corrected across the settings.
    #[arg(long, value_name = "NAME=VALUE", value_parser = crate::parse_assignment)]
    baseline: Option<(String, String)>,
    /// Train only shard i of K (from 1): the grid's runs i, i + K, i + 2K, … in order, for
    /// launchers that start K copies of one command (a Slurm job array). The shards may share
    /// `--out`; each writes its own run folders.
    #[arg(long, value_name = "i/K", value_parser = parse_shard, conflicts_with = "merge")]
    shard: Option<netc_sweep::Shard>,
    /// Train nothing: tabulate the runs already in `--out` (after its shards have run) into
    /// `sweep.csv` and the table.
    #[arg(long)]
    merge: bool,
}

fn parse_shard(text: &str) -> Result<netc_sweep::Shard, String> {
    netc_sweep::Shard::parse(text).map_err(|e| e.0)
}

pub fn run(args: SweepArgs) -> Result<(), Failure> {
    let processes = Processes::join(std::time::Duration::MAX)?;
    let result = sweep(args, &processes);
    processes.end(result)
}

fn sweep(args: SweepArgs, processes: &Processes) -> Result<(), Failure> {
    let source = netc::Source::read(&args.file.file)?;
    let net = args.file.net.as_deref();
    let probe = Grid::new(&args.file.set, vec![0]).map_err(netc::Error::from)?;
    // The first setting's model gives the train block's seed and data set.
    let first = netc::model(&source, &probe.points()[0].params, net)?;
    let seeds = match &args.seeds {
        Some(text) => netc_sweep::parse_seeds(text).map_err(netc::Error::from)?,
        None => vec![first.train().seed],
    };
    let grid = Grid::new(&args.file.set, seeds).map_err(netc::Error::from)?;
    if let Some((name, value)) = &args.baseline {
        if !grid.points().iter().any(|p| p.params.iter().any(|(n, v)| n == name && v == value)) {
            return Err(Failure::usage(format!(
                "--baseline {name}={value}: no setting of the sweep has {name} = {value}"
            )));
        }
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("sweep-{}", crate::file_stem(&args.file.file))));
    // The runs in `out`, every shard's, tabulated.
    let merge = || {
        let names: Vec<String> = grid.axes.iter().map(|a| a.name.clone()).collect();
        print_report(&netc_sweep::write_csv(&out, &names)?, &out, args.baseline.as_ref())
    };
    if args.merge {
        return merge();
    }
    // Under mpiexec, process r of K trains shard r + 1 of K; the first merges their runs.
    let group = processes.group();
    let shard = match (args.shard, group.size()) {
        (shard, 1) => shard.unwrap_or(netc_sweep::Shard::ALL),
        (None, count) => netc_sweep::Shard { index: group.rank(), count },
        (Some(_), k) => {
            return Err(Failure::usage(format!(
                "--shard divides the runs, and so do the {k} processes of mpiexec: use one of the two"
            )))
        }
    };
    let overrides = args.recipe.overrides(None)?;
    // Every setting's net once (seeds do not change its size).
    let points = grid.points();
    for point in points.iter().filter(|p| Some(p.seed) == points.first().map(|f| f.seed)) {
        let mut model = netc::model(&source, &point.params, net)?;
        overrides.apply(&mut model.checked.train);
        args.data.check_memory(&model, true)?;
    }
    let data = args.data.load(&first)?;
    let sweep = netc_sweep::Sweep {
        source: &source,
        file: &args.file.file,
        net,
        grid: &grid,
        overrides,
        data: &data,
        out: &out,
        limit_train: args.recipe.limit_train,
        limit_test: args.recipe.limit_test,
        shard,
    };

    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("sweep [{bar:30}] {pos}/{len} epochs  {elapsed} (ETA {eta})  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });
    let say = |line: String| match &bar {
        Some(bar) => bar.println(line),
        None => println!("{line}"),
    };
    let mut total = 0;
    let mut current = (String::new(), 0);
    let mut on_progress = |progress: Progress| match progress {
        Progress::Planned { runs, epochs } => {
            total = runs;
            let whole = grid.points().len();
            let share = match sweep.shard {
                netc_sweep::Shard { count: 1, .. } => String::new(),
                netc_sweep::Shard { index, count } => format!(", shard {} of {count}: {runs} of them", index + 1),
            };
            eprintln!(
                "sweeping `{}` over {whole} run{} ({} setting{} × {} seed{}{share}) → {}",
                first.net().name,
                plural(whole),
                whole / grid.seeds.len(),
                plural(whole / grid.seeds.len()),
                grid.seeds.len(),
                plural(grid.seeds.len()),
                out.display()
            );
            if let Some(bar) = &bar {
                bar.set_length(epochs as u64);
            }
        }
        Progress::Skipped { index, outcome, epochs } => {
            let state =
                if outcome.diverged { "diverged before (recorded), skipped" } else { "finished before, skipped" };
            say(format!("[{}/{total}] {}: {state}", index + 1, outcome.point.name()));
            if let Some(bar) = &bar {
                bar.set_length(bar.length().unwrap_or(0).saturating_sub(epochs as u64));
            }
        }
        Progress::Started { index, point, from_epoch, epochs } => {
            current = (point.name(), epochs);
            let what = if from_epoch == 0 {
                format!("training {epochs} epoch{}", plural(epochs))
            } else {
                format!("resuming after epoch {from_epoch} of {epochs}")
            };
            say(format!("[{}/{total}] {}: {what}", index + 1, current.0));
            if let Some(bar) = &bar {
                bar.set_length(bar.length().unwrap_or(0).saturating_sub(from_epoch as u64));
            }
        }
        Progress::Train(netc::train::Event::Step { epoch, batch, batches, loss, .. }) => {
            if let Some(bar) = &bar {
                bar.set_message(format!(
                    "{} epoch {epoch}/{} batch {batch}/{batches} loss {loss:.4}",
                    current.0, current.1
                ));
            }
        }
        Progress::Train(netc::train::Event::Epoch(m)) => {
            say(format!("    {}", epoch_line(m, current.1)));
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        }
        Progress::Finished { index, outcome } => {
            let result = match (outcome.diverged, outcome.last) {
                (true, _) => format!(
                    "diverged after {} good epoch{}; recorded in {}",
                    outcome.epochs,
                    plural(outcome.epochs),
                    netc::train::RunFolder::new(out.join(outcome.point.name())).divergence().display()
                ),
                (false, Some(e)) => {
                    format!("test error {:.2}%  train error {:.2}%", e.test * 100.0, e.train * 100.0)
                }
                (false, None) => "no epochs".into(),
            };
            say(format!("[{}/{total}] {}: {result}", index + 1, outcome.point.name()));
        }
    };
    let mut backend = |model: &netc::Model| args.data.backend(model, true);
    let result = netc_sweep::run(&sweep, &mut backend, &mut on_progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result?;
    if group.size() == 1 {
        return print_report(&report, &out, args.baseline.as_ref());
    }
    processes.barrier();
    match processes.leads() {
        true => merge(),
        false => Ok(()),
    }
}

/// The table of the runs in `out`, and the comparison with `baseline` if asked for.
fn print_report(report: &netc_sweep::Report, out: &Path, baseline: Option<&(String, String)>) -> Result<(), Failure> {
    println!();
    print!("{}", report.table());
    println!(
        "\n{} run{} in {}; std is over seeds (n − 1), – for a single run; diverged runs are left out of the means",
        report.outcomes.len(),
        plural(report.outcomes.len()),
        out.join(netc_sweep::CSV_FILE).display()
    );
    if let Some((name, value)) = baseline {
        let table = report.comparisons(name, value).ok_or_else(|| {
            Failure::usage(format!("--baseline {name}={value}: no setting of the sweep has {name} = {value}"))
        })?;
        println!("\nagainst {name} = {value}, paired by seed (differences of test error in percentage points):");
        print!("{table}");
    }
    if report.unfinished > 0 {
        println!(
            "{} unfinished run{} in {} not in the table",
            report.unfinished,
            plural(report.unfinished),
            out.display()
        );
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
