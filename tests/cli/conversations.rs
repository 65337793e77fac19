//! Conversation cases: `turns:` checked where they are written, history carried to every
//! chain kind, one run per conversation judged turn by turn, and the turns in every
//! report.

use std::path::Path;

use crate::common::servers::{ROOT, chain_file};
use crate::common::sink::{Received, Reply, Sink};
use crate::common::{records, redactions, run_suite, show, text, validate};

const SUITE: &str = "suites/databricks/conversation.yaml";

fn write(dir: &Path, name: &str, yaml: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, yaml.replace("{ROOT}", ROOT)).expect("write");
    path.to_string_lossy().into_owned()
}

#[test]
fn every_mistake_in_a_conversation_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = write(
        dir.path(),
        "broken.yaml",
        "name: broken\n\
         chain: {ROOT}/suites/databricks/chains/support.yaml\n\
         vars: {product: Databricks}\n\
         rules:\n  - id: only-databricks-docs\n    retrieved: {every: {docs: databricks}}\n\
         cases:\n\
         \x20 - id: empty\n    turns: []\n\
         \x20 - id: both\n    question: Why?\n    turns:\n      - question: And then?\n\
         \x20 - id: scripted-last\n    turns:\n      - question: What is Delta?\n        answer: A format.\n\
         \x20 - id: expects-on-history\n    turns:\n      - question: What is Delta?\n        answer: A format.\n        expect: {answer: {contains: [Delta]}}\n      - question: And its cost?\n\
         \x20 - id: skips-an-unknown-rule\n    turns:\n      - question: What is Delta?\n        skip: [no-such-rule]\n\
         \x20 - id: case-level-expect\n    expect: {sources: [\"1\"]}\n    turns:\n      - question: What is Delta?\n\
         \x20 - id: blank-turn\n    turns:\n      - question: '  '\n\
         \x20 - id: unknown-source\n    turns:\n      - question: What is Delta?\n        expect: {sources: [\"99\"]}\n\
         \x20 - id: skips-on-history\n    turns:\n      - question: What is Delta?\n        answer: A format.\n        skip: [only-databricks-docs]\n      - question: And its cost?\n",
    );
    let (code, _, stderr) = validate(&suite);
    assert_eq!(code, Some(2), "{stderr}");
    let stderr = stderr
        .replace(&suite, "broken.yaml")
        .replace(ROOT, "[ROOT]");
    insta::assert_snapshot!(stderr);

    // A turn without a question is a parse error at the turn.
    let missing = write(
        dir.path(),
        "missing.yaml",
        "name: missing\nchain: {ROOT}/suites/databricks/chains/support.yaml\nvars: {product: Databricks}\n\
         cases:\n  - id: c\n    turns:\n      - expect: {answer: {contains: [x]}}\n",
    );
    let (code, _, stderr) = validate(&missing);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("missing.yaml:7:9") && stderr.contains("missing field `question`"),
        "{stderr}"
    );
}

#[test]
fn a_chain_that_cannot_carry_history_is_refused_before_any_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conversation = "cases:\n  - id: c\n    turns:\n      - question: What is Delta?\n      - question: And its cost?\n";
    for (chain, why) in [
        (
            "kind: http\nurl: http://127.0.0.1:9/ask\nbody: '{\"q\": {{ question | tojson }}}'\n",
            "its body template uses none of `messages`, `chat_history`, `history` or `session_id`",
        ),
        (
            "kind: http\nurl: http://127.0.0.1:9/ask\npreset: retrievalqa\n",
            "its body template uses none of",
        ),
    ] {
        let chain = chain_file(dir.path(), "chain.yaml", chain);
        let suite = write(
            dir.path(),
            "suite.yaml",
            &format!("name: s\nchain: {}\n{conversation}", chain.display()),
        );
        let out = dir.path().join("out");
        let output = run_suite(&suite, &out, &[]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("suite.yaml:6:7: cases[0].turns"),
            "{stderr}"
        );
        assert!(stderr.contains(why), "{stderr}");
        assert!(!out.join("runs.jsonl").exists(), "nothing may run");
    }
}

