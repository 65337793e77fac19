//! What `run`, `merge` and `diff` hand GitHub: on Actions the job summary and annotations,
//! and with `--pr-comment` the pull request's comment. Nothing here changes the exit code:
//! a GitHub that refuses or hangs is one warning line.

use crate::ci::github::{Actions, PullRequest, comment_body, marker};
use crate::model::summary::SuiteReport;
use crate::out;

/// What one command publishes.
pub struct Publication<'a> {
    pub suites: Vec<&'a str>,
    pub markdown: String,
    pub annotations: Vec<String>,
}

impl<'a> Publication<'a> {
    /// The suites' summaries and their failing cases.
    pub fn of_reports(reports: &'a [SuiteReport], actions: Option<&Actions>) -> Publication<'a> {
        Publication {
            suites: reports.iter().map(|r| r.suite.as_str()).collect(),
            markdown: reports
                .iter()
                .map(crate::report::markdown::render)
                .collect::<Vec<_>>()
                .join("\n---\n\n"),
            annotations: actions
                .map(|a| reports.iter().flat_map(|r| a.annotations(r)).collect())
                .unwrap_or_default(),
        }
    }
}

/// The GitHub Actions job this process runs in, if any.
pub fn actions() -> Option<Actions> {
    Actions::detect(|name| std::env::var(name).ok())
}

/// Prints the annotations and appends the summary on Actions; comments when asked.
pub fn publish(publication: &Publication, actions: Option<&Actions>, pr_comment: bool, json: bool) {
    if let Some(actions) = actions {
        for line in &publication.annotations {
            out::workflow_command(line, json);
        }
        if let Err(problem) = actions.append_step_summary(&publication.markdown) {
            out::eprintln(&format!("warning: {problem}"));
        }
    }
    if !pr_comment {
        return;
    }
    let said = PullRequest::from_env(|name| std::env::var(name).ok()).and_then(|pr| {
        let runtime = crate::commands::common::runtime().map_err(|e| e.to_string())?;
        let mark = marker(&publication.suites);
        runtime.block_on(pr.upsert(&mark, &comment_body(&mark, &publication.markdown)))
    });
    match said {
        Ok(done) => out::eprintln(&format!("ragprobe: {done}")),
        Err(reason) => out::eprintln(&format!(
            "warning: --pr-comment: {reason}; no comment made (the build's result is unchanged)"
        )),
    }
}
