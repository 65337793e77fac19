//! Configuration problems: each names its file, line and column, and offers one fix.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::locate::{KeyPath, locate};

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_owned(),
            line: None,
            column: None,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// Places the problem at the node `path` of `source` (the text of `self.file`) and
    /// prefixes the message with the path.
    pub fn at_path(self, source: &str, path: &KeyPath) -> Self {
        self.at_path_if(source, path, true)
    }

    /// [`Problem::at_path`], placing the problem at a line and column only when `place`:
    /// each placing reads the file again, so a file with thousands of problems places the
    /// first ones and names the key path of the rest.
    pub fn at_path_if(mut self, source: &str, path: &KeyPath, place: bool) -> Self {
        if place && let Some((line, column)) = locate(source, path) {
            self = self.at(line, column);
        }
        if !path.0.is_empty() {
            self.message = format!("{path}: {}", self.message);
        }
        self
    }

    /// From a YAML parse error, with a hint drawn from what the parser said.
    pub fn from_yaml(file: &Path, err: &serde_yaml::Error) -> Self {
        Self::from_yaml_in(file, err, None)
    }

    /// [`Problem::from_yaml`], with the file's text to place a repeated key at the
    /// repetition rather than at the start of its mapping.
    pub fn from_yaml_in(file: &Path, err: &serde_yaml::Error, text: Option<&str>) -> Self {
        let message = crate::config::locate::message_without_position(err);
        let hint = hint_for(&message);
        let mut problem = Problem::new(file, message);
        let repeated = text
            .filter(|_| problem.message.contains("duplicate"))
            .and_then(crate::config::locate::locate_duplicate_key);
        if let Some((line, column)) = repeated {
            problem = problem.at(line, column);
        } else if let Some(location) = err.location() {
            problem = problem.at(location.line(), location.column());
        }
        problem.hint = hint;
        problem
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Everything wrong with a suite, found before any run starts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl From<Problem> for ConfigError {
    fn from(problem: Problem) -> Self {
        ConfigError {
            problems: vec![problem],
        }
    }
}

/// A one-line fix for the parser's most common complaints.
fn hint_for(message: &str) -> Option<String> {
    if let Some(rest) = message.split("unknown field `").nth(1) {
        let unknown = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = message
            .split("expected ")
            .nth(1)
            .map(|list| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let closest = expected
            .iter()
            .map(|candidate| (strsim::jaro_winkler(unknown, candidate), *candidate))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        return Some(match closest {
            Some((_, name)) => format!("did you mean `{name}`?"),
            None if expected.is_empty() => "remove the key".to_owned(),
            None => format!("remove the key, or use one of: {}", expected.join(", ")),
        });
    }
    if message.contains("missing field `") {
        let field = message
            .split("missing field `")
            .nth(1)
            .and_then(|r| r.split('`').next())
            .unwrap_or_default();
        return Some(format!("add `{field}:` to this mapping"));
    }
    if message.contains("unknown variant `") {
        return Some("use one of the values listed above".to_owned());
    }
    if message.contains("invalid regular expression") {
        return Some(
            "escape special characters with a backslash; inside double quotes YAML needs \\\\ for one \\"
                .to_owned(),
        );
    }
    if message.contains("invalid type") {
        return Some("change the value to the type named after `expected`".to_owned());
    }
    if message.contains("is not a number of runs") {
        return Some(
            "runs: 20 repeats each case 20 times; runs: auto repeats it until its verdict is decided"
                .to_owned(),
        );
    }
    if message.contains("is not a rate") {
        return Some("rates are shares: 1.0 is every run, 0.9 is nine runs in ten".to_owned());
    }
    if message.contains("did not find expected")
        || message.contains("mapping values are not allowed")
    {
        return Some(
            "check the indentation and that every `key: value` has a space after the colon"
                .to_owned(),
        );
    }
    if message.contains("operator") {
        return Some("see the `where` language in docs/suites.md".to_owned());
    }
    None
}

/// How many problems of one file are placed at their line and column; the rest name their
/// key path only (placing one reads the file again: thousands would take minutes).
pub const MAX_PLACED: usize = 20;

/// Makes the problems of one file: placed at their line and column, up to [`MAX_PLACED`].
pub struct Placer<'a> {
    path: &'a std::path::Path,
    text: &'a str,
    placed: std::cell::Cell<usize>,
}

impl<'a> Placer<'a> {
    pub fn new(path: &'a std::path::Path, text: &'a str) -> Placer<'a> {
        Placer {
            path,
            text,
            placed: std::cell::Cell::new(0),
        }
    }

    pub fn problem(&self, key_path: KeyPath, message: String) -> Problem {
        let n = self.placed.get();
        self.placed.set(n + 1);
        Problem::new(self.path, message).at_path_if(self.text, &key_path, n < MAX_PLACED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_suggests_closest_name() {
        let hint = hint_for(
            "cases[0].expect: unknown field `sorces`, expected one of `sources`, `min_recall`, `answer`",
        );
        assert_eq!(hint.as_deref(), Some("did you mean `sources`?"));
        let hint = hint_for("unknown field `zzz`, expected `id` or `text`");
        assert_eq!(
            hint.as_deref(),
            Some("remove the key, or use one of: id, text")
        );
    }

    #[test]
    fn display_has_file_line_column_and_hint() {
        let p = Problem::new(Path::new("s.yaml"), "boom")
            .at(3, 5)
            .hint("fix it");
        assert_eq!(p.to_string(), "s.yaml:3:5: boom\n  hint: fix it");
    }
}
