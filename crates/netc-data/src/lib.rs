//! Data sets for training netc models.
//!
//! A run asks for its data by name (`--data mnist`) so that the same run file
//! works on every machine; this crate turns the name into a folder
//! ([`locate`]), reads and validates the files in it ([`Mnist::load`],
//! [`read_idx`]), and can download them ([`fetch_mnist`]). Every file read is
//! hashed (SHA-256 of the uncompressed bytes) so a trainer can record exactly
//! which data it saw, and every failure is a [`DataError`] naming the file and
//! what was wrong with it.
//!
//! ```no_run
//! use netc_data::{locate, Mnist};
//!
//! # fn main() -> Result<(), netc_data::DataError> {
//! let dir = locate("mnist", None)?;
//! let mnist = Mnist::load(&dir)?;
//! mnist.verify_checksums()?;
//! assert_eq!((mnist.train.count, mnist.train.rows, mnist.train.cols), (60_000, 28, 28));
//! for sum in &mnist.checksums {
//!     println!("{} {}", sum.name, sum.sha256);
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod fetch;
mod idx;
mod locate;
mod mnist;
#[cfg(test)]
mod testutil;

pub use error::DataError;
pub use fetch::{fetch_mnist, FetchAction, FetchedFile, MNIST_MIRRORS};
pub use idx::{read_idx, Idx, IdxKind, MAX_ELEMENTS};
pub use locate::{fetch_dir, locate, KNOWN_DATASETS};
pub use mnist::{Dataset, FileChecksum, Mnist, MNIST_FILES};
