//! GitHub Actions, with nothing to configure: when `GITHUB_ACTIONS=true`, the markdown
//! summary goes to the job's summary (`$GITHUB_STEP_SUMMARY`), failing cases become error
//! annotations at their line in the suite file (warnings for `warn` rules and flaky
//! cases), and `--pr-comment` keeps one comment on the pull request up to date.
//!
//! Everything here carries text from suites and servers into GitHub: workflow-command
//! values are escaped as the runner expects (`%`, CR, LF, and `:` `,` in properties),
//! secrets are scrubbed, sizes are capped to GitHub's limits, and a GitHub API that fails
//! or hangs costs one warning line and bounded time, never the build's exit code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::locate::{KeyPath, locate};
use crate::model::record::Severity;
use crate::model::summary::{CaseOutcome, SuiteReport};
use crate::report::text::cut;

/// GitHub shows at most 10 error and 10 warning annotations of a step.
pub const MAX_ANNOTATIONS: usize = 10;
/// An annotation's message is cut here (GitHub truncates long ones anyway).
const MAX_MESSAGE_CHARS: usize = 2_000;
/// GitHub refuses a step summary over 1 MiB.
pub const MAX_STEP_SUMMARY_BYTES: usize = 1024 * 1024;
/// GitHub refuses a comment body over 65,536 characters.
pub const MAX_COMMENT_CHARS: usize = 65_536;
/// Each GitHub API request, and the whole comment update.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const COMMENT_DEADLINE: Duration = Duration::from_secs(30);
/// Pages of 100 comments searched for the one made before.
const MAX_COMMENT_PAGES: u32 = 30;
/// GitHub's replies are read up to this.
const MAX_REPLY_BYTES: u64 = 16 * 1024 * 1024;

/// A GitHub Actions job, seen from its environment.
#[derive(Debug, Clone)]
pub struct Actions {
    step_summary: Option<PathBuf>,
    workspace: Option<PathBuf>,
}

impl Actions {
    /// The job ragprobe runs in, when `GITHUB_ACTIONS=true`.
    pub fn detect(get: impl Fn(&str) -> Option<String>) -> Option<Actions> {
        if get("GITHUB_ACTIONS").as_deref() != Some("true") {
            return None;
        }
        let path = |name: &str| get(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Some(Actions {
            step_summary: path("GITHUB_STEP_SUMMARY"),
            workspace: path("GITHUB_WORKSPACE"),
        })
    }

    /// Appends `markdown` to the job summary; a problem is returned as one line.
    pub fn append_step_summary(&self, markdown: &str) -> Result<(), String> {
        let Some(path) = &self.step_summary else {
            return Ok(());
        };
        let text = capped_markdown(&crate::secrets::scrub(markdown), MAX_STEP_SUMMARY_BYTES);
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .and_then(|mut file| file.write_all(format!("{text}\n").as_bytes()))
            .map_err(|e| {
                format!(
                    "cannot append to $GITHUB_STEP_SUMMARY ({}): {e}",
                    path.display()
                )
            })
    }

    /// The path an annotation names: relative to the workspace (the repository's root),
    /// as GitHub matches annotations to the diff.
    fn relative(&self, path: &Path) -> String {
        let absolute = if path.is_absolute() {
            path.to_owned()
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(path))
                .unwrap_or_else(|_| path.to_owned())
        };
        let inside = self
            .workspace
            .as_ref()
            .and_then(|ws| absolute.strip_prefix(ws).ok().map(Path::to_owned));
        inside
            .unwrap_or_else(|| path.to_owned())
            .to_string_lossy()
            .replace('\\', "/")
    }

