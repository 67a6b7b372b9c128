//! A temporary directory removed when dropped (the `tempfile` crate's), named for what it holds.

pub use tempfile::TempDir;

/// A new directory under the system's temporary directory, its name starting with `prefix`.
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir()
        .expect("create temp dir")
}
