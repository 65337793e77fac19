//! `results.parquet`: one row per run, written with polars from `runs.jsonl` in batches so
//! memory stays flat however many runs there are. Several of these files concatenate for
//! trend analysis: every row carries its suite, case, run, seed and start time, and the
//! byte offset of its full record in `runs.jsonl`.
//!
//! `retrieved.parquet`, written in the same pass: one row per retrieved document (suite,
//! case, run, turn, rank, doc id, score, grade), the long form IR tools and DuckDB want, so
//! any retrieval measure can be recomputed from it.
//!
//! `turns.parquet`, for suites with conversation cases: one row per turn of each run. A
//! conversation run stays one row of results.parquet (its pass or fail is the run's, and
//! every per-case number counts runs), with `turns` and `failed_turn`; what each turn
//! retrieved, answered and broke is the long table beside it, joined on (case, run).

use std::fs::File;
use std::path::Path;

use polars::io::parquet::write::BatchedWriter;
use polars::prelude::*;

use std::collections::HashMap;

use crate::model::record::{RunRecord, Sources};
use crate::store::RunReader;

pub use crate::store::{RESULTS_FILE, RETRIEVED_FILE, TURNS_FILE};
/// Joins rule ids in the `violations` column (a unit separator: never in a YAML id).
pub const RULE_SEPARATOR: char = '\u{1f}';
/// Rows per row group: small enough that writing holds little in memory.
const BATCH_ROWS: usize = 2_048;

