//! Helpers shared by the integration tests.

use std::path::Path;

/// Writes an IDX file: big-endian magic and dimensions, then the bytes.
fn write_idx(path: &Path, magic: u32, dims: &[u32], data: &[u8]) {
    let mut bytes = magic.to_be_bytes().to_vec();
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// A learnable data set using 3 of MNIST's 10 classes of 6×6 images: class k lights up band k, plus noise.
pub fn synthetic_mnist(dir: &Path, train: usize, test: usize) {
    let make = |count: usize, salt: usize| {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..count {
            let class = (i * 7 + salt) % 3;
            labels.push(class as u8);
            for p in 0..36 {
                let noise = ((i * 31 + p * 17 + salt) % 40) as u8;
                images.push(if p / 12 == class { 200 + noise / 2 } else { noise });
            }
        }
        (images, labels)
    };
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, count, salt) in [("train", train, 0), ("t10k", test, 1)] {
        let (images, labels) = make(count, salt);
        write_idx(&dir.join(format!("{prefix}-images-idx3-ubyte")), 0x803, &[count as u32, 6, 6], &images);
        write_idx(&dir.join(format!("{prefix}-labels-idx1-ubyte")), 0x801, &[count as u32], &labels);
    }
}