    /// The workflow commands for a report: an error per failing case, a warning per flaky
    /// case and per case where a `warn` rule broke, at most [`MAX_ANNOTATIONS`] of each and
    /// a notice counting the rest.
    pub fn annotations(&self, report: &SuiteReport) -> Vec<String> {
        // ((case, turn), title, message); placed (a walk of the YAML each) only when kept.
        let mut errors: Vec<(Place<'_>, String, String)> = Vec::new();
        let mut warnings: Vec<(Place<'_>, String, String)> = Vec::new();
        for case in &report.stats.cases {
            if report.failed.contains(&case.id) {
                let mut message = case.reasons.join("; ");
                if message.is_empty() {
                    message = format!("pass rate {}", crate::stats::percent(case.pass_rate));
                }
                // A conversation's error sits at the first turn that broke something.
                let turn = case.turns.iter().find(|t| !t.broken.is_empty());
                let title = match turn {
                    Some(turn) => {
                        message = format!(
                            "turn {} broke {}; {message}",
                            turn.turn,
                            turn.describe_broken()
                        );
                        format!("ragprobe: case {} failed on turn {}", case.id, turn.turn)
                    }
                    None => format!("ragprobe: case {} failed", case.id),
                };
                errors.push(((&case.id, turn.map(|t| t.turn)), title, message));
                continue;
            }
            if case.outcome == CaseOutcome::Flaky {
                warnings.push((
                    (&case.id, None),
                    format!("ragprobe: case {} is flaky", case.id),
                    format!(
                        "passed {} of {} runs ({}): the same question gets different verdicts",
                        case.passed,
                        case.evaluated,
                        crate::stats::percent(case.pass_rate)
                    ),
                ));
            }
            for rule in case
                .rules
                .iter()
                .filter(|r| r.severity == Severity::Warn && r.violations > 0)
            {
                warnings.push((
                    (&case.id, None),
                    format!("ragprobe: rule {} warned on case {}", rule.id, case.id),
                    format!(
                        "broken in {} of {} runs ({})",
                        rule.violations,
                        case.evaluated,
                        crate::stats::percent(rule.rate)
                    ),
                ));
            }
        }
        let places = self.places(&report.suite_path);
        let lay = |kind: &'static str| {
            let places = &places;
            move |((case, turn), title, message): (Place<'_>, String, String)| {
                command(kind, &places.at_turn(case, turn), &title, &message)
            }
        };
        within_limits(
            errors.into_iter().map(lay("error")),
            warnings.into_iter().map(lay("warning")),
            &report.suite,
        )
    }

    /// Where the cases of a suite file sit, for annotations.
    pub fn places(&self, suite_path: &Path) -> Places {
        Places::new(
            self.relative(suite_path),
            crate::config::files::read_capped(suite_path, crate::config::files::MAX_INPUT_BYTES)
                .ok(),
        )
    }
}

/// What an annotation points at: a case, or one turn of a conversation case (1 first).
type Place<'a> = (&'a str, Option<u32>);

/// A suite file's cases, as annotation locations: the file parsed once for the cases'
/// positions, a case's line found when it is annotated.
pub struct Places {
    file: String,
    text: Option<String>,
    /// Case id → its index in `cases` (the first, should an id repeat).
    index: HashMap<String, usize>,
}

impl Places {
    fn new(file: String, text: Option<String>) -> Places {
        let document = text
            .as_deref()
            .and_then(|text| serde_yaml::from_str::<serde_yaml::Value>(text).ok());
        let mut index = HashMap::new();
        let cases = document
            .as_ref()
            .and_then(|d| d.get("cases")?.as_sequence());
        for (i, case) in cases.into_iter().flatten().enumerate() {
            if let Some(id) = case.get("id").and_then(|v| v.as_str()) {
                index.entry(id.to_owned()).or_insert(i);
            }
        }
        Places { file, text, index }
    }

    /// Line and column of case `id`'s entry, or of its turn's question.
    fn line(&self, id: &str, turn: Option<u32>) -> Option<(usize, usize)> {
        let i = *self.index.get(id)?;
        let case = KeyPath::default().key("cases").index(i);
        let text = self.text.as_deref()?;
        turn.and_then(|t| {
            let at = case
                .clone()
                .key("turns")
                .index(t as usize - 1)
                .key("question");
            locate(text, &at)
        })
        .or_else(|| locate(text, &case.key("id")))
    }

