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
