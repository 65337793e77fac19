//! Appending a case to a suite file (created if missing), for `import` and `repro
//! --save-case`. The case is written by a YAML emitter, never by pasting text: nothing in
//! a trace or a question (newlines, quotes, `\r`, U+2028) can add keys or cases. Comments
//! above the case are single lines with every line break removed. The file is written only
//! if it still parses as a suite holding exactly one more case, with the new id last, and
//! it is replaced atomically.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::suite::schema::{AnswerCheck, SuiteSpec};

/// A case to append.
#[derive(Debug, Clone, Serialize)]
pub struct NewCase {
    /// Filled in by [`append`]: the wanted id, made unique in the file.
    pub id: String,
    /// A single question (empty for a conversation).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub question: String,
    /// A conversation's turns (empty for a single question).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<NewTurn>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<AnswerExpectation>,
}

/// A turn of an appended conversation: history (a scripted answer) or the turn tested.
#[derive(Debug, Clone, Serialize)]
pub struct NewTurn {
    pub question: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<AnswerExpectation>,
}

/// `expect: {answer: …}`: the one expectation a drafted case carries.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerExpectation {
    pub answer: AnswerCheck,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(
        "{}: `cases:` must be the last top-level key, as a block list, for cases to be appended",
        .0.display()
    )]
    CasesNotLast(PathBuf),
    #[error("{}: the case would not parse: {reason}", path.display())]
    WouldNotParse { path: PathBuf, reason: String },
    #[error("cannot write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Appends `case` to the suite at `path`, under `comments`. A missing file becomes a new
/// suite whose chain is `chain` (or a placeholder to edit). Returns the id written:
/// `case.id`, or `case.id-2`, `-3`… when taken.
pub fn append(
    path: &Path,
    chain: Option<&Path>,
    comments: &[String],
    mut case: NewCase,
) -> Result<String, AppendError> {
    let existing =
        match crate::config::files::read_capped(path, crate::config::files::MAX_CONFIG_BYTES) {
            Ok(text) => Some(text),
            Err(crate::config::files::ReadError::Io(err))
                if err.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(source) => {
                return Err(AppendError::Io {
                    path: path.to_owned(),
                    source: std::io::Error::other(source.to_string()),
                });
            }
        };
    let mut text = match &existing {
        Some(text) => {
            check_cases_last(text, path)?;
            let mut text = text.clone();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text
        }
        None => new_suite(chain.map(|c| chain_from(path, c)).as_deref()),
    };
    let taken: Vec<String> = existing
        .as_deref()
        .and_then(|t| serde_yaml::from_str::<SuiteSpec>(t).ok())
        .map(|s| s.cases.into_iter().map(|c| c.id).collect())
        .unwrap_or_default();
    let base = case.id.clone();
    let mut n = 2;
    while taken.contains(&case.id) {
        case.id = format!("{base}-{n}");
        n += 1;
    }
    for comment in comments {
        text.push_str("  # ");
        text.push_str(&one_line(comment));
        text.push('\n');
    }
    let yaml = serde_yaml::to_string(&[&case]).map_err(|e| AppendError::WouldNotParse {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    for line in yaml.lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    // Only a file that parses with exactly the one new case at the end is written.
    let parsed =
        serde_yaml::from_str::<SuiteSpec>(&text).map_err(|e| AppendError::WouldNotParse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if parsed.cases.len() != taken.len() + 1 || parsed.cases.last().map(|c| &c.id) != Some(&case.id)
    {
        return Err(AppendError::WouldNotParse {
            path: path.to_owned(),
            reason: "the file would not hold exactly one more case".into(),
        });
    }
    write_atomically(path, &text).map_err(|source| AppendError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(case.id)
}

/// A comment line: every line or paragraph separator and control character becomes a
/// space, so the text cannot leave the comment.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if crate::invisible::is_layout_control(c) {
                ' '
            } else {
                c
            }
        })
        .collect()
}

fn check_cases_last(text: &str, path: &Path) -> Result<(), AppendError> {
    let last_key = text
        .lines()
        .rev()
        .find(|l| l.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && l.contains(':'))
        .unwrap_or("");
    if last_key.trim_end() != "cases:" {
        return Err(AppendError::CasesNotLast(path.to_owned()));
    }
    Ok(())
}