    /// `file=…,line=…,col=…` of a case (the file alone when the case is not found there).
    pub fn at(&self, case: &str) -> String {
        self.at_turn(case, None)
    }

    /// `file=…,line=…,col=…` of a conversation's turn (its question), else of its case.
    pub fn at_turn(&self, case: &str, turn: Option<u32>) -> String {
        let place = self
            .line(case, turn)
            .map(|(line, col)| format!(",line={line},col={col}"))
            .unwrap_or_default();
        format!("file={}{place}", property(&self.file))
    }
}

/// At most [`MAX_ANNOTATIONS`] errors and as many warnings, and a notice counting the
/// rest; only the kept ones are made.
pub fn within_limits(
    errors: impl ExactSizeIterator<Item = String>,
    warnings: impl ExactSizeIterator<Item = String>,
    suite: &str,
) -> Vec<String> {
    let (more_errors, more_warnings) = (
        errors.len().saturating_sub(MAX_ANNOTATIONS),
        warnings.len().saturating_sub(MAX_ANNOTATIONS),
    );
    let mut lines: Vec<String> = errors.take(MAX_ANNOTATIONS).collect();
    lines.extend(warnings.take(MAX_ANNOTATIONS));
    if more_errors + more_warnings > 0 {
        lines.push(format!(
            "::notice title={}::{}",
            property("ragprobe: more in the job summary"),
            data(&format!(
                "{more_errors} more failing cases and {more_warnings} more warnings in {suite}: see the job summary"
            ))
        ));
    }
    lines
}

/// One workflow command, its title and message escaped and capped.
pub fn command(kind: &str, at: &str, title: &str, message: &str) -> String {
    format!(
        "::{kind} {at},title={}::{}",
        property(&cut(title, 200)),
        data(&cut(message, MAX_MESSAGE_CHARS))
    )
}

/// A workflow command's message, escaped as the runner reads it back.
pub fn data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: a message's escapes, and `:` and `,`.
pub fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

/// Where a summary cut to fit one of GitHub's limits says the rest is.
const CUT_NOTE: &str =
    "\n\n… cut to fit GitHub's limit: the whole summary is summary.md in the report folder.";

/// `text` up to its last line break before byte `end` (all of `text[..end]` when it has
/// none), `end` moved back to a character boundary.
fn through_last_line(text: &str, mut end: usize) -> &str {
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..text[..end].rfind('\n').unwrap_or(end)]
}

/// Markdown cut to `max_bytes` at a line break, saying where the rest is.
fn capped_markdown(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let end = max_bytes.saturating_sub(CUT_NOTE.len() + 1);
    format!("{}{CUT_NOTE}\n", through_last_line(text, end))
}

/// `@name` no longer mentions anyone: a word joiner after each `@` (suite and server text
/// must not page people from a pull request).
fn without_mentions(text: &str) -> String {
    text.replace('@', "@\u{2060}")
}

