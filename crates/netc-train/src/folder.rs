//! The run folder: the one place that knows its file names, its `run.json` record and its lock.

use crate::checkpoint;
use netc_check::{Flip, Init, Net, Optimizer, ParamValue, Preprocess, TrainConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// A run folder and the files in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunFolder {
    dir: PathBuf,
}

impl RunFolder {
    pub fn new(dir: impl Into<PathBuf>) -> RunFolder {
        RunFolder { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One line per finished epoch.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.csv")
    }

    /// The [`RunRecord`].
    pub fn record(&self) -> PathBuf {
        self.dir.join("run.json")
    }

    /// The trained parameters (and mean image), for `netc eval`.
    pub fn weights(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }

    /// Everything `--resume` needs.
    pub fn checkpoint(&self) -> PathBuf {
        self.dir.join("checkpoint.safetensors")
    }

    /// A copy of the `.net` source the run was started from.
    pub fn source(&self) -> PathBuf {
        self.dir.join("model.net")
    }

    /// Written by a sweep when the run diverged, so that a rerun does not retry it.
    pub fn divergence(&self) -> PathBuf {
        self.dir.join("diverged.json")
    }

    /// TensorBoard's events of the run (`--tensorboard`): the name holds `tfevents`, as
    /// TensorBoard looks for.
    pub fn events(&self) -> PathBuf {
        self.dir.join("events.out.tfevents.netc")
    }

    /// Held locked by the process training into the folder.
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("run.lock")
    }

    pub fn has_checkpoint(&self) -> bool {
        self.checkpoint().exists()
    }

    /// The folder's `run.json`.
    pub fn read_record(&self) -> Result<RunRecord, String> {
        let path = self.record();
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: not a netc run.json: {e}", path.display()))
    }

    pub fn write_record(&self, record: &RunRecord) -> Result<(), String> {
        let text = serde_json::to_string_pretty(record).map_err(|e| format!("cannot encode run.json: {e}"))?;
        checkpoint::write_text(&self.record(), &text)
    }

    /// The folder's `metrics.csv`, or no rows when there is none yet.
    pub fn read_metrics_if_any(&self) -> Result<Vec<crate::EpochMetrics>, String> {
        let path = self.metrics();
        if !path.exists() {
            return Ok(Vec::new());
        }
        crate::read_metrics(&path)
    }

    /// Removes the run the folder holds (`--force`): its record, metrics, weights, checkpoint,
    /// source copy, divergence record and TensorBoard events — only the files a run writes,
    /// under the folder's lock, so a folder another process is training into is left alone.
    pub fn clear(&self) -> Result<(), LockError> {
        let _lock = self.lock()?;
        let files =
            [self.record(), self.metrics(), self.weights(), self.checkpoint(), self.source(), self.divergence()];
        for path in files.into_iter().chain([self.events()]) {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(LockError::Io(format!("cannot remove {}: {e}", path.display())));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Creates the folder if needed and takes its lock, or says which process holds it.
    pub fn lock(&self) -> Result<RunLock, LockError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| LockError::Io(format!("cannot create {}: {e}", self.dir.display())))?;
        RunLock::acquire(&self.lock_file())
    }
}

/// The exclusive right to write a run folder, held until dropped. It is an advisory lock on
/// `run.lock` (`flock`), which the system releases when its process ends however it ends, so
/// a lock file left by a killed run is stale and is simply taken over.
#[derive(Debug)]
pub struct RunLock {
    file: File,
}

/// Why a run folder could not be locked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockError {
    /// Another process holds the lock; `pid` is the one it wrote, if readable.
    Held {
        lock_file: PathBuf,
        pid: Option<u32>,
    },
    Io(String),
}

impl RunLock {
    fn acquire(path: &Path) -> Result<RunLock, LockError> {
        let io = |e: std::io::Error| LockError::Io(format!("cannot lock {}: {e}", path.display()));
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io)?;
        if !try_lock_exclusive(&file).map_err(io)? {
            let mut text = String::new();
            let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
            return Err(LockError::Held { lock_file: path.to_path_buf(), pid });
        }
        // Ours now: a pid left by a process that died without unlocking is replaced.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).and_then(|()| file.sync_all()).map_err(io)?;
        Ok(RunLock { file })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Emptied so that a reader never names a process that no longer holds the lock; the
        // lock itself goes with the file descriptor.
        let _ = self.file.set_len(0);
    }
}

