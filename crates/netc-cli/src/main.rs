//! `netc`: check, summarise and (as the pipeline grows) compile and train `.net` networks.
//! Exit status: 0 success, 1 mistakes in the user's file, 2 usage or I/O errors.

mod plot;
mod processes;
mod sweep;
mod train;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "netc", version, about = "A compiler for neural architectures written in .net files")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// When to colour diagnostics.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    color: Color,
    /// How to print diagnostics: as text, or as one JSON object per line (docs/cli.md).
    #[arg(long, value_enum, default_value_t = MessageFormat::Human, global = true)]
    message_format: MessageFormat,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum MessageFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Check a .net file and report every mistake in it.
    Check(FileArgs),
    /// Print the per-layer table of a net: output shapes, parameters, MACs; one row per block use.
    Summary(SummaryArgs),
    /// Print the tensor IR a net compiles to, or read back a program in the textual IR (`.nir`).
    Ir(IrArgs),
    /// Train a net on a data set, writing metrics, weights and checkpoints to a run folder.
    Train(TrainArgs),
    /// Report test loss and error of saved weights, or of a run folder's.
    Eval(EvalArgs),
    /// Classify images (PNG, JPEG), .npy arrays or the images of IDX files with saved weights.
    Predict(PredictArgs),
    /// Train every combination of swept parameters and seeds; tabulate errors over seeds.
    Sweep(sweep::SweepArgs),
    /// Draw error curves of a run folder, or errors against the swept parameter of a sweep.
    Plot(plot::PlotArgs),
    /// Manage data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Rewrite .net files in the canonical layout (comments kept); `--check` only reports.
    Fmt(FmtArgs),
    /// Write a net with saved weights as a model for other runtimes: ONNX, preprocessing included.
    Export(ExportArgs),
    /// Print a shell completion script, e.g. `netc completions bash > ~/.local/share/bash-completion/completions/netc`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `netc man > ~/.local/share/man/man1/netc.1`.
    Man,
    /// Serve the Language Server Protocol on stdin and stdout, for editors (docs/cli.md).
    Lsp,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    file: FileArgs,
    /// The weights, e.g. runs/lenet/model.safetensors.
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// The format to write.
    #[arg(long, value_enum, default_value_t = ExportFormat::Onnx)]
    format: ExportFormat,
    /// The file to write, e.g. model.onnx.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// ONNX, opset 17: raw input in, logits out (docs/export.md).
    Onnx,
}

#[derive(Args)]
struct FmtArgs {
    /// The .net files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Change no file; list the files that are not formatted and exit with status 1 if any.
    #[arg(long)]
    check: bool,
}

#[derive(Args)]
struct IrArgs {
    #[command(flatten)]
    file: FileArgs,
    /// Include the backward pass: the gradient of the loss with respect to every parameter.
    #[arg(long)]
    grad: bool,
    /// Print the kernels the compiled executor runs instead: GEMMs with their fused bias and
    /// activation, and the fused elementwise kernels it compiles to machine code.
    #[arg(long)]
    fused: bool,
    /// Also time each compiler stage, from parsing to machine code.
    #[arg(long)]
    timings: bool,
}

#[derive(Args)]
struct DataArgs {
    /// A data set name (`mnist`, `cifar10`) or a folder holding its files; default: the train
    /// block's `data`.
    #[arg(long)]
    data: Option<String>,
    /// The folder's format (default: detected from its files).
    #[arg(long, value_name = "FORMAT", value_parser = parse_data_format)]
    data_format: Option<netc::data::DataFormat>,
    /// Look here first for data sets (then $NETC_DATA, ./data, the user cache folder).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Which executor runs the net.
    #[arg(long, value_enum, default_value_t = Exec::Compiled)]
    exec: Exec,
    /// Worker threads for the compiled executor, 1 to 256 (default: one per core). Results are
    /// the same for any count.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_THREADS))]
    threads: Option<u64>,
    /// Refuse to start when a training or evaluation step needs more memory than this, e.g.
    /// `8G`, `512M`, `2GiB` or a number of bytes (default: three quarters of physical memory).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
}

/// The most worker threads `--threads` accepts: more than any machine netc runs on has cores,
/// few enough that their stacks fit in memory.
const MAX_THREADS: u64 = 256;

