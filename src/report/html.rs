//! `report.html`: one self-contained file. The case table is rendered here (minijinja,
//! HTML auto-escaping); runs travel as compact JSON inside a non-executable script block
//! and are drawn on demand, 50 per page, with `textContent` only. A Content-Security-Policy
//! allows no network access and only the one inline script carrying this file's nonce.

use std::collections::{BTreeMap, HashMap};

use minijinja::value::Serde;
use minijinja::{Environment, context};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::report::terminal::SuiteReport;
use crate::store::{RunRecord, RunStatus};
use crate::suite::Suite;
use crate::trace::{SpanKind, SpanStatus};

const TEMPLATE: &str = include_str!("../../templates/report.html");
const SCRIPT: &str = include_str!("../../templates/report.js");

#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("reading runs: {0}")]
    Runs(#[from] std::io::Error),
    #[error("rendering the template: {0}")]
    Template(#[from] minijinja::Error),
    #[error("encoding run data: {0}")]
    Json(#[from] serde_json::Error),
}

/// One run, in the compact shape the page's script reads.
#[derive(Serialize)]
struct CompactRun {
    /// Run index.
    r: u32,
    /// `p`assed, `f`ailed or `e`rror.
    s: &'static str,
    /// Seed, as a string: JavaScript numbers lose precision above 2^53.
    sd: String,
    /// Duration in milliseconds.
    d: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<usize>,
    /// Retrieved documents: (id, score).
    docs: Vec<(String, f64)>,
    /// Rules this run broke.
    br: Vec<String>,
    /// Failed expectations, one line each.
    ex: Vec<String>,
    /// Offending document id → rules it broke.
    off: BTreeMap<String, Vec<String>>,
    /// Spans: (kind, name, start µs after the root, duration µs, ok).
    sp: Vec<(SpanKind, String, u64, u64, bool)>,
}

#[derive(Serialize)]
struct DocumentView {
    text: String,
    metadata: Map<String, Value>,
}

/// Everything the page's script needs; texts repeated across runs are stored once.
#[derive(Serialize, Default)]
struct PageData {
    strings: Vec<String>,
    documents: BTreeMap<String, DocumentView>,
    runs: BTreeMap<String, Vec<CompactRun>>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl PageData {
    fn intern(&mut self, text: &str) -> usize {
        if let Some(&at) = self.index.get(text) {
            return at;
        }
        self.strings.push(text.to_owned());
        self.index.insert(text.to_owned(), self.strings.len() - 1);
        self.strings.len() - 1
    }

    fn add(&mut self, record: RunRecord) {
        for doc in &record.retrieved {
            self.documents
                .entry(doc.id.clone())
                .or_insert_with(|| DocumentView {
                    text: doc.text.clone(),
                    metadata: doc.metadata.clone(),
                });
        }
        let mut broken = Vec::new();
        let mut expectations = Vec::new();
        let mut offending: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(verdict) = &record.verdict {
            for rule in verdict.rules.iter().filter(|r| !r.passed) {
                broken.push(rule.id.clone());
                for id in &rule.offending_documents {
                    offending
                        .entry(id.clone())
                        .or_default()
                        .push(rule.id.clone());
                }
            }
            for failure in &verdict.failed_expectations {
                expectations.push(format!("{}: {}", failure.check, failure.detail));
            }
        }
        let spans = record
            .trace
            .as_ref()
            .map(|trace| {
                let origin = trace.spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
                trace
                    .spans
                    .iter()
                    .map(|s| {
                        (
                            s.kind,
                            s.name.clone(),
                            (s.start_ns - origin) / 1000,
                            s.duration_ns() / 1000,
                            s.status == SpanStatus::Ok,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let has_output = record.status != RunStatus::Error;
        let compact = CompactRun {
            r: record.run,
            s: match record.status {
                RunStatus::Passed => "p",
                RunStatus::Failed => "f",
                RunStatus::Error => "e",
            },
            sd: record.seed.to_string(),
            d: (record.duration_ms * 1000.0).round() / 1000.0,
            a: has_output.then(|| self.intern(&record.answer)),
            p: has_output.then(|| self.intern(&record.prompt)),
            e: record.error.as_deref().map(|e| self.intern(e)),
            docs: record
                .retrieved
                .iter()
                .map(|d| (d.id.clone(), d.score))
                .collect(),
            br: broken,
            ex: expectations,
            off: offending,
            sp: spans,
        };
        self.runs.entry(record.case).or_default().push(compact);
    }
}

#[derive(Serialize)]
struct RuleView {
    id: String,
    severity: String,
    max_rate: String,
    check: String,
}

pub fn render(
    report: &SuiteReport,
    suite: &Suite,
    runs: impl Iterator<Item = std::io::Result<RunRecord>>,
    nonce: &str,
) -> Result<String, HtmlError> {
    let mut data = PageData::default();
    for record in runs {
        data.add(record?);
    }
    for list in data.runs.values_mut() {
        list.sort_by_key(|r| r.r);
    }
    // `<` never appears outside strings in JSON, so escaping it keeps `</script>` in a
    // document from closing the data block, and the JSON stays valid.
    let data_json = serde_json::to_string(&data)?.replace('<', "\\u003c");

    let mut tags: Vec<String> = report
        .stats
        .cases
        .iter()
        .flat_map(|c| c.tags.iter().cloned())
        .collect();
    tags.sort_unstable();
    tags.dedup();
    let rules: Vec<RuleView> = suite
        .spec
        .rules
        .iter()
        .map(|r| RuleView {
            id: r.id.clone(),
            severity: format!("{:?}", r.severity).to_lowercase(),
            max_rate: r
                .max_rate
                .map_or("case or suite default".to_owned(), |m| m.0.to_string()),
            check: r.describe_check(),
        })
        .collect();
    let chain_config = serde_yaml::to_string(&suite.chain_config).unwrap_or_default();

    let mut env = Environment::new();
    env.add_template("report.html", TEMPLATE)?;
    let template = env.get_template("report.html")?;
    Ok(template.render(context! {
        report => Serde(report),
        version => env!("CARGO_PKG_VERSION"),
        chain_config => chain_config,
        rules => Serde(&rules),
        tags => tags,
        nonce => nonce,
        data_json => data_json,
        script => SCRIPT,
    })?)
}

/// A fresh nonce for the page's Content-Security-Policy.
pub fn new_nonce() -> String {
    let mut rng = fastrand::Rng::new();
    format!("{:016x}{:016x}", rng.u64(..), rng.u64(..))
}

const DIFF_TEMPLATE: &str = include_str!("../../templates/diff.html");

/// `diff.html`: static (no script at all), every text escaped by the template engine.
pub fn render_diff(diff: &crate::diff::DiffReport) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    env.add_template("diff.html", DIFF_TEMPLATE)?;
    env.get_template("diff.html")?.render(context! {
        diff => Serde(diff),
        version => env!("CARGO_PKG_VERSION"),
    })
}
