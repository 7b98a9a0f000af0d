//! Reader for the IDX format (the format of the MNIST files).
//!
//! An IDX file is a 4-byte magic number (`00 00 <type> <ndims>`), `ndims`
//! big-endian u32 dimensions, then the elements in row-major order. Files may
//! be gzip-compressed; we detect that by the 1f 8b signature rather than by
//! name, because people rename and decompress files freely.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;
use sha2::{Digest, Sha256};

use crate::DataError;

/// Largest element count a header may claim. MNIST's biggest file holds 47 M
/// elements; anything beyond 1 GiB is a corrupt header, refused up front.
pub const MAX_ELEMENTS: u64 = 1 << 30;

/// Which kind of IDX file the caller expects; fixes the magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdxKind {
    /// u8 images: magic 0x00000803, dimensions (count, rows, cols).
    Images,
    /// u8 labels: magic 0x00000801, dimension (count).
    Labels,
    /// u8 examples of any shape: magic 0x000008NN with NN ≥ 2 dimensions (count, then the
    /// example's shape), such as `[count, 3, 32, 32]`.
    Examples,
}

impl IdxKind {
    /// The magic number of the kind (of its usual form, for [`IdxKind::Examples`]).
    fn magic(self) -> u32 {
        match self {
            IdxKind::Images | IdxKind::Examples => 0x0000_0803,
            IdxKind::Labels => 0x0000_0801,
        }
    }

    /// How many dimensions a file of this kind with magic number `magic` has, if it is one.
    fn ndims(self, magic: u32) -> Option<usize> {
        match self {
            IdxKind::Images => (magic == 0x0000_0803).then_some(3),
            IdxKind::Labels => (magic == 0x0000_0801).then_some(1),
            IdxKind::Examples => (magic >> 8 == 0x08 && magic & 0xff >= 2).then_some((magic & 0xff) as usize),
        }
    }
}

/// A decoded IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    /// The dimensions from the header, outermost first.
    pub dims: Vec<usize>,
    /// The elements, row-major; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
    /// SHA-256 of the uncompressed file (header and data), lowercase hex, so
    /// callers can record exactly which data they trained on.
    pub sha256: String,
}

/// Reads and validates an IDX file of the given kind, raw or gzip-compressed.
///
/// The header must carry the right magic number and the data must be exactly
/// as long as the dimensions say: a short file is [`DataError::Truncated`],
/// a long one [`DataError::TrailingBytes`].
pub fn read_idx(path: &Path, kind: IdxKind) -> Result<Idx, DataError> {
    let mut input = Uncompressed::open(path)?;

    let mut magic = [0u8; 4];
    let got = input.read_full(&mut magic)?;
    if got < magic.len() {
        let expected = 4 + 4 * kind.ndims(kind.magic()).unwrap_or(1) as u64;
        return Err(DataError::Truncated { path: path.to_path_buf(), expected, found: got as u64 });
    }
    let magic = u32::from_be_bytes(magic);
    let Some(ndims) = kind.ndims(magic) else {
        return Err(DataError::BadMagic { path: path.to_path_buf(), expected: kind.magic(), found: magic });
    };
    let header_len = 4 + 4 * ndims as u64;

    let mut raw_dims = Vec::with_capacity(ndims);
    for _ in 0..ndims {
        let mut dim = [0u8; 4];
        let got = input.read_full(&mut dim)?;
        if got < dim.len() {
            return Err(DataError::Truncated { path: path.to_path_buf(), expected: header_len, found: input.count });
        }
        raw_dims.push(u32::from_be_bytes(dim));
    }

    let too_large = || DataError::TooLarge { path: path.to_path_buf(), dims: raw_dims.clone(), limit: MAX_ELEMENTS };
    let elements = raw_dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(too_large)?;
    let dims = raw_dims.iter().map(|&d| usize::try_from(d)).collect::<Result<Vec<_>, _>>().map_err(|_| too_large())?;
    let expected = header_len + elements;

    // Grow with the data actually present rather than trusting the header
    // with a large allocation up front.
    let mut data = Vec::with_capacity(elements.min(1 << 24) as usize);
    input.read_up_to(elements, &mut data)?;
    if (data.len() as u64) < elements {
        return Err(DataError::Truncated { path: path.to_path_buf(), expected, found: input.count });
    }
    // Reading on also makes the gzip decoder check its trailing CRC.
    if input.read_full(&mut [0u8; 1])? > 0 {
        return Err(DataError::TrailingBytes { path: path.to_path_buf(), expected });
    }

    Ok(Idx { dims, data, sha256: input.finish() })
}

