//! Any bytes as an IDX file, raw or gzip, of either kind: a clear error or the data, never a
//! panic or an allocation the header alone asks for.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netc_data::{read_idx, IdxKind};
use std::io::Write;

fuzz_target!(|bytes: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("a scratch file");
    file.write_all(bytes).expect("write the input");
    for kind in [IdxKind::Images, IdxKind::Labels] {
        if let Ok(idx) = read_idx(file.path(), kind) {
            let elements: usize = idx.dims.iter().product();
            assert_eq!(elements, idx.data.len(), "the data must be as long as the header says");
        }
    }
});
