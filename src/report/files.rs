//! The report files beside `runs.jsonl`: `summary.md`, `junit.xml` and `report.html`.

use std::path::PathBuf;

use crate::model::summary::SuiteReport;
use crate::report::{html, junit, markdown};
use crate::store::RunReader;
use crate::suite::Suite;

pub use crate::model::summary::{HTML_FILE, JUNIT_FILE, MARKDOWN_FILE};

/// A report file that could not be written, and why.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode junit.xml")]
    Junit(#[source] quick_junit::SerializeError),
    #[error("cannot write {}", path.display())]
    Html {
        path: PathBuf,
        #[source]
        source: html::HtmlError,
    },
}

/// Writes every report file into the report's folder.
pub fn write_all(report: &SuiteReport, suite: &Suite) -> Result<(), ReportError> {
    let dir = &report.out_dir;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        crate::atomic::write(&path, text).map_err(|source| ReportError::Write { path, source })
    };
    write(MARKDOWN_FILE, markdown::render(report))?;
    write(
        JUNIT_FILE,
        junit::render(report).map_err(ReportError::Junit)?,
    )?;
    let path = dir.join(HTML_FILE);
    let html_error = |source| ReportError::Html {
        path: path.clone(),
        source,
    };
    let runs = RunReader::open(dir).map_err(|e| html_error(e.into()))?;
    let mut out = crate::atomic::Pending::create(&path).map_err(|e| html_error(e.into()))?;
    html::render(report, suite, runs, &html::new_nonce(), &mut out).map_err(html_error)?;
    out.commit().map_err(|e| html_error(e.into()))
}
