//! `ragprobe init`: a minimal suite, chain and corpus that run as they are, to edit into
//! one's own. Nothing is overwritten: if any of the files exists, nothing is written.

use std::path::{Path, PathBuf};

use crate::cli::InitArgs;
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::out;

const SUITE: &str = r#"# A ragprobe suite: questions, how often to ask each, and what every answer must satisfy.
# Run it with `ragprobe run suites/example/suite.yaml`; the reference is in docs/ (the book).
name: example
chain: chain.yaml
runs: 10
seed: 1
rules:
  # Checked on every run of every case.
  - id: only-product-docs
    description: Answers come from our own documentation only.
    retrieved: {every: {docs: product}}
cases:
  - id: storage
    question: Where is my data stored?
    expect:
      sources: ["storage"]
      answer: {contains_any: [object storage]}
  - id: pricing
    question: How is usage billed?
    expect:
      sources: ["billing"]
      answer: {contains: [per second]}
"#;

const CHAIN: &str = r#"# The chain under test: the embedded BM25 retriever over corpus.jsonl and the offline
# extractive reference generator (not a model: it composes answers from retrieved
# sentences). Point `llm` at an OpenAI-compatible server, or replace the whole chain with
# `kind: http` for a service; see examples/chains/ in the ragprobe repository.
retriever:
  kind: memory
  corpus: corpus.jsonl
  k: 2
  filter: {docs: product}
llm:
  kind: extractive
  temperature: 0.5
  max_sentences: 2
"#;

const CORPUS: &str = r#"{"id": "storage", "text": "Your data is stored in object storage in the region you chose. Copies are kept in three zones.", "metadata": {"docs": "product"}}
{"id": "billing", "text": "Usage is billed per second of compute. Storage is billed per gigabyte each month.", "metadata": {"docs": "product"}}
{"id": "limits", "text": "Each workspace runs at most 100 jobs at once.", "metadata": {"docs": "product"}}
{"id": "vendor-note", "text": "Another vendor bills per hour of compute with a one-hour minimum.", "metadata": {"docs": "partner"}}
"#;

pub fn init(args: InitArgs) -> Result<Outcome, AppError> {
    let folder = if args.dir == Path::new(".") {
        PathBuf::from("suites/example")
    } else {
        args.dir.join("suites").join("example")
    };
    let files: [(PathBuf, &str); 3] = [
        (folder.join("suite.yaml"), SUITE),
        (folder.join("chain.yaml"), CHAIN),
        (folder.join("corpus.jsonl"), CORPUS),
    ];
    let existing: Vec<String> = files
        .iter()
        .filter(|(path, _)| path.exists())
        .map(|(path, _)| path.display().to_string())
        .collect();
    if !existing.is_empty() {
        return Err(AppError::Usage(format!(
            "{} already {}; nothing was written",
            existing.join(", "),
            if existing.len() == 1 {
                "exists"
            } else {
                "exist"
            }
        )));
    }
    std::fs::create_dir_all(&folder)
        .map_err(AppError::io(format!("cannot create {}", folder.display())))?;
    for (path, text) in &files {
        write_new(path, text)?;
    }
    let suite = folder.join("suite.yaml");
    out::println(&format!(
        "wrote {}, chain.yaml and corpus.jsonl beside it\nnext: ragprobe run {}",
        suite.display(),
        suite.display()
    ));
    Ok(Outcome::Ok)
}

/// Creates `path`, failing if it appeared since the check.
fn write_new(path: &Path, text: &str) -> Result<(), AppError> {
    use std::io::Write;
    let context = format!("cannot write {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(AppError::io(context.clone()))?;
    file.write_all(text.as_bytes())
        .map_err(AppError::io(context))
}