/// The hidden marker that finds the comment made before, for these suites.
pub fn marker(suites: &[&str]) -> String {
    let mut names: Vec<String> = suites
        .iter()
        .map(|name| {
            name.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .collect();
    names.sort();
    names.dedup();
    format!("<!-- ragprobe-comment: {} -->", names.join(","))
}

/// The comment's body: the marker, then the summaries, scrubbed, without mentions, capped.
pub fn comment_body(marker: &str, markdown: &str) -> String {
    let text = without_mentions(&crate::secrets::scrub(markdown));
    let room = MAX_COMMENT_CHARS - marker.chars().count() - 200;
    let text = match text.char_indices().nth(room) {
        Some((end, _)) => format!("{}{CUT_NOTE}", through_last_line(&text, end)),
        None => text,
    };
    format!("{marker}\n{text}")
}

/// Where the comment goes: the API, the repository, the pull request and the token.
#[derive(Debug, Clone)]
pub struct PullRequest {
    api: String,
    repository: String,
    number: u64,
    token: String,
}

impl PullRequest {
    /// From the standard variables; a reason (one line) when this is not possible.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<PullRequest, String> {
        let token = get("GITHUB_TOKEN")
            .filter(|t| !t.trim().is_empty())
            .ok_or("GITHUB_TOKEN is not set (pass `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}` and give the job `permissions: pull-requests: write`)")?;
        crate::secrets::remember_secret(&token);
        let repository = get("GITHUB_REPOSITORY")
            .filter(|r| {
                r.split_once('/').is_some_and(|(owner, name)| {
                    !owner.is_empty()
                        && !name.is_empty()
                        && r.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
                })
            })
            .ok_or("GITHUB_REPOSITORY is not set to owner/name")?;
        let event_path = get("GITHUB_EVENT_PATH")
            .filter(|p| !p.is_empty())
            .ok_or("GITHUB_EVENT_PATH is not set")?;
        let event_text = crate::config::files::read_capped(
            Path::new(&event_path),
            crate::config::files::MAX_INPUT_BYTES,
        )
        .map_err(|e| format!("cannot read GITHUB_EVENT_PATH ({event_path}): {e}"))?;
        let event: serde_json::Value = serde_json::from_str(&event_text)
            .map_err(|e| format!("GITHUB_EVENT_PATH ({event_path}) is not JSON: {e}"))?;
        let number = pull_request_number(&event).ok_or_else(|| {
            format!(
                "this build is not for a pull request (event {})",
                get("GITHUB_EVENT_NAME").unwrap_or_else(|| "unknown".into())
            )
        })?;
        let api = get("GITHUB_API_URL")
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "https://api.github.com".into())
            .trim_end_matches('/')
            .to_owned();
        Ok(PullRequest {
            api,
            repository,
            number,
            token,
        })
    }

    /// Creates the comment, or updates the one holding `marker`; says which, or why not.
    pub async fn upsert(&self, marker: &str, body: &str) -> Result<String, String> {
        match tokio::time::timeout(COMMENT_DEADLINE, self.upsert_within(marker, body)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "GitHub did not answer within {} s",
                COMMENT_DEADLINE.as_secs()
            )),
        }
    }

    async fn upsert_within(&self, marker: &str, body: &str) -> Result<String, String> {
        let client = crate::backend::client::http_client(Some(REQUEST_TIMEOUT))
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let comments = format!(
            "{}/repos/{}/issues/{}/comments",
            self.api, self.repository, self.number
        );
        let mut found = None;
        for page in 1..=MAX_COMMENT_PAGES {
            let url = format!("{comments}?per_page=100&page={page}");
            let listed = self.send(client.get(&url), "GET", &url).await?;
            let items = listed.as_array().cloned().unwrap_or_default();
            found = items.iter().find_map(|c| {
                let mine = c.get("body").and_then(|b| b.as_str())?.contains(marker);
                mine.then(|| c.get("id").and_then(serde_json::Value::as_u64))?
            });
            if found.is_some() || items.len() < 100 {
                break;
            }
        }
        let payload = serde_json::json!({ "body": body });
        match found {
            Some(id) => {
                let url = format!(
                    "{}/repos/{}/issues/comments/{id}",
                    self.api, self.repository
                );
                self.send(json(client.patch(&url), &payload), "PATCH", &url)
                    .await?;
                Ok(format!("updated the pull request's comment {id}"))
            }
            None => {
                let made = self
                    .send(json(client.post(&comments), &payload), "POST", &comments)
                    .await?;
                let id = made
                    .get("id")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                Ok(format!("commented on pull request #{} ({id})", self.number))
            }
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        method: &str,
        url: &str,
    ) -> Result<serde_json::Value, String> {
        let mut response = request
            .bearer_auth(&self.token)
            // GitHub refuses requests without one.
            .header(
                "user-agent",
                concat!("ragprobe/", env!("CARGO_PKG_VERSION")),
            )
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {}", cause(&e)))?;
        let status = response.status();
        let bytes = crate::backend::body::read_capped(&mut response, MAX_REPLY_BYTES)
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(format!(
                "GitHub answered {status} to {method} {url}: {}",
                crate::secrets::quote(&cut(message.trim(), 200))
            ));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("{method} {url}: GitHub's reply is not JSON: {e}"))
    }
}