#[derive(Clone, Copy, ValueEnum)]
enum Exec {
    /// Planned memory, GEMM kernels, parallel over the batch.
    Compiled,
    /// The reference interpreter: plain loops, the oracle the compiled executor is tested against.
    Interp,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    file: FileArgs,
    #[command(flatten)]
    data: DataArgs,
    /// The run folder (default: runs/<file name>, or runs/<file name>-2, -3, … when that one
    /// already holds a run).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Replace the run the folder holds (with the default folder: replace runs/<file name>).
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// Continue the run in DIR from its last checkpoint.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    #[command(flatten)]
    recipe: RecipeArgs,
    /// Override the train block: random seed (initialisation, masks, shuffling).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    seed: Option<String>,
    /// Hold out this fraction of the training images (drawn from the seed) and report their
    /// loss and error after every epoch.
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
    val: Option<f64>,
    /// Also write TensorBoard event files into the run folder: every epoch's metrics and the
    /// training loss every --tensorboard-every steps.
    #[arg(long)]
    tensorboard: bool,
    /// With --tensorboard: write the training loss of every Nth step [default: 50].
    #[arg(long, value_name = "N", requires = "tensorboard", value_parser = clap::value_parser!(u64).range(1..))]
    tensorboard_every: Option<u64>,
    /// Sum each batch's gradient from N chunks of the batch in a fixed order, so that any number
    /// of processes up to N (`mpiexec -n K`) trains the same bits as this one with the same N
    /// (recorded in run.json; needed under mpiexec) [default: 1, ordinary training].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    grad_chunks: Option<u64>,
    /// Under mpiexec: how long a process waits for the others in a step before it stops the
    /// job, as when one of them hangs.
    #[cfg(feature = "mpi")]
    #[arg(long, value_name = "SECONDS", default_value_t = 120.0, value_parser = parse_seconds)]
    mpi_timeout: f64,
}

#[cfg(feature = "mpi")]
fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 1e6 => Ok(s),
        _ => Err(format!("`{text}` is not a number of seconds between 0 and 1000000")),
    }
}

/// Training flags shared by `train` and `sweep`.
#[derive(Args)]
struct RecipeArgs {
    /// Override the train block: number of epochs.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    epochs: Option<String>,
    /// Override the train block: batch size.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    batch: Option<String>,
    /// Override the train block: constant learning rate (replaces any schedule).
    #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
    lr: Option<String>,
    /// Train on the first N training images only.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    limit_train: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    limit_test: Option<usize>,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    file: FileArgs,
    #[command(flatten)]
    data: DataArgs,
    /// The weights, e.g. runs/lenet/model.safetensors (default for a run folder: its own).
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Also print the confusion matrix of the test set and each class's error.
    #[arg(long)]
    confusion: bool,
}

#[derive(Args)]
struct PredictArgs {
    #[command(flatten)]
    file: FileArgs,
    /// The weights, e.g. runs/lenet/model.safetensors.
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// How many of the most probable classes to print per input.
    #[arg(long, value_name = "K", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    top: u64,
    /// Print JSON for other programs instead of lines.
    #[arg(long)]
    json: bool,
    /// Which executor runs the net.
    #[arg(long, value_enum, default_value_t = Exec::Compiled)]
    exec: Exec,
    /// Worker threads for the compiled executor (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_THREADS))]
    threads: Option<u64>,
    /// The files to classify: PNG or JPEG images of the net's input size, .npy arrays or IDX
    /// image files.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Download a data set and verify its checksums.
    Fetch {
        /// The data set (`mnist`, `cifar10`).
        name: String,
        /// Where to put it (default: $NETC_DATA, else the user cache folder).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct FileArgs {
    /// The .net file.
    file: PathBuf,
    /// Override a net parameter, e.g. `--set negfrac=0.07` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    set: Vec<(String, String)>,
    /// Which net of the file, when it defines several.
    #[arg(long)]
    net: Option<String>,
}

#[derive(Args)]
struct SummaryArgs {
    #[command(flatten)]
    file: FileArgs,
    /// List the layers of each block use under its row.
    #[arg(long)]
    expand: bool,
}

fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_string(), value.trim().to_string())),
        _ => Err(format!("expected NAME=VALUE, found `{text}`")),
    }
}

