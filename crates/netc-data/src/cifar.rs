//! CIFAR-10 in its binary form: five training batches and a test batch of fixed-size records,
//! and the class names in `batches.meta.txt`.
//!
//! A record is one label byte followed by the 3072 pixel bytes of a 32×32 colour image, channel
//! by channel (the 1024 red values row by row, then green, then blue): exactly the `[3, 32, 32]`
//! layout a net's input takes.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::idx::{hex, MAX_ELEMENTS};
use crate::mnist::{Dataset, FileChecksum, Splits, Values};
use crate::DataError;

/// The training batches, in the order their examples are concatenated.
pub const CIFAR10_TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
/// The test batch.
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";
/// The class names, one a line.
pub const CIFAR10_META_FILE: &str = "batches.meta.txt";

/// One example's shape: channels, rows, columns.
pub const CIFAR10_SHAPE: [usize; 3] = [3, 32, 32];
const CLASSES: usize = 10;
/// Bytes in a record: the label, then the pixels.
pub const CIFAR10_RECORD: usize = 1 + 3 * 32 * 32;

/// Every file a CIFAR-10 folder holds.
pub fn cifar10_files() -> Vec<&'static str> {
    CIFAR10_TRAIN_FILES.iter().copied().chain([CIFAR10_TEST_FILE, CIFAR10_META_FILE]).collect()
}

impl Splits {
    /// Loads CIFAR-10's binary files from `dir`: `data_batch_1.bin` … `data_batch_5.bin` as the
    /// training set, `test_batch.bin` as the test set, the class names from `batches.meta.txt`.
    ///
    /// Each file's length is checked to be a whole number of records before it is read; every
    /// label must name one of the ten classes. A batch may hold any number of records, so
    /// smaller files in the same format load too.
    pub fn load_cifar10(dir: &Path) -> Result<Splits, DataError> {
        let mut checksums = Vec::new();
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for name in CIFAR10_TRAIN_FILES {
            read_batch(&dir.join(name), &mut images, &mut labels, &mut checksums)?;
        }
        let train = set(images, labels);
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        read_batch(&dir.join(CIFAR10_TEST_FILE), &mut images, &mut labels, &mut checksums)?;
        let test = set(images, labels);
        let class_names = read_class_names(&dir.join(CIFAR10_META_FILE), &mut checksums)?;
        Ok(Splits { train, test, checksums, class_names })
    }
}

fn set(images: Vec<u8>, labels: Vec<u8>) -> Dataset {
    let count = labels.len();
    Dataset { images: Values::Bytes(images), labels, count, shape: CIFAR10_SHAPE.to_vec(), classes: CLASSES }
}

/// The whole of a file no longer than `limit` bytes, its length checked before it is read.
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| missing_or_io(path, e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, "reading", e))?.len();
    if len > limit {
        return Err(DataError::FileTooLarge { path: path.to_path_buf(), len, limit });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit).read_to_end(&mut bytes).map_err(|e| DataError::io(path, "reading", e))?;
    Ok(bytes)
}

fn missing_or_io(path: &Path, e: std::io::Error) -> DataError {
    match (e.kind(), path.parent(), path.file_name()) {
        (std::io::ErrorKind::NotFound, Some(dir), Some(name)) => {
            DataError::MissingFile { dir: dir.to_path_buf(), name: name.to_string_lossy().into_owned() }
        }
        _ => DataError::io(path, "opening", e),
    }
}

/// Appends the records of one batch file to `images` and `labels`.
fn read_batch(
    path: &Path,
    images: &mut Vec<u8>,
    labels: &mut Vec<u8>,
    checksums: &mut Vec<FileChecksum>,
) -> Result<(), DataError> {
    let bytes = read_bounded(path, MAX_ELEMENTS)?;
    if bytes.len() % CIFAR10_RECORD != 0 {
        return Err(DataError::RecordLength {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            record: CIFAR10_RECORD,
        });
    }
    let count = bytes.len() / CIFAR10_RECORD;
    images.reserve(count * (CIFAR10_RECORD - 1));
    labels.reserve(count);
    for (index, record) in bytes.chunks_exact(CIFAR10_RECORD).enumerate() {
        let label = record[0];
        if usize::from(label) >= CLASSES {
            return Err(DataError::LabelOutOfRange { path: path.to_path_buf(), index, label, classes: CLASSES });
        }
        labels.push(label);
        images.extend_from_slice(&record[1..]);
    }
    checksums.push(checksum(path, &bytes));
    Ok(())
}

fn checksum(path: &Path, bytes: &[u8]) -> FileChecksum {
    FileChecksum {
        name: crate::mnist::canonical_name(path),
        path: path.to_path_buf(),
        sha256: hex(&Sha256::digest(bytes)),
    }
}

