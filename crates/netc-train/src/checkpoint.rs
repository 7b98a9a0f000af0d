//! Weights and training state in safetensors files, written atomically: a temporary file in the
//! same folder, flushed to disk, then renamed over the old one, so a kill at any moment leaves
//! either the previous file or the new one, never a torn one.

use crate::optimizer::Slot;
use crate::preprocess::{Needs, Statistics};
use crate::Tally;
use netc_ir::Tensor;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// A named f32 tensor, such as the parameter `conv1.weight`.
pub type Named = (String, Tensor);

/// Everything a resumed run needs to continue exactly where it stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub params: Vec<Named>,
    /// One per parameter, in the same order.
    pub slots: Vec<Slot>,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// What the recipe's preprocessing learned from the data (the mean image, ...).
    pub stats: Statistics,
    /// How far into epoch `epoch + 1` the state is; nothing at an epoch's start.
    pub within: WithinEpoch,
}

/// The part of an epoch a run had trained when it was stopped: what a resumed run needs to
/// finish the epoch exactly as an uninterrupted one (the order of the epoch's examples, their
/// augmentation and every mask are functions of the seed, the epoch and the step).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WithinEpoch {
    /// Batches of the epoch already trained.
    pub batches: usize,
    /// Their loss, errors and examples, for the epoch's training loss and error.
    pub tally: Tally,
    /// The time spent training them, for the epoch's `seconds` and images per second.
    pub seconds: f64,
}

pub const MEAN_IMAGE: &str = "preprocess.mean_image";
/// Contrast normalisation's mean standard deviation, one value.
pub const MEAN_NORM: &str = "preprocess.mean_norm";
/// The ZCA whitening matrix.
pub const WHITENING: &str = "preprocess.whitening";
/// The metadata fact that holds the data set's class names, a JSON list.
pub const CLASS_NAMES: &str = "class_names";

/// The class names as [`CLASS_NAMES`] holds them.
pub fn encode_class_names(names: &[String]) -> String {
    serde_json::to_string(names).unwrap_or_default()
}

/// Weights as [`load_model`] reads them.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedModel {
    pub params: Vec<Named>,
    pub stats: Statistics,
    /// The data set's class names, if the file records them (files of older netc do not).
    pub class_names: Option<Vec<String>>,
}

/// The class names a weights file records, if it records them.
fn class_names(metadata: &BTreeMap<String, String>) -> Option<Vec<String>> {
    serde_json::from_str(metadata.get(CLASS_NAMES)?).ok()
}

