//! One writer per report folder: an advisory lock on `DIR/.ragprobe.lock`, held from
//! before the folder is prepared until the command ends. The kernel drops the lock when
//! its process dies, so a killed run never leaves a lock that blocks the next one; the
//! file stays behind and says who held it last.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub const LOCK_FILE: &str = ".ragprobe.lock";

/// Held while a command writes into a report folder; dropping it releases the lock.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
    dir: PathBuf,
}

impl FolderLock {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{} is being written by another ragprobe ({holder}); wait for it to finish, or choose another --out", dir.display())]
    Held { dir: PathBuf, holder: String },
    #[error("cannot lock {}", dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Takes the write lock of `dir` (created if missing), or says who holds it.
pub fn acquire(dir: &Path) -> Result<FolderLock, LockError> {
    let io = |source| LockError::Io {
        dir: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LockError::Held {
                dir: dir.to_owned(),
                holder: if holder.is_empty() {
                    "holder unknown".to_owned()
                } else {
                    holder.to_owned()
                },
            });
        }
        Err(TryLockError::Error(source)) => return Err(io(source)),
    }
    // Ours now: say who we are, for the next one who finds it taken.
    let holder = format!(
        "pid {}, started {}: {}",
        std::process::id(),
        humantime::format_rfc3339_seconds(SystemTime::now()),
        command_line()
    );
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(holder.as_bytes()).map_err(io)?;
    Ok(FolderLock {
        _file: file,
        dir: dir.to_owned(),
    })
}

/// The program and its subcommand (`ragprobe run`), shown to whoever finds the lock. Not
/// the whole command line: flags may carry credentials (`--otlp http://user:pw@…`), and
/// the lock file stays in the report folder.
fn command_line() -> String {
    std::env::args()
        .take(2)
        .map(|arg| {
            let name = std::path::Path::new(&arg)
                .file_name()
                .map_or(arg.clone(), |n| n.to_string_lossy().into_owned());
            name.chars()
                .filter(|c| !c.is_control())
                .take(40)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_holder_and_a_dropped_lock_is_free() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = acquire(dir.path()).expect("first lock");
        let err = acquire(dir.path()).expect_err("held");
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("another ragprobe"), "{text}");
        drop(first);
        let again = acquire(dir.path()).expect("free after drop");
        assert_eq!(again.dir(), dir.path());
    }
}
