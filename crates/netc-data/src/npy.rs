//! NumPy `.npy` files, and a data set of them: `train_images.npy`, `train_labels.npy`,
//! `test_images.npy`, `test_labels.npy` and optionally `classes.txt` in one folder.
//!
//! A `.npy` file is the magic `\x93NUMPY`, a version (1, 2 or 3), the length of a header, the
//! header — a Python dict literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), }`
//! — and the array's elements in C order. Images are uint8 (`|u1`) or float32 (`<f4`) of any
//! per-example shape; labels are integers of any width.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::idx::{hex, MAX_ELEMENTS};
use crate::mnist::{Dataset, FileChecksum, Splits, Values};
use crate::DataError;

/// The files of a `.npy` data set folder.
pub const NPY_FILES: [&str; 4] = ["train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy"];
/// The optional class names, one a line.
pub const NPY_CLASS_NAMES: &str = "classes.txt";

/// The elements of a `.npy` array.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    Bytes(Vec<u8>),
    Floats(Vec<f32>),
    /// Any integer type, widened.
    Integers(Vec<i64>),
}

/// A decoded `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Npy {
    pub shape: Vec<usize>,
    pub data: NpyData,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
}

/// The element types netc reads: (descr without byte order, bytes per element).
enum Element {
    Byte,
    Float,
    Integer { size: usize, signed: bool },
}

/// Reads a `.npy` file; its length is checked against its header before the data is read.
pub fn read_npy(path: &Path) -> Result<Npy, DataError> {
    let bad = |why: String| DataError::Npy { path: path.to_path_buf(), why };
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::MissingFile {
            dir: path.parent().map_or_else(PathBuf::new, Path::to_path_buf),
            name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        },
        _ => DataError::io(path, "opening", e),
    })?;
    let len = file.metadata().map_err(|e| DataError::io(path, "reading", e))?.len();
    let mut reader = std::io::BufReader::new(file);
    let mut preamble = [0u8; 12];
    let got = read_up_to(&mut reader, &mut preamble).map_err(|e| DataError::io(path, "reading", e))?;
    if got < 10 || &preamble[..6] != b"\x93NUMPY" {
        return Err(bad("not a NumPy .npy file (no \\x93NUMPY magic)".into()));
    }
    let (header_len, start) = match preamble[6] {
        1 => (u64::from(u16::from_le_bytes([preamble[8], preamble[9]])), 10u64),
        2 | 3 if got == 12 => {
            (u64::from(u32::from_le_bytes([preamble[8], preamble[9], preamble[10], preamble[11]])), 12)
        }
        version => return Err(bad(format!("unsupported .npy version {version}"))),
    };
    if header_len > 1 << 20 || start + header_len > len {
        return Err(DataError::Truncated { path: path.to_path_buf(), expected: start + header_len, found: len });
    }
    let mut bytes = preamble[..got].to_vec();
    bytes.resize((start + header_len) as usize, 0);
    if got < bytes.len() {
        reader.read_exact(&mut bytes[got..]).map_err(|e| DataError::io(path, "reading", e))?;
    }
    let header = std::str::from_utf8(&bytes[start as usize..]).map_err(|_| bad("the header is not text".into()))?;
    let descr = field(header, "descr").ok_or_else(|| bad(format!("the header has no 'descr': {header}")))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let (order, kind) = descr.split_at(descr.len().min(1));
    if order == ">" && kind != "u1" && kind != "i1" {
        return Err(bad(format!("big-endian data ('{descr}') is not supported; save it little-endian")));
    }
    let element = match kind {
        "u1" => Element::Byte,
        "f4" => Element::Float,
        "i1" | "i2" | "i4" | "i8" | "u2" | "u4" | "u8" => {
            Element::Integer { size: kind[1..].parse().unwrap_or(1), signed: kind.starts_with('i') }
        }
        _ => {
            return Err(bad(format!(
                "elements of type '{descr}' are not read: use uint8 or float32 (integers for labels)"
            )))
        }
    };
    if field(header, "fortran_order").map(str::trim) != Some("False") {
        return Err(bad("the array is in Fortran order; save it in C order (np.ascontiguousarray)".into()));
    }
    let shape_text = field(header, "shape").ok_or_else(|| bad(format!("the header has no 'shape': {header}")))?;
    let shape = parse_shape(shape_text).ok_or_else(|| bad(format!("cannot read the shape {shape_text}")))?;
    let count = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| bad(format!("the shape {shape:?} exceeds the limit of {MAX_ELEMENTS} elements")))?;
    let size = match element {
        Element::Byte => 1,
        Element::Float => 4,
        Element::Integer { size, .. } => size as u64,
    };
    let expected = start + header_len + count * size;
    if len < expected {
        return Err(DataError::Truncated { path: path.to_path_buf(), expected, found: len });
    }
    if len > expected {
        return Err(DataError::TrailingBytes { path: path.to_path_buf(), expected });
    }
    let mut raw = vec![0u8; (count * size) as usize];
    reader.read_exact(&mut raw).map_err(|e| DataError::io(path, "reading", e))?;
    let mut hasher = Sha256::new();
    hasher.update(&bytes);
    hasher.update(&raw);
    let data = match element {
        Element::Byte => NpyData::Bytes(raw),
        Element::Float => {
            let floats: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            if let Some(index) = floats.iter().position(|v| !v.is_finite()) {
                return Err(bad(format!("element {index} is {}: the data must be finite", floats[index])));
            }
            NpyData::Floats(floats)
        }
        Element::Integer { size, signed } => NpyData::Integers(
            raw.chunks_exact(size)
                .map(|b| {
                    let mut wide = [0u8; 8];
                    wide[..size].copy_from_slice(b);
                    let negative = signed && b[size - 1] & 0x80 != 0;
                    if negative {
                        wide[size..].fill(0xff);
                    }
                    i64::from_le_bytes(wide)
                })
                .collect(),
        ),
    };
    Ok(Npy { shape, data, sha256: hex(&hasher.finalize()) })
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// The text of the value of `key` in the header's dict: up to the next top-level comma.
fn field<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let at = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = header[at + key.len() + 2..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
        if depth == 0 && c == ')' {
            return Some(rest[..=i].trim());
        }
    }
    None
}