/// A command's failure: the text to print and the exit status.
struct Failure {
    text: String,
    status: u8,
    /// Reached by every process of a data-parallel run at the same step (a stop on request, a
    /// divergence), so they end together rather than one aborting the others.
    agreed: bool,
}

impl From<netc::Error> for Failure {
    fn from(e: netc::Error) -> Failure {
        let agreed = matches!(e, netc::Error::Diverged { .. } | netc::Error::Interrupted { .. });
        let status = match e {
            netc::Error::Source { .. } | netc::Error::Diverged { .. } => 1,
            // As a shell reports a command that SIGINT ended: 128 + the signal's number.
            netc::Error::Interrupted { .. } => 130,
            _ => 2,
        };
        let invocation = INVOCATION.get_or_init(netc::Invocation::installed);
        let text = match json_messages() {
            true => e.json(invocation),
            false => e.render_for(colored(std::io::stderr().is_terminal()), invocation),
        };
        Failure { text, status, agreed }
    }
}

/// How the user ran netc, for hints that name a command: set once the command line is parsed.
static INVOCATION: std::sync::OnceLock<netc::Invocation> = std::sync::OnceLock::new();

/// `cargo run` sets `CARGO` for the program it runs, and `CARGO_MANIFEST_DIR` to the package's
/// folder as it did for the build: both together mean this very netc was started by `cargo
/// run` (an installed netc started by another package's cargo sees that package's folder).
fn invocation(command: &Command) -> netc::Invocation {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR");
    let by_cargo =
        std::env::var_os("CARGO").is_some() && manifest.as_deref() == Some(env!("CARGO_MANIFEST_DIR").as_ref());
    let invocation = if by_cargo {
        // cargo puts the release profile's build in `target/release`, the dev profile's in `target/debug`.
        let exe = std::env::current_exe().ok();
        let release = exe.as_deref().and_then(|e| e.parent()).and_then(|p| p.file_name()) == Some("release".as_ref());
        netc::Invocation::cargo_run(if release { &["--release"] } else { &[] }, env!("CARGO_PKG_NAME"))
    } else {
        netc::Invocation::installed()
    };
    match command {
        Command::Train(_) => invocation.training(train::arguments_without_folder(std::env::args_os().skip(1))),
        _ => invocation,
    }
}

fn json_messages() -> bool {
    MESSAGE_FORMAT.get() == Some(&MessageFormat::Json)
}

static MESSAGE_FORMAT: std::sync::OnceLock<MessageFormat> = std::sync::OnceLock::new();

fn colored(terminal: bool) -> bool {
    match COLOR.get() {
        Some(Color::Always) => true,
        Some(Color::Never) => false,
        _ => terminal && std::env::var_os("NO_COLOR").is_none(),
    }
}

static COLOR: std::sync::OnceLock<Color> = std::sync::OnceLock::new();

