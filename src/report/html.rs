//! `report.html`: one self-contained file. The case table is rendered here (minijinja,
//! HTML auto-escaping); runs travel as compact JSON inside a non-executable script block
//! and are drawn on demand, 50 per page, with `textContent` only. A Content-Security-Policy
//! allows no network access and only the one inline script carrying this file's nonce.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use minijinja::value::Serde;
use minijinja::{Environment, context};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::record::{RunRecord, RunStatus};
use crate::model::summary::SuiteReport;
use crate::report::svg;
use crate::suite::Suite;
use crate::trace::{SpanKind, SpanStatus};

const TEMPLATE: &str = include_str!("../../templates/report.html");
/// Colours (light and dark) and chart styles, shared by report.html and diff.html.
const CHART_CSS: &str = include_str!("../../templates/charts.css");
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
    /// The prompt: an index into `prompts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<usize>,
    /// Retrieved documents: (id, score).
    docs: Vec<(String, Option<f64>)>,
    /// Rules this run broke.
    br: Vec<String>,
    /// Failed expectations, one line each.
    ex: Vec<String>,
    /// Offending document id → rules it broke.
    off: BTreeMap<String, Vec<String>>,
    /// Spans, in start order: (kind, name, start µs after the root, duration µs, ok,
    /// depth under the root).
    sp: Vec<(SpanKind, String, u64, u64, bool, usize)>,
}

#[derive(Serialize, Clone, PartialEq, Eq, Hash)]
#[serde(untagged)]
enum PromptPart {
    Text(usize),
    Document { d: String },
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
    /// Prompts as parts: a number is a string from `strings`, `{"d": id}` a retrieved
    /// document's text, which the page holds once in `documents`. Runs with the same
    /// prompt share one entry.
    prompts: Vec<Vec<PromptPart>>,
    #[serde(skip)]
    prompt_index: HashMap<Vec<PromptPart>, usize>,
    documents: BTreeMap<String, DocumentView>,
    runs: BTreeMap<String, Vec<CompactRun>>,
    #[serde(skip)]
    index: HashMap<String, usize>,
    /// Failing runs kept beyond the cap, per case.
    #[serde(skip)]
    extra_failures: HashMap<String, usize>,
}

/// Runs shown in detail per report; beyond it the page keeps, per case, the first runs by
/// index and the failing ones, so memory and file size stay bounded (runs.jsonl has all).
pub const DETAIL_LIMIT: usize = 10_000;

impl PageData {
    fn intern(&mut self, text: &str) -> usize {
        if let Some(&at) = self.index.get(text) {
            return at;
        }
        self.strings.push(text.to_owned());
        self.index.insert(text.to_owned(), self.strings.len() - 1);
        self.strings.len() - 1
    }

    /// The run's prompt with each retrieved document's text (where the prompt holds it
    /// verbatim) replaced by a reference: prompts repeat the documents' text, which made
    /// the page grow with every run.
    fn prompt_parts(&mut self, record: &RunRecord) -> Vec<PromptPart> {
        let mut parts = Vec::new();
        let mut rest = record.prompt.as_str();
        for doc in &record.retrieved {
            // Short texts could match by accident, and save nothing.
            if doc.text.len() < 32
                || self
                    .documents
                    .get(&doc.id)
                    .is_none_or(|d| d.text != doc.text)
            {
                continue;
            }
            if let Some(at) = rest.find(doc.text.as_str()) {
                if at > 0 {
                    parts.push(PromptPart::Text(self.intern(&rest[..at])));
                }
                parts.push(PromptPart::Document { d: doc.id.clone() });
                rest = &rest[at + doc.text.len()..];
            }
        }
        if !rest.is_empty() || parts.is_empty() {
            parts.push(PromptPart::Text(self.intern(rest)));
        }
        parts
    }

    /// Numbers the string table by first use in (case, run) order: runs arrive in the order
    /// they finished, which depends on scheduling, and the page must not.
    fn renumber_strings(&mut self) {
        let mut order: Vec<usize> = Vec::new();
        let mut new_index: HashMap<usize, usize> = HashMap::new();
        let mut renumber = |slot: &mut usize| {
            *slot = *new_index.entry(*slot).or_insert_with(|| {
                order.push(*slot);
                order.len() - 1
            });
        };
        let mut prompt_order: Vec<usize> = Vec::new();
        let mut new_prompt: HashMap<usize, usize> = HashMap::new();
        for run in self.runs.values_mut().flat_map(|runs| runs.iter_mut()) {
            if let Some(slot) = run.a.as_mut() {
                renumber(slot);
            }
            if let Some(slot) = run.p.as_mut() {
                let old = *slot;
                *slot = *new_prompt.entry(old).or_insert_with(|| {
                    if let Some(parts) = self.prompts.get_mut(old) {
                        for part in parts {
                            if let PromptPart::Text(at) = part {
                                renumber(at);
                            }
                        }
                    }
                    prompt_order.push(old);
                    prompt_order.len() - 1
                });
            }
            if let Some(slot) = run.e.as_mut() {
                renumber(slot);
            }
        }
        self.prompt_index.clear();
        let mut old_prompts: Vec<Option<Vec<PromptPart>>> = std::mem::take(&mut self.prompts)
            .into_iter()
            .map(Some)
            .collect();
        self.prompts = prompt_order
            .into_iter()
            .map(|i| {
                old_prompts
                    .get_mut(i)
                    .and_then(Option::take)
                    .unwrap_or_default()
            })
            .collect();
        self.index.clear();
        let mut old: Vec<Option<String>> = std::mem::take(&mut self.strings)
            .into_iter()
            .map(Some)
            .collect();
        self.strings = order
            .into_iter()
            .map(|i| old.get_mut(i).and_then(Option::take).unwrap_or_default())
            .collect();
    }