fn json(request: reqwest::RequestBuilder, payload: &serde_json::Value) -> reqwest::RequestBuilder {
    request
        .header("content-type", "application/json")
        .body(payload.to_string())
}

/// Why a request failed, on one line: a timeout said as such, else its innermost cause.
fn cause(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
    } else {
        crate::backend::client::root_cause(error)
    }
}

/// The pull request an event is about: `pull_request` and `pull_request_target` events,
/// and comments on a pull request (`issue_comment`).
fn pull_request_number(event: &serde_json::Value) -> Option<u64> {
    if let Some(number) = event
        .get("pull_request")
        .and_then(|pr| pr.get("number"))
        .and_then(serde_json::Value::as_u64)
    {
        return Some(number);
    }
    let issue = event.get("issue")?;
    issue.get("pull_request")?;
    issue.get("number").and_then(serde_json::Value::as_u64)
}

/// A diff's text report as the job summary's markdown.
pub fn text_as_markdown(title: &str, text: &str) -> String {
    format!("## {title}\n\n{}\n", crate::report::markdown::fenced(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_command_values_cannot_break_out() {
        let hostile = "50% done\r\n::error::forged\nline";
        let escaped = data(hostile);
        assert_eq!(escaped, "50%25 done%0D%0A::error::forged%0Aline");
        assert!(!escaped.contains('\n') && !escaped.contains('\r'));
        assert_eq!(property("a:b,c%"), "a%3Ab%2Cc%25");
        let line = command(
            "error",
            "file=s.yaml,line=3,col=5",
            "t, x: y",
            &"é".repeat(5000),
        );
        assert!(line.starts_with("::error file=s.yaml,line=3,col=5,title=t%2C x%3A y::"));
        assert!(line.chars().count() < MAX_MESSAGE_CHARS + 100);
    }

    #[test]
    fn a_case_is_found_at_its_line() {
        let text =
            "name: s\ncases:\n  - id: storage\n    question: a\n  - question: b\n    id: cost\n";
        let places = Places::new("s.yaml".into(), Some(text.into()));
        assert_eq!(places.line("storage", None), Some((3, 9)));
        assert_eq!(places.line("cost", None), Some((6, 9)));
        assert_eq!(places.line("missing", None), None);
        assert_eq!(places.at("cost"), "file=s.yaml,line=6,col=9");
        assert_eq!(places.at("missing"), "file=s.yaml");
    }

    #[test]
    fn comments_and_summaries_are_capped_and_mention_nobody() {
        let mark = marker(&["databricks-support", "b c"]);
        assert_eq!(mark, "<!-- ragprobe-comment: b_c,databricks-support -->");
        let body = comment_body(&mark, &format!("hi @octocat\n{}", "x\n".repeat(50_000)));
        assert!(body.starts_with(&mark));
        assert!(!body.contains("@octocat") && body.contains("@\u{2060}octocat"));
        assert!(body.chars().count() <= MAX_COMMENT_CHARS, "{}", body.len());
        assert!(body.ends_with("in the report folder."));
        let summary = capped_markdown(&"line\n".repeat(400_000), MAX_STEP_SUMMARY_BYTES);
        assert!(summary.len() <= MAX_STEP_SUMMARY_BYTES);
        assert!(summary.contains("cut to fit"));
    }

    #[test]
    fn the_pull_request_comes_from_the_event() {
        let pr = serde_json::json!({"number": 7, "pull_request": {"number": 7}});
        assert_eq!(pull_request_number(&pr), Some(7));
        let comment = serde_json::json!({"issue": {"number": 9, "pull_request": {}}});
        assert_eq!(pull_request_number(&comment), Some(9));
        let issue = serde_json::json!({"issue": {"number": 9}});
        assert_eq!(pull_request_number(&issue), None);
        assert_eq!(
            pull_request_number(&serde_json::json!({"ref": "main"})),
            None
        );
    }
}
