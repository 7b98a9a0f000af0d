//! Where the real data sets are, for the tests that use them.

use std::path::PathBuf;

/// `$NETC_DATA`, if set and non-empty. Cargo runs tests from the package
/// folder, but people and CI give a relative NETC_DATA from the workspace
/// root where they ran cargo, so a relative value is taken from there.
pub fn netc_data() -> Option<PathBuf> {
    let value = PathBuf::from(std::env::var_os("NETC_DATA").filter(|v| !v.is_empty())?);
    if value.is_absolute() {
        return Some(value);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    Some(workspace.join(value))
}