    /// Whether the run is drawn in detail: the first `cap` runs of each case by index, and
    /// up to `cap` failing runs beyond them.
    fn wanted(&mut self, record: &RunRecord, cap: usize) -> bool {
        if (record.run as usize) < cap {
            return true;
        }
        if record.status == RunStatus::Passed {
            return false;
        }
        let extra = self.extra_failures.entry(record.case.clone()).or_default();
        *extra += 1;
        *extra <= cap
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
                let mut spans: Vec<_> = trace
                    .spans
                    .iter()
                    .map(|s| {
                        (
                            s.kind,
                            s.name.clone(),
                            (s.start_ns - origin) / 1000,
                            s.duration_ns() / 1000,
                            s.status == SpanStatus::Ok,
                            trace.depth(s),
                        )
                    })
                    .collect();
                spans.sort_by_key(|s| s.2);
                spans
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
            p: has_output.then(|| {
                let parts = self.prompt_parts(&record);
                let next = self.prompts.len();
                *self.prompt_index.entry(parts.clone()).or_insert_with(|| {
                    self.prompts.push(parts);
                    next
                })
            }),
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

/// Writes the page to `out`. The run data is streamed into the page rather than built as
/// one string, so the page costs little memory beyond the runs it shows.
pub fn render(
    report: &SuiteReport,
    suite: &Suite,
    runs: impl Iterator<Item = std::io::Result<RunRecord>>,
    nonce: &str,
    out: &mut impl Write,
) -> Result<(), HtmlError> {
    let cap = (DETAIL_LIMIT / report.stats.cases.len().max(1)).max(50);
    let mut data = PageData::default();
    for record in runs {
        let record = record?;
        if data.wanted(&record, cap) {
            data.add(record);
        }
    }
    for list in data.runs.values_mut() {
        list.sort_by_key(|r| r.r);
    }
    data.renumber_strings();

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
    let shown: BTreeMap<&String, usize> = data.runs.iter().map(|(k, v)| (k, v.len())).collect();
    // Literal URLs and header values in the chain file may hold credentials.
    let chain_config =
        crate::secrets::scrub(&serde_yaml::to_string(&suite.chain_config).unwrap_or_default())
            .into_owned();

    let mut env = Environment::new();
    env.add_template("report.html", TEMPLATE)?;
    let page = env.get_template("report.html")?.render(context! {
        report => Serde(report),
        version => env!("CARGO_PKG_VERSION"),
        chain_config => chain_config,
        rules => Serde(&rules),
        shown => Serde(&shown),
        tags => tags,
        nonce => nonce,
        chart_css => CHART_CSS,
        gate_lines => report.gate.as_ref().zip(crate::report::gate_text::report_header(report)).map(
            |(gate, header)| {
                let mut lines = header.to_vec();
                lines.extend(crate::report::gate_text::power_lines(gate));
                lines
            }
        ),
        charts => context! {
            pass_rates => svg::pass_rates(&report.stats.cases),
            violations => svg::violations(&report.stats.cases),
            latency => svg::latency(&report.stats.cases),
            retrieval => svg::retrieval(&report.stats.cases),
        },
        data_json => DATA_MARK,
        script => SCRIPT,
    })?;
    let (head, tail) = page.split_once(DATA_MARK).unwrap_or((page.as_str(), ""));
    out.write_all(head.as_bytes())?;
    serde_json::to_writer(EscapeLessThan(&mut *out), &data)?;
    out.write_all(tail.as_bytes())?;
    Ok(())
}

/// The gate in words: the method, the suite's pass rate, what it could detect.
fn gate_lines(
    gate: &crate::model::summary::Gate,
    tests: &[crate::model::summary::CaseTest],
    min_effect: f64,
) -> Vec<String> {
    use crate::report::gate_text;
    let mut lines = vec![
        gate_text::method_line(gate, tests, min_effect),
        gate_text::pass_rate_line(gate, tests),
    ];
    lines.extend(gate_text::power_lines(gate));
    lines
}

/// Where the run data goes in the rendered page.
const DATA_MARK: &str = "\u{1}ragprobe-data\u{1}";

/// `<` never appears outside strings in JSON, so writing it as `\u003c` keeps a
/// `</script>` in a document from closing the data block, and the JSON stays valid.
struct EscapeLessThan<W>(W);

impl<W: Write> Write for EscapeLessThan<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(at) = rest.iter().position(|b| *b == b'<') {
            self.0.write_all(&rest[..at])?;
            self.0.write_all(b"\\u003c")?;
            rest = &rest[at + 1..];
        }
        self.0.write_all(rest)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
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
    let waterfalls: Vec<BTreeMap<&str, Option<String>>> = diff
        .cases
        .iter()
        .map(|case| {
            BTreeMap::from([
                ("A", case.a_run.as_ref().and_then(svg::waterfall)),
                ("B", case.b_run.as_ref().and_then(svg::waterfall)),
            ])
        })
        .collect();
    let tests: Vec<_> = diff.cases.iter().filter_map(|c| c.test).collect();
    env.get_template("diff.html")?.render(context! {
        diff => Serde(diff),
        gate_lines => gate_lines(&diff.gate, &tests, diff.min_effect),
        version => env!("CARGO_PKG_VERSION"),
        chart_css => CHART_CSS,
        charts => context! {
            forest => svg::forest(&diff.cases),
            documents => svg::documents_moved(&diff.cases),
            latency => svg::latency_shift(&diff.cases),
        },
        waterfalls => waterfalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(run: u32, status: RunStatus) -> RunRecord {
        RunRecord::blank("c", run, status)
    }

    #[test]
    fn detail_keeps_the_first_runs_and_up_to_cap_failures_beyond() {
        let mut data = PageData::default();
        let cap = 3;
        let kept: Vec<u32> = (0..10)
            .map(|run| {
                let status = if run % 2 == 0 {
                    RunStatus::Failed
                } else {
                    RunStatus::Passed
                };
                (run, status)
            })
            .filter(|(run, status)| data.wanted(&record(*run, *status), cap))
            .map(|(run, _)| run)
            .collect();
        // Runs 0-2 by index, then failing runs 4, 6, 8 (three beyond the cap).
        assert_eq!(kept, [0, 1, 2, 4, 6, 8]);
    }

    #[test]
    fn string_numbers_do_not_depend_on_arrival_order() {
        let mut one = PageData::default();
        let mut two = PageData::default();
        let mut a = record(0, RunStatus::Passed);
        a.answer = "first".into();
        let mut b = record(1, RunStatus::Passed);
        b.answer = "second".into();
        one.add(a.clone());
        one.add(b.clone());
        two.add(b);
        two.add(a);
        for data in [&mut one, &mut two] {
            for list in data.runs.values_mut() {
                list.sort_by_key(|r| r.r);
            }
            data.renumber_strings();
        }
        let json = |d: &PageData| serde_json::to_string(d).expect("serializes");
        assert_eq!(json(&one), json(&two));
        assert_eq!(one.strings[one.runs["c"][0].a.expect("answer")], "first");
    }

    #[test]
    fn less_than_is_escaped_in_the_data_block() {
        let mut out = Vec::new();
        EscapeLessThan(&mut out)
            .write_all(br#"{"t":"</script><b>"}"#)
            .expect("writes");
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"t":"\u003c/script>\u003cb>"}"#
        );
    }

    #[test]
    fn prompts_refer_to_documents_instead_of_repeating_them() {
        use crate::model::record::RetrievedDoc;
        let doc = |id: &str, text: &str| RetrievedDoc {
            id: id.into(),
            text: text.into(),
            metadata: Default::default(),
            score: None,
        };
        let long_a = "Databricks stores every table as Delta files in cloud storage.";
        let long_b = "For prototyping, t4g.micro instances are a cheap choice on AWS.";
        let mut data = PageData::default();
        for run in 0..3 {
            let mut r = record(run, RunStatus::Passed);
            r.retrieved = vec![doc("1", long_a), doc("2", long_b), doc("3", "short")];
            r.prompt = format!("Context:\n{long_a}\n---\n{long_b}\nshort\nQuestion: cost?");
            data.add(r);
        }
        data.renumber_strings();
        // Three runs, one prompt entry; neither long text is in the string table.
        assert_eq!(data.prompts.len(), 1);
        assert!(
            data.strings
                .iter()
                .all(|s| !s.contains(long_a) && !s.contains(long_b))
        );
        let rebuilt: String = data.prompts[0]
            .iter()
            .map(|part| match part {
                PromptPart::Text(at) => data.strings[*at].clone(),
                PromptPart::Document { d } => data.documents[d].text.clone(),
            })
            .collect();
        assert_eq!(
            rebuilt,
            format!("Context:\n{long_a}\n---\n{long_b}\nshort\nQuestion: cost?")
        );
    }
}
