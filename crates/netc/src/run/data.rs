//! Data sets as a run reads them: located, loaded, verified, and checked against the model.

use crate::{Error, Model};
use netc_syntax::{Code, Label};
use netc_train::{Provenance, Samples};
use std::path::PathBuf;

/// Where the data comes from.
#[derive(Clone, Debug)]
pub struct DataRequest {
    /// A data set name (`mnist`) or a folder.
    pub name: String,
    /// Looked in first (`--data-dir`).
    pub dir: Option<PathBuf>,
}

/// A loaded data set and the facts a run records about it.
pub struct Data {
    pub mnist: netc_data::Mnist,
    pub folder: PathBuf,
}

impl Data {
    pub fn load(request: &DataRequest) -> Result<Data, Error> {
        let folder = netc_data::locate(&request.name, request.dir.as_deref()).map_err(|e| Error::Io(e.to_string()))?;
        let mnist = netc_data::Mnist::load(&folder).map_err(|e| Error::Io(e.to_string()))?;
        // By name the data must be the canonical MNIST; a folder may hold any data in its format.
        if netc_data::KNOWN_DATASETS.contains(&request.name.as_str()) {
            mnist.verify_checksums().map_err(|e| Error::Io(e.to_string()))?;
        }
        Ok(Data { mnist, folder })
    }

    pub(crate) fn samples(set: &netc_data::Dataset) -> Samples<'_> {
        Samples { images: &set.images, labels: &set.labels, image_len: set.image_len() }
    }

    /// Whether `model` can read this data: its input must be one image, its classes the labels'.
    pub fn check_fits(&self, model: &Model) -> Result<(), Error> {
        let net = model.net();
        let set = &self.mnist.train;
        let (rows, cols) = (set.rows, set.cols);
        if net.input.shape != [1, rows, cols] && net.input.shape != [rows * cols] {
            return Err(model.source_error(
                Code::DataShape
                    .error()
                    .with_message(format!(
                        "the data set's images are [1, {rows}, {cols}], but net `{}` takes {:?}",
                        net.name, net.input.shape
                    ))
                    .with_labels(vec![Label::primary((), net.input.span.range()).with_message("declared here")])
                    .with_notes(vec![format!("help: declare `input {}: [1, {rows}, {cols}]`", net.input.name)]),
            ));
        }
        if net.loss.classes != set.classes {
            return Err(model.source_error(
                Code::DataClasses
                    .error()
                    .with_message(format!(
                        "the data set has {} classes, but the loss has {}",
                        set.classes, net.loss.classes
                    ))
                    .with_labels(vec![Label::primary((), net.loss.span.range()).with_message("this loss")]),
            ));
        }
        Ok(())
    }
}

impl Data {
    /// What `run.json` records about a run's origin: the source file, this data's folder and
    /// the checksum of every data file, and the `--set` overrides.
    pub fn provenance(&self, file: &std::path::Path, set: &[(String, String)]) -> Provenance {
        Provenance {
            source: file.display().to_string(),
            data: self.folder.display().to_string(),
            data_sha256: self.mnist.checksums.iter().map(|c| (c.name.clone(), c.sha256.clone())).collect(),
            set: set.iter().cloned().collect(),
        }
    }
}
