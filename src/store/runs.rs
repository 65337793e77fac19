//! `runs.jsonl`: one line per finished run, appended and handed to the kernel as each run
//! finishes, so a crash, kill or Ctrl-C loses at most the runs in flight.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::events::{Event, Reporter};
use crate::model::record::RunRecord;

pub const RUNS_FILE: &str = "runs.jsonl";

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

/// The writer is the reporter whose output must not be lost: its errors stop the suite.
impl Reporter for RunWriter {
    fn write_event(&mut self, event: &Event) -> std::io::Result<()> {
        match event {
            Event::RunFinished(record) => self.append(record),
            Event::SuiteStarted { .. }
            | Event::SuiteFinished { .. }
            | Event::CaseDecided { .. } => Ok(()),
        }
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
    /// Bytes, not a String: a line torn inside a UTF-8 character is still a torn line.
    line: Vec<u8>,
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
            line: Vec::new(),
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
            match self.reader.read_until(b'\n', &mut self.line) {
                Ok(0) => return None,
                Ok(n) => self.position += n as u64,
                Err(err) => return Some(Err(err)),
            }
            self.line_number += 1;
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.last_offset = start;
            // Every record is written with its newline in one write: a last line without
            // one is the tail of a killed or failed write, whatever bytes it ends in.
            // RunWriter::open drops the same line, so readers and the writer agree.
            if self.line.last() != Some(&b'\n') {
                return None;
            }
            return match serde_json::from_slice::<RunRecord>(&self.line) {
                Ok(record) => Some(Ok(record)),
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
    use crate::model::record::RunStatus;

    fn record(case: &str, run: u32) -> RunRecord {
        RunRecord {
            seed: 1,
            question: "q".into(),
            answer: "a".into(),
            duration_ms: 1.0,
            ..RunRecord::blank(case, run, RunStatus::Passed)
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
    fn a_last_line_torn_inside_a_utf8_character_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = RunWriter::open(dir.path()).expect("open");
        writer.append(&record("a", 0)).expect("append");
        drop(writer);
        let path = dir.path().join(RUNS_FILE);
        let mut file = OpenOptions::new().append(true).open(&path).expect("reopen");
        // "é" is 0xC3 0xA9: the write stopped between the two bytes.
        file.write_all(b"{\"case\":\"a\",\"run\":1,\"question\":\"caf\xC3")
            .expect("torn write");
        drop(file);
        assert_eq!(recorded_runs(dir.path()).expect("reads").len(), 1);
        let mut writer = RunWriter::open(dir.path()).expect("resume");
        writer.append(&record("a", 1)).expect("append");
        assert_eq!(recorded_runs(dir.path()).expect("reads").len(), 2);
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
