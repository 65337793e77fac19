//! Files named inside configuration files: paths resolved against the file that names
//! them, and `${NAME:-default}` expanded from the environment.

use std::path::{Path, PathBuf};

/// A `${…}` that cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("`{0}`: `${{` without a closing `}}`")]
    Unclosed(String),
    #[error("`{text}` needs the environment variable {name}, which is not set")]
    Unset { text: String, name: String },
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