fn main() -> ExitCode {
    // Like other command-line tools, stop quietly when the reader of the output goes away
    // (`netc ir model.net | head`) rather than fail to print.
    #[cfg(unix)]
    // SAFETY: restores the default action of SIGPIPE before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let _ = COLOR.set(cli.color);
    let _ = MESSAGE_FORMAT.set(cli.message_format);
    let _ = INVOCATION.set(invocation(&cli.command));
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = std::io::stderr().write_all(failure.text.as_bytes());
            ExitCode::from(failure.status)
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Check(args) => {
            let source = netc::Source::read(&args.file)?;
            let checked = netc::check(&source, &args.set)?;
            if let Some(name) = &args.net {
                checked.net(Some(name)).map_err(Failure::usage)?;
            }
            let warnings = if json_messages() {
                netc::json_lines(&checked.warnings, Some((&source.name, &source.text)))
            } else {
                netc::syntax::render(
                    &checked.warnings,
                    &source.name,
                    &source.text,
                    colored(std::io::stderr().is_terminal()),
                )
            };
            eprint!("{warnings}");
            let names: Vec<&str> = checked.nets.iter().map(|n| n.name.as_str()).collect();
            println!(
                "{}: ok ({} net{}: {})",
                source.name,
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            );
            Ok(())
        }
        Command::Fmt(args) => {
            let mut unformatted = Vec::new();
            for path in &args.files {
                let source = netc::Source::read(path)?;
                let formatted = netc::format(&source)?;
                if formatted == source.text {
                    continue;
                }
                if args.check {
                    unformatted.push(path.display().to_string());
                } else {
                    netc::write_source(path, &formatted)?;
                    eprintln!("formatted {}", path.display());
                }
            }
            if unformatted.is_empty() {
                return Ok(());
            }
            let fmt = INVOCATION.get_or_init(netc::Invocation::installed).command(&["fmt"]);
            Err(Failure {
                text: format!("not formatted (run `{fmt}` on them):\n  {}\n", unformatted.join("\n  ")),
                status: 1,
                agreed: false,
            })
        }
        Command::Summary(args) => {
            let model = args.file.model()?;
            print!("{}", netc::run::summary(&model, args.expand));
            Ok(())
        }
        Command::Ir(args) if netc::nir::is_ir_file(&args.file.file) => {
            if !args.file.set.is_empty() || args.file.net.is_some() || args.timings {
                return Err(Failure::usage(format!(
                    "{}: --set, --net and --timings apply to .net files, not to IR programs",
                    args.file.file.display()
                )));
            }
            let source = netc::Source::read(&args.file.file)?;
            let mut program = netc::nir::read(&source)?;
            if args.grad {
                program = netc::nir::differentiate(&program)?;
            }
            match args.fused {
                true => print!("{}", netc::nir::fused_text(&program)?),
                false => print!("{program}"),
            }
            Ok(())
        }
        Command::Ir(args) => {
            let model = args.file.model()?;
            match args.fused {
                true => print!("{}", netc::run::fused_text(&model, args.grad)?),
                false => print!("{}", netc::run::ir_text(&model, args.grad)?),
            }
            if args.timings {
                let f = &args.file;
                let times = netc::run::stage_times(&model.source, &f.set, f.net.as_deref(), args.grad)?;
                let total: std::time::Duration = times.iter().map(|(_, t)| *t).sum();
                println!("# compile times");
                for (stage, time) in times {
                    println!("#   {stage:<13}{:>9.3} ms", time.as_secs_f64() * 1e3);
                }
                println!("#   {:<13}{:>9.3} ms", "total", total.as_secs_f64() * 1e3);
            }
            Ok(())
        }
        Command::Train(args) => train::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Plot(args) => plot::run(args),
        Command::Eval(mut args) => {
            // A run folder gives its own net, --set values, data and weights.
            let (model, weights) = if args.file.file.is_dir() {
                if !args.file.set.is_empty() {
                    return Err(Failure::usage(
                        "--set does not apply to a run folder: it uses the run's own values".into(),
                    ));
                }
                let run = netc::run::RecordedRun::read(&netc::train::RunFolder::new(&args.file.file))?;
                args.data.data.get_or_insert(run.data);
                (run.model, args.weights.clone().unwrap_or(run.weights))
            } else {
                let weights = args.weights.clone().ok_or_else(|| {
                    Failure::usage("--weights is required with a .net file (or give a run folder)".into())
                })?;
                (args.file.model()?, weights)
            };
            args.data.check_memory(&model, false)?;
            let data = args.data.load(&model)?;
            let mut backend = args.data.backend(&model, false)?;
            let (loss, error) = netc::run::evaluate(&model, &data, &weights, backend.as_mut())?;
            println!(
                "test loss {loss:.4}  test error {:.2}%  ({} images, {})",
                error * 100.0,
                data.set.test.count,
                weights.display()
            );
            if args.confusion {
                print!("{}", netc::run::confusion(&model, &data, &weights, backend.as_mut())?.table());
            }
            Ok(())
        }
        Command::Predict(args) => {
            let model = args.file.model()?;
            let mut backend = backend(args.exec, args.threads, default_memory_limit(), false, &model)?;
            let top = usize::try_from(args.top).unwrap_or(usize::MAX);
            let predictions = netc::run::predict(&model, &args.weights, &args.inputs, top, backend.as_mut())?;
            if args.json {
                println!("{}", netc::run::predictions_json(&predictions));
            } else {
                for prediction in predictions {
                    let classes: Vec<String> = prediction
                        .classes
                        .iter()
                        .map(|c| format!("{} {:.1}%", c.name, c.probability * 100.0))
                        .collect();
                    println!("{}: {}", prediction.input, classes.join(", "));
                }
            }
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "netc", &mut std::io::stdout());
            Ok(())
        }
        Command::Lsp => netc_lsp::serve_stdio().map_err(Failure::usage),
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(|e| Failure::usage(format!("cannot write the manual page: {e}"))),
        Command::Export(args) => {
            let model = args.file.model()?;
            let bytes = match args.format {
                ExportFormat::Onnx => netc::run::export_onnx(&model, &args.weights)?,
            };
            std::fs::write(&args.out, &bytes)
                .map_err(|e| Failure::usage(format!("cannot write {}: {e}", args.out.display())))?;
            let net = model.net();
            let dims: Vec<String> = net.input.shape.iter().map(usize::to_string).collect();
            println!(
                "{}: ONNX opset {}, input `{}` [N, {}] of raw values, output `logits` [N, {}]",
                args.out.display(),
                netc::onnx::OPSET,
                net.input.name,
                dims.join(", "),
                net.loss.classes
            );
            Ok(())
        }
        Command::Data(DataCommand::Fetch { name, data_dir }) => {
            if !netc::data::KNOWN_DATASETS.contains(&name.as_str()) {
                return Err(Failure::usage(format!(
                    "unknown data set `{name}`; netc can fetch {}",
                    netc::data::KNOWN_DATASETS.join(", ")
                )));
            }
            let dir = netc::data::fetch_dir(&name, data_dir.as_deref());
            let progress = std::io::stderr().is_terminal();
            let fetched = match netc::data::DataFormat::named(&name) {
                Some(netc::data::DataFormat::Cifar10) => netc::data::fetch_cifar10(&dir, progress),
                _ => netc::data::fetch_mnist(&dir, progress),
            };
            let files = fetched.map_err(|e| Failure::usage(e.to_string()))?;
            for file in files {
                let action = match file.action {
                    netc::data::FetchAction::AlreadyPresent => "verified".to_string(),
                    netc::data::FetchAction::Downloaded { url } => format!("downloaded from {url}"),
                };
                println!("{}: {action}", file.path.display());
            }
            Ok(())
        }
    }
}