/// The ten class names of `batches.meta.txt`: its non-blank lines, trimmed.
fn read_class_names(path: &Path, checksums: &mut Vec<FileChecksum>) -> Result<Vec<String>, DataError> {
    // Ten names of a few letters each; anything much larger is not this file.
    const LIMIT: u64 = 64 << 10;
    let bytes = read_bounded(path, LIMIT)?;
    let bad = |why: String| DataError::ClassNames { path: path.to_path_buf(), why };
    let text = std::str::from_utf8(&bytes).map_err(|e| bad(format!("not UTF-8 text (at byte {})", e.valid_up_to())))?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.len() != CLASSES {
        return Err(bad(format!("holds {} class names, expected {CLASSES}, one a line", names.len())));
    }
    checksums.push(checksum(path, &bytes));
    Ok(names)
}

/// Writes a CIFAR-10 folder in the binary format: `train` and `test` as (label, 3072 pixels)
/// records, the training records spread over the five batch files (the last ones empty when
/// there are fewer than five); for tests and examples.
pub fn write_cifar10(
    dir: &Path,
    train: &[(u8, Vec<u8>)],
    test: &[(u8, Vec<u8>)],
    names: &[&str],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    fn record((label, pixels): &(u8, Vec<u8>)) -> impl Iterator<Item = u8> + '_ {
        std::iter::once(*label).chain(pixels.iter().copied())
    }
    let per_batch = train.len().div_ceil(CIFAR10_TRAIN_FILES.len()).max(1);
    let mut chunks = train.chunks(per_batch);
    for name in CIFAR10_TRAIN_FILES {
        let bytes: Vec<u8> = chunks.next().unwrap_or_default().iter().flat_map(record).collect();
        std::fs::write(dir.join(name), bytes)?;
    }
    std::fs::write(dir.join(CIFAR10_TEST_FILE), test.iter().flat_map(record).collect::<Vec<u8>>())?;
    std::fs::write(dir.join(CIFAR10_META_FILE), names.join("\n") + "\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{cifar_records, sha256, CIFAR_NAMES};

    fn write(dir: &Path, train: usize, test: usize) {
        write_cifar10(dir, &cifar_records(train, 0), &cifar_records(test, 100), &CIFAR_NAMES).unwrap();
    }

    #[test]
    fn loads_the_batches_in_order_with_names_and_checksums() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 12, 3);
        let set = Splits::load_cifar10(dir.path()).unwrap();
        assert_eq!((set.train.count, set.test.count), (12, 3));
        assert_eq!(set.train.shape, [3, 32, 32]);
        assert_eq!(set.train.image_len(), 3072);
        let records = cifar_records(12, 0);
        assert_eq!(set.train.labels, records.iter().map(|r| r.0).collect::<Vec<_>>());
        // Record 5 is the third of the second batch (three records a batch): its pixels, channel-major.
        assert_eq!(set.train.image(5), Some(&records[5].1[..]));
        assert_eq!(set.test.image(2), Some(&cifar_records(3, 100)[2].1[..]));
        assert_eq!(set.class_names, CIFAR_NAMES);
        let names: Vec<&str> = set.checksums.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, cifar10_files());
        let batch_1 = std::fs::read(dir.path().join("data_batch_1.bin")).unwrap();
        assert_eq!(batch_1.len(), 3 * CIFAR10_RECORD);
        assert_eq!(set.checksums[0].sha256, sha256(&batch_1));
    }

    #[test]
    fn a_partial_record_names_the_file_and_its_length() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 10, 2);
        let path = dir.path().join("data_batch_3.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 100);
        std::fs::write(&path, &bytes).unwrap();
        let err = Splits::load_cifar10(dir.path()).unwrap_err();
        assert!(
            matches!(&err, DataError::RecordLength { path: p, len, record: 3073 } if *p == path && *len == 2 * 3073 - 100),
            "{err:?}"
        );
        assert!(err.to_string().contains("data_batch_3.bin") && err.to_string().contains("3073-byte records"), "{err}");
    }

    #[test]
    fn a_bad_label_a_missing_file_and_bad_names_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 5, 2);
        let test = dir.path().join("test_batch.bin");
        let mut bytes = std::fs::read(&test).unwrap();
        bytes[CIFAR10_RECORD] = 10;
        std::fs::write(&test, &bytes).unwrap();
        let err = Splits::load_cifar10(dir.path()).unwrap_err();
        assert!(
            matches!(&err, DataError::LabelOutOfRange { path, index: 1, label: 10, .. } if *path == test),
            "{err:?}"
        );

        write(dir.path(), 5, 2);
        std::fs::write(dir.path().join(CIFAR10_META_FILE), "cat\ndog\n").unwrap();
        let err = Splits::load_cifar10(dir.path()).unwrap_err();
        assert!(err.to_string().contains("batches.meta.txt: holds 2 class names, expected 10"), "{err}");

        std::fs::remove_file(dir.path().join("data_batch_4.bin")).unwrap();
        let err = Splits::load_cifar10(dir.path()).unwrap_err();
        assert!(matches!(&err, DataError::MissingFile { name, .. } if name == "data_batch_4.bin"), "{err:?}");
    }
}