/// `chain` (relative to where the command runs) as the suite at `suite` names it: relative
/// to the suite file's folder, as suites resolve their chain.
pub fn chain_from(suite: &Path, chain: &Path) -> PathBuf {
    let absolute = |p: &Path| -> Vec<std::ffi::OsString> {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_owned())
            .components()
            .map(|c| c.as_os_str().to_owned())
            .collect()
    };
    let target = absolute(chain);
    // `s.yaml` has the parent "": the current folder, which `absolute` does not take.
    let folder = suite
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = absolute(folder);
    let common = target.iter().zip(&base).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return target.iter().collect();
    }
    let mut relative = PathBuf::new();
    for _ in common..base.len() {
        relative.push("..");
    }
    for part in &target[common..] {
        relative.push(part);
    }
    relative
}

fn new_suite(chain: Option<&Path>) -> String {
    let chain = chain.map_or(
        "chain.yaml   # EDIT: the chain these cases run against".to_owned(),
        |p| {
            serde_yaml::to_string(&p.display().to_string())
                .map(|s| s.trim_end().to_owned())
                .unwrap_or_default()
        },
    );
    format!(
        "# Regression cases imported by ragprobe (`import`, `repro --save-case`).\n\
         name: imported-regressions\n\
         chain: {chain}\n\
         runs: 20\n\
         cases:\n"
    )
}

/// Writes beside the file and renames over it, so a crash leaves the old file or the new
/// one, never half of one.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".ragprobe-tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_suite_names_its_chain_from_its_own_folder() {
        assert_eq!(
            chain_from(
                Path::new("suites/regr.yaml"),
                Path::new("suites/chains/c.yaml")
            ),
            PathBuf::from("chains/c.yaml")
        );
        assert_eq!(
            chain_from(
                Path::new("/tmp/x/regr.yaml"),
                Path::new("/work/chains/c.yaml")
            ),
            PathBuf::from("../../work/chains/c.yaml")
        );
        // Found by a hostile tester: a suite with no folder in its path (`s.yaml`) got the
        // chain as an absolute path.
        assert_eq!(
            chain_from(Path::new("s.yaml"), Path::new("chains/c.yaml")),
            PathBuf::from("chains/c.yaml")
        );
    }

    fn case(id: &str, question: &str) -> NewCase {
        NewCase {
            id: id.into(),
            question: question.into(),
            turns: Vec::new(),
            tags: vec!["imported".into()],
            expect: None,
        }
    }

    #[test]
    fn hostile_text_stays_inside_its_value_and_its_comment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.yaml");
        let question = "q\n  - id: injected\n    question: x\r\u{2028}- id: also";
        let comment =
            "observed: 4\n  - id: injected-by-comment\n    question: y\u{2028}z".to_owned();
        let id = append(&path, None, &[comment], case("imported-1", question)).expect("append");
        assert_eq!(id, "imported-1");
        let text = std::fs::read_to_string(&path).expect("read");
        let spec: SuiteSpec = serde_yaml::from_str(&text).expect("parses");
        assert_eq!(spec.cases.len(), 1, "{text}");
        assert_eq!(spec.cases[0].question, question);
        // A second append keeps ids unique.
        let id = append(&path, None, &[], case("imported-1", "again")).expect("append");
        assert_eq!(id, "imported-1-2");
        let spec: SuiteSpec =
            serde_yaml::from_str(&std::fs::read_to_string(&path).expect("read")).expect("parses");
        assert_eq!(spec.cases.len(), 2);
    }

    #[test]
    fn a_suite_whose_cases_are_not_last_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.yaml");
        std::fs::write(
            &path,
            "name: s\nchain: c.yaml\ncases:\n  - {id: a, question: q}\nruns: 3\n",
        )
        .expect("write");
        let err = append(&path, None, &[], case("b", "q")).expect_err("refused");
        assert!(matches!(err, AppendError::CasesNotLast(_)), "{err}");
    }
}
