//! The formats a data folder may be in, told apart by the files it holds.

use std::path::Path;

use crate::cifar::CIFAR10_TRAIN_FILES;
use crate::image_folder::IMAGE_SPLITS;
use crate::mnist::{Splits, MNIST_FILES};
use crate::npy::NPY_FILES;
use crate::DataError;

/// How a data folder's files are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    /// MNIST's four IDX files (raw or gzipped).
    Mnist,
    /// CIFAR-10's binary batches.
    Cifar10,
    /// NumPy `.npy` arrays: `train_images.npy`, `train_labels.npy`, `test_images.npy`, `test_labels.npy`.
    Npy,
    /// Image files in a folder per class: `train/<class>/*.png`, `test/<class>/*.jpg`, ….
    Images,
}

impl DataFormat {
    /// Every format, in the order detection tries them.
    pub const ALL: [DataFormat; 4] = [DataFormat::Mnist, DataFormat::Cifar10, DataFormat::Npy, DataFormat::Images];

    /// The format's name, as `--data-format` takes it.
    pub fn name(self) -> &'static str {
        match self {
            DataFormat::Mnist => "mnist",
            DataFormat::Cifar10 => "cifar10",
            DataFormat::Npy => "npy",
            DataFormat::Images => "images",
        }
    }

    /// The format called `name`.
    pub fn named(name: &str) -> Option<DataFormat> {
        DataFormat::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The format of the files in `dir`, by the files it holds; the error lists what each
    /// format would need.
    pub fn detect(dir: &Path) -> Result<DataFormat, DataError> {
        let has = |name: &str| dir.join(name).is_file() || dir.join(format!("{name}.gz")).is_file();
        if has(MNIST_FILES[0].0) {
            return Ok(DataFormat::Mnist);
        }
        if has(CIFAR10_TRAIN_FILES[0]) {
            return Ok(DataFormat::Cifar10);
        }
        if has(NPY_FILES[0]) {
            return Ok(DataFormat::Npy);
        }
        if IMAGE_SPLITS.iter().all(|split| dir.join(split).is_dir()) {
            return Ok(DataFormat::Images);
        }
        Err(DataError::UnknownFormat {
            dir: dir.to_path_buf(),
            looked_for: vec![
                format!("{} (MNIST's IDX files)", MNIST_FILES[0].0),
                format!("{} (CIFAR-10's binary batches)", CIFAR10_TRAIN_FILES[0]),
                format!("{} (NumPy arrays)", NPY_FILES[0]),
                "train/ and test/ folders of class folders (images)".to_string(),
            ],
        })
    }

    /// Loads the folder's training and test sets in this format.
    pub fn load(self, dir: &Path) -> Result<Splits, DataError> {
        match self {
            DataFormat::Mnist => Splits::load_mnist(dir),
            DataFormat::Cifar10 => Splits::load_cifar10(dir),
            DataFormat::Npy => Splits::load_npy(dir),
            DataFormat::Images => Splits::load_image_folder(dir),
        }
    }
}
