//! Meeting teams in their CI: GitHub Actions' job summary, annotations and the pull-request
//! comment (against a loopback server that speaks GitHub's REST API for issue comments),
//! and `--shard auto` from each CI's parallel-job variables.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::sink::{Received, Reply, Sink};
use crate::common::{merge, ragprobe, records, text};

const SUITE: &str = "suites/databricks/before-fix.yaml";
const TOKEN: &str = "ghs_loopbackTOKEN1234567890";

/// The 1-based line and column of `- id: NAME` in the reference suite.
fn case_place(id: &str) -> (usize, usize) {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(SUITE)).expect("suite");
    text.lines()
        .enumerate()
        .find_map(|(n, line)| {
            let at = line.find(&format!("id: {id}"))?;
            (line[at + 4..].trim() == id).then_some((n + 1, at + 5))
        })
        .expect("case in suite")
}

#[test]
fn github_actions_gets_the_job_summary_and_annotations_at_the_cases_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = dir.path().join("step-summary.md");
    for round in 1..=2 {
        let output = ragprobe()
            .args(["run", SUITE, "--progress", "none", "--out"])
            .arg(dir.path().join(format!("r{round}")))
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("GITHUB_WORKSPACE", env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(1), "the suite still fails");
        let stdout = text(&output.stdout);
        let (line, col) = case_place("cost");
        let want = format!(
            "::error file={SUITE},line={line},col={col},title=ragprobe%3A case cost failed::"
        );
        let errors: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("::error"))
            .collect();
        assert_eq!(errors.len(), 1, "one failing case, one error: {stdout}");
        assert!(errors[0].starts_with(&want), "{}\nwanted {want}", errors[0]);
        assert!(errors[0].contains("only-databricks-docs"), "{}", errors[0]);
        // Every workflow command is one of ours, whole on its line.
        for command in stdout.lines().filter(|l| l.starts_with("::")) {
            assert!(
                command.starts_with("::error file=")
                    || command.starts_with("::warning file=")
                    || command.starts_with("::notice title="),
                "{command}"
            );
        }
    }
    let written = std::fs::read_to_string(&summary).expect("summary appended");
    assert_eq!(
        written
            .matches("## ragprobe · `databricks-support-before-fix`")
            .count(),
        2,
        "appended once per run, never replaced: {written}"
    );
    assert!(written.contains("❌ FAIL"), "{written}");
}

#[test]
fn without_github_actions_nothing_is_annotated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = crate::common::run_suite(SUITE, &dir.path().join("out"), &[]);
    assert!(
        !text(&output.stdout).lines().any(|l| l.starts_with("::")),
        "{}",
        text(&output.stdout)
    );
}

/// GitHub's REST API for issue comments, as much of it as a comment needs: list (paged),
/// create, update; bearer token checked.
struct FakeGitHub {
    sink: Sink,
    comments: Arc<Mutex<Vec<(u64, String)>>>,
}

