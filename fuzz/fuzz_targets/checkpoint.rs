//! Any bytes as a weights file or checkpoint: a clear error or tensors that are what the file
//! claims (finite, checksummed, the net's names and shapes), never a panic or an allocation the
//! header alone asks for.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netc_train::{checkpoint, Needs};
use std::io::Write;

fuzz_target!(|bytes: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("a scratch file");
    file.write_all(bytes).expect("write the input");
    let path = file.path();
    // The parameters of the seed files' net.
    let expected = [("conv1.weight".to_string(), vec![2, 1, 1, 1]), ("conv1.bias".to_string(), vec![2])];
    if let Ok((tensors, _)) = checkpoint::load(path) {
        for (name, tensor) in &tensors {
            let elements: usize = tensor.shape().iter().product();
            assert_eq!(elements, tensor.len(), "`{name}` must hold as many values as its shape says");
            assert!(tensor.data().iter().all(|v| v.is_finite()), "`{name}` must be finite");
        }
    }
    // What the seed files' net needs, and nothing: each must be verified, never assumed.
    let none = Needs { mean: None, mean_norm: false, whitening: None };
    let all = Needs { mean: Some(3), mean_norm: true, whitening: Some(3) };
    for needs in [none, all] {
        if let Ok(state) = checkpoint::load_state(path, &expected, needs) {
            assert_eq!(state.params.len(), expected.len());
            assert_eq!(state.stats.mean.as_ref().map(|m| m.len()), needs.mean);
            assert_eq!(state.stats.whitening.as_ref().map(|w| w.len()), needs.whitening.map(|n| n * n));
        }
        if let Ok(model) = checkpoint::load_model(path, &expected, needs) {
            let shapes: Vec<&[usize]> = model.params.iter().map(|(_, p)| p.shape()).collect();
            assert_eq!(shapes, [&[2, 1, 1, 1][..], &[2][..]]);
        }
    }
});
