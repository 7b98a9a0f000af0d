//! Helpers for the unit tests: tiny IDX files and a loopback HTTP server.

// The server is shared with the integration tests, hence its place.
#[path = "../tests/support/server.rs"]
mod server;
pub use server::{Reply, Server};

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use crate::idx::hex;

/// Encodes an IDX file: magic `00 00 08 <ndims>`, big-endian dims, data.
pub fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// IDX images: `count` images of `rows x cols`, pixel i = i mod 256.
pub fn images(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let data: Vec<u8> = (0..count * rows * cols).map(|i| i as u8).collect();
    idx(&[count, rows, cols], &data)
}

/// IDX labels with the given values.
pub fn labels(values: &[u8]) -> Vec<u8> {
    idx(&[values.len() as u32], values)
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The uncompressed contents of a small valid MNIST-format data set, in
/// `MNIST_FILES` order: 3 train and 2 test images of 2x3.
pub fn tiny_mnist() -> [(&'static str, Vec<u8>); 4] {
    [
        ("train-images-idx3-ubyte", images(3, 2, 3)),
        ("train-labels-idx1-ubyte", labels(&[0, 9, 4])),
        ("t10k-images-idx3-ubyte", images(2, 2, 3)),
        ("t10k-labels-idx1-ubyte", labels(&[1, 2])),
    ]
}

/// Writes the tiny data set into `dir`, gzipped (`NAME.gz`) or raw (`NAME`).
pub fn write_tiny_mnist(dir: &Path, gzipped: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in tiny_mnist() {
        if gzipped {
            std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
