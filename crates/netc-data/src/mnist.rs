//! The MNIST data set: four IDX files in one folder.

use std::path::{Path, PathBuf};

use crate::idx::{read_idx, IdxKind};
use crate::DataError;

/// The canonical MNIST files (names without `.gz`) and the SHA-256 of their
/// uncompressed contents. Hashing the uncompressed bytes makes the check hold
/// whether a user keeps the files compressed or not.
pub const MNIST_FILES: [(&str, &str); 4] = [
    ("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    ("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    ("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    ("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
];

/// MNIST has one class per digit.
const MNIST_CLASSES: usize = 10;

/// The values of a data set's examples, example after example.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// Pixels, 0–255 (IDX, CIFAR-10, images, uint8 `.npy`).
    Bytes(Vec<u8>),
    /// Any finite numbers (float32 `.npy`).
    Floats(Vec<f32>),
}

impl Values {
    /// How many values there are.
    pub fn len(&self) -> usize {
        match self {
            Values::Bytes(v) => v.len(),
            Values::Floats(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A set of labelled examples held in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The examples' values, example after example: `count` times the product of `shape`.
    pub images: Values,
    /// One class index per image, each below `classes`.
    pub labels: Vec<u8>,
    /// Number of images (and labels).
    pub count: usize,
    /// One example's shape, channels first: `[1, 28, 28]` for MNIST, `[3, 32, 32]` for CIFAR-10.
    pub shape: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
}

impl Dataset {
    /// Values in one example (the product of its shape).
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The pixels of image `index` of a set of bytes, or `None` past the end (or for floats).
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let Values::Bytes(bytes) = &self.images else { return None };
        let len = self.image_len();
        let start = index.checked_mul(len)?;
        bytes.get(start..start.checked_add(len)?)
    }
}

/// Checksum of one loaded file, for recording in a run's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChecksum {
    /// Canonical file name without `.gz`, e.g. `train-images-idx3-ubyte`.
    pub name: String,
    /// The file actually read (with `.gz` or not).
    pub path: PathBuf,
    /// SHA-256 of the uncompressed contents, lowercase hex.
    pub sha256: String,
}

/// A data set's training and test sets, with the checksums of the files read and the names
/// of its classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Splits {
    /// The training examples (60 000 for MNIST, 50 000 for CIFAR-10).
    pub train: Dataset,
    /// The test examples (10 000 for both).
    pub test: Dataset,
    /// One entry per file read, in the order of the data set's file table.
    pub checksums: Vec<FileChecksum>,
    /// One name per class: the digits for MNIST, `batches.meta.txt` for CIFAR-10.
    pub class_names: Vec<String>,
}

/// The digits, MNIST's class names.
fn digit_names() -> Vec<String> {
    (0..MNIST_CLASSES).map(|digit| digit.to_string()).collect()
}

impl Splits {
    /// Loads the four MNIST files from `dir`, each as `NAME.gz` or `NAME`.
    ///
    /// Checks that images and labels agree in count, that labels are digits
    /// and that train and test images have one size. It does not insist on
    /// the canonical checksums, so MNIST-format data sets (Fashion-MNIST, a
    /// subset) load too; call [`Splits::verify_checksums`] with [`MNIST_FILES`] for that.
    pub fn load_mnist(dir: &Path) -> Result<Splits, DataError> {
        let [train_images, train_labels, test_images, test_labels] = MNIST_FILES.map(|(name, _)| find_file(dir, name));
        let (train, train_sums) = load_pair(&train_images?, &train_labels?)?;
        let (test, test_sums) = load_pair(&test_images?, &test_labels?)?;
        if train.shape != test.shape {
            return Err(DataError::ShapeMismatch {
                train: train_sums[0].path.clone(),
                train_shape: train.shape.clone(),
                test: test_sums[0].path.clone(),
                test_shape: test.shape.clone(),
            });
        }
        let checksums = train_sums.into_iter().chain(test_sums).collect();
        Ok(Splits { train, test, checksums, class_names: digit_names() })
    }

    /// Checks the loaded files against a table of canonical checksums (such as [`MNIST_FILES`]);
    /// the error names the first file that differs.
    pub fn verify_checksums(&self, table: &[(&str, &str)]) -> Result<(), DataError> {
        for sum in &self.checksums {
            let expected = table.iter().find(|(name, _)| *name == sum.name).map_or("", |(_, sha)| sha);
            if sum.sha256 != expected {
                return Err(DataError::Checksum {
                    path: sum.path.clone(),
                    expected: expected.to_string(),
                    found: sum.sha256.clone(),
                });
            }
        }
        Ok(())
    }
}

/// The path of `name` in `dir`: the `.gz` file if present, else the raw one.
pub(crate) fn find_file(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    [format!("{name}.gz"), name.to_string()]
        .into_iter()
        .map(|file| dir.join(file))
        .find(|path| path.is_file())
        .ok_or_else(|| DataError::MissingFile { dir: dir.to_path_buf(), name: name.to_string() })
}

/// Loads one examples file (u8 IDX of any shape) and its labels file into a [`Dataset`].
fn load_pair(images: &Path, labels: &Path) -> Result<(Dataset, [FileChecksum; 2]), DataError> {
    let image_idx = read_idx(images, IdxKind::Examples)?;
    let label_idx = read_idx(labels, IdxKind::Labels)?;
    // read_idx checked the magic number: a count, then at least one dimension of the example.
    let (count, example) = (image_idx.dims[0], &image_idx.dims[1..]);
    // Images of rows × cols are one-channel images; any other shape is taken as it is.
    let shape = match example {
        [rows, cols] => vec![1, *rows, *cols],
        other => other.to_vec(),
    };
    if label_idx.data.len() != count {
        return Err(DataError::CountMismatch {
            images: images.to_path_buf(),
            image_count: count,
            labels: labels.to_path_buf(),
            label_count: label_idx.data.len(),
        });
    }
    if let Some((index, &label)) =
        label_idx.data.iter().enumerate().find(|(_, &label)| usize::from(label) >= MNIST_CLASSES)
    {
        return Err(DataError::LabelOutOfRange { path: labels.to_path_buf(), index, label, classes: MNIST_CLASSES });
    }
    let sums = [(images, image_idx.sha256), (labels, label_idx.sha256)].map(|(path, sha256)| FileChecksum {
        name: canonical_name(path),
        path: path.to_path_buf(),
        sha256,
    });
    let dataset =
        Dataset { images: Values::Bytes(image_idx.data), labels: label_idx.data, count, shape, classes: MNIST_CLASSES };
    Ok((dataset, sums))
}

/// The file name of `path` without a `.gz` suffix.
pub(crate) fn canonical_name(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.strip_suffix(".gz") {
        Some(stem) => stem.to_string(),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{gzip, images, labels, sha256, tiny_mnist, write_tiny_mnist};

    #[test]
    fn loads_gzipped_and_raw_alike() {
        let dir = tempfile::tempdir().unwrap();
        let (gz, raw) = (dir.path().join("gz"), dir.path().join("raw"));
        write_tiny_mnist(&gz, true);
        write_tiny_mnist(&raw, false);
        let a = Splits::load_mnist(&gz).unwrap();
        let b = Splits::load_mnist(&raw).unwrap();
        assert_eq!((a.train.clone(), a.test.clone()), (b.train, b.test));
        assert_eq!((a.train.count, &a.train.shape[..]), (3, &[1, 2, 3][..]));
        assert_eq!(a.class_names, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
        assert_eq!(a.train.labels, vec![0, 9, 4]);
        assert_eq!(a.train.classes, 10);
        assert_eq!(a.test.count, 2);
        assert_eq!(a.train.image(1), Some(&[6, 7, 8, 9, 10, 11][..]));
        assert_eq!(a.train.image(3), None);
        assert_eq!(a.train.image(usize::MAX), None);
        for ((sum_gz, sum_raw), (name, bytes)) in a.checksums.iter().zip(&b.checksums).zip(tiny_mnist()) {
            assert_eq!(sum_gz.name, name);
            assert_eq!(sum_gz.path, gz.join(format!("{name}.gz")));
            assert_eq!(sum_gz.sha256, sha256(&bytes));
            assert_eq!(sum_raw.sha256, sum_gz.sha256);
        }
    }

    #[test]
    fn canonical_checksums_are_enforced_only_on_request() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_mnist(dir.path(), true);
        let mnist = Splits::load_mnist(dir.path()).unwrap();
        let err = mnist.verify_checksums(&MNIST_FILES).unwrap_err();
        assert!(
            matches!(&err, DataError::Checksum { path, expected, .. }
                if path.ends_with("train-images-idx3-ubyte.gz") && expected == MNIST_FILES[0].1),
            "{err:?}"
        );
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_mnist(dir.path(), false);
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), labels(&[1, 2, 3])).unwrap();
        let err = Splits::load_mnist(dir.path()).unwrap_err();
        assert!(matches!(&err, DataError::CountMismatch { image_count: 2, label_count: 3, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("t10k-images-idx3-ubyte") && msg.contains("t10k-labels-idx1-ubyte"), "{msg}");
    }

    #[test]
    fn label_out_of_range_names_file_and_index() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_mnist(dir.path(), true);
        let path = dir.path().join("train-labels-idx1-ubyte.gz");
        std::fs::write(&path, gzip(&labels(&[0, 1, 10]))).unwrap();
        let err = Splits::load_mnist(dir.path()).unwrap_err();
        assert!(
            matches!(&err, DataError::LabelOutOfRange { path: p, index: 2, label: 10, classes: 10 } if *p == path),
            "{err:?}"
        );
        assert!(err.to_string().contains("index 2"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_mnist(dir.path(), true);
        std::fs::remove_file(dir.path().join("t10k-images-idx3-ubyte.gz")).unwrap();
        let err = Splits::load_mnist(dir.path()).unwrap_err();
        assert!(matches!(&err, DataError::MissingFile { name, .. } if name == "t10k-images-idx3-ubyte"), "{err:?}");
    }

    #[test]
    fn gz_is_preferred_when_both_forms_exist() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_mnist(dir.path(), true);
        // A stale raw copy with other contents must not be read.
        std::fs::write(dir.path().join("train-labels-idx1-ubyte"), labels(&[99])).unwrap();
        assert!(Splits::load_mnist(dir.path()).is_ok());
    }

    #[test]
    fn an_idx_folder_of_colour_examples_loads_with_their_shape() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_mnist(dir.path(), false);
        let colour = |count: u32| crate::testutil::idx(&[count, 3, 2, 2], &vec![7; count as usize * 12]);
        std::fs::write(dir.path().join("train-images-idx3-ubyte"), colour(3)).unwrap();
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), colour(2)).unwrap();
        let set = Splits::load_mnist(dir.path()).unwrap();
        assert_eq!((set.train.count, &set.train.shape[..], set.train.image_len()), (3, &[3, 2, 2][..], 12));
    }

    #[test]
    fn train_and_test_image_sizes_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_mnist(dir.path(), false);
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), images(2, 3, 3)).unwrap();
        let err = Splits::load_mnist(dir.path()).unwrap_err();
        assert!(
            matches!(&err, DataError::ShapeMismatch { train_shape, test_shape, .. }
                if train_shape[..] == [1, 2, 3] && test_shape[..] == [1, 3, 3]),
            "{err:?}"
        );
    }
}
