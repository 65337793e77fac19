//! What several commands share: the async runtime, and opening a report folder.

use std::path::Path;

use crate::error::AppError;
use crate::model::meta::Meta;

/// The one tokio runtime a command runs its async work on.
pub fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(AppError::io("cannot start the async runtime"))
}

/// The `meta.json` of a report folder; a folder without one is not a report.
pub fn report_meta(dir: &Path) -> Result<Meta, AppError> {
    Meta::read(dir).map_err(|source| AppError::NotAReport {
        path: dir.to_owned(),
        source,
    })
}

/// An input file read whole (TREC judgements or topics, labels): a regular file of at most
/// 256 MiB, a byte-order mark dropped; a device, a pipe or anything larger is refused.
pub fn read_input(path: &Path) -> Result<String, AppError> {
    crate::config::files::read_capped(path, crate::config::files::MAX_INPUT_BYTES)
        .map_err(|e| AppError::Usage(format!("cannot read {}: {e}", path.display())))
}
