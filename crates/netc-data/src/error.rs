//! The one error type of the crate.
//!
//! Every variant names the file (or folder, or URL) involved and, where it
//! applies, what was expected and what was found, so that a user can fix the
//! problem from the message alone.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while locating, reading or fetching data.
#[derive(Debug)]
#[non_exhaustive]
pub enum DataError {
    /// An operating-system level failure on `path`; `action` says what we were
    /// doing ("reading", "creating", ...).
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// What we were doing, e.g. "reading" or "renaming into place".
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The file starts like gzip (1f 8b) but does not decompress.
    Gzip {
        /// The file involved.
        path: PathBuf,
        /// The decompressor's error.
        source: io::Error,
    },
    /// The IDX magic number is not the one for the expected kind of file.
    BadMagic {
        /// The file involved.
        path: PathBuf,
        /// The magic number we wanted.
        expected: u32,
        /// The magic number in the file (0 if the file was too short to hold one).
        found: u32,
    },
    /// The file holds fewer bytes than its header promises.
    Truncated {
        /// The file involved.
        path: PathBuf,
        /// Uncompressed bytes expected (header included).
        expected: u64,
        /// Uncompressed bytes present.
        found: u64,
    },
    /// The file holds more bytes than its header promises.
    TrailingBytes {
        /// The file involved.
        path: PathBuf,
        /// Uncompressed bytes expected (header included).
        expected: u64,
    },
    /// The header claims a size that is absurd (overflows or exceeds the limit);
    /// refused before allocating anything.
    TooLarge {
        /// The file involved.
        path: PathBuf,
        /// The dimensions from the header.
        dims: Vec<u32>,
        /// The largest element count we accept.
        limit: u64,
    },
    /// Images and labels disagree on how many examples there are.
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// How many images it holds.
        image_count: usize,
        /// The labels file.
        labels: PathBuf,
        /// How many labels it holds.
        label_count: usize,
    },
    /// Train and test images have different sizes.
    ShapeMismatch {
        /// The training images file.
        train: PathBuf,
        /// Its per-example shape.
        train_shape: Vec<usize>,
        /// The test images file.
        test: PathBuf,
        /// Its per-example shape.
        test_shape: Vec<usize>,
    },
    /// A label is not a valid class index.
    LabelOutOfRange {
        /// The labels file.
        path: PathBuf,
        /// Position of the bad label (0-based).
        index: usize,
        /// The label found.
        label: u8,
        /// Number of classes; valid labels are `0..classes`.
        classes: usize,
    },
    /// A data set folder lacks one of its files (in both `.gz` and raw form).
    MissingFile {
        /// The folder searched.
        dir: PathBuf,
        /// The file name without `.gz`.
        name: String,
    },
    /// A data set name could not be resolved to a folder. How to get it is the program's to
    /// say: only it knows how its user runs it.
    NotFound {
        /// The name or path given by the user.
        name: String,
        /// Every place looked in, each with why it was not used.
        searched: Vec<(PathBuf, String)>,
    },
    /// The argument names a path that exists but cannot serve as a data folder: a file, an
    /// unreadable folder, a symbolic link loop.
    NotAFolder {
        /// The path as resolved.
        path: PathBuf,
        /// Why it cannot be used.
        why: String,
    },
    /// The argument is neither a known data set name nor an existing folder.
    UnknownDataset {
        /// The argument as given.
        name: String,
        /// The names that are known.
        known: Vec<&'static str>,
    },
    /// The SHA-256 of a file's uncompressed contents is not the expected one.
    Checksum {
        /// The file involved.
        path: PathBuf,
        /// Expected SHA-256, lowercase hex.
        expected: String,
        /// Actual SHA-256, lowercase hex.
        found: String,
    },
    /// Every mirror failed for one file; one entry per URL tried.
    Download {
        /// The file name requested (e.g. `train-images-idx3-ubyte.gz`).
        file: String,
        /// Each URL tried and why it failed.
        attempts: Vec<(String, String)>,
        /// How to put the data in place by hand.
        offline: OfflineHint,
    },
    /// A file is larger than any file of its kind can be; refused before reading it.
    FileTooLarge {
        /// The file involved.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
        /// The most bytes accepted.
        limit: u64,
    },
    /// A file of fixed-size records whose length is not a whole number of records.
    RecordLength {
        /// The file involved.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
        /// Bytes per record.
        record: usize,
    },
    /// A file of class names that cannot be used.
    ClassNames {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A folder whose files are in no format netc reads.
    UnknownFormat {
        /// The folder.
        dir: PathBuf,
        /// The file each format starts with, and the format's name.
        looked_for: Vec<String>,
    },
    /// A `.npy` file netc cannot read, or whose contents cannot serve as data.
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A file given to classify that the net cannot take.
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// An archive that does not hold what the data set's archive holds.
    Archive {
        /// The archive.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// Where the files of a data set go when they are fetched by hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineHint {
    /// The folder the files belong in.
    pub dir: PathBuf,
    /// What to download elsewhere: the archive or the files themselves.
    pub download: String,
    /// The files the folder must hold.
    pub files: Vec<String>,
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        DataError::Io { path: path.into(), action, source }
    }
}

