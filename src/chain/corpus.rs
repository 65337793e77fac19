//! Corpus files: `{id, text, metadata}` records as JSON Lines, or a YAML/JSON list.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::files::{ReadError, open_capped, read_capped};
use crate::config::problem::Problem;
use crate::model::record::DocId;
use crate::rules::Metadata;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub metadata: Metadata,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    id: DocId,
    text: String,
    #[serde(default)]
    metadata: Metadata,
}

impl From<RawDocument> for Document {
    fn from(raw: RawDocument) -> Self {
        Document {
            id: raw.id.0,
            text: raw.text,
            metadata: raw.metadata,
        }
    }
}

/// Why a corpus could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The file is missing, not a regular file, or too large: the path is what is wrong.
    #[error("{0}")]
    Unreadable(Problem),
    /// The file was read; its content is wrong, at the place the problem names.
    #[error("{0}")]
    Invalid(Problem),
}

/// The largest corpus file read (a million passages of a hundred words fit in 1 GiB).
pub const MAX_CORPUS_BYTES: u64 = 4 << 30;

#[derive(Debug)]
pub struct Corpus {
    pub path: PathBuf,
    pub documents: Vec<Document>,
    /// The documents' ids, for `contains`: a suite of 100,000 expected sources over a
    /// corpus of 400,000 documents took a minute to validate by scanning.
    ids: HashSet<String>,
}

impl Corpus {
    pub fn new(path: PathBuf, documents: Vec<Document>) -> Corpus {
        let ids = documents.iter().map(|d| d.id.clone()).collect();
        Corpus {
            path,
            documents,
            ids,
        }
    }

    pub fn load(path: &Path) -> Result<Corpus, CorpusError> {
        let fail =
            |line: Option<usize>, column: Option<usize>, message: String, hint: Option<&str>| {
                let mut problem = Problem::new(path, message);
                if let (Some(line), Some(column)) = (line, column) {
                    problem = problem.at(line, column);
                }
                problem.hint = hint.map(str::to_owned);
                CorpusError::Invalid(problem)
            };
        let unreadable = |err: ReadError| match err {
            ReadError::NotUtf8 { .. } => CorpusError::Invalid(err.problem(path, "corpus file")),
            other => CorpusError::Unreadable(Problem::new(
                path,
                format!("corpus file {}: {other}", path.display()),
            )),
        };
        // The file itself first (missing, not a regular file, too large), then its format.
        let file = open_capped(path, MAX_CORPUS_BYTES).map_err(unreadable)?;
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        // Where each document starts, for problems found after parsing (JSON Lines only).
        let mut lines: Vec<usize> = Vec::new();
        let documents: Vec<Document> = match extension {
            "jsonl" | "ndjson" => {
                // Line by line: a million passages never sit in memory twice, as text and
                // as documents.
                let mut reader = BufReader::new(file);
                let mut documents = Vec::new();
                let mut bytes = Vec::new();
                let mut total = 0u64;
                for number in 1.. {
                    bytes.clear();
                    let read = reader
                        .read_until(b'\n', &mut bytes)
                        .map_err(|err| unreadable(err.into()))?;
                    if read == 0 {
                        break;
                    }
                    total += read as u64;
                    if total > MAX_CORPUS_BYTES {
                        return Err(unreadable(ReadError::TooLarge {
                            limit: MAX_CORPUS_BYTES,
                        }));
                    }
                    let content = match bytes.strip_prefix(b"\xef\xbb\xbf") {
                        Some(rest) if number == 1 => rest,
                        _ => &bytes[..],
                    };
                    let line = std::str::from_utf8(content).map_err(|err| {
                        unreadable(ReadError::NotUtf8 {
                            line: number,
                            column: err.valid_up_to() + 1,
                        })
                    })?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let raw: RawDocument = serde_json::from_str(line).map_err(|err| {
                        fail(
                            Some(number),
                            Some(err.column()),
                            strip_json_position(&err),
                            Some("each line is one JSON object: {\"id\": …, \"text\": …, \"metadata\": {…}}"),
                        )
                    })?;
                    documents.push(raw.into());
                    lines.push(number);
                }
                documents
            }
            "yaml" | "yml" => {
                let text = read_capped(path, MAX_CORPUS_BYTES).map_err(unreadable)?;
                let raw: Vec<RawDocument> = serde_yaml::from_str(&text).map_err(|err| {
                    let location = err.location();
                    fail(
                        location.as_ref().map(|l| l.line()),
                        location.as_ref().map(|l| l.column()),
                        crate::config::locate::message_without_position(&err),
                        Some("the file is a list of mappings with `id`, `text` and `metadata`"),
                    )
                })?;
                raw.into_iter().map(Document::from).collect()
            }
            "json" => {
                let text = read_capped(path, MAX_CORPUS_BYTES).map_err(unreadable)?;
                let raw: Vec<RawDocument> = serde_json::from_str(&text).map_err(|err| {
                    fail(
                        Some(err.line()),
                        Some(err.column()),
                        strip_json_position(&err),
                        Some("the file is a JSON array of {id, text, metadata} objects"),
                    )
                })?;
                raw.into_iter().map(Document::from).collect()
            }
            other => {
                return Err(fail(
                    None,
                    None,
                    format!("unsupported corpus format `.{other}`"),
                    Some("use .jsonl (one document per line), .yaml or .json"),
                ));
            }
        };
        let mut seen = HashSet::new();
        for (position, doc) in documents.iter().enumerate() {
            if !seen.insert(doc.id.as_str()) {
                let line = lines.get(position).copied();
                return Err(fail(
                    line,
                    line.map(|_| 1),
                    format!("document id `{}` appears twice", doc.id),
                    Some(
                        "ids identify documents in rules, expectations and reports: keep them unique",
                    ),
                ));
            }
        }
        Ok(Corpus::new(path.to_owned(), documents))
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

fn strip_json_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}