#[test]
fn the_follow_up_retrieves_the_aws_document_when_history_is_ignored() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(SUITE, out.path(), &["--runs", "5"]);
    assert_eq!(output.status.code(), Some(1));
    let turns = crate::common::turns_section(&text(&output.stdout));
    insta::assert_snapshot!("terminal_turns", turns);

    // One run per conversation, its turns inside; turn 1 passes, turn 2 retrieved doc 4.
    let runs = records(out.path());
    assert_eq!(runs.len(), 10);
    for run in runs.iter().filter(|r| r.case == "storage-then-cost") {
        assert_eq!(run.turns.len(), 2);
        assert_eq!(run.turns[0].status.label(), "passed");
        assert!(run.turns[1].retrieved.iter().any(|d| d.id == "4"));
        assert_eq!(run.status.label(), "failed");
        // The run shows the turn that decided it.
        assert_eq!(run.answer, run.turns[1].answer);
        let history_answer = &run.turns[0].answer;
        assert!(history_answer.contains("Delta"), "{history_answer}");
    }
    // The scripted turn is history: not asked, no retrieval.
    for run in runs
        .iter()
        .filter(|r| r.case == "cost-after-a-scripted-answer")
    {
        assert!(run.turns[0].scripted);
        assert!(run.turns[0].retrieved.is_empty());
        assert_eq!(
            run.turns[0].answer,
            "Yes. Databases are Delta files on storage such as S3."
        );
    }

    let markdown = std::fs::read_to_string(out.path().join("summary.md")).expect("summary.md");
    let table: String = markdown
        .lines()
        .skip_while(|l| !l.starts_with("#### Conversations"))
        .take_while(|l| !l.starts_with("### "))
        .map(|l| format!("{l}\n"))
        .collect();
    insta::assert_snapshot!("markdown_turns", table);

    let junit = std::fs::read_to_string(out.path().join("junit.xml")).expect("junit.xml");
    assert!(junit.contains(r#"<property name="turn.2.passed" value="0/5"/>"#));
    assert!(junit.contains("turn 2 broke only-databricks-docs 5/5"));

    let html = std::fs::read_to_string(out.path().join("report.html")).expect("report.html");
    let turns_table = html
        .split(r#"<table class="turns">"#)
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .expect("a turns table");
    insta::assert_snapshot!("html_turns", turns_table);
}

#[test]
fn the_history_aware_or_filtered_chain_passes_the_conversation() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(
        SUITE,
        out.path(),
        &[
            "--runs",
            "5",
            "--chain",
            "suites/databricks/chains/support-history.yaml",
            "--filter",
            "storage-then-cost",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    // The retriever was asked the whole conversation on turn 2.
    let run = &records(out.path())[0];
    let trace = run.trace.as_ref().expect("trace");
    let queries: Vec<&str> = trace
        .spans
        .iter()
        .filter_map(|s| s.attributes.get("query")?.as_str())
        .collect();
    assert_eq!(queries.len(), 2);
    assert!(
        queries[1].starts_with("Are Databricks databases just files on S3?\n")
            && queries[1].ends_with("\nAnd what does that cost?"),
        "{queries:?}"
    );

    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(
        SUITE,
        out.path(),
        &[
            "--runs",
            "5",
            "--chain",
            "suites/databricks/chains/support-filtered.yaml",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
}

#[test]
fn show_draws_one_trace_per_conversation_run_with_a_span_per_turn() {
    let out = tempfile::tempdir().expect("tempdir");
    run_suite(SUITE, out.path(), &["--runs", "2"]);
    let output = show(out.path(), &["--case", "storage-then-cost", "--failed"]);
    assert_eq!(output.status.code(), Some(0));
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in redactions(out.path()) {
        settings.add_filter(&pattern, replacement);
    }
    settings.add_filter(r"trace [0-9a-f]{32}", "trace [id]");
    settings.add_filter(r"\d+\.\d+ ms", "[ms]");
    settings.bind(|| insta::assert_snapshot!(text(&output.stdout)));

    // As OTLP: a trace per turn, both in the run's session.
    let output = show(out.path(), &["--case", "storage-then-cost", "--json"]);
    let request: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let spans: Vec<&serde_json::Value> = request["resourceSpans"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten())
        .flat_map(|s| s["spans"].as_array().into_iter().flatten())
        .collect();
    let roots: Vec<&&serde_json::Value> = spans
        .iter()
        .filter(|s| s.get("parentSpanId").is_none_or(|p| p == ""))
        .collect();
    assert_eq!(roots.len(), 2, "one root per turn");
    let attribute = |span: &serde_json::Value, key: &str| -> Option<String> {
        span["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)
            .and_then(|a| a["value"]["stringValue"].as_str().map(str::to_owned))
    };
    let sessions: Vec<Option<String>> = roots.iter().map(|r| attribute(r, "session.id")).collect();
    assert!(
        sessions[0].is_some() && sessions[0] == sessions[1],
        "{sessions:?}"
    );
    assert_ne!(roots[0]["traceId"], roots[1]["traceId"]);
    assert_eq!(
        attribute(roots[1], "input.value").as_deref(),
        Some("And what does that cost?")
    );
}

/// A stand-in RAG service: answers with the number of messages it got, and on turn 2
/// returns no documents.
fn chat_service() -> Sink {
    Sink::answering(|request: &Received| {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let turn = body["turn"].as_u64().unwrap_or(0);
        let messages = body["messages"].as_array().map_or(0, Vec::len);
        let documents = if turn == 2 {
            serde_json::json!([])
        } else {
            serde_json::json!([{"id": "1", "text": "Delta files.", "metadata": {"docs": "databricks"}}])
        };
        Reply::Json(
            200,
            serde_json::json!({"answer": format!("turn {turn} saw {messages} messages"), "documents": documents})
                .to_string(),
        )
    })
}

#[test]
fn an_http_chain_gets_the_messages_so_far_and_an_empty_turn_fails_its_rules() {
    let service = chat_service();
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = write(
        dir.path(),
        "suite.yaml",
        &format!(
            "name: chat\nchain: {{kind: http, url: '{}/chat'}}\nruns: 1\n\
             rules:\n  - id: only-databricks-docs\n    retrieved: {{every: {{docs: databricks}}}}\n  \
             - id: no-aws\n    retrieved: {{none: {{docs: aws}}}}\n\
             cases:\n  - id: single\n    question: What is Delta?\n  \
             - id: chat\n    turns:\n      - question: What is Delta?\n      - question: And its cost?\n  \
             - id: scripted\n    turns:\n      - question: What is Delta?\n        answer: A table format.\n      \
             - question: And its cost?\n        skip: [only-databricks-docs, no-aws]\n",
            service.base()
        ),
    );
    let out = dir.path().join("out");
    let output = run_suite(&suite, &out, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));

    let bodies: Vec<serde_json::Value> = service.json_bodies();
    // The single question keeps the plain body: no messages, no turn.
    let single = bodies
        .iter()
        .find(|b| b.get("turn").is_none())
        .expect("single");
    assert_eq!(single["question"], "What is Delta?");
    assert!(single.get("messages").is_none());
    // Turn 2 of the live chat carries the chain's own first answer.
    let live = bodies
        .iter()
        .find(|b| b["turn"] == 2 && b["messages"][1]["content"] == "turn 1 saw 1 messages")
        .expect("live turn 2");
    assert_eq!(
        live["messages"],
        serde_json::json!([
            {"role": "user", "content": "What is Delta?"},
            {"role": "assistant", "content": "turn 1 saw 1 messages"},
            {"role": "user", "content": "And its cost?"},
        ])
    );
    assert_eq!(live["question"], "And its cost?");
    // The scripted turn was not asked: its answer went as history.
    let scripted = bodies
        .iter()
        .filter(|b| b["messages"][1]["content"] == "A table format.")
        .count();
    assert_eq!(scripted, 1);
    assert_eq!(bodies.len(), 1 + 2 + 1);

    let runs = records(&out);
    let chat = runs.iter().find(|r| r.case == "chat").expect("chat run");
    let turn2 = chat.turns[1].verdict.as_ref().expect("judged");
    for rule in &turn2.rules {
        assert!(!rule.passed, "{rule:?}");
        assert!(
            rule.detail
                .as_deref()
                .is_some_and(|d| d.starts_with("no documents were retrieved")),
            "{rule:?}"
        );
    }
    // The skipped rules do not apply to the scripted case's turn 2: it passes.
    let scripted = runs.iter().find(|r| r.case == "scripted").expect("run");
    assert_eq!(scripted.status.label(), "passed");
    assert!(
        scripted.turns[1]
            .verdict
            .as_ref()
            .is_some_and(|v| v.rules.is_empty())
    );
}

#[test]
fn a_command_chain_reads_the_messages_on_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write(
        dir.path(),
        "chat.py",
        "import json, sys\n\
         ask = json.load(sys.stdin)\n\
         said = ' | '.join(m['role'] + ': ' + m['content'] for m in ask.get('messages', []))\n\
         print(json.dumps({'answer': f\"turn {ask.get('turn')}: {said}\", 'documents': []}))\n",
    );
    let suite = write(
        dir.path(),
        "suite.yaml",
        &format!(
            "name: cmd\nchain: {{kind: command, cmd: [python3, '{script}']}}\nruns: 1\n\
             cases:\n  - id: chat\n    turns:\n      - question: Hi?\n        answer: Hello.\n      \
             - question: And then?\n        expect: {{answer: {{contains: ['turn 2: user: Hi? | assistant: Hello. | user: And then?']}}}}\n"
        ),
    );
    let out = dir.path().join("out");
    let output = run_suite(&suite, &out, &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn the_openai_model_gets_the_history_as_chat_messages() {
    let model = Sink::answering(|request: &Received| {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let count = body["messages"].as_array().map_or(0, Vec::len);
        Reply::Json(
            200,
            serde_json::json!({
                "choices": [{"message": {"role": "assistant", "content": format!("reply {count}")}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2}
            })
            .to_string(),
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = write(
        dir.path(),
        "suite.yaml",
        &format!(
            "name: model\n\
             chain:\n  retriever: {{kind: memory, corpus: '{{ROOT}}/suites/databricks/corpus.jsonl', k: 2, history: standalone}}\n  \
             prompt: 'Context: {{% for d in documents %}}{{{{ d.text }}}} {{% endfor %}}Question: {{{{ question }}}}'\n  \
             llm: {{kind: openai, base_url: '{}/v1', model: m}}\nruns: 1\n\
             cases:\n  - id: chat\n    turns:\n      - question: Are Databricks databases just files on S3?\n      \
             - question: And what does that cost?\n",
            model.base()
        ),
    );
    let out = dir.path().join("out");
    let output = run_suite(&suite, &out, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let bodies: Vec<serde_json::Value> = model.json_bodies();
    assert_eq!(bodies.len(), 2);
    let second = &bodies[1]["messages"];
    assert_eq!(second[0]["role"], "user");
    assert_eq!(
        second[0]["content"],
        "Are Databricks databases just files on S3?"
    );
    assert_eq!(
        second[1],
        serde_json::json!({"role": "assistant", "content": "reply 1"})
    );
    let prompt = second[2]["content"].as_str().unwrap_or_default();
    assert!(
        prompt.starts_with("Context: ") && prompt.ends_with("Question: And what does that cost?"),
        "{prompt}"
    );
    // The standalone query joined the question the follow-up leans on.
    let run = &records(&out)[0];
    let query = run
        .trace
        .as_ref()
        .and_then(|t| {
            t.spans
                .iter()
                .filter_map(|s| s.attributes.get("query")?.as_str())
                .nth(1)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    assert_eq!(
        query,
        "Are Databricks databases just files on S3? And what does that cost?"
    );
}

#[test]
fn baseline_diff_adaptive_and_shards_take_conversation_cases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("base");
    let output = run_suite(
        SUITE,
        &base,
        &[
            "--runs",
            "10",
            "--chain",
            "suites/databricks/chains/support-filtered.yaml",
        ],
    );
    assert_eq!(output.status.code(), Some(0));
    // Against the fixed chain's baseline, the shipped chain regresses on both cases.
    let now = dir.path().join("now");
    let output = crate::common::ragprobe()
        .args(["run", SUITE, "--progress", "none", "--runs", "10", "--out"])
        .arg(&now)
        .arg("--baseline")
        .arg(&base)
        .output()
        .expect("runs");
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("REGRESSION"), "{stdout}");
    let diff = crate::common::ragprobe()
        .arg("diff")
        .arg(&base)
        .arg(&now)
        .output()
        .expect("diff");
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff.stdout));

    // runs: auto decides each conversation case.
    let auto = dir.path().join("auto");
    let output = run_suite(SUITE, &auto, &["--runs", "auto"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(records(&auto).len() < 2 * 100, "{stdout}");

    // Two shards merge into the whole.
    let shards: Vec<std::path::PathBuf> = (1..=2)
        .map(|i| {
            let shard = dir.path().join(format!("shard{i}"));
            let output = run_suite(
                SUITE,
                &shard,
                &["--runs", "4", "--shard", &format!("{i}/2")],
            );
            assert_eq!(output.status.code(), Some(1));
            shard
        })
        .collect();
    let merged = dir.path().join("merged");
    let output = crate::common::merge(&shards, &merged);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    let runs = records(&merged);
    assert_eq!(runs.len(), 8);
    assert!(runs.iter().all(|r| r.turns.len() == 2));
    assert!(merged.join("turns.parquet").exists());
}

fn repro(args: &[&str]) -> (Option<i32>, String, String) {
    let output = crate::common::ragprobe()
        .args(args)
        .output()
        .expect("ragprobe runs");
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn repro_and_triage_take_a_conversations_turn_live_or_scripted() {
    let case = [
        "--suite",
        SUITE,
        "--case",
        "storage-then-cost",
        "--bad",
        r"matches: t4g\.micro",
    ];
    let (code, stdout, stderr) = repro(&[&["repro"][..], &case, &["--max-runs", "40"]].concat());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("repro: \"And what does that cost?\"\nturn 2 of case `storage-then-cost`, after 1 earlier turn (asked live on every run"), "{stdout}");
    assert!(stdout.contains("└─ CHAIN turn 2"), "{stdout}");

    // Scripted: the earlier turn is asked once and its answer fixed for every run.
    let (code, stdout, _) = repro(
        &[
            &["repro"][..],
            &case,
            &["--max-runs", "40", "--history", "scripted"],
        ]
        .concat(),
    );
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("(answers fixed (scripted) for every run):\n  1. \"Are Databricks databases just files on S3?\" → \"Databases are built on Delta Lake"),
        "{stdout}"
    );

    // Turn 1 never recommends t4g.micro: not reproduced.
    let (code, stdout, _) =
        repro(&[&["repro"][..], &case, &["--turn", "1", "--max-runs", "16"]].concat());
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("turn 1 of case `storage-then-cost`: the first, no history"),
        "{stdout}"
    );

    let (code, _, stderr) = repro(&[&["repro"][..], &case, &["--turn", "3"]].concat());
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--turn 3: the conversation has 2 turns"),
        "{stderr}"
    );
    let (code, _, stderr) = repro(&[
        "repro",
        "--suite",
        SUITE,
        "--case",
        "cost-after-a-scripted-answer",
        "--turn",
        "1",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("that turn's answer is scripted"),
        "{stderr}"
    );
    let (code, _, stderr) = repro(&[&["repro"][..], &case, &["--save-case", "x.yaml"]].concat());
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--save-case appends a single question"),
        "{stderr}"
    );

    // Triage edits the last turn only and blames the retriever of that turn.
    let (code, stdout, stderr) = repro(&[&["triage"][..], &case, &["--runs", "20"]].concat());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("cause: the retriever returned an aws-tagged document (4)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"suggested fix: retriever filter {"docs":"databricks"}"#),
        "{stdout}"
    );
}

#[test]
fn an_otlp_session_imports_as_a_conversation_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    run_suite(
        SUITE,
        &out,
        &["--runs", "1", "--filter", "storage-then-cost"],
    );
    let file = dir.path().join("traces.jsonl");
    let exported = crate::common::ragprobe()
        .arg("export")
        .arg(&out)
        .arg("--out")
        .arg(&file)
        .output()
        .expect("export");
    assert_eq!(exported.status.code(), Some(0));
    let run = &records(&out)[0];
    let session = format!("ragprobe-{}", run.trace.as_ref().expect("trace").trace_id);
    let suite = write(
        dir.path(),
        "regressions.yaml",
        "name: regressions\nchain: {ROOT}/suites/databricks/chains/support.yaml\nvars: {product: Databricks}\ncases:\n",
    );
    let import = |session: &str| {
        crate::common::ragprobe()
            .args(["import", "--otlp-json"])
            .arg(&file)
            .args(["--session", session, "--suite", &suite])
            .output()
            .expect("import")
    };
    let output = import(&session);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("a conversation of 2 turns from session"),
        "{}",
        text(&output.stdout)
    );
    let written = std::fs::read_to_string(&suite).expect("suite");
    assert!(
        written.contains(
            "    turns:\n    - question: Are Databricks databases just files on S3?\n      answer: "
        ),
        "{written}"
    );
    assert!(written.contains("    - question: And what does that cost?\n      expect:\n        answer:\n          not_contains:"), "{written}");
    // The imported case runs from the history the user saw: turn 1 scripted.
    let rerun = dir.path().join("rerun");
    let output = run_suite(&suite, &rerun, &["--runs", "3"]);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}",
        text(&output.stdout)
    );
    for run in records(&rerun) {
        assert!(run.turns[0].scripted);
        assert_eq!(run.turns[1].question, "And what does that cost?");
    }

    let output = import("no-such-session");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("no trace of session `no-such-session`"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn the_openai_style_preset_sends_the_chat_and_reads_choices() {
    let service = Sink::answering(|request: &Received| {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let asked = body["messages"].as_array().map_or(0, Vec::len);
        Reply::Json(
            200,
            serde_json::json!({
                "choices": [{"message": {"role": "assistant", "content": format!("{asked} messages"),
                    "context": {"citations": [{"id": "1", "content": "Delta files.", "metadata": {"docs": "databricks"}}]}}}]
            })
            .to_string(),
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = write(
        dir.path(),
        "suite.yaml",
        &format!(
            "name: oai\nchain: {{kind: http, url: '{}/v1/chat/completions', preset: openai}}\nruns: 1\n\
             vars: {{model: support-bot}}\n\
             rules:\n  - id: only-databricks-docs\n    retrieved: {{every: {{docs: databricks}}}}\n\
             cases:\n  - id: chat\n    turns:\n      - question: What is Delta?\n      \
             - question: And its cost?\n        expect: {{answer: {{contains: ['3 messages']}}}}\n",
            service.base()
        ),
    );
    let out = dir.path().join("out");
    let output = run_suite(&suite, &out, &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let bodies: Vec<serde_json::Value> = service.json_bodies();
    assert_eq!(bodies[1]["model"], "support-bot");
    assert_eq!(bodies[1]["messages"][1]["content"], "1 messages");
    assert_eq!(records(&out)[0].turns[1].retrieved[0].id, "1");
}

#[test]
fn a_failed_turn_is_not_hidden_by_a_later_error_and_the_judge_sees_the_history() {
    // Turn 1 retrieves the aws document; turn 2 is a server error.
    let service = Sink::answering(|request: &Received| {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        if body["turn"] == 2 {
            return Reply::Json(500, r#"{"error": "down"}"#.into());
        }
        Reply::Json(
            200,
            serde_json::json!({"answer": "Use t4g.micro.", "documents": [{"id": "4", "text": "t4g", "metadata": {"docs": "aws"}}]})
                .to_string(),
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = write(
        dir.path(),
        "suite.yaml",
        &format!(
            "name: masked\nchain: {{kind: http, url: '{}/chat', limits: {{retries: 0}}}}\nruns: 2\nmax_error_rate: 1.0\n\
             rules:\n  - id: only-databricks-docs\n    retrieved: {{every: {{docs: databricks}}}}\n\
             cases:\n  - id: chat\n    turns:\n      - question: What does it cost?\n      - question: Why?\n",
            service.base()
        ),
    );
    let out = dir.path().join("out");
    let output = run_suite(&suite, &out, &[]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("result: FAIL · 1 of 1 cases failed: chat"),
        "{stdout}"
    );
    for run in records(&out) {
        assert_eq!(run.status.label(), "failed");
        assert!(
            run.error
                .as_deref()
                .is_some_and(|e| e.starts_with("turn 2: "))
        );
        assert_eq!(run.turns[1].status.label(), "error");
    }

    // The judge of turn 2 is shown the conversation before it.
    let judge = Sink::answering(|_: &Received| {
        Reply::Json(
            200,
            serde_json::json!({"choices": [{"message": {"content": r#"{"verdict": "pass", "reason": "ok"}"#}, "finish_reason": "stop"}]})
                .to_string(),
        )
    });
    let judged = write(
        dir.path(),
        "judged.yaml",
        &format!(
            "name: judged\nchain: {{ROOT}}/suites/databricks/chains/support.yaml\nvars: {{product: Databricks}}\nruns: 1\n\
             judge: {{kind: openai, base_url: '{}/v1', model: judge}}\n\
             rules:\n  - id: relevant\n    answer: {{judge: {{criterion: relevance}}}}\n\
             cases:\n  - id: chat\n    turns:\n      - question: Are Databricks databases just files on S3?\n        answer: Yes, Delta files.\n      \
             - question: And what does that cost?\n",
            judge.base()
        ),
    );
    let output = run_suite(&judged, &dir.path().join("judged"), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let prompt: serde_json::Value =
        serde_json::from_slice(&judge.requests()[0].body).expect("json");
    let prompt = prompt["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        prompt.contains(
            "Conversation so far:\nuser: Are Databricks databases just files on S3?\nassistant: Yes, Delta files.\n\nQuestion: And what does that cost?"
        ),
        "{prompt}"
    );
}

#[test]
fn a_service_that_keeps_the_history_gets_one_session_id_per_run() {
    let service = Sink::answering(|_: &Received| {
        Reply::Json(
            200,
            serde_json::json!({"answer": "ok", "documents": []}).to_string(),
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = write(
        dir.path(),
        "suite.yaml",
        &format!(
            "name: stateful\nchain:\n  kind: http\n  url: '{}/chat'\n  body: '{{\"q\": {{{{ question | tojson }}}}, \"session\": {{{{ session_id | tojson }}}}}}'\nruns: 2\n\
             cases:\n  - id: chat\n    turns:\n      - question: one\n      - question: two\n",
            service.base()
        ),
    );
    let output = run_suite(&suite, &dir.path().join("out"), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let sessions: Vec<String> = service
        .requests()
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
            body["session"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(sessions.len(), 4);
    let distinct: std::collections::HashSet<&String> = sessions.iter().collect();
    assert_eq!(
        distinct.len(),
        2,
        "one id per run, shared by its turns: {sessions:?}"
    );
    assert!(sessions.iter().all(|s| s.starts_with("ragprobe-")));
}

#[test]
fn a_session_whose_spans_were_exported_in_batches_imports_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    run_suite(
        SUITE,
        &out,
        &["--runs", "1", "--filter", "storage-then-cost"],
    );
    let whole = dir.path().join("whole.jsonl");
    crate::common::ragprobe()
        .arg("export")
        .arg(&out)
        .arg("--out")
        .arg(&whole)
        .output()
        .expect("export");
    // Re-written as an OTel file exporter does: a batch (here one span) per line.
    let mut lines = Vec::new();
    for line in std::fs::read_to_string(&whole).expect("export").lines() {
        let request: serde_json::Value = serde_json::from_str(line).expect("json");
        for resource in request["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let mut one = resource.clone();
                    one["scopeSpans"] =
                        serde_json::json!([{"scope": scope["scope"], "spans": [span]}]);
                    lines.push(serde_json::json!({"resourceSpans": [one]}).to_string());
                }
            }
        }
    }
    let split = dir.path().join("split.jsonl");
    std::fs::write(&split, lines.join("\n")).expect("write");
    let session = format!(
        "ragprobe-{}",
        records(&out)[0].trace.as_ref().expect("trace").trace_id
    );
    let suite = write(
        dir.path(),
        "regressions.yaml",
        "name: regressions\nchain: {ROOT}/suites/databricks/chains/support.yaml\nvars: {product: Databricks}\ncases:\n",
    );
    let output = crate::common::ragprobe()
        .args(["import", "--otlp-json"])
        .arg(&split)
        .args(["--session", &session, "--suite", &suite])
        .output()
        .expect("import");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let cases = crate::common::suite_cases(Path::new(&suite));
    let turns = cases[0].turns.as_ref().expect("a conversation");
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_eq!(turns[1].question, "And what does that cost?");
}
