//! `netc`: check, summarise and (as the pipeline grows) compile and train `.net` networks.
//! Exit status: 0 success, 1 mistakes in the user's file, 2 usage or I/O errors.

use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// Print the per-layer table of a net: output shapes, parameters, MACs.
    Summary(FileArgs),
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
}

impl From<netc::Error> for Failure {
    fn from(e: netc::Error) -> Failure {
        let status = if matches!(e, netc::Error::Source { .. }) { 1 } else { 2 };
        Failure { text: e.render(colored(std::io::stderr().is_terminal())), status }
    }
}

fn colored(terminal: bool) -> bool {
    match COLOR.get() {
        Some(Color::Always) => true,
        Some(Color::Never) => false,
        _ => terminal && std::env::var_os("NO_COLOR").is_none(),
    }
}

static COLOR: std::sync::OnceLock<Color> = std::sync::OnceLock::new();

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = COLOR.set(cli.color);
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
            let warnings = netc::syntax::render(
                &checked.warnings,
                &source.name,
                &source.text,
                colored(std::io::stderr().is_terminal()),
            );
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
        Command::Summary(args) => {
            let source = netc::Source::read(&args.file)?;
            let model = netc::model(&source, &args.set, args.net.as_deref())?;
            print!("{}", netc::check::summary(model.net()));
            Ok(())
        }
    }
}
