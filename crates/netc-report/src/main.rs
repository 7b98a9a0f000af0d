//! `netc-report`: rewrites docs/experiments.md's generated tables and draws its figures from the
//! committed runs; `netc-report --check` only says whether the page's tables are current (exit 1
//! when they are not).

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(other) => {
            eprintln!("usage: netc-report [--check] (unknown argument `{other}`)");
            return ExitCode::from(2);
        }
    };
    // The repository's root: this crate is crates/netc-report.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = netc_report::page_path(&root);
    let result =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display())).and_then(|page| {
            let blocks = netc_report::blocks(&root).map_err(|e| e.to_string())?;
            let updated = netc_report::update(&page, &blocks).map_err(|e| e.to_string())?;
            Ok((page, updated))
        });
    match result {
        Err(message) => {
            eprintln!("netc-report: {message}");
            ExitCode::FAILURE
        }
        Ok((page, updated)) if check => {
            if page == updated {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "netc-report: {} is not what the runs under experiments/ give; run `cargo run -p netc-report`",
                    netc_report::PAGE
                );
                ExitCode::FAILURE
            }
        }
        Ok((page, updated)) => {
            if page != updated {
                if let Err(e) = std::fs::write(&path, updated) {
                    eprintln!("netc-report: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                println!("netc-report: updated {}", netc_report::PAGE);
            }
            match netc_report::figures(&root) {
                Ok(files) => files
                    .iter()
                    .for_each(|f| println!("netc-report: drew {}", f.strip_prefix(&root).unwrap_or(f).display())),
                Err(e) => {
                    eprintln!("netc-report: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
    }
}