/// Human names of the magic numbers we know, to make `BadMagic` readable.
fn magic_name(magic: u32) -> &'static str {
    match magic {
        0x0000_0803 => " (IDX u8 images, 3 dimensions)",
        0x0000_0801 => " (IDX u8 labels, 1 dimension)",
        _ => "",
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, action, source } => write!(f, "{}: error {action}: {source}", path.display()),
            DataError::Gzip { path, source } => {
                write!(f, "{}: starts with the gzip signature but does not decompress: {source}", path.display())
            }
            DataError::BadMagic { path, expected, found } => write!(
                f,
                "{}: not the expected IDX file: magic number should be {expected:#010x}{}, found {found:#010x}{}",
                path.display(),
                magic_name(*expected),
                magic_name(*found)
            ),
            DataError::Truncated { path, expected, found } => {
                write!(f, "{}: truncated: expected {expected} bytes (uncompressed), found only {found}", path.display())
            }
            DataError::TrailingBytes { path, expected } => write!(
                f,
                "{}: corrupt: header promises {expected} bytes (uncompressed), file holds more",
                path.display()
            ),
            DataError::TooLarge { path, dims, limit } => write!(
                f,
                "{}: corrupt header: dimensions {dims:?} exceed the limit of {limit} elements",
                path.display()
            ),
            DataError::CountMismatch { images, image_count, labels, label_count } => write!(
                f,
                "{} holds {image_count} images but {} holds {label_count} labels; they must match",
                images.display(),
                labels.display()
            ),
            DataError::ShapeMismatch { train, train_shape, test, test_shape } => write!(
                f,
                "{} holds examples of shape {train_shape:?} but {} holds {test_shape:?}; they must match",
                train.display(),
                test.display(),
            ),
            DataError::LabelOutOfRange { path, index, label, classes } => write!(
                f,
                "{}: label {label} at index {index} is out of range: expected 0..={}",
                path.display(),
                classes.saturating_sub(1)
            ),
            DataError::MissingFile { dir, name } => write!(f, "{}: missing {name}.gz (or {name})", dir.display()),
            DataError::NotFound { name, searched } => {
                write!(f, "data set `{name}` not found; looked in:")?;
                for (path, why) in searched {
                    write!(f, "\n  - {}: {why}", path.display())?;
                }
                Ok(())
            }
            DataError::NotAFolder { path, why } => {
                write!(f, "{}: {why}; --data takes a data set name or a folder holding its files", path.display())
            }
            DataError::UnknownDataset { name, known } => {
                write!(f, "`{name}` is neither a known data set ({}) nor an existing folder", known.join(", "))
            }
            DataError::Checksum { path, expected, found } => {
                write!(f, "{}: SHA-256 of the uncompressed contents is {found}, expected {expected}", path.display())
            }
            DataError::Download { file, attempts, offline } => {
                write!(f, "could not download {file}:")?;
                for (url, why) in attempts {
                    write!(f, "\n  - {url}: {why}")?;
                }
                write!(
                    f,
                    "\nwithout network: download {} on another machine and put {} into {}",
                    offline.download,
                    offline.files.join(", "),
                    offline.dir.display()
                )
            }
            DataError::FileTooLarge { path, len, limit } => {
                write!(f, "{}: {len} bytes, more than the {limit} a file of this kind can hold", path.display())
            }
            DataError::RecordLength { path, len, record } => write!(
                f,
                "{}: {len} bytes is not a whole number of {record}-byte records (1 label byte and 3072 pixel bytes each): truncated or not a CIFAR-10 batch",
                path.display()
            ),
            DataError::ClassNames { path, why } => write!(f, "{}: {why}", path.display()),
            DataError::UnknownFormat { dir, looked_for } => write!(
                f,
                "{}: no data set in a format netc reads; looked for {}",
                dir.display(),
                looked_for.join(", or ")
            ),
            DataError::Npy { path, why } => write!(f, "{}: {why}", path.display()),
            DataError::Input { path, why } => write!(f, "{}: {why}", path.display()),
            DataError::Archive { path, why } => write!(f, "{}: {why}", path.display()),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } | DataError::Gzip { source, .. } => Some(source),
            _ => None,
        }
    }
}
