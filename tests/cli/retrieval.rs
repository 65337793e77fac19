//! Expected sources as trec_eval scores them: graded relevance, measures at the retriever's
//! k, and sources written wrong located before anything runs.

use crate::common::servers::ROOT;
use crate::common::{ragprobe, records, run_suite, text};

#[test]
fn graded_sources_are_scored_as_trec_eval_does_and_mistakes_are_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, sources: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "name: graded\n\
                 chain:\n  retriever: {{kind: memory, corpus: '{ROOT}/suites/databricks/corpus.jsonl', k: 2}}\n  \
                 prompt_file: '{ROOT}/examples/chains/support-prompt.j2'\n  llm: {{kind: extractive}}\n\
                 runs: 2\nvars: {{product: Databricks}}\n\
                 cases:\n  - id: cost\n    question: How much does it cost to run a database?\n    \
                 expect:\n      sources: {sources}\n      min_recall: 0.0\n"
            ),
        )
        .expect("suite");
        path
    };
    // The retriever returns 4 then 2 (k = 2); 2 is graded 1, 3 graded 2 and never returned.
    let path = write("graded.yaml", "{\"2\": 1, \"3\": 2, \"4\": 0}");
    let out = dir.path().join("out");
    let output = run_suite(path.to_str().expect("utf-8"), &out, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let run = &records(&out)[0];
    let metrics = run
        .verdict
        .as_ref()
        .expect("v")
        .sources
        .clone()
        .expect("metrics");
    let d = |rank: f64| 1.0 / (rank + 1.0).log2();
    // nDCG@2: DCG = 0 + 1·d(2); ideal = 2·d(1) + 1·d(2) over every judged grade.
    assert!(
        (metrics.ndcg - d(2.0) / (2.0 + d(2.0))).abs() < 1e-12,
        "{metrics:?}"
    );
    assert!((metrics.precision - 0.5).abs() < 1e-12);
    assert!((metrics.recall - 0.5).abs() < 1e-12);
    assert!((metrics.average_precision - 0.25).abs() < 1e-12);
    assert_eq!(metrics.k, 2);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("P@k") && stdout.contains("AP@k"),
        "{stdout}"
    );

    // A duplicate id, a negative grade: located, nothing run.
    for (name, sources, says) in [
        (
            "twice.yaml",
            "[\"2\", \"3\", \"2\"]",
            "document `2` is listed twice",
        ),
        ("negative.yaml", "{\"2\": -1}", "document `2` has grade -1"),
    ] {
        let path = write(name, sources);
        let (code, _, stderr) = crate::common::validate(&path);
        assert_eq!(code, Some(2));
        assert!(
            stderr.contains(&format!("{name}:")) && stderr.contains(says),
            "{stderr}"
        );
    }
}

