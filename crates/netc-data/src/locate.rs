//! Turning `--data mnist` into a folder.
//!
//! A data set is asked for by name so that run files stay portable between
//! machines; each machine says where its data lives through `--data-dir`,
//! `$NETC_DATA`, a `./data` folder or the user cache that `netc data fetch`
//! fills. The public functions read the real environment and hand it to pure
//! functions, which the tests drive directly.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::mnist::MNIST_FILES;
use crate::DataError;

/// The data sets known by name.
pub const KNOWN_DATASETS: [&str; 2] = ["mnist", "cifar10"];

/// The files (names without `.gz`) a known data set's folder must hold.
fn required_files(name: &str) -> Option<Vec<&'static str>> {
    match name {
        "mnist" => Some(MNIST_FILES.iter().map(|(file, _)| *file).collect()),
        "cifar10" => Some(crate::cifar::cifar10_files()),
        _ => None,
    }
}

/// Where a data set may live, as read from the process environment.
struct Places {
    netc_data: Option<PathBuf>,
    cwd: Option<PathBuf>,
    cache: Option<PathBuf>,
}

impl Places {
    fn from_env() -> Places {
        Places {
            netc_data: non_empty(std::env::var_os("NETC_DATA")),
            cwd: std::env::current_dir().ok(),
            cache: dirs::cache_dir(),
        }
    }
}

fn non_empty(value: Option<OsString>) -> Option<PathBuf> {
    value.filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Finds the folder of a data set given by name (`mnist`) or by path.
///
/// A known name is looked up in order in `data_dir/NAME` and `data_dir`
/// itself (the caller's `--data-dir`), `$NETC_DATA/NAME`, `./data/NAME` and
/// the user cache (`<cache>/netc/NAME`); the first folder holding all of the
/// data set's files wins. Anything else must be an existing folder, used as is.
/// When nothing fits, the error lists every place looked in.
pub fn locate(name_or_path: &str, data_dir: Option<&Path>) -> Result<PathBuf, DataError> {
    locate_in(name_or_path, data_dir, &Places::from_env())
}

/// Where `netc data fetch NAME` should put a data set: `data_dir/NAME` if the
/// caller gave one, else `$NETC_DATA/NAME`, else the user cache, else
/// `./data/NAME` — each a place [`locate`] searches.
pub fn fetch_dir(name: &str, data_dir: Option<&Path>) -> PathBuf {
    fetch_dir_in(name, data_dir, &Places::from_env())
}

fn candidates(name: &str, data_dir: Option<&Path>, places: &Places) -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    if let Some(dir) = data_dir {
        out.push((dir.join(name), "from --data-dir"));
        out.push((dir.to_path_buf(), "--data-dir itself"));
    }
    if let Some(root) = &places.netc_data {
        out.push((root.join(name), "from $NETC_DATA"));
    }
    if let Some(cwd) = &places.cwd {
        out.push((cwd.join("data").join(name), "./data"));
    }
    if let Some(cache) = &places.cache {
        out.push((cache.join("netc").join(name), "user cache"));
    }
    out
}

fn locate_in(arg: &str, data_dir: Option<&Path>, places: &Places) -> Result<PathBuf, DataError> {
    let Some(files) = required_files(arg) else {
        let path = match &places.cwd {
            Some(cwd) => cwd.join(arg),
            None => PathBuf::from(arg),
        };
        return match unusable(&path) {
            None => Ok(path),
            Some(Unusable::Absent) => {
                Err(DataError::UnknownDataset { name: arg.to_string(), known: KNOWN_DATASETS.to_vec() })
            }
            Some(why) => Err(DataError::NotAFolder { path, why: why.to_string() }),
        };
    };
    let mut searched = Vec::new();
    for (dir, origin) in candidates(arg, data_dir, places) {
        let why = if let Some(why) = unusable(&dir) {
            why.to_string()
        } else {
            let missing: Vec<_> = files
                .iter()
                .filter(|file| !dir.join(format!("{file}.gz")).is_file() && !dir.join(file).is_file())
                .copied()
                .collect();
            if missing.is_empty() {
                return Ok(dir);
            }
            format!("folder lacks {}", missing.join(", "))
        };
        searched.push((dir, format!("{why} ({origin})")));
    }
    if places.netc_data.is_none() {
        searched.push((PathBuf::from("$NETC_DATA"), "not set".to_string()));
    }
    Err(DataError::NotFound { name: arg.to_string(), searched })
}

