//! `runs.jsonl`: one line per finished run, appended and handed to the kernel as each run
//! finishes, so a crash, kill or Ctrl-C loses at most the runs in flight. `meta.json`
//! records what was planned, so `--resume` can finish the same plan.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chain::RetrievedDoc;
use crate::checks::Verdict;
use crate::trace::Trace;

pub const RUNS_FILE: &str = "runs.jsonl";
pub const META_FILE: &str = "meta.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Passed,
    Failed,
    /// The chain could not be evaluated (timeout, unreachable service): not a wrong answer.
    Error,
}

/// One finished run, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub case: String,
    pub run: u32,
    pub seed: u64,
    pub question: String,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub retrieved: Vec<RetrievedDoc>,
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub answer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Wall time of the run, from the runner's point of view.
    pub duration_ms: f64,
    pub started_at_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
}

/// What a report folder was made from, written before the first run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub ragprobe_version: String,
    pub suite_name: String,
    /// The suite file, as an absolute path where it could be resolved.
    pub suite_path: PathBuf,
    pub suite_fingerprint: u64,
    /// The chain file given with `--chain` in place of the suite's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_path: Option<PathBuf>,
    /// `k/n` when this folder holds one shard of the runs (`run --shard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub seed: u64,
    pub runs: u32,
    /// The selected case ids, in suite order.
    pub cases: Vec<String>,
    pub chain: String,
    pub created_at: String,
}

impl Meta {
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(META_FILE), text + "\n")
    }

    pub fn read(dir: &Path) -> std::io::Result<Meta> {
        let text = std::fs::read_to_string(dir.join(META_FILE))?;
        serde_json::from_str(&text).map_err(|err| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {err}", dir.join(META_FILE).display()),
            )
        })
    }
}

/// Appends records to `runs.jsonl`.
pub struct RunWriter {
    file: File,
    path: PathBuf,
    buffer: Vec<u8>,
}

impl RunWriter {
    /// Opens `dir/runs.jsonl` for appending, creating it if needed. A last line cut short by
    /// a crash is removed first, so the file stays one complete record per line.
    pub fn open(dir: &Path) -> std::io::Result<RunWriter> {
        let path = dir.join(RUNS_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let complete = complete_length(&mut file)?;
        if complete < file.metadata()?.len() {
            file.set_len(complete)?;
        }
        Ok(RunWriter {
            file,
            path,
            buffer: Vec::with_capacity(4096),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record as one line, in a single write.
    pub fn append(&mut self, record: &RunRecord) -> std::io::Result<()> {
        self.buffer.clear();
        serde_json::to_writer(&mut self.buffer, record).map_err(std::io::Error::other)?;
        self.buffer.push(b'\n');
        self.file.write_all(&self.buffer)
    }
}

/// Length of the file up to and including its last newline.
fn complete_length(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..size])?;
        if let Some(pos) = chunk[..size].iter().rposition(|b| *b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Reads records back one at a time; a last line cut short by a crash is skipped, a
/// malformed line elsewhere is an error naming its line.
pub struct RunReader {
    reader: BufReader<File>,
    line: String,
    line_number: usize,
    /// Byte offset of the next line.
    position: u64,
    /// Byte offset of the record returned last.
    last_offset: u64,
    path: PathBuf,
}

impl RunReader {
    pub fn open(dir: &Path) -> std::io::Result<RunReader> {
        let path = dir.join(RUNS_FILE);
        let file = File::open(&path)?;
        Ok(RunReader {
            reader: BufReader::with_capacity(1 << 16, file),
            line: String::new(),
            line_number: 0,
            position: 0,
            last_offset: 0,
            path,
        })
    }

    /// Where the record returned last starts in the file, for [`read_at`].
    pub fn last_offset(&self) -> u64 {
        self.last_offset
    }
}

impl Iterator for RunReader {
    type Item = std::io::Result<RunRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.line.clear();
            let start = self.position;
            match self.reader.read_line(&mut self.line) {
                Ok(0) => return None,
                Ok(n) => self.position += n as u64,
                Err(err) => return Some(Err(err)),
            }
            self.line_number += 1;
            if self.line.trim().is_empty() {
                continue;
            }
            self.last_offset = start;
            return match serde_json::from_str::<RunRecord>(&self.line) {
                Ok(record) => Some(Ok(record)),
                // EOF inside the record: the tail of a killed write. Nothing follows it.
                Err(err) if err.is_eof() => None,
                Err(err) => Some(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}:{}: {err}", self.path.display(), self.line_number),
                ))),
            };
        }
    }
}

/// The record that starts at byte `offset` of `dir/runs.jsonl`.
pub fn read_at(dir: &Path, offset: u64) -> std::io::Result<RunRecord> {
    let mut file = File::open(dir.join(RUNS_FILE))?;
    file.seek(SeekFrom::Start(offset))?;
    let mut line = String::new();
    BufReader::new(file).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|err| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} at byte {offset}: {err}", dir.join(RUNS_FILE).display()),
        )
    })
}

/// (case id, run index) of every run already recorded in `dir`.
pub fn recorded_runs(dir: &Path) -> std::io::Result<HashSet<(String, u32)>> {
    let mut done = HashSet::new();
    if !dir.join(RUNS_FILE).exists() {
        return Ok(done);
    }
    for record in RunReader::open(dir)? {
        let record = record?;
        done.insert((record.case, record.run));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(case: &str, run: u32) -> RunRecord {
        RunRecord {
            case: case.into(),
            run,
            seed: 1,
            question: "q".into(),
            status: RunStatus::Passed,
            error: None,
            retrieved: Vec::new(),
            prompt: String::new(),
            answer: "a".into(),
            verdict: None,
            duration_ms: 1.0,
            started_at_ns: 0,
            trace: None,
        }
    }

    #[test]
    fn a_torn_last_line_is_dropped_on_read_and_on_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = RunWriter::open(dir.path()).expect("open");
        writer.append(&record("a", 0)).expect("append");
        writer.append(&record("a", 1)).expect("append");
        drop(writer);
        // Simulate a kill in the middle of a write.
        let path = dir.path().join(RUNS_FILE);
        let mut file = OpenOptions::new().append(true).open(&path).expect("reopen");
        file.write_all(br#"{"case":"a","run":2,"se"#)
            .expect("torn write");
        drop(file);

        let read: Vec<u32> = RunReader::open(dir.path())
            .expect("reader")
            .map(|r| r.expect("complete records parse").run)
            .collect();
        assert_eq!(read, [0, 1]);

        let mut writer = RunWriter::open(dir.path()).expect("resume");
        writer.append(&record("a", 2)).expect("append");
        let done = recorded_runs(dir.path()).expect("read");
        let mut reader = RunReader::open(dir.path()).expect("reader");
        let _ = reader.next();
        let second = reader.next().expect("a second record").expect("parses");
        assert_eq!(
            read_at(dir.path(), reader.last_offset()).expect("seek").run,
            second.run
        );
        assert_eq!(done.len(), 3);
        let text = std::fs::read_to_string(&path).expect("text");
        assert_eq!(text.lines().count(), 3);
        assert!(!text.contains(r#""se{"#));
    }

    #[test]
    fn corrupt_middle_lines_are_errors_with_their_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(RUNS_FILE), "not json\n{}\n").expect("write");
        let err = RunReader::open(dir.path())
            .expect("reader")
            .next()
            .expect("an item")
            .expect_err("corrupt");
        assert!(err.to_string().contains("runs.jsonl:1"), "{err}");
    }
}