#[test]
fn a_report_exports_as_a_trec_run_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    run_suite("suites/databricks/before-fix.yaml", &out, &["--runs", "3"]);
    let file = dir.path().join("before.run");
    let output = ragprobe()
        .arg("export")
        .arg(&out)
        .args(["--format", "trec", "--run", "1", "--out"])
        .arg(&file)
        .output()
        .expect("export");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("trec: 4 lines for 2 queries (run 1 of each case)"));
    let written = std::fs::read_to_string(&file).expect("run file");
    let runs = records(&out);
    for line in written.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 6, "{line}");
        assert_eq!(fields[1], "Q0");
        assert_eq!(fields[5], "databricks-support-before-fix");
        let record = runs
            .iter()
            .find(|r| r.case == fields[0] && r.run == 1)
            .expect("the query's run");
        let rank: usize = fields[3].parse().expect("rank");
        let doc = &record.retrieved[rank - 1];
        assert_eq!(fields[2], doc.id, "{line}");
        let score: f64 = fields[4].parse().expect("score");
        assert_eq!(Some(score), doc.score);
    }
    // Queries by id, whatever order the runs finished in.
    assert!(written.starts_with("cost Q0 4 1 "), "{written}");
    assert!(written.contains("\nstorage Q0 1 1 "), "{written}");
    // A TREC file needs a destination.
    let output = ragprobe()
        .arg("export")
        .arg(&out)
        .args(["--format", "trec"])
        .output()
        .expect("export");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn qrels_and_topics_import_as_a_scored_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let put = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("file");
        path
    };
    let chain = put(
        "chain.yaml",
        &format!(
            "retriever: {{kind: memory, corpus: '{ROOT}/suites/databricks/corpus.jsonl', k: 2}}\nllm: {{kind: extractive}}\n"
        ),
    );
    let topics = put(
        "topics.jsonl",
        "{\"qid\": \"cost\", \"query\": \"How much does it cost to run a database?\"}\n\
         {\"qid\": \"storage\", \"query\": \"How does Databricks store databases?\"}\n",
    );
    let qrels = put(
        "qrels",
        "cost 0 2 2\ncost 0 3 1\ncost 0 4 0\nstorage 0 1 1\n",
    );
    let suite = dir.path().join("imported.yaml");
    let import = |qrels: &std::path::Path, suite: &std::path::Path| {
        ragprobe()
            .args(["import", "--qrels"])
            .arg(qrels)
            .arg("--topics")
            .arg(&topics)
            .arg("--suite")
            .arg(suite)
            .arg("--chain")
            .arg(&chain)
            .output()
            .expect("import")
    };
    let output = import(&qrels, &suite);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("wrote 2 cases"));
    let out = dir.path().join("out");
    let output = run_suite(suite.to_str().expect("utf-8"), &out, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let cost = records(&out)
        .into_iter()
        .find(|r| r.case == "cost")
        .expect("cost");
    // Retrieved 4 (grade 0) then 2 (grade 2); the ideal is 2 then 3 (grade 1).
    let d = |rank: f64| 1.0 / (rank + 1.0).log2();
    let ndcg = cost.verdict.expect("v").sources.expect("metrics").ndcg;
    assert!(
        (ndcg - 2.0 * d(2.0) / (2.0 + d(2.0))).abs() < 1e-12,
        "{ndcg}"
    );

    // A malformed judgement is named with its line; an existing suite is not overwritten.
    let broken = put("broken", "cost 0 2 2\ncost 0 3\n");
    let output = import(&broken, &dir.path().join("new.yaml"));
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("broken:2: a qrels line is `qid iter docid grade`"));
    let output = import(&qrels, &suite);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_baseline_run_reports_retrieval_changes_paired_over_cases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = dir.path().join("before");
    run_suite(
        "suites/databricks/before-fix.yaml",
        &before,
        &["--runs", "3"],
    );
    let after = dir.path().join("after");
    let output = run_suite(
        "suites/databricks/after-fix.yaml",
        &after,
        &["--runs", "3", "--baseline", before.to_str().expect("utf-8")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("retrieval, paired over 2 cases"));
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(after.join("summary.json")).expect("summary.json"),
    )
    .expect("json");
    let changes = summary["baseline_retrieval"].as_array().expect("changes");
    let ndcg = changes
        .iter()
        .find(|c| c["measure"] == "ndcg")
        .expect("ndcg");
    // Only the cost case moved: from 0.39 to 1.
    assert_eq!(ndcg["test"]["cases"], 2);
    assert_eq!(ndcg["moved_most"][0][0], "cost");
    let moved = ndcg["moved_most"][0][1].as_f64().expect("delta");
    let d = |rank: f64| 1.0 / (rank + 1.0).log2();
    assert!(
        (moved - (1.0 - d(2.0) / (1.0 + d(2.0)))).abs() < 1e-9,
        "{moved}"
    );
    // Two pairs cannot show anything: every sign pattern is as extreme.
    assert_eq!(ndcg["test"]["p_randomization"], 1.0);
}

