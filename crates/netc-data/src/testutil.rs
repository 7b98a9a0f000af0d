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

/// A tar archive (ustar headers) of `(path, contents)` members, as the CIFAR-10 archive is laid out.
pub fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, contents) in members {
        let mut header = [0u8; 512];
        header[..path.len()].copy_from_slice(path.as_bytes());
        header[100..107].copy_from_slice(b"0000644");
        header[124..135].copy_from_slice(format!("{:011o}", contents.len()).as_bytes());
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(contents);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// A small CIFAR-10-format set: `train` and `test` records whose pixels are `(seed + i) mod 256`
/// and whose labels cycle through the classes.
pub fn cifar_records(count: usize, seed: usize) -> Vec<(u8, Vec<u8>)> {
    (0..count).map(|k| ((k % 10) as u8, (0..3072).map(|i| ((seed + k * 7 + i) % 256) as u8).collect())).collect()
}

pub const CIFAR_NAMES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