/// Writing or aggregating results.parquet failed.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("reading runs")]
    Io(#[from] std::io::Error),
    #[error("polars")]
    Polars(#[from] PolarsError),
}

/// Column buffers for one batch of rows.
#[derive(Default)]
struct Batch {
    suite: Vec<String>,
    case: Vec<String>,
    run: Vec<u32>,
    seed: Vec<u64>,
    status: Vec<&'static str>,
    error: Vec<Option<String>>,
    expect_failed: Vec<bool>,
    violations: Vec<String>,
    /// Judged rules whose repeats disagreed on the run (joined like `violations`).
    judge_split: Vec<String>,
    calls: Vec<u64>,
    model_input_tokens: Vec<u64>,
    model_output_tokens: Vec<u64>,
    judge_input_tokens: Vec<u64>,
    judge_output_tokens: Vec<u64>,
    cost_usd: Vec<Option<f64>>,
    broken: Vec<u32>,
    retrieved: Vec<String>,
    precision: Vec<Option<f64>>,
    recall: Vec<Option<f64>>,
    hit: Vec<Option<bool>>,
    reciprocal_rank: Vec<Option<f64>>,
    ndcg: Vec<Option<f64>>,
    average_precision: Vec<Option<f64>>,
    cutoff: Vec<Option<u32>>,
    answer: Vec<String>,
    answer_hash: Vec<u64>,
    duration_ms: Vec<f64>,
    started_at_ns: Vec<u64>,
    offset: Vec<u64>,
    /// A conversation's number of turns (0 for a single question).
    turns: Vec<u32>,
    /// The first turn that failed or errored.
    failed_turn: Vec<Option<u32>>,
}

/// The ids of the rules a verdict says were broken (none without a verdict).
fn broken_rules(verdict: Option<&crate::model::record::Verdict>) -> Vec<&str> {
    verdict
        .into_iter()
        .flat_map(|v| v.rules.iter())
        .filter(|r| !r.passed)
        .map(|r| r.id.as_str())
        .collect()
}

/// Retrieved document ids as the `retrieved` column holds them: comma-joined, in rank order.
fn document_ids(documents: &[crate::model::record::RetrievedDoc]) -> String {
    documents
        .iter()
        .map(|d| d.id.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Which expected sources grade a retrieved document: the case's (turn 0) or a
/// conversation turn's.
pub type SourcesByTurn<'a> = HashMap<(&'a str, u32), &'a Sources>;

/// Column buffers for one batch of retrieved-document rows.
#[derive(Default)]
struct RetrievedBatch {
    suite: Vec<String>,
    case: Vec<String>,
    run: Vec<u32>,
    turn: Vec<Option<u32>>,
    rank: Vec<u32>,
    doc_id: Vec<String>,
    score: Vec<Option<f64>>,
    grade: Vec<Option<u32>>,
}

impl RetrievedBatch {
    /// `grades`: the case's (or turn's) judged documents, if it has expected sources
    /// (unjudged documents then grade 0, as trec_eval counts them; no expected sources:
    /// null). A conversation's documents are each asked turn's.
    fn push(&mut self, suite: &str, record: &RunRecord, sources: &SourcesByTurn<'_>) {
        if record.turns.is_empty() {
            let grades = sources.get(&(record.case.as_str(), 0)).copied();
            self.push_documents(suite, record, None, &record.retrieved, grades);
        }
        for turn in record.asked_turns() {
            let grades = sources.get(&(record.case.as_str(), turn.turn)).copied();
            self.push_documents(suite, record, Some(turn.turn), &turn.retrieved, grades);
        }
    }

    fn push_documents(
        &mut self,
        suite: &str,
        record: &RunRecord,
        turn: Option<u32>,
        documents: &[crate::model::record::RetrievedDoc],
        grades: Option<&Sources>,
    ) {
        for (at, doc) in documents.iter().enumerate() {
            self.suite.push(suite.to_owned());
            self.case.push(record.case.clone());
            self.run.push(record.run);
            self.turn.push(turn);
            self.rank.push(at as u32 + 1);
            self.doc_id.push(doc.id.clone());
            self.score.push(doc.score);
            self.grade.push(grades.map(|g| g.grade(&doc.id)));
        }
    }

    fn len(&self) -> usize {
        self.case.len()
    }

    fn take(&mut self) -> PolarsResult<DataFrame> {
        let b = std::mem::take(self);
        DataFrame::new(
            b.case.len(),
            vec![
                Column::new("suite".into(), b.suite),
                Column::new("case".into(), b.case),
                Column::new("run".into(), b.run),
                Column::new("turn".into(), b.turn),
                Column::new("rank".into(), b.rank),
                Column::new("doc_id".into(), b.doc_id),
                Column::new("score".into(), b.score),
                Column::new("grade".into(), b.grade),
            ],
        )
    }
}

impl Batch {
    fn push(&mut self, suite: &str, record: RunRecord, offset: u64) {
        self.offset.push(offset);
        let verdict = record.verdict.as_ref();
        let failed_rules = broken_rules(verdict);
        let sources = verdict.and_then(|v| v.sources.as_ref());
        let expect_failed = verdict.is_some_and(|v| !v.failed_expectations.is_empty());
        self.turns.push(record.turns.len() as u32);
        self.failed_turn.push(
            record
                .turns
                .iter()
                .find(|t| t.status != crate::model::record::RunStatus::Passed)
                .map(|t| t.turn),
        );
        self.suite.push(suite.to_owned());
        self.broken
            .push((failed_rules.len() + verdict.map_or(0, |v| v.failed_expectations.len())) as u32);
        self.violations
            .push(failed_rules.join(&RULE_SEPARATOR.to_string()));
        let split: Vec<&str> = verdict
            .map(|v| {
                v.rules
                    .iter()
                    .filter(|r| r.judge_split())
                    .map(|r| r.id.as_str())
                    .collect()
            })
            .unwrap_or_default();
        self.judge_split
            .push(split.join(&RULE_SEPARATOR.to_string()));
        let usage = record.usage.unwrap_or_default();
        self.calls.push(usage.calls);
        self.model_input_tokens.push(usage.model_input_tokens);
        self.model_output_tokens.push(usage.model_output_tokens);
        self.judge_input_tokens.push(usage.judge_input_tokens);
        self.judge_output_tokens.push(usage.judge_output_tokens);
        self.cost_usd.push(usage.cost_usd);
        self.case.push(record.case);
        self.run.push(record.run);
        self.seed.push(record.seed);
        self.status.push(record.status.label());
        self.error.push(record.error);
        self.expect_failed.push(expect_failed);
        self.retrieved.push(document_ids(&record.retrieved));
        self.precision.push(sources.map(|s| s.precision));
        self.recall.push(sources.map(|s| s.recall));
        self.hit.push(sources.map(|s| s.hit));
        self.reciprocal_rank
            .push(sources.map(|s| s.reciprocal_rank));
        self.ndcg.push(sources.map(|s| s.ndcg));
        self.average_precision
            .push(sources.map(|s| s.average_precision));
        self.cutoff.push(sources.map(|s| s.k as u32));
        self.answer_hash
            .push(crate::seed::stable_hash(&[record.answer.as_bytes()]));
        self.answer.push(record.answer);
        self.duration_ms.push(record.duration_ms);
        self.started_at_ns.push(record.started_at_ns);
    }

    fn len(&self) -> usize {
        self.case.len()
    }

    fn take(&mut self) -> PolarsResult<DataFrame> {
        let b = std::mem::take(self);
        let height = b.case.len();
        DataFrame::new(
            height,
            vec![
                Column::new("suite".into(), b.suite),
                Column::new("case".into(), b.case),
                Column::new("run".into(), b.run),
                Column::new("seed".into(), b.seed),
                Column::new("status".into(), b.status),
                Column::new("error".into(), b.error),
                Column::new("expect_failed".into(), b.expect_failed),
                Column::new("violations".into(), b.violations),
                Column::new("judge_split".into(), b.judge_split),
                Column::new("calls".into(), b.calls),
                Column::new("model_input_tokens".into(), b.model_input_tokens),
                Column::new("model_output_tokens".into(), b.model_output_tokens),
                Column::new("judge_input_tokens".into(), b.judge_input_tokens),
                Column::new("judge_output_tokens".into(), b.judge_output_tokens),
                Column::new("cost_usd".into(), b.cost_usd),
                Column::new("broken".into(), b.broken),
                Column::new("retrieved".into(), b.retrieved),
                Column::new("precision".into(), b.precision),
                Column::new("recall".into(), b.recall),
                Column::new("hit".into(), b.hit),
                Column::new("reciprocal_rank".into(), b.reciprocal_rank),
                Column::new("ndcg".into(), b.ndcg),
                Column::new("average_precision".into(), b.average_precision),
                Column::new("k".into(), b.cutoff),
                Column::new("answer".into(), b.answer),
                Column::new("answer_hash".into(), b.answer_hash),
                Column::new("duration_ms".into(), b.duration_ms),
                Column::new("started_at_ns".into(), b.started_at_ns),
                Column::new("offset".into(), b.offset),
                Column::new("turns".into(), b.turns),
                Column::new("failed_turn".into(), b.failed_turn),
            ],
        )
    }
}

/// Column buffers for one batch of turn rows.
#[derive(Default)]
struct TurnBatch {
    suite: Vec<String>,
    case: Vec<String>,
    run: Vec<u32>,
    turn: Vec<u32>,
    question: Vec<String>,
    scripted: Vec<bool>,
    status: Vec<&'static str>,
    error: Vec<Option<String>>,
    /// Rules broken on the turn, joined like results.parquet's `violations`.
    violations: Vec<String>,
    /// Expectations that failed on the turn (`expect.answer`, `expect.sources`), joined.
    failed_expectations: Vec<String>,
    retrieved: Vec<String>,
    precision: Vec<Option<f64>>,
    recall: Vec<Option<f64>>,
    reciprocal_rank: Vec<Option<f64>>,
    ndcg: Vec<Option<f64>>,
    answer: Vec<String>,
    duration_ms: Vec<f64>,
    offset: Vec<u64>,
}

impl TurnBatch {
    fn push(&mut self, suite: &str, record: &RunRecord, offset: u64) {
        let separator = RULE_SEPARATOR.to_string();
        for turn in &record.turns {
            let verdict = turn.verdict.as_ref();
            let sources = verdict.and_then(|v| v.sources.as_ref());
            self.suite.push(suite.to_owned());
            self.case.push(record.case.clone());
            self.run.push(record.run);
            self.turn.push(turn.turn);
            self.question.push(turn.question.clone());
            self.scripted.push(turn.scripted);
            self.status.push(turn.status.label());
            self.error.push(turn.error.clone());
            self.violations.push(broken_rules(verdict).join(&separator));
            self.failed_expectations.push(
                verdict
                    .map(|v| {
                        let mut checks: Vec<&str> = v
                            .failed_expectations
                            .iter()
                            .map(|f| f.check.as_str())
                            .collect();
                        checks.dedup();
                        checks.join(&separator)
                    })
                    .unwrap_or_default(),
            );
            self.retrieved.push(document_ids(&turn.retrieved));
            self.precision.push(sources.map(|s| s.precision));
            self.recall.push(sources.map(|s| s.recall));
            self.reciprocal_rank
                .push(sources.map(|s| s.reciprocal_rank));
            self.ndcg.push(sources.map(|s| s.ndcg));
            self.answer.push(turn.answer.clone());
            self.duration_ms.push(turn.duration_ms);
            self.offset.push(offset);
        }
    }

    fn len(&self) -> usize {
        self.case.len()
    }

    fn take(&mut self) -> PolarsResult<DataFrame> {
        let b = std::mem::take(self);
        DataFrame::new(
            b.case.len(),
            vec![
                Column::new("suite".into(), b.suite),
                Column::new("case".into(), b.case),
                Column::new("run".into(), b.run),
                Column::new("turn".into(), b.turn),
                Column::new("question".into(), b.question),
                Column::new("scripted".into(), b.scripted),
                Column::new("status".into(), b.status),
                Column::new("error".into(), b.error),
                Column::new("violations".into(), b.violations),
                Column::new("failed_expectations".into(), b.failed_expectations),
                Column::new("retrieved".into(), b.retrieved),
                Column::new("precision".into(), b.precision),
                Column::new("recall".into(), b.recall),
                Column::new("reciprocal_rank".into(), b.reciprocal_rank),
                Column::new("ndcg".into(), b.ndcg),
                Column::new("answer".into(), b.answer),
                Column::new("duration_ms".into(), b.duration_ms),
                Column::new("offset".into(), b.offset),
            ],
        )
    }
}

/// A parquet file written batch by batch beside its final name, renamed into place when
/// complete: a full disk leaves no half file.
struct ParquetOut {
    staged: crate::atomic::Staged,
    writer: Option<BatchedWriter<File>>,
}

impl ParquetOut {
    fn new(path: &Path) -> Self {
        ParquetOut {
            staged: crate::atomic::Staged::new(path),
            writer: None,
        }
    }

    fn write(&mut self, frame: DataFrame) -> Result<(), ResultsError> {
        if self.writer.is_none() {
            let file = File::create(self.staged.temporary())?;
            self.writer = Some(
                ParquetWriter::new(file)
                    .with_compression(ParquetCompression::Uncompressed)
                    .batched(frame.schema())?,
            );
        }
        if let Some(w) = self.writer.as_mut() {
            w.write_batch(&frame)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<(), ResultsError> {
        if let Some(w) = self.writer {
            w.finish()?;
        }
        self.staged.commit()?;
        Ok(())
    }
}

/// Writes `dir/results.parquet`, `dir/retrieved.parquet` and, when any run is a
/// conversation's, `dir/turns.parquet` from `dir/runs.jsonl`; `sources` holds each case's
/// (and turn's) expected sources. Returns the number of runs.
pub fn write(dir: &Path, suite: &str, sources: &SourcesByTurn<'_>) -> Result<usize, ResultsError> {
    let mut batch = Batch::default();
    let mut retrieved = RetrievedBatch::default();
    let mut turns = TurnBatch::default();
    let mut results_out = ParquetOut::new(&dir.join(RESULTS_FILE));
    let mut retrieved_out = ParquetOut::new(&dir.join(RETRIEVED_FILE));
    let mut turns_out = ParquetOut::new(&dir.join(TURNS_FILE));
    let mut rows = 0;
    let mut reader = RunReader::open(dir)?;
    while let Some(record) = reader.next() {
        let record = record?;
        retrieved.push(suite, &record, sources);
        turns.push(suite, &record, reader.last_offset());
        if turns.len() >= BATCH_ROWS {
            turns_out.write(turns.take()?)?;
        }
        batch.push(suite, record, reader.last_offset());
        rows += 1;
        if batch.len() == BATCH_ROWS {
            results_out.write(batch.take()?)?;
        }
        if retrieved.len() >= BATCH_ROWS {
            retrieved_out.write(retrieved.take()?)?;
        }
    }
    // Always write at least one batch, so an empty run still has a schema.
    if batch.len() > 0 || results_out.writer.is_none() {
        results_out.write(batch.take()?)?;
    }
    if retrieved.len() > 0 || retrieved_out.writer.is_none() {
        retrieved_out.write(retrieved.take()?)?;
    }
    if turns.len() > 0 {
        turns_out.write(turns.take()?)?;
    }
    results_out.finish()?;
    retrieved_out.finish()?;
    // Written only for conversations: a suite of single questions has no turns file.
    if turns_out.writer.is_some() {
        turns_out.finish()?;
    }
    Ok(rows)
}