#[test]
fn a_non_deterministic_retriever_shows_its_spread_across_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A program that retrieves two of four documents at random (by the run's seed).
    let program = "import json,sys,random\n\
        r=json.load(sys.stdin)\n\
        ids=random.Random(r['seed']).sample(['1','2','3','4'],2)\n\
        print(json.dumps({'answer':'x','documents':[{'id':i,'text':'t'} for i in ids]}))";
    let chain = dir.path().join("chain.yaml");
    std::fs::write(
        &chain,
        format!(
            "kind: command\ncmd: [python3, -c, {}]\n",
            serde_json::json!(program)
        ),
    )
    .expect("chain");
    let suite = dir.path().join("suite.yaml");
    std::fs::write(
        &suite,
        "name: spread\nchain: chain.yaml\nruns: 12\nseed: 4\ncases:\n  - id: q\n    question: which?\n    \
         expect: {sources: ['2', '3'], k: 2, min_recall: 0.0}\n",
    )
    .expect("suite");
    let out = dir.path().join("out");
    let output = run_suite(suite.to_str().expect("utf-8"), &out, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let recalls: Vec<f64> = records(&out)
        .iter()
        .map(|r| {
            r.verdict
                .as_ref()
                .expect("v")
                .sources
                .as_ref()
                .expect("m")
                .recall
        })
        .collect();
    let n = recalls.len() as f64;
    let mean = recalls.iter().sum::<f64>() / n;
    let sd = (recalls.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    assert!(sd > 0.0, "the program should vary: {recalls:?}");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("summary.json"),
    )
    .expect("json");
    let sources = &summary["stats"]["cases"][0]["sources"];
    assert!(
        (sources["recall_sd"].as_f64().expect("sd") - sd).abs() < 1e-9,
        "{sources}"
    );
    assert!((sources["recall"].as_f64().expect("mean") - mean).abs() < 1e-9);
    assert!(
        text(&output.stdout).contains(&format!("{mean:.2} ±{sd:.2}")),
        "{}",
        text(&output.stdout)
    );
}

/// The graded collection in tests/fixtures/trec imported as a suite on a memory retriever
/// (k = 5), with `filter` on the retriever when given; returns the suite's path.
fn trec_suite(dir: &std::path::Path, name: &str, filter: Option<&str>) -> std::path::PathBuf {
    let fixture = std::path::Path::new(ROOT).join("tests/fixtures/trec");
    let chain = dir.join(format!("{name}-chain.yaml"));
    let filter = filter.map_or(String::new(), |f| format!(", filter: {f}"));
    std::fs::write(
        &chain,
        format!(
            "retriever: {{kind: memory, corpus: '{}', k: 5{filter}}}\nllm: {{kind: extractive}}\n",
            fixture.join("corpus.jsonl").display()
        ),
    )
    .expect("chain");
    let suite = dir.join(format!("{name}.yaml"));
    let output = ragprobe()
        .args(["import", "--qrels"])
        .arg(fixture.join("qrels"))
        .arg("--topics")
        .arg(fixture.join("topics.tsv"))
        .arg("--suite")
        .arg(&suite)
        .arg("--chain")
        .arg(&chain)
        .output()
        .expect("import");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    suite
}

fn summary(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary"))
        .expect("json")
}

#[test]
fn graded_measures_equal_pytrec_evals_on_a_test_collection() {
    let python = std::path::Path::new(ROOT).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run bash .ci/run, which installs pytrec-eval-terrier into .venv",
        python.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = trec_suite(dir.path(), "collection", None);
    let out = dir.path().join("out");
    let output = run_suite(suite.to_str().expect("utf-8"), &out, &["--runs", "1"]);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}",
        text(&output.stderr)
    );
    let run_file = dir.path().join("run.trec");
    let output = ragprobe()
        .arg("export")
        .arg(&out)
        .args(["--format", "trec", "--out"])
        .arg(&run_file)
        .output()
        .expect("export");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    // trec_eval re-sorts each query's documents by score: equal scores would put its order
    // and ragprobe's apart, so the collection must have none among a query's top 5.
    let run = std::fs::read_to_string(&run_file).expect("run file");
    let mut by_query: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for line in run.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        by_query
            .entry(fields[0])
            .or_default()
            .push(fields[4].parse().expect("score"));
    }
    assert_eq!(by_query.len(), 24, "{run}");
    for (query, scores) in &by_query {
        assert!(
            scores.windows(2).all(|w| w[0] > w[1]),
            "{query}: {scores:?}"
        );
    }
    let script = "import json,sys,pytrec_eval\n\
        qrels={}\n\
        for line in open(sys.argv[1]):\n    q,_,d,g=line.split(); qrels.setdefault(q,{})[d]=int(g)\n\
        run={}\n\
        for line in open(sys.argv[2]):\n    q,_,d,r,s,_=line.split(); run.setdefault(q,{})[d]=float(s)\n\
        m={'P_5','recall_5','recip_rank','ndcg_cut_5','map_cut_5'}\n\
        print(json.dumps(pytrec_eval.RelevanceEvaluator(qrels,m).evaluate(run)))";
    let output = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(std::path::Path::new(ROOT).join("tests/fixtures/trec/qrels"))
        .arg(&run_file)
        .output()
        .expect("pytrec_eval");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let reference: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let summary = summary(&out);
    let cases = summary["stats"]["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 24);
    let mut compared = 0;
    for case in cases {
        let id = case["id"].as_str().expect("id");
        let ours = &case["sources"];
        let theirs = &reference[id];
        for (mine, trec) in [
            ("precision", "P_5"),
            ("recall", "recall_5"),
            ("mrr", "recip_rank"),
            ("ndcg", "ndcg_cut_5"),
            ("average_precision", "map_cut_5"),
        ] {
            let a = ours[mine].as_f64().expect("ours");
            let b = theirs[trec].as_f64().expect("pytrec_eval's");
            assert!((a - b).abs() < 1e-9, "{id} {mine} {a} vs {trec} {b}");
            compared += 1;
        }
    }
    assert_eq!(compared, 120);
    // retrieved.parquet: one row per retrieved document, grades from the qrels; P@5 from
    // it is the summary's.
    let frame = polars::prelude::LazyFrame::scan_parquet(
        polars::prelude::PlRefPath::new(out.join("retrieved.parquet").to_string_lossy().as_ref()),
        Default::default(),
    )
    .and_then(|f| f.collect())
    .expect("retrieved.parquet reads");
    assert_eq!(frame.height(), run.lines().count());
    let column = |name: &str| {
        frame
            .column(name)
            .expect(name)
            .as_materialized_series()
            .clone()
    };
    let cases_column = column("case");
    let grades = column("grade");
    let ranks = column("rank");
    let mut relevant: std::collections::BTreeMap<String, u32> = Default::default();
    for row in 0..frame.height() {
        let case = cases_column.str_value(row).expect("case").into_owned();
        let grade: u32 = grades
            .str_value(row)
            .expect("grade")
            .parse()
            .expect("a grade");
        let rank: u32 = ranks.str_value(row).expect("rank").parse().expect("a rank");
        assert!((1..=5).contains(&rank));
        *relevant.entry(case).or_default() += u32::from(grade >= 1);
    }
    for case in cases {
        let id = case["id"].as_str().expect("id");
        let precision = f64::from(relevant.get(id).copied().unwrap_or(0)) / 5.0;
        assert!((case["sources"]["precision"].as_f64().expect("P") - precision).abs() < 1e-12);
    }
    // Graded: some case's nDCG differs from what binary grades would give, or the test
    // would not tell graded from binary.
    assert!(
        cases
            .iter()
            .any(|c| c["sources"]["ndcg"].as_f64() != Some(1.0)
                && c["sources"]["ndcg"].as_f64() != Some(0.0))
    );
}

