//! Downloading MNIST from public mirrors.
//!
//! Each file is streamed into a temporary file beside its final name, checked
//! against the SHA-256 of its uncompressed contents, and only then renamed
//! into place, so an interrupted or corrupt download never passes for data.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::OfflineHint;
use crate::idx::sha256_uncompressed;
use crate::mnist::MNIST_FILES;
use crate::DataError;

/// Base URLs tried in order; overridden by `NETC_MNIST_MIRROR` (a comma- or
/// space-separated list) for private mirrors and tests.
pub const MNIST_MIRRORS: [&str; 2] =
    ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"];

/// Largest body accepted; MNIST's biggest file is under 10 MB compressed, so
/// anything far larger is a misbehaving server, not data.
const MAX_DOWNLOAD: u64 = 64 << 20;

/// What [`fetch_mnist`] did for one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchAction {
    /// The file was already there with the right checksum; nothing downloaded.
    AlreadyPresent,
    /// The file was downloaded from this URL and verified.
    Downloaded {
        /// The URL that served it.
        url: String,
    },
}

/// One file handled by [`fetch_mnist`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedFile {
    /// Where the verified file now is.
    pub path: PathBuf,
    /// Whether it was downloaded or already present.
    pub action: FetchAction,
}

/// Downloads the four MNIST files into `dest_dir` (created if needed), as
/// `NAME.gz`, trying each mirror in turn; shows a progress bar on stderr if
/// `progress` is set. Files already present (`NAME.gz` or `NAME`) with the
/// right checksum are kept as they are.
pub fn fetch_mnist(dest_dir: &Path, progress: bool) -> Result<Vec<FetchedFile>, DataError> {
    let mirrors = mirrors_from(std::env::var("NETC_MNIST_MIRROR").ok().as_deref(), &MNIST_MIRRORS);
    fetch_files(&agent(), dest_dir, &mirrors, &MNIST_FILES, progress)
}

/// The HTTP client every download uses.
pub(crate) fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(60))
        .try_proxy_from_env(true)
        .user_agent(concat!("netc/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The mirror list: the variable's entries if it has any, else `defaults`.
/// Each base gets a trailing `/` so file names can be appended.
pub(crate) fn mirrors_from(var: Option<&str>, defaults: &[&str]) -> Vec<String> {
    let listed: Vec<String> = var
        .unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| if s.ends_with('/') { s.to_string() } else { format!("{s}/") })
        .collect();
    if listed.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        listed
    }
}

/// [`fetch_mnist`] with the agent, mirrors and checksum table as parameters.
fn fetch_files(
    agent: &ureq::Agent,
    dest: &Path,
    mirrors: &[String],
    files: &[(&str, &str)],
    progress: bool,
) -> Result<Vec<FetchedFile>, DataError> {
    fs::create_dir_all(dest).map_err(|e| DataError::io(dest, "creating folder", e))?;
    let mut fetched = Vec::with_capacity(files.len());
    for &(name, sha256) in files {
        if let Some(path) = present_and_verified(dest, name, sha256) {
            fetched.push(FetchedFile { path, action: FetchAction::AlreadyPresent });
            continue;
        }
        let file = format!("{name}.gz");
        let target = dest.join(&file);
        let verify = |path: &Path| match sha256_uncompressed(path) {
            Ok(found) if found == sha256 => Ok(()),
            Ok(found) => {
                Err(Failure::Remote(format!("SHA-256 of the uncompressed contents is {found}, expected {sha256}")))
            }
            Err(e @ DataError::Gzip { .. }) => Err(Failure::Remote(e.to_string())),
            Err(e) => Err(Failure::Local(e)),
        };
        let (source, attempts) = first_mirror(mirrors.iter().map(|base| format!("{base}{file}")), |url| {
            download(agent, url, &target, MAX_DOWNLOAD, progress, verify)
        })?;
        let Some(url) = source else {
            let offline = OfflineHint {
                dir: dest.to_path_buf(),
                download: files.iter().map(|(name, _)| format!("{name}.gz")).collect::<Vec<_>>().join(", "),
                files: files.iter().map(|(name, _)| format!("{name}.gz")).collect(),
            };
            return Err(DataError::Download { file, attempts, offline });
        };
        fetched.push(FetchedFile { path: target, action: FetchAction::Downloaded { url } });
    }
    Ok(fetched)
}

/// The existing copy of `name` in `dest` whose contents hash to `sha256`.
fn present_and_verified(dest: &Path, name: &str, sha256: &str) -> Option<PathBuf> {
    [format!("{name}.gz"), name.to_string()]
        .into_iter()
        .map(|file| dest.join(file))
        .filter(|path| path.is_file())
        .find(|path| sha256_uncompressed(path).is_ok_and(|found| found == sha256))
}

/// Why one download attempt failed: the mirror's fault (try the next one) or
/// ours (give up, no mirror will do better).
pub(crate) enum Failure {
    Remote(String),
    Local(DataError),
}