impl FakeGitHub {
    fn start(fault: Option<u16>) -> FakeGitHub {
        let comments = Arc::new(Mutex::new(vec![(
            1,
            "An unrelated comment by a person, mentioning ragprobe".to_owned(),
        )]));
        let state = Arc::clone(&comments);
        let sink = Sink::answering(move |request: &Received| {
            if let Some(status) = fault {
                // A GitHub that refuses, echoing what it was sent.
                let headers: Vec<String> = request
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect();
                return Reply::Json(
                    status,
                    serde_json::json!({"message": format!("refused; you sent {}", headers.join("; "))})
                        .to_string(),
                );
            }
            let authorized = request
                .headers
                .iter()
                .any(|(k, v)| k == "authorization" && v == &format!("Bearer {TOKEN}"));
            if !authorized {
                return Reply::Json(401, r#"{"message": "Bad credentials"}"#.into());
            }
            let mut comments = state.lock().expect("state");
            let path = request.path.split('?').next().unwrap_or_default();
            let body = || -> String {
                serde_json::from_slice::<serde_json::Value>(&request.body)
                    .ok()
                    .and_then(|v| v.get("body").and_then(|b| b.as_str()).map(str::to_owned))
                    .unwrap_or_default()
            };
            match (request.method.as_str(), path) {
                ("GET", "/repos/acme/bot/issues/7/comments") => {
                    let page: usize = request
                        .path
                        .split("page=")
                        .nth(2)
                        .or_else(|| request.path.rsplit("page=").next())
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(1);
                    let listed: Vec<serde_json::Value> = comments
                        .iter()
                        .skip((page - 1) * 100)
                        .take(100)
                        .map(|(id, body)| serde_json::json!({"id": id, "body": body}))
                        .collect();
                    Reply::Json(200, serde_json::Value::Array(listed).to_string())
                }
                ("POST", "/repos/acme/bot/issues/7/comments") => {
                    let id = 100 + comments.len() as u64;
                    comments.push((id, body()));
                    Reply::Json(201, serde_json::json!({"id": id}).to_string())
                }
                ("PATCH", p) if p.starts_with("/repos/acme/bot/issues/comments/") => {
                    let id: u64 = p
                        .rsplit('/')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    match comments.iter_mut().find(|(c, _)| *c == id) {
                        Some(comment) => {
                            comment.1 = body();
                            Reply::Json(200, serde_json::json!({"id": id}).to_string())
                        }
                        None => Reply::Json(404, r#"{"message": "Not Found"}"#.into()),
                    }
                }
                _ => Reply::Json(404, r#"{"message": "Not Found"}"#.into()),
            }
        });
        FakeGitHub { sink, comments }
    }

    fn comments(&self) -> Vec<(u64, String)> {
        self.comments.lock().expect("state").clone()
    }
}

fn event_file(dir: &Path, event: serde_json::Value) -> std::path::PathBuf {
    let path = dir.join("event.json");
    std::fs::write(&path, event.to_string()).expect("event");
    path
}

fn run_commenting(dir: &Path, api: &str, event: &Path, out: &str) -> std::process::Output {
    ragprobe()
        .args(["run", SUITE, "--progress", "none", "--pr-comment", "--out"])
        .arg(dir.join(out))
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_REPOSITORY", "acme/bot")
        .env("GITHUB_EVENT_PATH", event)
        .env("GITHUB_API_URL", api)
        .output()
        .expect("runs")
}

#[test]
fn one_pull_request_comment_is_made_then_updated_never_doubled() {
    let github = FakeGitHub::start(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let event = event_file(
        dir.path(),
        serde_json::json!({"number": 7, "pull_request": {"number": 7}}),
    );
    let first = run_commenting(dir.path(), &github.sink.base(), &event, "one");
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));
    assert!(
        text(&first.stderr).contains("commented on pull request #7"),
        "{}",
        text(&first.stderr)
    );
    let second = run_commenting(dir.path(), &github.sink.base(), &event, "two");
    assert_eq!(second.status.code(), Some(1));
    assert!(
        text(&second.stderr).contains("updated the pull request's comment"),
        "{}",
        text(&second.stderr)
    );
    let comments = github.comments();
    assert_eq!(
        comments.len(),
        2,
        "the person's comment and one of ours: {comments:?}"
    );
    assert_eq!(
        comments[0].1,
        "An unrelated comment by a person, mentioning ragprobe"
    );
    let ours = &comments[1].1;
    assert!(
        ours.starts_with("<!-- ragprobe-comment: databricks-support-before-fix -->"),
        "{ours}"
    );
    assert!(
        ours.contains("## ragprobe · `databricks-support-before-fix` — ❌ FAIL"),
        "{ours}"
    );
    let methods: Vec<String> = github
        .sink
        .requests()
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, ["GET", "POST", "GET", "PATCH"], "{methods:?}");
}

#[test]
fn a_github_that_refuses_or_is_missing_costs_one_warning_not_the_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pr_event = event_file(
        dir.path(),
        serde_json::json!({"pull_request": {"number": 7}}),
    );
    for status in [401, 403, 404, 422, 502] {
        let github = FakeGitHub::start(Some(status));
        let output = run_commenting(
            dir.path(),
            &github.sink.base(),
            &pr_event,
            &format!("s{status}"),
        );
        let stderr = text(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "exit unchanged at {status}: {stderr}"
        );
        let warnings: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("--pr-comment"))
            .collect();
        assert_eq!(warnings.len(), 1, "{stderr}");
        assert!(warnings[0].contains(&status.to_string()), "{stderr}");
        assert!(
            !stderr.contains(TOKEN) && !text(&output.stdout).contains(TOKEN),
            "token leaked: {stderr}"
        );
    }
    // Not a pull request, and no token: a warning each, no request made.
    let github = FakeGitHub::start(None);
    let push = dir.path().join("push.json");
    std::fs::write(&push, r#"{"ref": "refs/heads/main"}"#).expect("event");
    let output = run_commenting(dir.path(), &github.sink.base(), &push, "push");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("not for a pull request"),
        "{}",
        text(&output.stderr)
    );
    let output = ragprobe()
        .args(["run", SUITE, "--progress", "none", "--pr-comment", "--out"])
        .arg(dir.path().join("no-token"))
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("GITHUB_TOKEN is not set"),
        "{}",
        text(&output.stderr)
    );
    assert!(github.sink.requests().is_empty());
}

