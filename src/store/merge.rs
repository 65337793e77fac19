//! Combining the `runs.jsonl` of shard folders into one, in plan order (case by case, run
//! by run), each run once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::store::runs::{RunReader, RunWriter};

#[derive(Debug, thiserror::Error)]
#[error("cannot merge {}", path.display())]
pub struct MergeError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Writes every run of `dirs` into `out`, ordered by `case_order`; returns how many.
pub fn combine(dirs: &[PathBuf], out: &Path, case_order: &[String]) -> Result<u32, MergeError> {
    let order: HashMap<&str, usize> = case_order
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut records = Vec::new();
    for dir in dirs {
        let fail = |source| MergeError {
            path: dir.clone(),
            source,
        };
        for record in RunReader::open(dir).map_err(fail)? {
            records.push(record.map_err(fail)?);
        }
    }
    records.sort_by_key(|r| {
        (
            order.get(r.case.as_str()).copied().unwrap_or(usize::MAX),
            r.run,
        )
    });
    records.dedup_by_key(|r| (r.case.clone(), r.run));
    let fail = |source| MergeError {
        path: out.to_owned(),
        source,
    };
    let mut writer = RunWriter::open(out).map_err(fail)?;
    for record in &records {
        writer.append(record).map_err(fail)?;
    }
    Ok(records.len() as u32)
}