#[cfg(unix)]
fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a file descriptor this function borrows; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(error),
    }
}

#[cfg(not(unix))]
fn try_lock_exclusive(_: &File) -> std::io::Result<bool> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "run folders can be locked on Unix systems only"))
}

/// What `run.json` records: the resolved recipe, what the run was made from, and the facts a
/// resumed run must agree with. Written and read only through this type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    pub netc_version: String,
    pub net: String,
    /// The net's parameters as resolved: defaults with `--set` values applied.
    pub net_params: BTreeMap<String, serde_json::Value>,
    /// SHA-256 of the checked net ([`net_fingerprint`]).
    pub net_fingerprint: String,
    pub seed: u64,
    pub batch: usize,
    pub epochs: usize,
    pub optimizer: OptimizerRecord,
    /// `[lr, epochs]` runs in order.
    pub lr_schedule: Vec<(f64, usize)>,
    pub init: InitRecord,
    pub preprocess: PreprocessRecord,
    /// `cnn_cifar`'s contrast normalisation after the first step (absent in older files: off).
    #[serde(default, skip_serializing_if = "is_false")]
    pub contrast_norm: bool,
    /// `cnn_cifar`'s ZCA whitening last (absent in older files: off).
    #[serde(default, skip_serializing_if = "is_false")]
    pub whiten: bool,
    /// Flips and crops of the training examples (absent in older files and when there are none).
    #[serde(default, skip_serializing_if = "AugmentRecord::is_none")]
    pub augment: AugmentRecord,
    pub limit_train: Option<usize>,
    pub limit_test: Option<usize>,
    /// The fraction of the training examples held out for validation (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<f64>,
    /// How many chunks each batch's gradient is summed from (`--grad-chunks`; absent in older
    /// files and for ordinary training: 1). Any number of processes trains the same bits.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub grad_chunks: usize,
    pub provenance: Provenance,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentRecord {
    pub flip: FlipRecord,
    pub crop_pad: usize,
}

