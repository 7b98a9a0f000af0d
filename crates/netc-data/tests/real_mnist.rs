//! The one test on the real MNIST files, found through `$NETC_DATA/mnist`.
//!
//! Skipped (with a note) on a developer machine without the data; on CI the
//! data must be there, so a missing NETC_DATA fails rather than passing silently.

#[path = "support/netc_data.rs"]
mod data_root;

use netc_data::{Splits, MNIST_FILES};

#[test]
fn real_mnist_loads_and_matches_checksums() {
    let Some(root) = data_root::netc_data() else {
        let on_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!on_ci, "CI is set but NETC_DATA is not: the real MNIST test must run on CI");
        println!("real_mnist_loads_and_matches_checksums: not run (NETC_DATA is not set)");
        return;
    };
    let dir = root.join("mnist");
    let mnist = Splits::load_mnist(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((mnist.train.count, &mnist.train.shape[..]), (60_000, &[1, 28, 28][..]));
    assert_eq!((mnist.test.count, &mnist.test.shape[..]), (10_000, &[1, 28, 28][..]));
    assert_eq!(mnist.train.images.len(), 60_000 * 28 * 28);
    assert_eq!(mnist.test.labels.len(), 10_000);
    let sums: Vec<_> = mnist.checksums.iter().map(|s| (s.name.as_str(), s.sha256.as_str())).collect();
    assert_eq!(sums, MNIST_FILES.to_vec());
    mnist.verify_checksums(&MNIST_FILES).unwrap_or_else(|e| panic!("{e}"));
}
