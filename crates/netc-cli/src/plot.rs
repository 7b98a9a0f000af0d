//! `netc plot`: PNG and SVG figures of a run folder or a sweep folder.

use crate::Failure;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PlotArgs {
    /// A run folder (errors per epoch) or a sweep folder (final errors against the swept parameter).
    dir: PathBuf,
    /// Where to write the images (default: the folder itself).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run(args: PlotArgs) -> Result<(), Failure> {
    let files = netc_plot::plot_dir(&args.dir, args.out.as_deref()).map_err(Failure::usage)?;
    for file in files {
        println!("{}", file.display());
    }
    Ok(())
}
