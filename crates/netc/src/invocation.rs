//! How the user runs netc, so that a hint names a command they can paste: `netc data fetch
//! mnist` for an installed netc, `cargo run -p netc-cli -- data fetch mnist` in a checkout.
//! The program that starts netc decides (the `netc` binary from what cargo tells it); the
//! library only renders.

use std::path::Path;

/// The words that start netc, and the command being run when it is a `netc train`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    program: Vec<String>,
    /// The `train` command's arguments without its run-folder flags (`--out`, `--force`,
    /// `--resume`), from which the command that resumes the run is made.
    train: Option<Vec<String>>,
}

impl Default for Invocation {
    fn default() -> Self {
        Invocation::installed()
    }
}

impl Invocation {
    /// netc on the `PATH`.
    pub fn installed() -> Invocation {
        Invocation { program: vec!["netc".into()], train: None }
    }

    /// netc built and run by `cargo run`, with `cargo_flags` (`--release`) before the package.
    pub fn cargo_run(cargo_flags: &[&str], package: &str) -> Invocation {
        let mut program: Vec<String> =
            ["cargo", "run"].into_iter().chain(cargo_flags.iter().copied()).map(String::from).collect();
        program.extend(["-p".to_string(), package.to_string(), "--".to_string()]);
        Invocation { program, train: None }
    }

    /// While running `netc train` with `args` (everything after the program, run-folder flags
    /// left out).
    pub fn training(self, args: Vec<String>) -> Invocation {
        Invocation { train: Some(args), ..self }
    }

    /// The command that runs netc with `args`, quoted for a POSIX shell where needed.
    pub fn command<S: AsRef<str>>(&self, args: &[S]) -> String {
        let words = self.program.iter().map(String::as_str).chain(args.iter().map(AsRef::as_ref));
        words.map(shell_word).collect::<Vec<_>>().join(" ")
    }

    /// How to continue the run in `folder`: the whole command when the train command is known,
    /// else the flag.
    pub fn resume(&self, folder: &Path) -> String {
        let folder = folder.display().to_string();
        match &self.train {
            Some(args) => {
                let args: Vec<&str> = args.iter().map(String::as_str).chain(["--resume", &folder]).collect();
                format!("`{}`", self.command(&args))
            }
            None => format!("--resume {}", shell_word(&folder)),
        }
    }
}

/// `word` as a POSIX shell reads it back: as is when it holds only characters no shell treats
/// specially, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_start_with_the_program_and_quote_what_a_shell_would_split() {
        let installed = Invocation::installed();
        assert_eq!(installed.command(&["data", "fetch", "mnist"]), "netc data fetch mnist");
        let cargo = Invocation::cargo_run(&["--release"], "netc-cli");
        assert_eq!(cargo.command(&["fmt"]), "cargo run --release -p netc-cli -- fmt");
        assert_eq!(installed.command(&["train", "my net.net", "it's", ""]), r"netc train 'my net.net' 'it'\''s' ''");
    }

    #[test]
    fn the_resume_command_is_the_train_command_with_the_folder() {
        let folder = Path::new("runs/lenet-2");
        assert_eq!(Invocation::installed().resume(folder), "--resume runs/lenet-2");
        let training = Invocation::cargo_run(&[], "netc-cli").training(vec!["train".into(), "lenet.net".into()]);
        assert_eq!(training.resume(folder), "`cargo run -p netc-cli -- train lenet.net --resume runs/lenet-2`");
    }
}