/// Why a path cannot be read as a folder.
enum Unusable {
    Absent,
    File,
    /// Unreadable, a symbolic link loop, a path through a file, ...: the system's reason.
    Unreadable(std::io::Error),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Absent => f.write_str("no such folder"),
            Unusable::File => f.write_str("is a file, not a folder"),
            Unusable::Unreadable(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

/// `None` when `dir` is a folder whose entries can be listed.
fn unusable(dir: &Path) -> Option<Unusable> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Unusable::Absent),
        Err(e) => Some(Unusable::Unreadable(e)),
        Ok(meta) if !meta.is_dir() => Some(Unusable::File),
        Ok(_) => std::fs::read_dir(dir).err().map(Unusable::Unreadable),
    }
}

fn fetch_dir_in(name: &str, data_dir: Option<&Path>, places: &Places) -> PathBuf {
    if let Some(dir) = data_dir {
        dir.join(name)
    } else if let Some(root) = &places.netc_data {
        root.join(name)
    } else if let Some(cache) = &places.cache {
        cache.join("netc").join(name)
    } else {
        let cwd = places.cwd.clone().unwrap_or_default();
        cwd.join("data").join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::write_tiny_mnist;

    /// A fake machine: every candidate folder lives under one temp dir.
    struct Fake {
        root: tempfile::TempDir,
    }

    impl Fake {
        fn new() -> Fake {
            Fake { root: tempfile::tempdir().unwrap() }
        }
        fn path(&self, rel: &str) -> PathBuf {
            self.root.path().join(rel)
        }
        fn places(&self) -> Places {
            Places { netc_data: Some(self.path("env")), cwd: Some(self.path("cwd")), cache: Some(self.path("cache")) }
        }
    }

    #[test]
    fn resolution_order() {
        let fake = Fake::new();
        let places = fake.places();
        let data_dir = fake.path("explicit");
        let order = ["explicit/mnist", "env/mnist", "cwd/data/mnist", "cache/netc/mnist"];
        for dir in order {
            write_tiny_mnist(&fake.path(dir), true);
        }
        // Remove the winner each time; the next place in line takes over.
        for dir in order {
            let found = locate_in("mnist", Some(&data_dir), &places).unwrap();
            assert_eq!(found, fake.path(dir));
            std::fs::remove_dir_all(fake.path(dir)).unwrap();
        }
        assert!(locate_in("mnist", Some(&data_dir), &places).is_err());
    }

    #[test]
    fn data_dir_may_hold_the_files_itself() {
        let fake = Fake::new();
        write_tiny_mnist(&fake.path("flat"), false);
        write_tiny_mnist(&fake.path("env/mnist"), false);
        let found = locate_in("mnist", Some(&fake.path("flat")), &fake.places()).unwrap();
        assert_eq!(found, fake.path("flat"));
    }

    #[test]
    fn incomplete_folder_is_skipped_and_reported() {
        let fake = Fake::new();
        write_tiny_mnist(&fake.path("env/mnist"), true);
        std::fs::remove_file(fake.path("env/mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
        write_tiny_mnist(&fake.path("cache/netc/mnist"), true);
        let places = fake.places();
        assert_eq!(locate_in("mnist", None, &places).unwrap(), fake.path("cache/netc/mnist"));
        std::fs::remove_dir_all(fake.path("cache")).unwrap();
        let err = locate_in("mnist", None, &places).unwrap_err();
        let DataError::NotFound { searched, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(searched[0].0, fake.path("env/mnist"));
        assert!(searched[0].1.contains("lacks t10k-labels-idx1-ubyte"), "{err}");
    }

    #[test]
    fn not_found_lists_every_place() {
        let fake = Fake::new();
        let places = Places { netc_data: None, ..fake.places() };
        let err = locate_in("mnist", Some(&fake.path("explicit")), &places).unwrap_err();
        let msg = err.to_string();
        for dir in ["explicit/mnist", "cwd/data/mnist", "cache/netc/mnist"] {
            assert!(msg.contains(&fake.path(dir).display().to_string()), "{msg}");
        }
        assert!(msg.contains("$NETC_DATA: not set"), "{msg}");
    }

    #[test]
    fn a_folder_path_is_used_directly() {
        let fake = Fake::new();
        std::fs::create_dir_all(fake.path("cwd/my-digits")).unwrap();
        let places = fake.places();
        // Relative paths are taken from the working directory...
        assert_eq!(locate_in("my-digits", None, &places).unwrap(), fake.path("cwd/my-digits"));
        // ...absolute ones as they are.
        let absolute = fake.path("cwd/my-digits");
        assert_eq!(locate_in(absolute.to_str().unwrap(), None, &places).unwrap(), absolute);
    }

    #[test]
    fn a_file_or_a_symlink_loop_is_reported_as_such_not_as_missing() {
        let fake = Fake::new();
        std::fs::create_dir_all(fake.path("env")).unwrap();
        std::fs::write(fake.path("env/mnist"), "not a folder").unwrap();
        std::fs::create_dir_all(fake.path("cwd/data")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(fake.path("cwd/data/mnist"), fake.path("cwd/data/mnist")).unwrap();
        let places = fake.places();
        let err = locate_in("mnist", None, &places).unwrap_err();
        let DataError::NotFound { searched, .. } = &err else { panic!("{err:?}") };
        assert_eq!(searched[0].1, "is a file, not a folder (from $NETC_DATA)");
        #[cfg(unix)]
        assert!(searched[1].1.starts_with("cannot be read: "), "{err}");

        // A path given as the data set: the same causes, named.
        std::fs::write(fake.path("cwd/digits.txt"), "x").unwrap();
        let err = locate_in("digits.txt", None, &places).unwrap_err();
        assert!(matches!(&err, DataError::NotAFolder { why, .. } if why == "is a file, not a folder"), "{err}");
        #[cfg(unix)]
        {
            let err = locate_in(fake.path("cwd/data/mnist").to_str().unwrap(), None, &places).unwrap_err();
            assert!(err.to_string().contains("cannot be read:"), "{err}");
        }
    }

    #[test]
    fn unknown_name_that_is_no_folder() {
        let fake = Fake::new();
        let err = locate_in("cifar", None, &fake.places()).unwrap_err();
        assert!(matches!(&err, DataError::UnknownDataset { name, .. } if name == "cifar"));
        assert!(err.to_string().contains("known data set (mnist, cifar10)"), "{err}");
    }

    #[test]
    fn fetch_dir_prefers_explicit_then_env_then_cache() {
        let fake = Fake::new();
        let mut places = fake.places();
        let explicit = fake.path("explicit");
        assert_eq!(fetch_dir_in("mnist", Some(&explicit), &places), fake.path("explicit/mnist"));
        assert_eq!(fetch_dir_in("mnist", None, &places), fake.path("env/mnist"));
        places.netc_data = None;
        assert_eq!(fetch_dir_in("mnist", None, &places), fake.path("cache/netc/mnist"));
        places.cache = None;
        assert_eq!(fetch_dir_in("mnist", None, &places), fake.path("cwd/data/mnist"));
    }

    #[test]
    fn empty_netc_data_counts_as_unset() {
        assert_eq!(non_empty(Some(OsString::new())), None);
        assert_eq!(non_empty(Some("x".into())), Some(PathBuf::from("x")));
    }
}
