//! TensorBoard event files: the run's scalars as TensorBoard reads them, next to `metrics.csv`.
//!
//! An event file is a sequence of TFRecords (the data's length as a little-endian u64, the
//! masked CRC-32C of those 8 bytes, the data, the masked CRC-32C of the data), each holding one
//! `Event` protobuf: first the file version, then one summary of scalars per record. The one
//! crate on crates.io that writes them (`tensorboard-rs`) pulls in `protobuf` 2 and an image
//! library, so the three messages are declared here for `prost`.
//!
//! Epoch scalars (`epoch/<metrics.csv column>`) have the epoch as their step; the training loss
//! (`step/train_loss`) the optimizer step. A resumed run keeps the records up to its checkpoint
//! and appends after them, so no step appears twice even when the process was killed after its
//! last checkpoint.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file version TensorBoard expects in a file's first event.
pub const FILE_VERSION: &str = "brain.Event:2";
/// The prefix of the tags whose step is an epoch; other tags are keyed by optimizer step.
pub const EPOCH_TAGS: &str = "epoch/";
/// The tag of the training loss written every N steps.
pub const STEP_LOSS_TAG: &str = "step/train_loss";

/// `tensorflow.Event`, with the fields netc writes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

/// What an [`Event`] holds.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`: tagged values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` holding a scalar (`simple_value`, a member of its `value` oneof).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The CRC TFRecord stores: CRC-32C rotated and offset, so that a CRC of data holding CRCs is
/// not itself trivially a CRC.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = CRC32C.checksum(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// `data` framed as one TFRecord.
fn record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// The events of an event file, each CRC verified.
pub fn read_events(path: &Path) -> Result<Vec<Event>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let corrupt = |at: usize, what: &str| {
        format!("{}: byte {at}: {what}: not a TensorBoard event file, or damaged", path.display())
    };
    let mut events = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = bytes.get(at..at + 12).ok_or_else(|| corrupt(at, "a record cut short"))?;
        let (length, length_crc) = header.split_at(8);
        if masked_crc(length).to_le_bytes() != length_crc {
            return Err(corrupt(at, "the record length's CRC does not match"));
        }
        let length = usize::try_from(u64::from_le_bytes(length.try_into().unwrap_or_default()))
            .map_err(|_| corrupt(at, "a record longer than memory"))?;
        let end = length.checked_add(16).and_then(|n| at.checked_add(n)).filter(|&end| end <= bytes.len());
        let end = end.ok_or_else(|| corrupt(at, "a record cut short"))?;
        let (data, data_crc) = bytes[at + 12..end].split_at(length);
        if masked_crc(data).to_le_bytes() != data_crc {
            return Err(corrupt(at, "the record's CRC does not match"));
        }
        events.push(prost::Message::decode(data).map_err(|e| corrupt(at, &format!("not an event ({e})")))?);
        at = end;
    }
    Ok(events)
}

/// Appends events to a run folder's event file.
pub struct EventWriter {
    file: File,
    path: PathBuf,
}

impl EventWriter {
    /// A new event file at `path` holding only the file version.
    pub fn create(path: &Path) -> Result<EventWriter, String> {
        crate::checkpoint::write_atomic(path, &record(&prost::Message::encode_to_vec(&version_event())))?;
        EventWriter::append_to(path)
    }

    /// The event file of a run resumed at `epoch` epochs and `step` steps: the records of an
    /// earlier process up to that point are kept (rewritten atomically), later ones dropped,
    /// since the resumed run writes them again. A folder without one gets a new one.
    pub fn resume(path: &Path, epoch: usize, step: u64) -> Result<EventWriter, String> {
        if !path.exists() {
            return EventWriter::create(path);
        }
        let kept: Vec<u8> = read_events(path)?
            .into_iter()
            .filter(|event| match &event.what {
                Some(What::Summary(summary)) => {
                    let epochs = summary.value.iter().any(|v| v.tag.starts_with(EPOCH_TAGS));
                    let last = if epochs { epoch as i64 } else { i64::try_from(step).unwrap_or(i64::MAX) };
                    event.step <= last
                }
                _ => true,
            })
            .flat_map(|event| record(&prost::Message::encode_to_vec(&event)))
            .collect();
        crate::checkpoint::write_atomic(path, &kept)?;
        EventWriter::append_to(path)
    }