impl AugmentRecord {
    fn is_none(&self) -> bool {
        *self == AugmentRecord::default()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlipRecord {
    #[default]
    None,
    Batch,
    Example,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// Where a run came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The `.net` file as it was named.
    pub source: String,
    /// The data folder.
    pub data: String,
    /// SHA-256 of every data file (uncompressed), by canonical name.
    pub data_sha256: BTreeMap<String, String>,
    /// The `--set` overrides as written.
    pub set: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerRecord {
    Sgd { lr: f64, momentum: f64, weight_decay: f64 },
    Adam { lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InitRecord {
    Normal { std: f64 },
    Xavier,
    He,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreprocessRecord {
    MeanImage,
    Scale,
    None,
}

/// A fact of a recorded run that the run asked for differs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// What differs, e.g. "seed" or "net parameter `negfrac`".
    pub what: String,
    pub recorded: String,
    pub requested: String,
}

impl RunRecord {
    /// The record of a run of `net` by `config`.
    pub fn new(
        net: &Net,
        config: &TrainConfig,
        limits: (Option<usize>, Option<usize>),
        provenance: Provenance,
    ) -> RunRecord {
        RunRecord {
            netc_version: env!("CARGO_PKG_VERSION").to_string(),
            net: net.name.clone(),
            net_params: net.params.iter().map(|(name, value)| (name.clone(), json_value(value))).collect(),
            net_fingerprint: net_fingerprint(net),
            seed: config.seed,
            batch: config.batch,
            epochs: config.epochs,
            optimizer: match config.optimizer {
                Optimizer::Sgd { lr, momentum, weight_decay } => OptimizerRecord::Sgd { lr, momentum, weight_decay },
                Optimizer::Adam { lr, beta1, beta2, eps, weight_decay } => {
                    OptimizerRecord::Adam { lr, beta1, beta2, eps, weight_decay }
                }
            },
            lr_schedule: config.lr_schedule.clone(),
            init: match config.init {
                Init::Normal { std } => InitRecord::Normal { std },
                Init::Xavier => InitRecord::Xavier,
                Init::He => InitRecord::He,
            },
            preprocess: match config.preprocess {
                Preprocess::MeanImage => PreprocessRecord::MeanImage,
                Preprocess::Scale => PreprocessRecord::Scale,
                Preprocess::None => PreprocessRecord::None,
            },
            contrast_norm: config.contrast_norm,
            whiten: config.whiten,
            augment: AugmentRecord {
                flip: match config.augment.flip {
                    Flip::None => FlipRecord::None,
                    Flip::Batch => FlipRecord::Batch,
                    Flip::Example => FlipRecord::Example,
                },
                crop_pad: config.augment.crop_pad,
            },
            limit_train: limits.0,
            limit_test: limits.1,
            validation: None,
            grad_chunks: 1,
            provenance,
        }
    }

    /// The first fact a resumed run must share with the recorded one and does not: the net
    /// and its parameters, the seed, the batch size, the data and how much of it is used, the
    /// gradient chunks (not the number of processes).
    /// Epochs, the optimizer and file names may change.
    pub fn resume_mismatch(&self, requested: &RunRecord) -> Option<Mismatch> {
        let differ = |what: &str, recorded: String, requested: String| {
            (recorded != requested).then(|| Mismatch { what: what.to_string(), recorded, requested })
        };
        let shown = |value: Option<&serde_json::Value>| value.map_or("unset".to_string(), |v| v.to_string());
        let params = union(&self.net_params, &requested.net_params).find_map(|name| {
            differ(
                &format!("net parameter `{name}`"),
                shown(self.net_params.get(name)),
                shown(requested.net_params.get(name)),
            )
        });
        let (recorded_data, requested_data) = (&self.provenance.data_sha256, &requested.provenance.data_sha256);
        let data = || {
            let sum = |sums: &BTreeMap<String, String>, name: &str| {
                sums.get(name).map_or("absent".to_string(), |sum| format!("sha256 {sum}"))
            };
            union(recorded_data, requested_data).find_map(|name| {
                differ(&format!("data file `{name}`"), sum(recorded_data, name), sum(requested_data, name))
            })
        };
        let limit = |n: Option<usize>| n.map_or("all".to_string(), |n| n.to_string());
        differ("net", self.net.clone(), requested.net.clone())
            .or(params)
            .or_else(|| {
                differ(
                    "checked net (the .net file changed)",
                    format!("sha256 {}", self.net_fingerprint),
                    format!("sha256 {}", requested.net_fingerprint),
                )
            })
            .or_else(|| differ("seed", self.seed.to_string(), requested.seed.to_string()))
            .or_else(|| differ("batch size", self.batch.to_string(), requested.batch.to_string()))
            .or_else(data)
            .or_else(|| differ("training images used", limit(self.limit_train), limit(requested.limit_train)))
            .or_else(|| differ("test images used", limit(self.limit_test), limit(requested.limit_test)))
            .or_else(|| {
                let held = |v: Option<f64>| v.map_or("none".to_string(), |v| v.to_string());
                differ("validation split", held(self.validation), held(requested.validation))
            })
            .or_else(|| {
                differ(
                    "gradient chunks (--grad-chunks)",
                    self.grad_chunks.to_string(),
                    requested.grad_chunks.to_string(),
                )
            })
    }
}

/// The keys of two maps, each once, in order.
fn union<'m, V>(a: &'m BTreeMap<String, V>, b: &'m BTreeMap<String, V>) -> impl Iterator<Item = &'m String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
}

fn json_value(value: &ParamValue) -> serde_json::Value {
    match value {
        ParamValue::Int(i) => serde_json::Value::from(*i),
        ParamValue::Float(f) => serde_json::Value::from(*f),
        ParamValue::Bool(b) => serde_json::Value::from(*b),
        ParamValue::Str(s) | ParamValue::Ident(s) => serde_json::Value::from(s.as_str()),
    }
}

/// SHA-256 (lowercase hex) of what the checked net computes: its layers, their arguments and
/// shapes, its parameters' values. Source positions are left out, so reformatting or
/// commenting the file does not change it.
pub fn net_fingerprint(net: &Net) -> String {
    let mut net = net.clone();
    net.span = Default::default();
    net.input.span = Default::default();
    net.loss.span = Default::default();
    for layer in &mut net.layers {
        layer.span = Default::default();
    }
    hex(&Sha256::digest(format!("{net:?}").as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Net {
        let file = netc_syntax::parse(text).unwrap();
        netc_check::check(&file, &[]).unwrap().nets.remove(0)
    }

    const TINY: &str =
        "net tiny(width = 3) { input x: [4]  dense(width)  relu  dense(2)  loss softmax_xent(classes=2) }";

    fn record(text: &str) -> RunRecord {
        RunRecord::new(&net(text), &TrainConfig::default(), (None, Some(10)), Provenance::default())
    }

    #[test]
    fn the_record_round_trips_with_plain_values() {
        let record = record(TINY);
        let folder = tempfile::tempdir().unwrap();
        let folder = RunFolder::new(folder.path());
        std::fs::create_dir_all(folder.dir()).unwrap();
        folder.write_record(&record).unwrap();
        assert_eq!(folder.read_record().unwrap(), record);
        let text = std::fs::read_to_string(folder.record()).unwrap();
        assert!(text.contains("\"width\": 3") && text.contains("\"kind\": \"sgd\""), "{text}");
        assert!(text.contains("\"limit_test\": 10") && !text.contains("Sgd {"), "{text}");
        std::fs::write(folder.record(), text.replace("\"seed\"", "\"seeds\"")).unwrap();
        assert!(folder.read_record().unwrap_err().contains("not a netc run.json"));
    }

    #[test]
    fn the_fingerprint_ignores_layout_but_not_the_net() {
        let base = net_fingerprint(&net(TINY));
        assert_eq!(base, net_fingerprint(&net(&TINY.replace("relu", "\n   relu # comment\n"))));
        assert_ne!(base, net_fingerprint(&net(&TINY.replace("relu", "neglu"))));
        assert_ne!(base, net_fingerprint(&net(&TINY.replace("width = 3", "width = 4"))));
    }

    #[test]
    fn a_resume_must_agree_on_net_seed_batch_data_and_chunks() {
        let recorded = record(TINY);
        let mut longer = recorded.clone();
        longer.epochs += 5;
        assert_eq!(recorded.resume_mismatch(&longer), None);
        let wider = record(&TINY.replace("width = 3", "width = 4"));
        let mismatch = recorded.resume_mismatch(&wider).unwrap();
        assert_eq!(
            (mismatch.what.as_str(), mismatch.recorded.as_str(), mismatch.requested.as_str()),
            ("net parameter `width`", "3", "4")
        );
        let other = record(&TINY.replace("relu", "neglu"));
        assert!(recorded.resume_mismatch(&other).unwrap().what.starts_with("checked net"));
        let mut seeded = recorded.clone();
        seeded.seed = 9;
        assert_eq!(recorded.resume_mismatch(&seeded).unwrap().what, "seed");
        let mut batch = recorded.clone();
        batch.batch = 7;
        let mismatch = recorded.resume_mismatch(&batch).unwrap();
        assert_eq!((mismatch.what.as_str(), mismatch.requested.as_str()), ("batch size", "7"));
        let mut data = recorded.clone();
        data.provenance.data_sha256.insert("train-images-idx3-ubyte".into(), "00".into());
        let mismatch = recorded.resume_mismatch(&data).unwrap();
        assert_eq!(
            (mismatch.what.as_str(), mismatch.recorded.as_str()),
            ("data file `train-images-idx3-ubyte`", "absent")
        );
        let mut chunked = recorded.clone();
        chunked.grad_chunks = 4;
        let mismatch = recorded.resume_mismatch(&chunked).unwrap();
        assert_eq!((mismatch.what.as_str(), mismatch.requested.as_str()), ("gradient chunks (--grad-chunks)", "4"));
    }

    #[test]
    fn a_second_lock_names_the_first_holder_and_a_dropped_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let folder = RunFolder::new(dir.path().join("run"));
        let held = folder.lock().unwrap();
        match folder.lock().unwrap_err() {
            LockError::Held { pid, lock_file } => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(lock_file, folder.lock_file());
            }
            other => panic!("{other:?}"),
        }
        drop(held);
        // A stale file (its writer gone) does not block: the lock is what counts.
        std::fs::write(folder.lock_file(), "4194304").unwrap();
        let again = folder.lock().unwrap();
        assert_eq!(std::fs::read_to_string(folder.lock_file()).unwrap(), std::process::id().to_string());
        drop(again);
    }
}