/// `(60000, 28, 28)`, `(10,)` or `()`.
fn parse_shape(text: &str) -> Option<Vec<usize>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.parse().ok()).collect()
}

impl Splits {
    /// Loads a folder of `.npy` files ([`NPY_FILES`]): images of uint8 or float32 of shape
    /// `[count, ...example shape]`, integer labels of shape `[count]`. The classes are the lines
    /// of `classes.txt` when the folder has one, else `0 ..= the largest label`.
    pub fn load_npy(dir: &Path) -> Result<Splits, DataError> {
        let [train_images, train_labels, test_images, test_labels] = NPY_FILES.map(|name| dir.join(name));
        let read = |path: &Path| read_npy(path).map(|npy| (path.to_path_buf(), npy));
        let files = [read(&train_images)?, read(&train_labels)?, read(&test_images)?, read(&test_labels)?];
        let names_path = dir.join(NPY_CLASS_NAMES);
        let names = match std::fs::read_to_string(&names_path) {
            Ok(text) => {
                Some(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect::<Vec<_>>())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(DataError::io(&names_path, "reading", e)),
        };
        let largest = files[1..]
            .iter()
            .step_by(2)
            .flat_map(|(_, npy)| match &npy.data {
                NpyData::Integers(v) => v.iter().copied().max(),
                NpyData::Bytes(v) => v.iter().map(|&b| i64::from(b)).max(),
                NpyData::Floats(_) => None,
            })
            .max()
            .unwrap_or(0);
        let classes = names.as_ref().map_or((largest + 1).max(1) as usize, Vec::len);
        if classes == 0 || classes > 256 {
            return Err(DataError::ClassNames {
                path: names_path,
                why: format!("{classes} classes; netc takes 1 to 256"),
            });
        }
        let [(ti, train_x), (tl, train_y), (si, test_x), (sl, test_y)] = files;
        let checksums = [(&ti, &train_x), (&tl, &train_y), (&si, &test_x), (&sl, &test_y)]
            .map(|(path, npy)| FileChecksum {
                name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                path: path.clone(),
                sha256: npy.sha256.clone(),
            })
            .to_vec();
        let train = npy_set(&ti, train_x, &tl, train_y, classes)?;
        let test = npy_set(&si, test_x, &sl, test_y, classes)?;
        if train.shape != test.shape {
            return Err(DataError::ShapeMismatch {
                train: ti,
                train_shape: train.shape,
                test: si,
                test_shape: test.shape,
            });
        }
        let class_names = names.unwrap_or_else(|| (0..classes).map(|c| c.to_string()).collect());
        Ok(Splits { train, test, checksums, class_names })
    }
}

/// One split from its images and labels files.
fn npy_set(images: &Path, x: Npy, labels: &Path, y: Npy, classes: usize) -> Result<Dataset, DataError> {
    let bad = |path: &Path, why: String| DataError::Npy { path: path.to_path_buf(), why };
    let Some((&count, example)) = x.shape.split_first().filter(|(_, rest)| !rest.is_empty()) else {
        return Err(bad(images, format!("images must have a count and an example shape, found shape {:?}", x.shape)));
    };
    let values = match x.data {
        NpyData::Bytes(v) => Values::Bytes(v),
        NpyData::Floats(v) => Values::Floats(v),
        NpyData::Integers(_) => return Err(bad(images, "images must be uint8 or float32".into())),
    };
    let label_values: Vec<i64> = match y.data {
        NpyData::Integers(v) => v,
        NpyData::Bytes(v) => v.into_iter().map(i64::from).collect(),
        NpyData::Floats(_) => return Err(bad(labels, "labels must be integers, found float32".into())),
    };
    if y.shape.len() != 1 || label_values.len() != count {
        return Err(DataError::CountMismatch {
            images: images.to_path_buf(),
            image_count: count,
            labels: labels.to_path_buf(),
            label_count: label_values.len(),
        });
    }
    let mut out = Vec::with_capacity(count);
    for (index, &label) in label_values.iter().enumerate() {
        match u8::try_from(label).ok().filter(|&l| usize::from(l) < classes) {
            Some(l) => out.push(l),
            None => {
                return Err(bad(
                    labels,
                    format!("label {label} at index {index} is out of range: expected 0..={}", classes - 1),
                ))
            }
        }
    }
    Ok(Dataset { images: values, labels: out, count, shape: example.to_vec(), classes })
}

/// Encodes a `.npy` file (version 1, C order) of `descr` elements, for tests and examples.
pub fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // The header is padded with spaces to a multiple of 64 bytes and ends in a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn int64(values: &[i64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// Three training and two test examples of shape [2, 2], float32; labels int64.
    fn write_set(dir: &Path) {
        let train: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 1.0).collect();
        write_npy(&dir.join("train_images.npy"), "<f4", &[3, 2, 2], &floats(&train)).unwrap();
        write_npy(&dir.join("train_labels.npy"), "<i8", &[3], &int64(&[0, 2, 1])).unwrap();
        write_npy(&dir.join("test_images.npy"), "<f4", &[2, 2, 2], &floats(&[0.25; 8])).unwrap();
        write_npy(&dir.join("test_labels.npy"), "<i8", &[2], &int64(&[1, 1])).unwrap();
    }

    #[test]
    fn a_float_folder_loads_with_its_shape_and_classes() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path());
        let set = Splits::load_npy(dir.path()).unwrap();
        assert_eq!((set.train.count, &set.train.shape[..], set.train.classes), (3, &[2, 2][..], 3));
        assert_eq!(set.train.labels, [0, 2, 1]);
        assert_eq!(set.train.images, Values::Floats((0..12).map(|i| i as f32 * 0.5 - 1.0).collect()));
        assert_eq!(set.class_names, ["0", "1", "2"]);
        assert_eq!(crate::DataFormat::detect(dir.path()).unwrap(), crate::DataFormat::Npy);
        // Class names, when given, say how many classes there are.
        std::fs::write(dir.path().join(NPY_CLASS_NAMES), "cat\ndog\nbird\nfish\n").unwrap();
        let set = Splits::load_npy(dir.path()).unwrap();
        assert_eq!((set.train.classes, set.class_names.len()), (4, 4));
    }

    #[test]
    fn uint8_images_and_narrow_labels_read_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        write_npy(&path, "|u1", &[2, 1, 3], &[1, 2, 3, 4, 5, 255]).unwrap();
        let npy = read_npy(&path).unwrap();
        assert_eq!((npy.shape, npy.data), (vec![2, 1, 3], NpyData::Bytes(vec![1, 2, 3, 4, 5, 255])));
        write_npy(&path, "<i2", &[3], &[1, 0, 0xff, 0xff, 7, 0]).unwrap();
        assert_eq!(read_npy(&path).unwrap().data, NpyData::Integers(vec![1, -1, 7]));
    }

    #[test]
    fn malformed_files_are_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.npy");
        let message = |path: &Path| read_npy(path).unwrap_err().to_string();
        std::fs::write(&path, b"PK\x03\x04 not numpy").unwrap();
        assert!(message(&path).contains("bad.npy: not a NumPy .npy file"), "{}", message(&path));
        write_npy(&path, "<f4", &[2, 2], &floats(&[1.0, 2.0, 3.0])).unwrap();
        let err = read_npy(&path).unwrap_err();
        assert!(matches!(err, DataError::Truncated { found, expected, .. } if expected == found + 4), "{err:?}");
        write_npy(&path, "<f4", &[1], &floats(&[1.0, 2.0])).unwrap();
        assert!(matches!(read_npy(&path).unwrap_err(), DataError::TrailingBytes { .. }));
        write_npy(&path, "<f4", &[2], &floats(&[1.0, f32::NAN])).unwrap();
        assert!(message(&path).contains("element 1 is NaN: the data must be finite"), "{}", message(&path));
        write_npy(&path, ">f4", &[1], &[0; 4]).unwrap();
        assert!(message(&path).contains("big-endian"), "{}", message(&path));
        write_npy(&path, "<f8", &[1], &[0; 8]).unwrap();
        assert!(message(&path).contains("'<f8' are not read"), "{}", message(&path));
        write_npy(&path, "<f4", &[4_000_000_000, 4_000_000_000], &[]).unwrap();
        assert!(message(&path).contains("exceeds the limit"), "{}", message(&path));
        let mut fortran = std::fs::read(&path).unwrap();
        let at = fortran.windows(5).position(|w| w == b"False").unwrap();
        fortran[at..at + 5].copy_from_slice(b"True ");
        std::fs::write(&path, fortran).unwrap();
        assert!(message(&path).contains("Fortran order"), "{}", message(&path));
    }

    #[test]
    fn labels_and_counts_are_checked_against_each_other() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path());
        write_npy(&dir.path().join("test_labels.npy"), "<i8", &[2], &int64(&[1, -3])).unwrap();
        let err = Splits::load_npy(dir.path()).unwrap_err().to_string();
        assert!(err.contains("test_labels.npy: label -3 at index 1 is out of range: expected 0..=2"), "{err}");
        write_npy(&dir.path().join("test_labels.npy"), "<i8", &[3], &int64(&[1, 1, 1])).unwrap();
        let err = Splits::load_npy(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::CountMismatch { image_count: 2, label_count: 3, .. }), "{err:?}");
        write_npy(&dir.path().join("test_labels.npy"), "<i8", &[2], &int64(&[1, 1])).unwrap();
        write_npy(&dir.path().join("test_images.npy"), "<f4", &[2, 4], &floats(&[0.0; 8])).unwrap();
        assert!(matches!(Splits::load_npy(dir.path()).unwrap_err(), DataError::ShapeMismatch { .. }));
        std::fs::remove_file(dir.path().join("train_labels.npy")).unwrap();
        let err = Splits::load_npy(dir.path()).unwrap_err();
        assert!(matches!(&err, DataError::MissingFile { name, .. } if name == "train_labels.npy"), "{err:?}");
    }
}