fn bytes_of(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A temporary file per process: shards of a sweep write its sweep.csv at the same time, and
    // each rename must move a whole file of its own.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// Writes `text` to `path` atomically.
pub fn write_text(path: &Path, text: &str) -> Result<(), String> {
    write_atomic(path, text.as_bytes())
}

/// The one safetensors metadata key netc writes: a JSON object of its facts, so that the file's
/// bytes do not depend on hash-map order.
const METADATA_KEY: &str = "netc";
/// The fact holding [`tensor_checksum`], verified on load.
const CHECKSUM_KEY: &str = "tensor_sha256";

/// SHA-256 (hex) over every tensor in name order: its name, shape and little-endian values.
fn tensor_checksum<'t>(tensors: impl Iterator<Item = (&'t str, &'t [usize], &'t [u8])>) -> String {
    let mut sorted: Vec<_> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut hasher = Sha256::new();
    for (name, shape, bytes) in sorted {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((shape.len() as u64).to_le_bytes());
        shape.iter().for_each(|&d| hasher.update((d as u64).to_le_bytes()));
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    crate::folder::hex(&hasher.finalize())
}

/// Writes tensors and string metadata as one safetensors file, atomically, with a checksum of
/// the tensor data.
pub fn save(path: &Path, tensors: &[Named], mut metadata: BTreeMap<String, String>) -> Result<(), String> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, t)| bytes_of(t.data())).collect();
    let checksum = tensor_checksum(tensors.iter().zip(&bytes).map(|((name, t), b)| (name.as_str(), t.shape(), &b[..])));
    metadata.insert(CHECKSUM_KEY.into(), checksum);
    let facts = serde_json::to_string(&metadata).map_err(|e| format!("cannot encode {}: {e}", path.display()))?;
    let metadata = HashMap::from([(METADATA_KEY.to_string(), facts)]);
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| TensorView::new(Dtype::F32, t.shape().to_vec(), b).map(|v| (name.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot encode {}: {e}", path.display()))?;
    let encoded =
        safetensors::serialize(views, Some(metadata)).map_err(|e| format!("cannot encode {}: {e}", path.display()))?;
    write_atomic(path, &encoded)
}

/// Reads every f32 tensor of a safetensors file netc wrote, and its metadata. The tensor data
/// must match the checksum written with it, and every value must be finite.
pub fn load(path: &Path) -> Result<(Vec<Named>, BTreeMap<String, String>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let corrupt = |e: safetensors::SafeTensorError| format!("{} is not a valid safetensors file: {e}", path.display());
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(corrupt)?;
    let facts = header.metadata().as_ref().and_then(|m| m.get(METADATA_KEY));
    let metadata: BTreeMap<String, String> = match facts {
        Some(facts) => serde_json::from_str(facts)
            .map_err(|e| format!("{}: its netc metadata is not readable ({e}): the file is corrupt", path.display()))?,
        None => BTreeMap::new(),
    };
    let file = SafeTensors::deserialize(&bytes).map_err(corrupt)?;
    let views = file.tensors();
    for (name, view) in &views {
        if view.dtype() != Dtype::F32 {
            return Err(format!("{}: tensor `{name}` is {:?}, expected F32", path.display(), view.dtype()));
        }
    }
    let recorded = metadata.get(CHECKSUM_KEY).ok_or_else(|| {
        format!(
            "{}: no checksum of its tensors (`{CHECKSUM_KEY}`): not written by this netc, or damaged",
            path.display()
        )
    })?;
    let computed = tensor_checksum(views.iter().map(|(name, v)| (name.as_str(), v.shape(), v.data())));
    if *recorded != computed {
        return Err(format!(
            "{}: the tensor data does not match its checksum (sha256 {computed}, recorded {recorded}): the file is corrupt",
            path.display()
        ));
    }
    let mut tensors = Vec::new();
    for (name, view) in views {
        let data: Vec<f32> =
            view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        if let Some(index) = data.iter().position(|v| !v.is_finite()) {
            return Err(format!("{}: `{name}` holds {} at element {index}", path.display(), data[index]));
        }
        let tensor =
            Tensor::new(view.shape().to_vec(), data).map_err(|e| format!("{}: `{name}`: {e}", path.display()))?;
        tensors.push((name, tensor));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((tensors, metadata))
}

/// The weights a trained model is used with: parameters by layer name, and the statistics of
/// its preprocessing.
fn model_tensors(state: &State) -> Vec<Named> {
    let mut tensors = state.params.clone();
    let stats = &state.stats;
    if let Some(mean) = &stats.mean {
        tensors.push((MEAN_IMAGE.into(), Tensor::vector(mean.clone())));
    }
    if let Some(norm) = stats.mean_norm {
        tensors.push((MEAN_NORM.into(), Tensor::vector(vec![norm])));
    }
    if let Some(w) = &stats.whitening {
        tensors.push((WHITENING.into(), Tensor::vector(w.clone())));
    }
    tensors
}

/// Writes the model's weights ([`model_tensors`]).
pub fn save_model(path: &Path, state: &State, metadata: BTreeMap<String, String>) -> Result<(), String> {
    save(path, &model_tensors(state), metadata)
}

/// The whole training state, for `--resume`: the model's weights and the optimizer's state.
pub fn save_state(path: &Path, state: &State, mut metadata: BTreeMap<String, String>) -> Result<(), String> {
    let mut tensors = model_tensors(state);
    for ((name, _), slot) in state.params.iter().zip(&state.slots) {
        tensors.push((format!("optimizer.m.{name}"), Tensor::vector(slot.m.clone())));
        if !slot.v.is_empty() {
            tensors.push((format!("optimizer.v.{name}"), Tensor::vector(slot.v.clone())));
        }
    }
    let position = position_facts(state);
    metadata.insert(POSITION_CHECKSUM_KEY.into(), position_checksum(&position));
    metadata.extend(position.into_iter().map(|(key, value)| (key.to_string(), value)));
    save(path, &tensors, metadata)
}

/// The metadata facts that place a state in the run, in a fixed order. Only `epoch` and `step`
/// exist in checkpoints written before netc stopped mid-epoch.
const POSITION_KEYS: [&str; 7] =
    ["epoch", "step", "epoch_batches", "epoch_loss_sum", "epoch_errors", "epoch_seen", "epoch_seconds"];
/// The fact holding [`position_checksum`]: the tensors' checksum does not cover metadata.
const POSITION_CHECKSUM_KEY: &str = "position_sha256";

/// [`POSITION_KEYS`] and their values. Floats are written in their shortest form that reads
/// back to the same bits.
fn position_facts(state: &State) -> Vec<(&'static str, String)> {
    let WithinEpoch { batches, tally, seconds } = state.within;
    let values = [
        state.epoch.to_string(),
        state.step.to_string(),
        batches.to_string(),
        tally.loss_sum.to_string(),
        tally.errors.to_string(),
        tally.seen.to_string(),
        seconds.to_string(),
    ];
    POSITION_KEYS.into_iter().zip(values).collect()
}

/// SHA-256 (hex) of the position facts, each key and value with its length.
fn position_checksum(facts: &[(&str, String)]) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in facts {
        for part in [key.as_bytes(), value.as_bytes()] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    crate::folder::hex(&hasher.finalize())
}

/// The epoch, step and position within the epoch that `metadata` records, verified against
/// their checksum. A checkpoint written before netc recorded positions holds only `epoch` and
/// `step`, unverified, and is at the start of its epoch.
fn read_position(path: &Path, metadata: &BTreeMap<String, String>) -> Result<(usize, u64, WithinEpoch), String> {
    let fact = |key: &str| metadata.get(key).ok_or_else(|| format!("{}: metadata `{key}` is missing", path.display()));
    let corrupt = |key: &str| format!("{}: metadata `{key}` is not a number: the file is corrupt", path.display());
    let count = |key: &str| fact(key)?.parse::<u64>().map_err(|_| corrupt(key));
    let (epoch, step) = (count("epoch")? as usize, count("step")?);
    let Some(recorded) = metadata.get(POSITION_CHECKSUM_KEY) else {
        return Ok((epoch, step, WithinEpoch::default()));
    };
    let facts = POSITION_KEYS.iter().map(|&key| Ok((key, fact(key)?.clone()))).collect::<Result<Vec<_>, String>>()?;
    let computed = position_checksum(&facts);
    if *recorded != computed {
        return Err(format!(
            "{}: the position (epoch, step, batch) does not match its checksum (sha256 {computed}, recorded {recorded}): the file is corrupt",
            path.display()
        ));
    }
    let real =
        |key: &str| fact(key)?.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| corrupt(key));
    let tally = Tally {
        loss_sum: real("epoch_loss_sum")?,
        errors: count("epoch_errors")? as usize,
        seen: count("epoch_seen")? as usize,
    };
    let within = WithinEpoch { batches: count("epoch_batches")? as usize, tally, seconds: real("epoch_seconds")? };
    Ok((epoch, step, within))
}

/// Reads a state written by [`save_state`]; `expected` gives the parameter names and shapes the
/// net has, in order, and `needs` the statistics the recipe's preprocessing needs. A file that
/// does not match is an error naming the difference.
pub fn load_state(path: &Path, expected: &[(String, Vec<usize>)], needs: Needs) -> Result<State, String> {
    let (tensors, metadata) = load(path)?;
    let mut by_name: HashMap<String, Tensor> = tensors.into_iter().collect();
    let params = take_params(path, &mut by_name, expected)?;
    let slots = params
        .iter()
        .map(|(name, p)| {
            let mut take = |moment: &str| {
                let key = format!("optimizer.{moment}.{name}");
                match by_name.remove(&key) {
                    Some(t) if t.len() != p.len() => {
                        Err(format!("{}: `{key}` has {} values but `{name}` has {}", path.display(), t.len(), p.len()))
                    }
                    found => Ok(found.map(Tensor::into_data)),
                }
            };
            let m = take("m")?.ok_or_else(|| format!("{}: no optimizer state for `{name}`", path.display()))?;
            Ok(Slot { m, v: take("v")?.unwrap_or_default() })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let stats = take_statistics(path, &mut by_name, needs)?;
    reject_unknown(path, &by_name)?;
    let (epoch, step, within) = read_position(path, &metadata)?;
    Ok(State { params, slots, epoch, step, stats, within })
}

/// Reads weights written by [`save_model`] for a net with parameters `expected` and a recipe
/// whose preprocessing needs `needs`.
pub fn load_model(path: &Path, expected: &[(String, Vec<usize>)], needs: Needs) -> Result<SavedModel, String> {
    let (tensors, metadata) = load(path)?;
    let mut by_name: HashMap<String, Tensor> = tensors.into_iter().collect();
    let params = take_params(path, &mut by_name, expected)?;
    let stats = take_statistics(path, &mut by_name, needs)?;
    reject_unknown(path, &by_name)?;
    Ok(SavedModel { params, stats, class_names: class_names(&metadata) })
}

/// The statistics the recipe needs, each of the length it needs.
fn take_statistics(path: &Path, tensors: &mut HashMap<String, Tensor>, needs: Needs) -> Result<Statistics, String> {
    let mut take = |name: &str, what: &str, len: Option<usize>| -> Result<Option<Vec<f32>>, String> {
        let Some(len) = len else { return Ok(None) };
        match tensors.remove(name) {
            Some(t) if t.len() == len => Ok(Some(t.into_data())),
            Some(t) => Err(format!(
                "{}: {what} `{name}` has {} values, but the net's images need {len}",
                path.display(),
                t.len()
            )),
            None => Err(format!(
                "{}: the recipe's preprocessing needs {what}, but the file holds no `{name}`",
                path.display()
            )),
        }
    };
    Ok(Statistics {
        mean: take(MEAN_IMAGE, "the mean image", needs.mean)?,
        mean_norm: take(MEAN_NORM, "the mean standard deviation", needs.mean_norm.then_some(1))?.map(|v| v[0]),
        whitening: take(WHITENING, "the whitening matrix", needs.whitening.map(|d| d * d))?,
    })
}

/// Tensors left over once the net's have been taken: a file for another net, or damaged.
fn reject_unknown(path: &Path, left: &HashMap<String, Tensor>) -> Result<(), String> {
    if left.is_empty() {
        return Ok(());
    }
    let mut names: Vec<&str> = left.keys().map(String::as_str).collect();
    names.sort_unstable();
    let listed = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    Err(format!("{}: the file holds tensors the net does not have: {listed}", path.display()))
}

/// Takes the net's parameters out of a file's tensors, checking names and shapes.
pub fn take_params(
    path: &Path,
    tensors: &mut HashMap<String, Tensor>,
    expected: &[(String, Vec<usize>)],
) -> Result<Vec<Named>, String> {
    expected
        .iter()
        .map(|(name, shape)| match tensors.remove(name) {
            Some(t) if t.shape() == shape.as_slice() => Ok((name.clone(), t)),
            Some(t) => Err(format!(
                "{}: `{name}` has shape {:?} in the file but {:?} in the net",
                path.display(),
                t.shape(),
                shape
            )),
            None => Err(format!("{}: the net's parameter `{name}` is not in the file", path.display())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEEDS: Needs = Needs { mean: Some(3), mean_norm: true, whitening: Some(3) };

    fn state() -> State {
        State {
            params: vec![
                ("conv1.weight".into(), Tensor::new(vec![2, 1, 1, 1], vec![0.5, -1.5]).unwrap()),
                ("conv1.bias".into(), Tensor::new(vec![2], vec![0.0, 0.25]).unwrap()),
            ],
            slots: vec![Slot { m: vec![0.1, 0.2], v: vec![] }, Slot { m: vec![0.3, 0.4], v: vec![] }],
            epoch: 3,
            step: 1800,
            stats: Statistics { mean: Some(vec![1.0, 2.0, 3.0]), mean_norm: Some(41.5), whitening: Some(vec![0.5; 9]) },
            within: WithinEpoch::default(),
        }
    }

    /// The fuzz target `checkpoint` starts from these files (written with `NETC_BLESS=1`); they
    /// must stay what this netc writes and reads back.
    #[test]
    fn the_fuzz_seeds_are_a_checkpoint_and_weights_of_this_netc() {
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/checkpoint");
        let (checkpoint, weights) = (seeds.join("checkpoint.safetensors"), seeds.join("model.safetensors"));
        let s = state();
        if std::env::var_os("NETC_BLESS").is_some() {
            save_state(&checkpoint, &s, BTreeMap::new()).unwrap();
            save_model(&weights, &s, BTreeMap::new()).unwrap();
        }
        let expected: Vec<(String, Vec<usize>)> =
            s.params.iter().map(|(n, p)| (n.clone(), p.shape().to_vec())).collect();
        assert_eq!(load_state(&checkpoint, &expected, NEEDS).unwrap(), s);
        let model = load_model(&weights, &expected, NEEDS).unwrap();
        assert_eq!((model.params, model.stats), (s.params, s.stats));
    }

    #[test]
    fn state_round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        let s = state();
        save_state(&path, &s, BTreeMap::new()).unwrap();
        let expected: Vec<(String, Vec<usize>)> =
            s.params.iter().map(|(n, p)| (n.clone(), p.shape().to_vec())).collect();
        assert_eq!(load_state(&path, &expected, NEEDS).unwrap(), s);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(files, ["checkpoint.safetensors"], "no temporary file is left behind");
    }

    fn shapes(s: &State) -> Vec<(String, Vec<usize>)> {
        s.params.iter().map(|(n, p)| (n.clone(), p.shape().to_vec())).collect()
    }

    #[test]
    fn a_position_within_an_epoch_round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        let mut s = state();
        // Sums whose shortest decimal form is long: they must come back bit for bit.
        let tally = Tally { loss_sum: 0.1 + 0.2, errors: 17, seen: 48 };
        s.within = WithinEpoch { batches: 3, tally, seconds: 1.0 / 3.0 };
        save_state(&path, &s, BTreeMap::new()).unwrap();
        let back = load_state(&path, &shapes(&s), NEEDS).unwrap();
        assert_eq!(back.within.tally.loss_sum.to_bits(), tally.loss_sum.to_bits());
        assert_eq!(back, s);
    }

    #[test]
    fn a_checkpoint_without_a_position_is_at_the_start_of_its_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let (new, old) = (dir.path().join("new.safetensors"), dir.path().join("old.safetensors"));
        let s = state();
        save_state(
            &new,
            &State { within: WithinEpoch { batches: 2, ..WithinEpoch::default() }, ..s.clone() },
            BTreeMap::new(),
        )
        .unwrap();
        // The same tensors with only the facts netc wrote before it stopped mid-epoch.
        let (tensors, metadata) = load(&new).unwrap();
        let facts = ["epoch", "step"].map(|k| (k.to_string(), metadata[k].clone()));
        save(&old, &tensors, BTreeMap::from(facts)).unwrap();
        assert_eq!(load_state(&old, &shapes(&s), NEEDS).unwrap(), s);
    }

    #[test]
    fn a_changed_position_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        let s = state();
        save_state(&path, &s, BTreeMap::new()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        // The facts are a JSON string in the header: the recorded step 1800 becomes 1801.
        let fact = br#"\"step\":\"1800\""#;
        let at = bytes.windows(fact.len()).position(|w| w == fact).expect("the step is in the header");
        bytes[at + fact.len() - 3] = b'1';
        std::fs::write(&path, &bytes).unwrap();
        let err = load_state(&path, &shapes(&s), NEEDS).unwrap_err();
        assert!(err.contains("the position (epoch, step, batch) does not match its checksum"), "{err}");
    }

    #[test]
    fn mismatched_nets_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        save_model(&path, &state(), BTreeMap::new()).unwrap();
        let (tensors, _) = load(&path).unwrap();
        let mut by_name: HashMap<String, Tensor> = tensors.into_iter().collect();
        let err = take_params(&path, &mut by_name.clone(), &[("conv1.weight".into(), vec![2, 1, 3, 3])]).unwrap_err();
        assert!(err.contains("`conv1.weight` has shape [2, 1, 1, 1] in the file but [2, 1, 3, 3] in the net"), "{err}");
        let err = take_params(&path, &mut by_name, &[("conv2.weight".into(), vec![1])]).unwrap_err();
        assert!(err.contains("the net's parameter `conv2.weight` is not in the file"), "{err}");
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage").unwrap();
        assert!(load(&path).unwrap_err().contains("is not a valid safetensors file"));
        std::fs::write(&path, b"").unwrap();
        assert!(load(&path).is_err());
    }

    #[test]
    fn loads_verify_the_checksum_finiteness_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        let s = state();
        save_state(&path, &s, BTreeMap::new()).unwrap();
        let expected: Vec<(String, Vec<usize>)> =
            s.params.iter().map(|(n, p)| (n.clone(), p.shape().to_vec())).collect();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = load_state(&path, &expected, NEEDS).unwrap_err();
        assert!(err.contains("does not match its checksum"), "{err}");

        let mut infinite = s.clone();
        infinite.params[1].1.data_mut()[1] = f32::INFINITY;
        save_state(&path, &infinite, BTreeMap::new()).unwrap();
        let err = load_state(&path, &expected, NEEDS).unwrap_err();
        assert!(err.contains("`conv1.bias` holds inf at element 1"), "{err}");

        save_state(&path, &s, BTreeMap::new()).unwrap();
        // A recipe without a mean image: the file's is a tensor the net does not have.
        let err = load_state(&path, &expected, Needs { mean: None, ..NEEDS }).unwrap_err();
        assert!(err.contains("tensors the net does not have: `preprocess.mean_image`"), "{err}");
        let err = load_state(&path, &expected, Needs { mean: Some(4), ..NEEDS }).unwrap_err();
        assert!(
            err.contains("the mean image `preprocess.mean_image` has 3 values, but the net's images need 4"),
            "{err}"
        );
        let err = load_state(&path, &expected, Needs { whitening: Some(2), ..NEEDS }).unwrap_err();
        assert!(
            err.contains("the whitening matrix `preprocess.whitening` has 9 values, but the net's images need 4"),
            "{err}"
        );
        let mut without = s.clone();
        without.stats.mean_norm = None;
        save_state(&path, &without, BTreeMap::new()).unwrap();
        let err = load_state(&path, &expected, NEEDS).unwrap_err();
        assert!(
            err.contains("needs the mean standard deviation, but the file holds no `preprocess.mean_norm`"),
            "{err}"
        );

        // A file without netc's checksum is not taken on trust.
        let views = vec![("w", TensorView::new(Dtype::F32, vec![1], &[0u8; 4]).unwrap())];
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        assert!(load(&path).unwrap_err().contains("no checksum of its tensors"));
    }
}
