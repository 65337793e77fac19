//! A report folder made ready for a fresh run: created, checked not to hold results
//! already, and given its `meta.json` before the first run.

use std::path::Path;

use crate::model::meta::Meta;
use crate::store::runs::RUNS_FILE;

/// Why a folder cannot take a fresh run.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("{} already holds results: pass --resume {} to finish them, or another --out", .0.display(), .0.display())]
    HasResults(std::path::PathBuf),
    #[error("cannot create {}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Creates `dir` and writes `meta` into it.
pub fn prepare(dir: &Path, meta: &Meta) -> Result<(), FolderError> {
    if dir.join(RUNS_FILE).exists() {
        return Err(FolderError::HasResults(dir.to_owned()));
    }
    let io = |source| FolderError::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    meta.write(dir).map_err(io)
}