/// SHA-256 (lowercase hex) of a file's uncompressed contents, whatever they are.
pub(crate) fn sha256_uncompressed(path: &Path) -> Result<String, DataError> {
    let mut input = Uncompressed::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    while input.read_full(&mut buf)? > 0 {}
    Ok(input.finish())
}

/// Lowercase hex of a byte string.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]).map(char::from).collect()
}

/// The uncompressed byte stream of a file, hashed and counted as it is read,
/// with read errors turned into [`DataError`]s that name the file.
struct Uncompressed<'a> {
    path: &'a Path,
    reader: Box<dyn Read>,
    gzip: bool,
    hasher: Sha256,
    count: u64,
}

impl<'a> Uncompressed<'a> {
    fn open(path: &'a Path) -> Result<Self, DataError> {
        let mut file = File::open(path).map_err(|e| DataError::io(path, "opening", e))?;
        // Sniff the first two bytes, then put them back in front of the rest.
        let mut sniff = [0u8; 2];
        let mut got = 0;
        while got < sniff.len() {
            match file.read(&mut sniff[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(DataError::io(path, "reading", e)),
            }
        }
        let gzip = sniff[..got] == [0x1f, 0x8b];
        let stream = BufReader::new(Cursor::new(sniff[..got].to_vec()).chain(file));
        let reader: Box<dyn Read> = if gzip { Box::new(MultiGzDecoder::new(stream)) } else { Box::new(stream) };
        Ok(Uncompressed { path, reader, gzip, hasher: Sha256::new(), count: 0 })
    }

    fn error(&self, e: io::Error) -> DataError {
        if self.gzip {
            DataError::Gzip { path: self.path.to_path_buf(), source: e }
        } else {
            DataError::io(self.path, "reading", e)
        }
    }

    /// Fills `buf` as far as the stream allows; returns how many bytes it got.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let mut got = 0;
        while got < buf.len() {
            match self.reader.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        self.hasher.update(&buf[..got]);
        self.count += got as u64;
        Ok(got)
    }

    /// Appends at most `limit` bytes to `out`, stopping early at end of stream.
    fn read_up_to(&mut self, limit: u64, out: &mut Vec<u8>) -> Result<(), DataError> {
        let start = out.len();
        let result = (&mut self.reader).take(limit).read_to_end(out);
        self.hasher.update(&out[start..]);
        self.count += (out.len() - start) as u64;
        result.map(|_| ()).map_err(|e| self.error(e))
    }

    fn finish(self) -> String {
        hex(&self.hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{gzip, images, labels, sha256};
    use std::path::PathBuf;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn reads_raw_images() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = images(2, 3, 4);
        let path = write(&dir, "imgs", &bytes);
        let idx = read_idx(&path, IdxKind::Images).unwrap();
        assert_eq!(idx.dims, vec![2, 3, 4]);
        assert_eq!(idx.data, (0..24).collect::<Vec<u8>>());
        assert_eq!(idx.sha256, sha256(&bytes));
    }

    #[test]
    fn gzip_is_detected_by_content_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = labels(&[3, 1, 4, 1, 5]);
        // A gzip file without .gz and a raw file with .gz both load.
        let zipped = write(&dir, "labels", &gzip(&bytes));
        let raw = write(&dir, "labels.gz", &bytes);
        let a = read_idx(&zipped, IdxKind::Labels).unwrap();
        let b = read_idx(&raw, IdxKind::Labels).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.dims, vec![5]);
        assert_eq!(a.data, vec![3, 1, 4, 1, 5]);
        // The checksum is of the uncompressed contents.
        assert_eq!(a.sha256, sha256(&bytes));
    }

