//! Data sets as a run reads them: located, loaded, verified, and checked against the model.

use crate::{Error, Model};
use netc_data::DataFormat;
use netc_syntax::{Code, Label};
use netc_train::{Provenance, Samples};
use std::path::PathBuf;

/// Where the data comes from.
#[derive(Clone, Debug)]
pub struct DataRequest {
    /// A data set name (`mnist`, `cifar10`) or a folder.
    pub name: String,
    /// Looked in first (`--data-dir`).
    pub dir: Option<PathBuf>,
    /// The folder's format; detected from its files when not given (`--data-format`).
    pub format: Option<DataFormat>,
}

/// A loaded data set and the facts a run records about it.
pub struct Data {
    pub set: netc_data::Splits,
    pub folder: PathBuf,
}

impl Data {
    pub fn load(request: &DataRequest) -> Result<Data, Error> {
        let io = |e: netc_data::DataError| Error::Io(e.to_string());
        let folder = netc_data::locate(&request.name, request.dir.as_deref()).map_err(|e| match &e {
            netc_data::DataError::NotFound { name, .. } => {
                Error::DataNotFound { name: name.clone(), message: e.to_string() }
            }
            _ => io(e),
        })?;
        let format = match (request.format, DataFormat::named(&request.name)) {
            (Some(format), _) | (None, Some(format)) => format,
            (None, None) => DataFormat::detect(&folder).map_err(io)?,
        };
        let set = format.load(&folder).map_err(io)?;
        // By name MNIST must be the canonical files; a folder may hold any data in its format.
        // CIFAR-10's published checksum is of its archive, verified when it is fetched.
        if request.name == DataFormat::Mnist.name() {
            set.verify_checksums(&netc_data::MNIST_FILES).map_err(io)?;
        }
        Ok(Data { set, folder })
    }

    pub(crate) fn samples(set: &netc_data::Dataset) -> Samples<'_> {
        let images = match &set.images {
            netc_data::Values::Bytes(v) => netc_train::Values::Bytes(v),
            netc_data::Values::Floats(v) => netc_train::Values::Floats(v),
        };
        Samples { images, labels: &set.labels, image_len: set.image_len() }
    }

    /// Whether `model` can read this data: its input must be one example (of the same shape,
    /// or flattened), its classes the labels'.
    pub fn check_fits(&self, model: &Model) -> Result<(), Error> {
        let net = model.net();
        let set = &self.set.train;
        if net.input.shape != set.shape && net.input.shape != [set.image_len()] {
            let shape = set.shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
            return Err(model.source_error(
                Code::DataShape
                    .error()
                    .with_message(format!(
                        "the data set's examples are [{shape}], but net `{}` takes {:?}",
                        net.name, net.input.shape
                    ))
                    .with_labels(vec![Label::primary((), net.input.span.range()).with_message("declared here")])
                    .with_notes(vec![format!("help: declare `input {}: [{shape}]`", net.input.name)]),
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
            data_sha256: self.set.checksums.iter().map(|c| (c.name.clone(), c.sha256.clone())).collect(),
            set: set.iter().cloned().collect(),
        }
    }
}
