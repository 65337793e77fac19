//! A report folder made ready for a fresh run: locked for this process, checked not to
//! hold results already (or the user's own files), and given its `meta.json` before the
//! first run.

use std::path::{Path, PathBuf};

use crate::model::meta::{META_FILE, Meta};
use crate::model::summary::{HTML_FILE, JUNIT_FILE, MARKDOWN_FILE, SUMMARY_FILE};
use crate::store::lock::{self, FolderLock, LOCK_FILE, LockError};
use crate::store::runs::RUNS_FILE;
use crate::store::{RESULTS_FILE, RETRIEVED_FILE, TURNS_FILE};

/// Every file ragprobe writes into a report folder; `--force` removes these and no others.
pub const REPORT_FILES: &[&str] = &[
    RUNS_FILE,
    META_FILE,
    SUMMARY_FILE,
    RESULTS_FILE,
    RETRIEVED_FILE,
    TURNS_FILE,
    MARKDOWN_FILE,
    JUNIT_FILE,
    HTML_FILE,
    "diff.html",
    crate::model::meta::MLFLOW_FILE,
];

/// Why a folder cannot take a fresh run.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("{} already holds a report: pass --resume {} to finish it, --force to replace it, or another --out", .0.display(), .0.display())]
    HasResults(PathBuf),
    #[error("{} holds files that are not a ragprobe report ({}); choose an empty or new folder for --out", dir.display(), names.join(", "))]
    NotAReport { dir: PathBuf, names: Vec<String> },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{} is {}: an output cannot overwrite an input; choose another path", out.display(), what)]
    OutputIsInput { out: PathBuf, what: String },
    #[error("cannot prepare {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a command writes, checked against what it reads before anything is touched: an
/// output that is one of the input report folders, lies inside one (merge), or is one of
/// an input folder's own files (`export --out A/runs.jsonl`, `diff --out A/summary.json`)
/// would destroy what it is made from.
pub fn refuse_output_over_inputs(
    out: &Path,
    inputs: &[&Path],
    whole_folders: bool,
) -> Result<(), FolderError> {
    let out_real = real_path(out);
    for input in inputs {
        let input_real = real_path(input);
        let what = if out_real == input_real {
            Some(format!("the input {}", input.display()))
        } else if out_real.starts_with(&input_real) {
            let own_file = out_real.parent() == Some(input_real.as_path())
                && out_real
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| REPORT_FILES.contains(&n) || n == LOCK_FILE);
            (whole_folders || own_file)
                .then(|| format!("inside the input report {}", input.display()))
        } else {
            None
        };
        if let Some(what) = what {
            return Err(FolderError::OutputIsInput {
                out: out.to_owned(),
                what,
            });
        }
    }
    Ok(())
}

/// `path` made absolute with symbolic links and `..` resolved, as far as it exists (an
/// output file usually does not yet: its folder is resolved and its name added).
fn real_path(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => real_path(parent).join(name),
        _ => absolute,
    }
}

/// Locks `dir` (created if missing), checks it can take a fresh run — with `force`, a
/// report already there is removed first — and writes `meta` into it. The lock is held
/// until the returned guard is dropped.
pub fn prepare(dir: &Path, meta: &Meta, force: bool) -> Result<FolderLock, FolderError> {
    // A report folder is locked first, so a live writer is named rather than reported as
    // "already holds a report". Any other folder is checked before the lock file is made,
    // so a user's folder is refused untouched; and again under the lock, for a run that
    // finished in between.
    if !dir.join(META_FILE).is_file() {
        check(dir, force)?;
    }
    let lock = lock::acquire(dir)?;
    check(dir, force)?;
    let io = |source| FolderError::Io {
        path: dir.to_owned(),
        source,
    };
    if force {
        for name in REPORT_FILES {
            match std::fs::remove_file(dir.join(name)) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(io(err)),
                _ => {}
            }
        }
    }
    meta.write(dir).map_err(io)?;
    Ok(lock)
}

/// A folder can take a fresh run when it is missing, empty, or a report folder that was
/// prepared but never ran (only meta.json); with `force`, any report folder.
fn check(dir: &Path, force: bool) -> Result<(), FolderError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(FolderError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != LOCK_FILE)
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    if !dir.join(META_FILE).is_file() {
        let mut shown: Vec<String> = names.into_iter().take(4).collect();
        shown.sort();
        return Err(FolderError::NotAReport {
            dir: dir.to_owned(),
            names: shown,
        });
    }
    let has_results = names.iter().any(|n| n != META_FILE);
    if has_results && !force {
        return Err(FolderError::HasResults(dir.to_owned()));
    }
    Ok(())
}

/// Locks a report folder that already holds a plan, for `--resume`.
pub fn lock_existing(dir: &Path) -> Result<FolderLock, FolderError> {
    Ok(lock::acquire(dir)?)
}
