//! Data sets for training netc models.
//!
//! A run asks for its data by name (`--data mnist`) so that the same run file
//! works on every machine; this crate turns the name into a folder
//! ([`locate`]), reads and validates the files in it ([`Splits::load_mnist`],
//! [`Splits::load_cifar10`], [`read_idx`]), and can download them ([`fetch_mnist`],
//! [`fetch_cifar10`]). Every file read is
//! hashed (SHA-256 of the uncompressed bytes) so a trainer can record exactly
//! which data it saw, and every failure is a [`DataError`] naming the file and
//! what was wrong with it.
//!
//! ```no_run
//! use netc_data::{locate, Splits, MNIST_FILES};
//!
//! # fn main() -> Result<(), netc_data::DataError> {
//! let dir = locate("mnist", None)?;
//! let mnist = Splits::load_mnist(&dir)?;
//! mnist.verify_checksums(&MNIST_FILES)?;
//! assert_eq!((mnist.train.count, &mnist.train.shape[..]), (60_000, &[1, 28, 28][..]));
//! for sum in &mnist.checksums {
//!     println!("{} {}", sum.name, sum.sha256);
//! }
//! # Ok(())
//! # }
//! ```

mod cifar;
mod error;
mod fetch;
mod fetch_cifar;
mod format;
mod idx;
mod image_folder;
mod inputs;
mod locate;
mod mnist;
mod npy;
#[cfg(test)]
mod testutil;

pub use cifar::{
    cifar10_files, write_cifar10, CIFAR10_META_FILE, CIFAR10_RECORD, CIFAR10_SHAPE, CIFAR10_TEST_FILE,
    CIFAR10_TRAIN_FILES,
};
pub use error::{DataError, OfflineHint};
pub use fetch::{fetch_mnist, FetchAction, FetchedFile, MNIST_MIRRORS};
pub use fetch_cifar::{fetch_cifar10, CIFAR10_ARCHIVE, CIFAR10_ARCHIVE_MD5, CIFAR10_MIRRORS};
pub use format::DataFormat;
pub use idx::{read_idx, Idx, IdxKind, MAX_ELEMENTS};
pub use image_folder::IMAGE_SPLITS;
pub use inputs::{read_inputs, Input};
pub use locate::{fetch_dir, locate, KNOWN_DATASETS};
pub use mnist::{Dataset, FileChecksum, Splits, Values, MNIST_FILES};
pub use npy::{read_npy, write_npy, Npy, NpyData, NPY_CLASS_NAMES, NPY_FILES};