#[test]
fn a_github_that_hangs_is_given_up_in_bounded_time() {
    let github = Sink::answering(|_| Reply::Hang);
    let dir = tempfile::tempdir().expect("tempdir");
    let event = event_file(
        dir.path(),
        serde_json::json!({"pull_request": {"number": 7}}),
    );
    let started = Instant::now();
    let output = run_commenting(dir.path(), &github.base(), &event, "hang");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("warning: --pr-comment"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn shard_auto_reads_each_cis_parallel_job_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |out: &str, vars: &[(&str, &str)], extra: &[&str]| {
        let mut command = ragprobe();
        command
            .args([
                "run",
                SUITE,
                "--progress",
                "none",
                "--shard",
                "auto",
                "--out",
            ])
            .arg(dir.path().join(out))
            .args(extra);
        for (k, v) in vars {
            command.env(k, v);
        }
        command.output().expect("runs")
    };
    // Two builds of two jobs each, on four CIs' variables: GitLab counts from 1.
    let shards = [
        (
            "gitlab",
            vec![("CI_NODE_INDEX", "1"), ("CI_NODE_TOTAL", "2")],
            vec![],
            "1/2",
            "GitLab CI",
        ),
        (
            "buildkite",
            vec![
                ("BUILDKITE_PARALLEL_JOB", "1"),
                ("BUILDKITE_PARALLEL_JOB_COUNT", "2"),
            ],
            vec![],
            "2/2",
            "Buildkite",
        ),
        (
            "circle",
            vec![("CIRCLE_NODE_INDEX", "0"), ("CIRCLE_NODE_TOTAL", "2")],
            vec![],
            "1/2",
            "CircleCI",
        ),
        (
            "k8s",
            vec![("JOB_COMPLETION_INDEX", "1")],
            vec!["--shards", "2"],
            "2/2",
            "a Kubernetes Indexed Job",
        ),
    ];
    for (out, vars, extra, want, ci) in &shards {
        let output = run(out, vars, extra);
        let stderr = text(&output.stderr);
        assert_eq!(
            output.status.code().map(|c| c <= 1),
            Some(true),
            "{out}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("shard {want} from {ci}")),
            "{out}: {stderr}"
        );
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(out).join("meta.json")).expect("meta"),
        )
        .expect("json");
        assert_eq!(meta["shard"], *want, "{out}");
    }
    let whole = crate::common::run_suite(SUITE, &dir.path().join("whole"), &[]);
    assert_eq!(whole.status.code(), Some(1));
    for pair in [["gitlab", "buildkite"], ["circle", "k8s"]] {
        let merged = dir.path().join(format!("merged-{}", pair[0]));
        let output = merge(&pair.map(|p| dir.path().join(p)), &merged);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
        assert_eq!(
            records(&merged).len(),
            records(&dir.path().join("whole")).len()
        );
    }
    // No variables: a usage error naming what was looked for; --shards alone is refused.
    let output = run("none", &[], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("CI_NODE_INDEX"),
        "{}",
        text(&output.stderr)
    );
    let output = run("k8s-missing", &[("JOB_COMPLETION_INDEX", "0")], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("--shards N"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_conversation_is_annotated_at_the_turn_that_broke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = "suites/databricks/conversation.yaml";
    let output = ragprobe()
        .args(["run", suite, "--progress", "none", "--runs", "3", "--out"])
        .arg(dir.path().join("out"))
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", dir.path().join("summary.md"))
        .env("GITHUB_WORKSPACE", env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    let text_of = std::fs::read_to_string(suite).expect("suite");
    // Turn 2's question of the first case: the first `And what does that cost?` line.
    let line = text_of
        .lines()
        .position(|l| l.trim_start() == "- question: And what does that cost?")
        .expect("turn 2")
        + 1;
    let want = format!(
        "::error file={suite},line={line},col=19,title=ragprobe%3A case storage-then-cost failed on turn 2::turn 2 broke only-databricks-docs 3/3"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with(&want)),
        "{stdout}\nwanted {want}"
    );
}