/// The URL a download came from (`None` when every mirror failed), and each failed mirror with why.
pub(crate) type MirrorOutcome = (Option<String>, Vec<(String, String)>);

/// Tries `urls` in turn with `fetch`: the first that succeeds, and every remote failure before
/// it as (url, why). A local failure (the disk, the destination) ends the search at once.
pub(crate) fn first_mirror(
    urls: impl IntoIterator<Item = String>,
    mut fetch: impl FnMut(&str) -> Result<(), Failure>,
) -> Result<MirrorOutcome, DataError> {
    let mut attempts = Vec::new();
    for url in urls {
        match fetch(&url) {
            Ok(()) => return Ok((Some(url), attempts)),
            Err(Failure::Local(e)) => return Err(e),
            Err(Failure::Remote(why)) => attempts.push((url, why)),
        }
    }
    Ok((None, attempts))
}

/// Downloads `url` (at most `max` bytes) to `target` through a temporary file, and renames it
/// into place once `verify` accepts the temporary file.
pub(crate) fn download(
    agent: &ureq::Agent,
    url: &str,
    target: &Path,
    max: u64,
    progress: bool,
    verify: impl Fn(&Path) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let response = agent.get(url).call().map_err(|e| Failure::Remote(e.to_string()))?;
    let length = response.header("Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = length.filter(|&n| n > max) {
        return Err(Failure::Remote(format!("server announces {length} bytes, more than the {max}-byte limit")));
    }

    let mut temp = TempFile::create(target).map_err(Failure::Local)?;
    let bar = progress_bar(progress, length, target);
    let mut body = response.into_reader().take(max + 1);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                return Err(Failure::Remote(format!("transfer failed after {total} bytes: {e}")));
            }
        };
        temp.write_all(&buf[..n]).map_err(Failure::Local)?;
        total += n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    if total > max {
        return Err(Failure::Remote(format!("body exceeds the {max}-byte limit")));
    }
    if let Some(length) = length.filter(|&n| n != total) {
        return Err(Failure::Remote(format!("got {total} bytes, server announced {length}")));
    }
    temp.sync().map_err(Failure::Local)?;
    verify(&temp.path)?;
    temp.persist(target).map_err(Failure::Local)
}

/// Progress display when the server announces a length, and when it does not.
const BAR_TEMPLATE: &str = "{msg:28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";
const SPINNER_TEMPLATE: &str = "{msg:28} {spinner} {bytes} {bytes_per_sec}";

fn progress_bar(progress: bool, length: Option<u64>, target: &Path) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let (bar, template) = match length {
        Some(len) => (ProgressBar::new(len), BAR_TEMPLATE),
        None => (ProgressBar::new_spinner(), SPINNER_TEMPLATE),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    bar.set_message(name);
    bar
}

