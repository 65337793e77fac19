//! `ragprobe import`: a trace from a tracing backend becomes a regression case, appended
//! to a suite file (created if needed) with an expectation draft for the user to edit.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::cli::ImportArgs;
use crate::error::AppError;
use crate::exit_codes;
use crate::export::send;
use crate::import::{Observed, observe};
use crate::suite::schema::SuiteSpec;

pub fn import(args: ImportArgs) -> Result<i32, AppError> {
    let (document, source) = read_source(&args)?;
    let observed = observe(&document, args.trace_id.as_deref())
        .map_err(|e| AppError::Usage(format!("{source}: {e}")))?;
    let existing = std::fs::read_to_string(&args.suite).ok();
    let mut text = match &existing {
        Some(text) => {
            check_cases_last(text, &args.suite)?;
            let mut text = text.clone();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text
        }
        None => new_suite(args.chain.as_deref()),
    };
    let taken: Vec<String> = existing
        .as_deref()
        .and_then(|t| serde_yaml::from_str::<SuiteSpec>(t).ok())
        .map(|s| s.cases.into_iter().map(|c| c.id).collect())
        .unwrap_or_default();
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| case_id(&observed, &taken));
    text.push_str(&case_yaml(&observed, &id, &source));
    // Only a file that still parses as a suite is written.
    serde_yaml::from_str::<SuiteSpec>(&text).map_err(|e| {
        AppError::Usage(format!(
            "the imported case would not parse in {}: {e}",
            args.suite.display()
        ))
    })?;
    std::fs::write(&args.suite, &text).map_err(AppError::io(format!(
        "cannot write {}",
        args.suite.display()
    )))?;
    println!(
        "imported case `{id}` into {}: question {:?}, {} retrieved documents, answer of {} chars",
        args.suite.display(),
        observed.question,
        observed.documents.len(),
        observed.answer.chars().count()
    );
    println!(
        "edit its expectation draft, then: ragprobe run {} --case {id}",
        args.suite.display()
    );
    Ok(exit_codes::OK)
}

fn read_source(args: &ImportArgs) -> Result<(Value, String), AppError> {
    let parse_file = read_trace_file;
    if let Some(path) = &args.otlp_json {
        return Ok((
            parse_file(path)?,
            format!("OTLP JSON file {}", path.display()),
        ));
    }
    if let Some(path) = &args.mlflow_json {
        return Ok((
            parse_file(path)?,
            format!("MLflow trace file {}", path.display()),
        ));
    }
    let Some(server) = &args.mlflow else {
        return Err(AppError::Usage(
            "give one of --otlp-json FILE, --mlflow-json FILE or --mlflow URL --trace-id tr-…"
                .into(),
        ));
    };
    let Some(trace_id) = &args.trace_id else {
        return Err(AppError::Usage("--mlflow needs --trace-id tr-…".into()));
    };
    let url = format!(
        "{}/api/3.0/mlflow/traces/get?trace_id={trace_id}",
        server.trim_end_matches('/')
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::io("cannot start the async runtime"))?;
    let document = runtime.block_on(async {
        let client = send::client().map_err(AppError::Usage)?;
        let response = client.get(&url).send().await.map_err(|e| {
            AppError::Usage(format!("cannot reach {}: {e}", send::redact_url(server)))
        })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let excerpt: String = body.chars().take(300).collect();
            return Err(AppError::Usage(format!(
                "MLflow answered HTTP {status}: {excerpt}"
            )));
        }
        serde_json::from_str::<Value>(&body)
            .map_err(|e| AppError::Usage(format!("MLflow's answer is not JSON: {e}")))
    })?;
    Ok((
        document,
        format!("MLflow trace {trace_id} at {}", send::redact_url(server)),
    ))
}

/// Appending keeps comments, so `cases:` must be the file's last top-level key.
/// A trace file as JSON: one document, or (OTLP files) the first line that parses.
pub(crate) fn read_trace_file(path: &Path) -> Result<Value, AppError> {
    let text = std::fs::read_to_string(path)
        .map_err(AppError::io(format!("cannot read {}", path.display())))?;
    serde_json::from_str(&text)
        .or_else(|e| {
            text.lines()
                .find_map(|l| serde_json::from_str(l).ok())
                .ok_or(e)
        })
        .map_err(|e| AppError::Usage(format!("{}: not JSON: {e}", path.display())))
}

pub(crate) fn check_cases_last(text: &str, path: &Path) -> Result<(), AppError> {
    let last_key = text
        .lines()
        .rev()
        .find(|l| l.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && l.contains(':'))
        .unwrap_or("");
    if last_key.trim_end() != "cases:" {
        return Err(AppError::Usage(format!(
            "{}: `cases:` must be the last top-level key, as a block list, for cases to be appended",
            path.display()
        )));
    }
    Ok(())
}

pub(crate) fn new_suite(chain: Option<&Path>) -> String {
    let chain = chain.map_or(
        "chain.yaml   # EDIT: the chain these cases run against".to_owned(),
        |p| p.display().to_string(),
    );
    format!(
        "# Regression cases imported from production traces by `ragprobe import`.\n\
         name: imported-regressions\n\
         chain: {chain}\n\
         runs: 20\n\
         cases:\n"
    )
}

fn case_id(observed: &Observed, taken: &[String]) -> String {
    let hex: String = observed
        .trace_id
        .trim_start_matches("tr-")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let base = format!("imported-{}", if hex.is_empty() { "trace" } else { &hex });
    let mut id = base.clone();
    let mut n = 2;
    while taken.contains(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// A JSON string is a valid YAML double-quoted scalar.
pub(crate) fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

fn case_yaml(observed: &Observed, id: &str, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  # Imported from {source}, trace {}.",
        observed.trace_id
    );
    if observed.documents.is_empty() {
        let _ = writeln!(
            out,
            "  # Observed retrieved documents: none recorded in the trace."
        );
    } else {
        let docs: Vec<String> = observed
            .documents
            .iter()
            .map(|(id, meta)| format!("{id} {meta}"))
            .collect();
        let _ = writeln!(out, "  # Observed retrieved documents: {}", docs.join(", "));
    }
    for (i, line) in observed.answer.lines().enumerate() {
        let _ = writeln!(
            out,
            "  # {}{line}",
            if i == 0 { "Observed answer: " } else { "  " }
        );
    }
    let _ = writeln!(out, "  - id: {}", quoted(id));
    let _ = writeln!(out, "    question: {}", quoted(&observed.question));
    let _ = writeln!(out, "    tags: [imported]");
    let _ = writeln!(out, "    expect:");
    let _ = writeln!(
        out,
        "      # DRAFT: the observed answer must not come back. Keep only the part that was wrong\n      # (e.g. \"t4g.micro\"), or replace it with what a good answer contains."
    );
    let _ = writeln!(
        out,
        "      answer: {{not_contains: [{}]}}",
        quoted(&observed.answer)
    );
    let ids: Vec<String> = observed
        .documents
        .iter()
        .map(|(id, _)| quoted(id))
        .collect();
    let _ = writeln!(
        out,
        "      # The documents a good answer comes from; the trace retrieved [{}].\n      # sources: [{}]",
        ids.join(", "),
        ids.join(", ")
    );
    out
}