    #[test]
    fn wrong_magic_names_file_and_both_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "labels-as-images", &labels(&[1]));
        let err = read_idx(&path, IdxKind::Images).unwrap_err();
        assert!(
            matches!(&err, DataError::BadMagic { path: p, expected: 0x803, found: 0x801 } if *p == path),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("labels-as-images"), "{msg}");
        assert!(msg.contains("0x00000803") && msg.contains("0x00000801"), "{msg}");
    }

    #[test]
    fn wrong_element_type_is_bad_magic() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = labels(&[1]);
        bytes[2] = 0x0D; // float
        let path = write(&dir, "floats", &bytes);
        let err = read_idx(&path, IdxKind::Labels).unwrap_err();
        assert!(matches!(err, DataError::BadMagic { found: 0x0D01, .. }), "{err:?}");
    }

    #[test]
    fn truncated_data_raw_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = images(2, 2, 2);
        bytes.truncate(bytes.len() - 3);
        for (name, contents) in [("raw", bytes.clone()), ("gz", gzip(&bytes))] {
            let path = write(&dir, name, &contents);
            let err = read_idx(&path, IdxKind::Images).unwrap_err();
            assert!(
                matches!(&err, DataError::Truncated { path: p, expected: 24, found: 21 } if *p == path),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains("truncated"), "{err}");
        }
    }

    #[test]
    fn truncated_header_and_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(&dir, "empty", &[]);
        let err = read_idx(&empty, IdxKind::Labels).unwrap_err();
        assert!(matches!(err, DataError::Truncated { expected: 8, found: 0, .. }), "{err:?}");
        let short = write(&dir, "short", &images(1, 1, 1)[..9]);
        let err = read_idx(&short, IdxKind::Images).unwrap_err();
        assert!(matches!(err, DataError::Truncated { expected: 16, found: 9, .. }), "{err:?}");
    }

    #[test]
    fn trailing_bytes_raw_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = labels(&[1, 2]);
        bytes.push(7);
        for (name, contents) in [("raw", bytes.clone()), ("gz", gzip(&bytes))] {
            let path = write(&dir, name, &contents);
            let err = read_idx(&path, IdxKind::Labels).unwrap_err();
            assert!(
                matches!(&err, DataError::TrailingBytes { path: p, expected: 10 } if *p == path),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn absurd_dimensions_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        for dims in [[u32::MAX; 3], [65_536, 65_536, 2]] {
            let mut bytes = vec![0, 0, 8, 3];
            for d in dims {
                bytes.extend_from_slice(&d.to_be_bytes());
            }
            let path = write(&dir, "huge", &bytes);
            let err = read_idx(&path, IdxKind::Images).unwrap_err();
            assert!(matches!(&err, DataError::TooLarge { dims: d, .. } if d[..] == dims), "{err:?}");
        }
    }

    #[test]
    fn corrupt_gzip_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = gzip(&labels(&[1, 2, 3]));
        let mid = bytes.len() / 2;
        bytes[mid..].iter_mut().for_each(|b| *b ^= 0x5a);
        let path = write(&dir, "bad.gz", &bytes);
        let err = read_idx(&path, IdxKind::Labels).unwrap_err();
        assert!(matches!(&err, DataError::Gzip { path: p, .. } if *p == path), "{err:?}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope");
        let err = read_idx(&path, IdxKind::Labels).unwrap_err();
        assert!(matches!(&err, DataError::Io { path: p, .. } if *p == path), "{err:?}");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn examples_of_any_shape_read_with_their_dimensions() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..24).collect();
        let path = write(&dir, "colour", &crate::testutil::idx(&[2, 3, 2, 2], &data));
        let idx = read_idx(&path, IdxKind::Examples).unwrap();
        assert_eq!((idx.dims, idx.data), (vec![2, 3, 2, 2], data));
        // Images stay three-dimensional; labels are no examples.
        assert!(matches!(read_idx(&path, IdxKind::Images).unwrap_err(), DataError::BadMagic { found: 0x804, .. }));
        let labels = write(&dir, "labels", &labels(&[1, 2]));
        assert!(matches!(read_idx(&labels, IdxKind::Examples).unwrap_err(), DataError::BadMagic { found: 0x801, .. }));
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
    }
}