/// A file beside the target that is deleted when dropped unless persisted,
/// so no failure path can leave partial data behind.
pub(crate) struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    pub(crate) fn create(target: &Path) -> Result<TempFile, DataError> {
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let path = target.with_file_name(format!(".{name}.part-{}", std::process::id()));
        let file = File::create(&path).map_err(|e| DataError::io(&path, "creating", e))?;
        Ok(TempFile { path, file: Some(file) })
    }

    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<(), DataError> {
        let result = match &mut self.file {
            Some(file) => file.write_all(bytes),
            None => Ok(()),
        };
        result.map_err(|e| DataError::io(&self.path, "writing", e))
    }

    pub(crate) fn sync(&mut self) -> Result<(), DataError> {
        let result = match self.file.take() {
            Some(file) => file.sync_all(),
            None => Ok(()),
        };
        result.map_err(|e| DataError::io(&self.path, "flushing", e))
    }

    pub(crate) fn persist(mut self, target: &Path) -> Result<(), DataError> {
        self.file = None;
        fs::rename(&self.path, target).map_err(|e| DataError::io(target, "renaming the download into place", e))?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            // Best effort: the file may never have been written.
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{gzip, sha256, tiny_mnist, Reply, Server};
    use crate::Splits;
    use std::collections::HashMap;

    /// Serves the tiny data set gzipped under `/good/`; `/bad/` is all 404s.
    fn serve(max_requests: usize) -> (Server, Vec<(&'static str, String)>) {
        let mut routes = HashMap::new();
        let mut table = Vec::new();
        for (name, bytes) in tiny_mnist() {
            routes.insert(format!("/good/{name}.gz"), Reply::ok(gzip(&bytes)));
            table.push((name, sha256(&bytes)));
        }
        (Server::start(routes, max_requests), table)
    }

    fn as_table<'a>(table: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        table.iter().map(|(n, s)| (*n, s.as_str())).collect()
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".part"))
            .collect()
    }

    #[test]
    fn downloads_verifies_and_then_skips() {
        let (server, table) = serve(8);
        let mirrors = vec![format!("{}/bad/", server.base), format!("{}/good/", server.base)];
        let dest = tempfile::tempdir().unwrap();
        let dest = dest.path().join("new/mnist");
        let agent = ureq::Agent::new();

        let fetched = fetch_files(&agent, &dest, &mirrors, &as_table(&table), true).unwrap();
        assert_eq!(fetched.len(), 4);
        for (file, (name, _)) in fetched.iter().zip(&table) {
            assert_eq!(file.path, dest.join(format!("{name}.gz")));
            assert_eq!(file.action, FetchAction::Downloaded { url: format!("{}/good/{name}.gz", server.base) });
        }
        assert!(leftovers(&dest).is_empty());
        let mnist = Splits::load_mnist(&dest).unwrap();
        assert_eq!(mnist.train.count, 3);

        // Everything is present and verified now: no request at all.
        let again = fetch_files(&agent, &dest, &mirrors, &as_table(&table), false).unwrap();
        assert!(again.iter().all(|f| f.action == FetchAction::AlreadyPresent));
        let requested = server.finish();
        assert_eq!(requested.len(), 8, "{requested:?}");
        assert!(requested.iter().step_by(2).all(|p| p.starts_with("/bad/")));
    }

    #[test]
    fn checksum_mismatch_leaves_no_file_and_names_it() {
        let (server, table) = serve(4);
        let mirrors = vec![format!("{}/good/", server.base)];
        let dest = tempfile::tempdir().unwrap();
        let mut wrong = as_table(&table);
        wrong[1].1 = "00";
        let agent = ureq::Agent::new();

        let err = fetch_files(&agent, dest.path(), &mirrors, &wrong, false).unwrap_err();
        let DataError::Download { file, attempts, offline } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(file, "train-labels-idx1-ubyte.gz");
        assert_eq!(attempts.len(), 1);
        assert!(attempts[0].1.contains("SHA-256"), "{err}");
        assert!(err.to_string().contains("train-labels-idx1-ubyte.gz"), "{err}");
        assert_eq!(offline.dir, dest.path());
        assert!(err.to_string().contains(&format!("into {}", dest.path().display())), "{err}");
        assert!(dest.path().join("train-images-idx3-ubyte.gz").is_file());
        assert!(!dest.path().join("train-labels-idx1-ubyte.gz").exists());
        assert!(leftovers(dest.path()).is_empty());
        server.finish();
    }

    #[test]
    fn cut_transfer_and_garbage_leave_no_file() {
        let (name, bytes) = &tiny_mnist()[1];
        let body = gzip(bytes);
        let mut routes = HashMap::new();
        routes.insert(
            format!("/cut/{name}.gz"),
            Reply { status: 200, content_length: body.len() + 100, body: body.clone() },
        );
        routes.insert(format!("/junk/{name}.gz"), Reply::ok(b"\x1f\x8bnot gzip".to_vec()));
        let server = Server::start(routes, 2);
        let mirrors = vec![format!("{}/cut/", server.base), format!("{}/junk/", server.base)];
        let dest = tempfile::tempdir().unwrap();
        let table = [(*name, sha256(bytes))];
        let table = [(table[0].0, table[0].1.as_str())];

        let err = fetch_files(&ureq::Agent::new(), dest.path(), &mirrors, &table, false).unwrap_err();
        let DataError::Download { attempts, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(attempts.len(), 2, "{err}");
        assert!(attempts[1].1.contains("gzip"), "{err}");
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
        server.finish();
    }

    #[test]
    fn corrupt_existing_file_is_replaced() {
        let (server, table) = serve(4);
        let mirrors = vec![format!("{}/good/", server.base)];
        let dest = tempfile::tempdir().unwrap();
        let target = dest.path().join("train-images-idx3-ubyte.gz");
        std::fs::write(&target, b"rubbish").unwrap();
        let fetched = fetch_files(&ureq::Agent::new(), dest.path(), &mirrors, &as_table(&table), false).unwrap();
        assert!(matches!(fetched[0].action, FetchAction::Downloaded { .. }));
        assert!(Splits::load_mnist(dest.path()).is_ok());
        server.finish();
    }

    #[test]
    fn progress_templates_parse() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
        assert!(ProgressStyle::with_template(SPINNER_TEMPLATE).is_ok());
    }

    #[test]
    fn mirror_list_from_environment() {
        assert_eq!(mirrors_from(None, &MNIST_MIRRORS), MNIST_MIRRORS.map(String::from).to_vec());
        assert_eq!(mirrors_from(Some(" "), &MNIST_MIRRORS), MNIST_MIRRORS.map(String::from).to_vec());
        assert_eq!(
            mirrors_from(Some("http://127.0.0.1:9/a, http://127.0.0.1:9/b/"), &MNIST_MIRRORS),
            vec!["http://127.0.0.1:9/a/", "http://127.0.0.1:9/b/"]
        );
    }
}
