//! Writing files so that a crash or an error never leaves a half-written one: write a temporary
//! file beside the target, then rename it over the target.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The temporary path used while `path` is being written (same directory, so the rename is
/// atomic on one file system).
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Calls `write` with a temporary path, then renames it over `path`; on any error the temporary
/// file is removed and an existing `path` is left as it was.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temporary_path(path);
    let result = write(&tmp).and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|source| Error::Io {
            path: tmp.to_path_buf(),
            source,
        })
    })
}