impl FileArgs {
    fn model(&self) -> Result<netc::Model, Failure> {
        let source = netc::Source::read(&self.file)?;
        Ok(netc::model(&source, &self.set, self.net.as_deref())?)
    }
}

impl RecipeArgs {
    /// The flags that override the train block, each checked as the train block checks it.
    fn overrides(&self, seed: Option<&str>) -> Result<netc::run::TrainOverrides, Failure> {
        use netc::check::{count_override, CountSetting};
        let count = |flag: &str, text: &Option<String>, setting| {
            text.as_deref().map(|t| flag_value(flag, t, |v| count_override(setting, v))).transpose()
        };
        let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(netc::run::TrainOverrides {
            epochs: count("--epochs", &self.epochs, CountSetting::Epochs)?.map(as_usize),
            batch: count("--batch", &self.batch, CountSetting::Batch)?.map(as_usize),
            lr: self.lr.as_deref().map(|t| flag_value("--lr", t, netc::check::lr_override)).transpose()?,
            seed: count("--seed", &seed.map(str::to_string), CountSetting::Seed)?,
        })
    }
}

/// A count of images: an integer of at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1 (an empty data set trains and tests nothing)".into()),
        Err(e) => Err(format!("not a count of images: {e}")),
    }
}

/// The value of a flag that stands for a train block setting, parsed and checked as the train
/// block would; a mistake is a usage error shown against the flag (`--epochs 0`).
fn flag_value<T>(
    flag: &str,
    text: &str,
    check: impl Fn(&netc::syntax::ast::Value) -> Result<T, netc::syntax::Diagnostic>,
) -> Result<T, Failure> {
    let checked = netc::syntax::parse_value(text).and_then(|value| check(&value).map_err(|d| vec![d]));
    checked.map_err(|mut diagnostics| {
        // The diagnostics point into the value; show them in the flag as written.
        let offset = flag.len() + 1;
        for label in diagnostics.iter_mut().flat_map(|d| d.labels.iter_mut()) {
            label.range = label.range.start + offset..label.range.end + offset;
        }
        let source = netc::Source::new("<command line>", format!("{flag} {text}"));
        Failure::from(netc::Error::Usage { source: Some(source), diagnostics })
    })
}