#[test]
fn a_retriever_change_is_a_regression_when_its_paired_test_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = trec_suite(dir.path(), "full", None);
    let filtered = trec_suite(dir.path(), "filtered", Some("{source: docs}"));
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    run_suite(full.to_str().expect("utf-8"), &a, &["--runs", "1"]);
    run_suite(filtered.to_str().expect("utf-8"), &b, &["--runs", "1"]);
    let diff = |extra: &[&str]| {
        ragprobe()
            .arg("diff")
            .arg(&a)
            .arg(&b)
            .args(extra)
            .output()
            .expect("diff")
    };
    // Half the relevant passages are forum posts the filtered retriever never returns.
    let output = diff(&[]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("retrieval, paired over 24 cases"),
        "{stdout}"
    );
    assert!(stdout.contains("retrieval REGRESSION"), "{stdout}");
    let ndcg_row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("ndcg"))
        .expect("ndcg row");
    assert!(ndcg_row.contains("REGRESSION"), "{ndcg_row}");
    let diff_json = |x: &std::path::Path, y: &std::path::Path| -> serde_json::Value {
        let output = ragprobe()
            .arg("diff")
            .arg(x)
            .arg(y)
            .args(["--format", "json"])
            .output()
            .expect("diff");
        serde_json::from_slice(&output.stdout).expect("json")
    };
    let report = diff_json(&a, &b);
    let ndcg = report["retrieval"]
        .as_array()
        .expect("retrieval")
        .iter()
        .find(|c| c["measure"] == "ndcg")
        .expect("ndcg");
    assert_eq!(ndcg["change"], "regression");
    assert!(ndcg["test"]["p_randomization"].as_f64().expect("p") < 0.05);
    assert!(ndcg["test"]["mean_difference"].as_f64().expect("d") < 0.0);
    // Reported, not gated.
    let output = diff(&["--retrieval-gate", "off"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    // The same change judged against a baseline fails the run; reversed, it improves.
    let again = dir.path().join("again");
    let output = run_suite(
        filtered.to_str().expect("utf-8"),
        &again,
        &["--runs", "1", "--baseline", a.to_str().expect("utf-8")],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    let changes = summary(&again)["baseline_retrieval"].clone();
    assert!(
        changes
            .as_array()
            .expect("changes")
            .iter()
            .any(|c| c["measure"] == "ndcg" && c["change"] == "regression"),
        "{changes}"
    );
    let html = std::fs::read_to_string(b.join("diff.html")).expect("diff.html");
    assert!(html.contains("Retrieval, paired over 24 cases"));
    assert!(
        diff_json(&b, &a)["retrieval"]
            .as_array()
            .expect("retrieval")
            .iter()
            .any(|c| c["measure"] == "ndcg" && c["change"] == "improvement")
    );
}
