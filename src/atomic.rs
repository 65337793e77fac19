//! Files replaced whole or not at all: written beside their final name and renamed over
//! it, so a full disk, a crash or a kill leaves the previous file (or none), never a
//! truncated summary.json that a later `--baseline` would trip over.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    let mut pending = Pending::create(path)?;
    pending.write_all(bytes.as_ref())?;
    pending.commit()
}

/// A temporary name beside `path`; [`Staged::commit`] renames the file written there over
/// `path`. Dropped without a commit, the temporary file is removed.
pub struct Staged {
    temporary: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Staged {
    pub fn new(path: &Path) -> Staged {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Staged {
            temporary: path.with_file_name(format!(".{name}.{}.tmp", std::process::id())),
            path: path.to_owned(),
            committed: false,
        }
    }

    /// Where to write.
    pub fn temporary(&self) -> &Path {
        &self.temporary
    }

    pub fn commit(mut self) -> std::io::Result<()> {
        std::fs::rename(&self.temporary, &self.path)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// A buffered file written under a [`Staged`] name.
pub struct Pending {
    out: BufWriter<File>,
    staged: Staged,
}

impl Pending {
    pub fn create(path: &Path) -> std::io::Result<Pending> {
        let staged = Staged::new(path);
        let file = File::create(staged.temporary())?;
        Ok(Pending {
            out: BufWriter::with_capacity(1 << 16, file),
            staged,
        })
    }

    /// Flushes and renames over the final name.
    pub fn commit(self) -> std::io::Result<()> {
        let file = self
            .out
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        drop(file);
        self.staged.commit()
    }
}

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_or_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("summary.json");
        write(&path, "old").expect("write");
        let mut pending = Pending::create(&path).expect("create");
        pending.write_all(b"half of the new").expect("write");
        drop(pending);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "old");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
        write(&path, "new").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new");
    }
}