/// `8G`, `512M`, `1.5GB`, `2GiB` or a number of bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let scale: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        other => return Err(format!("unknown unit `{other}`; use K, M, G, T (powers of 1000) or KiB, MiB, GiB, TiB")),
    };
    let bytes = number.parse::<f64>().map_err(|_| format!("`{text}` is not a size, e.g. 8G or 512M"))? * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("`{text}` is not a size between 1 byte and 16 EB"));
    }
    Ok(bytes as u64)
}

/// The default `--max-memory`: three quarters of physical memory, or no limit where the
/// system does not say how much it has.
fn default_memory_limit() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf reads system configuration and has no preconditions.
        let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
        if let (Ok(pages), Ok(page)) = (u64::try_from(pages), u64::try_from(page)) {
            if pages > 0 && page > 0 {
                return pages.saturating_mul(page) / 4 * 3;
            }
        }
    }
    u64::MAX
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err("must be a fraction strictly between 0 and 1, e.g. 0.1".into()),
    }
}

fn parse_data_format(text: &str) -> Result<netc::data::DataFormat, String> {
    netc::data::DataFormat::named(text).ok_or_else(|| {
        let names: Vec<&str> = netc::data::DataFormat::ALL.iter().map(|f| f.name()).collect();
        format!("unknown format; netc reads {}", names.join(", "))
    })
}

/// A file's name without its extension, for default output folders.
fn file_stem(file: &std::path::Path) -> String {
    file.file_stem().map_or("run".into(), |s| s.to_string_lossy().into_owned())
}

impl DataArgs {
    fn load(&self, model: &netc::Model) -> Result<netc::run::Data, Failure> {
        let name = self.data.clone().or_else(|| model.train().data.clone()).ok_or_else(|| {
            Failure::usage("no data set given: pass --data mnist, or write `data = mnist` in the train block".into())
        })?;
        Ok(netc::run::Data::load(&netc::run::DataRequest {
            name,
            dir: self.data_dir.clone(),
            format: self.data_format,
        })?)
    }

    /// Refuses a model whose training step (with `training`) or evaluation step would need
    /// more than `--max-memory`.
    fn check_memory(&self, model: &netc::Model, training: bool) -> Result<(), Failure> {
        let limit = self.max_memory.unwrap_or_else(default_memory_limit);
        let config = model.train();
        if training {
            model
                .check_memory(netc::check::Step::Train { batch: config.batch, optimizer: &config.optimizer }, limit)?;
        }
        model.check_memory(netc::check::Step::Evaluate { batch: netc::run::EVAL_BATCH }, limit)?;
        Ok(())
    }

    /// The backend, its plans checked against `--max-memory` (the training batch's too with
    /// `training`).
    fn backend(&self, model: &netc::Model, training: bool) -> Result<Box<dyn netc::train::Backend>, netc::Error> {
        let limit = self.max_memory.unwrap_or_else(default_memory_limit);
        backend(self.exec, self.threads, limit, training, model)
    }
}

/// The executor `--exec` names, with `--threads` workers, whose step must fit in `limit` bytes.
fn backend(
    exec: Exec,
    threads: Option<u64>,
    limit: u64,
    training: bool,
    model: &netc::Model,
) -> Result<Box<dyn netc::train::Backend>, netc::Error> {
    // 0 asks the executor for one thread per core.
    let threads = threads.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    match exec {
        Exec::Compiled => Ok(Box::new(netc::run::ExecBackend::with_memory_limit(model, threads, limit, training)?)),
        Exec::Interp => Ok(Box::new(netc::run::InterpBackend::new(model)?)),
    }
}

impl Failure {
    fn usage(message: String) -> Failure {
        let text = if json_messages() {
            netc::json_lines(&[netc::syntax::Diagnostic::error().with_message(message)], None)
        } else {
            format!("error: {message}\n")
        };
        Failure { text, status: 2, agreed: false }
    }
}
