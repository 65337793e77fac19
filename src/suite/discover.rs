//! Finding suites: a suite file itself, or every `.yaml`/`.yml` file below a folder with a
//! top-level `cases:` key (chain and corpus files are skipped). Symbolic links are
//! followed once: a folder reached again through a link loop is not searched again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Where suites are searched when no path is given.
pub const DEFAULT_SUITES: &str = "suites";

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("{} does not exist: give a suite file or a folder of suites", .0.display())]
    Missing(PathBuf),
    #[error("no suites under {}: a suite is a .yaml file with a top-level `cases:` key", .0.display())]
    Empty(PathBuf),
    #[error("cannot list {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The suite files under `path` (default `suites/`), in path order; none is an error.
pub fn suite_files(path: Option<&Path>) -> Result<Vec<PathBuf>, DiscoverError> {
    let root = path.unwrap_or(Path::new(DEFAULT_SUITES));
    if !root.exists() {
        return Err(DiscoverError::Missing(root.to_owned()));
    }
    let files = discover(root).map_err(|source| DiscoverError::Io {
        path: root.to_owned(),
        source,
    })?;
    if files.is_empty() {
        return Err(DiscoverError::Empty(root.to_owned()));
    }
    Ok(files)
}

/// The suite files under `path`: the file itself, or every suite below a folder.
pub fn discover(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    discover_where(path, looks_like_suite)
}

/// The YAML files under `path` (or `path` itself) that `wanted` accepts, each once.
pub fn discover_where(path: &Path, wanted: fn(&Path) -> bool) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut found = Vec::new();
    let mut visited: HashSet<PathBuf> = HashSet::new();
    let mut seen_files: HashSet<PathBuf> = HashSet::new();
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        // A folder reached twice (a link loop, or two links to one place) is searched once.
        let canonical = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        if !visited.insert(canonical) {
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let entry_path = entry?.path();
            if entry_path.is_dir() {
                pending.push(entry_path);
            } else if matches!(
                entry_path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) && entry_path.is_file()
                && wanted(&entry_path)
            {
                let canonical =
                    std::fs::canonicalize(&entry_path).unwrap_or_else(|_| entry_path.clone());
                if seen_files.insert(canonical) {
                    found.push(entry_path);
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A YAML file with a top-level `cases:` key, by its first lines (a suite is small; a
/// huge file is not read whole to find out).
/// A chain file: a top-level key only chains have.
pub fn looks_like_chain(path: &Path) -> bool {
    const KEYS: [&str; 7] = [
        "kind:",
        "retriever:",
        "url:",
        "cmd:",
        "llm:",
        "preset:",
        "prompt_file:",
    ];
    !looks_like_suite(path)
        && crate::config::files::read_capped(path, crate::config::files::MAX_CONFIG_BYTES)
            .map(|text| text.lines().any(|l| KEYS.iter().any(|k| l.starts_with(k))))
            .unwrap_or(false)
}

pub fn looks_like_suite(path: &Path) -> bool {
    use std::io::{BufRead, BufReader};
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    BufReader::new(file)
        .lines()
        .take(100_000)
        .map_while(Result::ok)
        .any(|line| line.starts_with("cases:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn link_loops_are_searched_once_and_each_suite_found_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = dir.path().join("a");
        std::fs::create_dir(&inner).expect("mkdir");
        std::fs::write(inner.join("s.yaml"), "name: s\ncases:\n").expect("suite");
        std::fs::write(inner.join("chain.yaml"), "kind: pipeline\n").expect("chain");
        // a/loop → the root, and a second link to a: a loop and a duplicate path.
        std::os::unix::fs::symlink(dir.path(), inner.join("loop")).expect("link");
        std::os::unix::fs::symlink(&inner, dir.path().join("again")).expect("link");
        let found = discover(dir.path()).expect("discover");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].ends_with("s.yaml"));
    }
}