    fn append_to(path: &Path) -> Result<EventWriter, String> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(EventWriter { file, path: path.to_path_buf() })
    }

    /// One event of scalars at `step`, stamped with the current time.
    pub fn scalars(&mut self, step: i64, values: &[(&str, f64)]) -> Result<(), String> {
        let value = values
            .iter()
            .map(|&(tag, value)| SummaryValue { tag: tag.to_string(), simple_value: Some(value as f32) })
            .collect();
        let event = Event { wall_time: now(), step, what: Some(What::Summary(Summary { value })) };
        self.file
            .write_all(&record(&prost::Message::encode_to_vec(&event)))
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    /// Flushes the file to disk, as the checkpoint it goes with is.
    pub fn sync(&self) -> Result<(), String> {
        self.file.sync_data().map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

fn version_event() -> Event {
    Event { wall_time: now(), step: 0, what: Some(What::FileVersion(FILE_VERSION.to_string())) }
}

/// Seconds since the Unix epoch, as TensorBoard's wall times are.
fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_masked_crc_is_tensorflows() {
        // CRC-32C of "123456789" is 0xe3069283, the standard check value; masked, 0xc78ab0e5.
        assert_eq!(CRC32C.checksum(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn a_resume_keeps_the_records_up_to_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.out.tfevents.netc");
        let mut writer = EventWriter::create(&path).unwrap();
        for step in [10, 20, 30] {
            writer.scalars(step, &[(STEP_LOSS_TAG, 0.5)]).unwrap();
        }
        writer.scalars(1, &[("epoch/test_error", 0.25), ("epoch/test_loss", 0.75)]).unwrap();
        writer.scalars(2, &[("epoch/test_error", 0.125)]).unwrap();
        drop(writer);
        let mut writer = EventWriter::resume(&path, 1, 20).unwrap();
        writer.scalars(30, &[(STEP_LOSS_TAG, 0.25)]).unwrap();
        let events = read_events(&path).unwrap();
        assert_eq!(events[0].what, Some(What::FileVersion(FILE_VERSION.into())));
        let steps: Vec<(i64, String, f32)> = events[1..]
            .iter()
            .flat_map(|e| match &e.what {
                Some(What::Summary(s)) => {
                    s.value.iter().map(|v| (e.step, v.tag.clone(), v.simple_value.unwrap())).collect()
                }
                _ => vec![],
            })
            .collect();
        let expected = [
            (10, STEP_LOSS_TAG, 0.5),
            (20, STEP_LOSS_TAG, 0.5),
            (1, "epoch/test_error", 0.25),
            (1, "epoch/test_loss", 0.75),
            (30, STEP_LOSS_TAG, 0.25),
        ];
        assert_eq!(steps, expected.map(|(s, t, v)| (s, t.to_string(), v)));
    }

    #[test]
    fn damaged_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events");
        let mut writer = EventWriter::create(&path).unwrap();
        writer.scalars(1, &[(STEP_LOSS_TAG, 1.0)]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for (at, what) in [(0, "length's CRC"), (bytes.len() - 6, "record's CRC")] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            std::fs::write(&path, &damaged).unwrap();
            let err = read_events(&path).unwrap_err();
            assert!(err.contains(what), "{err}");
        }
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        assert!(read_events(&path).unwrap_err().contains("cut short"));
        // A length whose own CRC holds but that no file can: refused, not added up past the end.
        let huge = u64::MAX.to_le_bytes();
        std::fs::write(&path, [&huge[..], &masked_crc(&huge).to_le_bytes()].concat()).unwrap();
        assert!(read_events(&path).unwrap_err().contains("cut short"));
    }
}
