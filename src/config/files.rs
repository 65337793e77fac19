//! Configuration files and the files they name: read safely (regular files only, a size
//! cap, a UTF-8 byte-order mark dropped, bad UTF-8 reported at its line and column), paths
//! resolved against the file that names them, and `${NAME:-default}` expanded from the
//! environment.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::config::problem::Problem;

/// The largest suite, chain or prompt file read: far above any hand-written one.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// The largest input file of another kind read whole (a trace export, TREC judgements or
/// topics, labels, a report's summary.json): 256 MiB.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// A `${…}` that cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("`{0}`: `${{` without a closing `}}`")]
    Unclosed(String),
    #[error("`{text}` needs the environment variable {name}, which is not set")]
    Unset { text: String, name: String },
}

/// Why a file could not be read as text.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file (a folder, device or pipe)")]
    NotRegular,
    #[error("more than the {limit} bytes read at most")]
    TooLarge { limit: u64 },
    #[error("not UTF-8 text: an invalid byte")]
    NotUtf8 { line: usize, column: usize },
}

impl ReadError {
    /// As a configuration problem about `path`, which is a `what` ("suite", "chain file").
    pub fn problem(self, path: &Path, what: &str) -> Problem {
        let problem = Problem::new(path, format!("cannot read {what}: {self}"));
        match self {
            ReadError::NotUtf8 { line, column } => {
                problem.at(line, column).hint("save the file as UTF-8")
            }
            _ => problem,
        }
    }
}

/// Opens a regular file of at most `limit` bytes; reading stops one byte past the limit,
/// so the cap holds even if the file grows while it is read.
pub fn open_capped(path: &Path, limit: u64) -> Result<std::io::Take<std::fs::File>, ReadError> {
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(ReadError::NotRegular);
    }
    if metadata.len() > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(std::fs::File::open(path)?.take(limit + 1))
}

/// Reads a configuration file as text (see [`read_capped`]), as a problem to report.
pub fn read_text(path: &Path, what: &str) -> Result<String, Problem> {
    read_capped(path, MAX_CONFIG_BYTES).map_err(|err| err.problem(path, what))
}

/// Reads a file as UTF-8 text. A device, a FIFO or a folder is refused (reading
/// `/dev/zero` never ends), a file over `limit` bytes too; a leading byte-order mark is
/// dropped (editors on Windows write one).
pub fn read_capped(path: &Path, limit: u64) -> Result<String, ReadError> {
    let mut bytes = Vec::new();
    open_capped(path, limit)?.read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    if bytes.starts_with(b"\xef\xbb\xbf") {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|err| {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        ReadError::NotUtf8 {
            line: valid.iter().filter(|b| **b == b'\n').count() + 1,
            column: valid.iter().rev().take_while(|b| **b != b'\n').count() + 1,
        }
    })
}

/// `relative` as written in the file `from`, resolved against that file's folder, with
/// `a/b/../c` folded to `a/c` so messages show short paths.
pub fn resolve(from: &Path, relative: &Path) -> PathBuf {
    let joined = from.parent().unwrap_or(Path::new("")).join(relative);
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if matches!(
                    out.components().next_back(),
                    Some(std::path::Component::Normal(_))
                ) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `${NAME}` and `${NAME:-default}` in a URL or model name, from the environment, so one chain file
/// serves a laptop and CI (`url: ${CHROMA_URL:-http://127.0.0.1:8000}`).
pub fn expand_env(text: &str) -> Result<String, EnvError> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| EnvError::Unclosed(text.to_owned()))?;
        let (name, default) = match after[..end].split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (&after[..end], None),
        };
        match (std::env::var(name).ok().filter(|v| !v.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(EnvError::Unset {
                    text: text.to_owned(),
                    name: name.to_owned(),
                });
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_take_environment_variables_with_defaults() {
        assert_eq!(expand_env("http://h:1/v1").as_deref(), Ok("http://h:1/v1"));
        assert_eq!(
            expand_env("${RAGPROBE_TEST_UNSET_VAR:-http://127.0.0.1:8000}/v1").as_deref(),
            Ok("http://127.0.0.1:8000/v1")
        );
        let path = std::env::var("PATH").unwrap_or_default();
        assert_eq!(expand_env("${PATH}").as_deref(), Ok(path.as_str()));
        assert!(matches!(
            expand_env("${RAGPROBE_TEST_UNSET_VAR}"),
            Err(EnvError::Unset { .. })
        ));
        assert!(matches!(expand_env("${OPEN"), Err(EnvError::Unclosed(_))));
    }

    #[test]
    fn files_are_read_as_bounded_utf8_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bom = dir.path().join("bom.yaml");
        std::fs::write(&bom, b"\xef\xbb\xbfname: x\n").expect("write");
        assert_eq!(read_text(&bom, "suite").expect("read"), "name: x\n");
        let latin1 = dir.path().join("latin1.yaml");
        std::fs::write(&latin1, b"name: x\nq: caf\xe9\n").expect("write");
        let err = read_text(&latin1, "suite").expect_err("not UTF-8");
        assert_eq!((err.line, err.column), (Some(2), Some(7)), "{err}");
        let err = read_text(dir.path(), "suite").expect_err("a folder");
        assert!(err.message.contains("not a regular file"), "{err}");
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'#'; 100]).expect("write");
        let err = read_capped(&big, 10).expect_err("too big");
        assert!(matches!(err, ReadError::TooLarge { limit: 10 }), "{err}");
    }

    #[test]
    fn paths_resolve_against_the_naming_file() {
        assert_eq!(
            resolve(
                Path::new("suites/a/suite.yaml"),
                Path::new("../corpus.jsonl")
            ),
            PathBuf::from("suites/corpus.jsonl")
        );
    }
}
