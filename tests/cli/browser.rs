//! report.html and diff.html in real headless Chromium, driven through chromedriver's
//! WebDriver API: the pages render without console errors (a CSP-blocked script would be
//! one), the case tables have the right rows, runs expand, hostile text stays text, and a
//! screenshot of each page is saved under the test's output folder.
//!
//! Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{ragprobe, run_suite};
use base64::Engine;

use crate::common::servers::{spawn_group, stop_group};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "install Debian's chromium and chromium-driver (bash .ci/run does)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let driver = spawn_group(
            Command::new(CHROMEDRIVER)
                .args([
                    format!("--port={port}"),
                    "--allowed-ips=127.0.0.1".to_owned(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1400",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created = post(&format!("{base}/session"), &capabilities);
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Browser {
            driver,
            base,
            session,
            _profile: profile,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}/{path}", self.base, self.session)
    }

    fn open(&self, file: &Path) {
        let absolute = std::fs::canonicalize(file).expect("page exists");
        post(
            &self.url("url"),
            &json!({"url": format!("file://{}", absolute.display())}),
        );
    }

    fn run(&self, script: &str) -> Value {
        post(
            &self.url("execute/sync"),
            &json!({"script": script, "args": []}),
        )["value"]
            .clone()
    }

    fn console_errors(&self) -> Vec<String> {
        let logs = post(&self.url("se/log"), &json!({"type": "browser"}));
        logs["value"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let shot: Value = ureq::get(self.url("screenshot"))
            .call()
            .expect("screenshot")
            .body_mut()
            .read_json()
            .expect("JSON");
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["value"].as_str().unwrap_or_default())
            .expect("base64 PNG");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("screenshot written");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(format!("{}/session/{}", self.base, self.session)).call();
        stop_group(&mut self.driver);
    }
}

fn post(url: &str, body: &Value) -> Value {
    ureq::post(url)
        .send_json(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .body_mut()
        .read_json()
        .expect("JSON reply")
}

/// Opens every fold, twice: run details are created when their case opens.
const EXPAND: &str = "document.querySelectorAll('details').forEach(function (d) { d.open = true; }); return document.querySelectorAll('details').length;";

fn expand_all(browser: &Browser) {
    let mut last = 0;
    for _ in 0..10 {
        let count = browser.run(EXPAND).as_u64().unwrap_or(0);
        if count == last {
            return;
        }
        last = count;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many inline SVG charts the page shows, each laid out with a height (-1 if any is
/// empty).
const CHARTS_DRAWN: &str = "var charts = Array.from(document.querySelectorAll('svg.chart')); \
    return charts.every(function (c) { return c.getBoundingClientRect().height > 0; }) ? charts.length : -1;";

#[test]
fn reports_render_in_chromium_without_errors() {
    let before = tempfile::tempdir().expect("tempdir");
    let after = tempfile::tempdir().expect("tempdir");
    run_suite("suites/databricks/before-fix.yaml", before.path(), &[]);
    run_suite("suites/databricks/after-fix.yaml", after.path(), &[]);
    let status = ragprobe()
        .arg("diff")
        .args([before.path(), after.path()])
        .output()
        .expect("diff runs")
        .status;
    assert!(status.success());

    let browser = Browser::start();
    browser.open(&before.path().join("report.html"));
    assert_eq!(
        browser.run("return document.querySelectorAll('#cases tbody tr').length;"),
        2
    );
    expand_all(&browser);
    // The script ran under the CSP: 40 runs are drawn, and the aws document is flagged.
    assert_eq!(
        browser.run("return document.querySelectorAll('details.run').length;"),
        40
    );
    let flagged = browser.run("return document.querySelectorAll('.doc.violating').length;");
    assert_eq!(
        flagged, 20,
        "document 4 flagged in each of the 20 cost runs"
    );
    // The charts are inline SVG, drawn with scripts or without: four for the suite, and a
    // waterfall for each of the 40 runs drawn in detail.
    assert_eq!(browser.run(CHARTS_DRAWN), 4 + 40);
    assert_eq!(
        browser.run("return document.querySelectorAll('details.run svg.waterfall g.span').length;"),
        160,
        "four spans per run"
    );
    // Prompts are rebuilt from the page's one copy of each document.
    let prompts = browser.run(
        "return Array.from(document.querySelectorAll('pre.prompt')).map(function (p) { return p.textContent; }).join('\\u0000');",
    );
    let prompts = prompts.as_str().unwrap_or_default();
    assert!(
        prompts.contains("Context:\n[4] Database instances cost money by the hour and must be running to answer queries. For prototyping, t4g.micro instances are a good choice.\n[2] Because")
            && prompts.contains("Context:\n[1] Databases are built on Delta Lake")
            && prompts.matches("Answer:").count() == 40,
        "{prompts}"
    );
    // Filtering by status hides the passing case.
    browser.run("var s = document.getElementById('status-filter'); s.value = 'fail'; s.dispatchEvent(new Event('change'));");
    assert_eq!(
        browser.run("return document.querySelectorAll('#cases tbody tr:not([hidden])').length;"),
        1
    );
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    let shot = browser.screenshot("report-before-fix.png");
    eprintln!("screenshot: {}", shot.display());

    browser.open(&after.path().join("diff.html"));
    assert_eq!(
        browser.run("return document.querySelectorAll('#cases tbody tr').length;"),
        2
    );
    // Forest plot, documents, latency, and a waterfall per side of both cases.
    assert_eq!(browser.run(CHARTS_DRAWN), 3 + 4);
    let deleted = browser.run("return document.querySelector('.answer-diff del') !== null;");
    assert_eq!(deleted, true, "the answer diff marks removed words");
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    let shot = browser.screenshot("diff-before-after.png");
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn hostile_documents_do_not_execute() {
    let out = tempfile::tempdir().expect("tempdir");
    run_suite("tests/fixtures/hostile/suite.yaml", out.path(), &[]);
    let browser = Browser::start();
    browser.open(&out.path().join("report.html"));
    expand_all(&browser);
    assert_eq!(browser.run("return typeof window.__pwned;"), "undefined");
    let text = browser.run("return document.body.innerText;");
    let text = text.as_str().unwrap_or_default();
    assert!(
        text.contains("<script>window.__pwned = 1</script>"),
        "shown as text"
    );
    assert!(
        text.contains("onerror=\"window.__pwned = 2\""),
        "shown as text"
    );
    assert!(text.contains("hostile <b>suite</b>"));
    // In the charts too, hostile ids are text: the pass-rate chart's title and label.
    let title = browser.run("return document.querySelector('svg.pass-rates title').textContent;");
    assert!(
        title
            .as_str()
            .unwrap_or_default()
            .starts_with("case <script>window.__pwned = 5</script>: "),
        "{title}"
    );
    assert_eq!(
        browser.run("return document.querySelectorAll('svg.chart script, svg.chart b').length;"),
        0
    );
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    let shot = browser.screenshot("report-hostile.png");
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn a_500_case_report_stays_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = dir.path().join("suite.yaml");
    let mut text = format!(
        "name: five hundred\nchain:\n  retriever: {{kind: memory, corpus: '{}/suites/databricks/corpus.jsonl', k: 2}}\n  llm: {{kind: extractive}}\nruns: 2\nmin_pass_rate: 0.5\ncases:\n",
        crate::common::servers::ROOT
    );
    let questions = [
        "How does Databricks store databases?",
        "How much does it cost to run a database?",
    ];
    for i in 0..500 {
        text.push_str(&format!(
            "  - id: case-{i:03}-with-a-rather-long-descriptive-name\n    question: {}\n    expect: {{sources: ['{}']}}\n",
            questions[i % 2],
            ["1", "3"][i % 2]
        ));
    }
    std::fs::write(&suite, text).expect("suite");
    let out = dir.path().join("out");
    run_suite(suite.to_str().expect("utf-8"), &out, &[]);
    let browser = Browser::start();
    browser.open(&out.join("report.html"));
    assert_eq!(
        browser.run(CHARTS_DRAWN),
        3,
        "pass rates, latency, retrieval"
    );
    assert_eq!(
        browser.run("return document.querySelectorAll('svg.pass-rates g.mark').length;"),
        500
    );
    // 16 px a case: as readable at 500 cases as at 2.
    let height = browser
        .run("return document.querySelector('svg.pass-rates').getBoundingClientRect().height;");
    assert!(
        height.as_f64().unwrap_or_default() < 500.0 * 16.0 + 60.0,
        "{height}"
    );
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    let shot = browser.screenshot("report-500-cases.png");
    eprintln!("screenshot: {}", shot.display());
}
