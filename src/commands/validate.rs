//! `ragprobe validate`: load and check suites, run nothing.

use crate::cli::ValidateArgs;
use crate::config::problem::ConfigError;
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::report::out;
use crate::report::text::count;
use crate::suite::discover::suite_files;
use crate::suite::load;

pub fn validate(args: ValidateArgs) -> Result<Outcome, AppError> {
    let files = suite_files(args.path.as_deref())?;
    let mut problems = Vec::new();
    for file in &files {
        match load(file) {
            Ok(suite) => {
                for warning in &suite.warnings {
                    out::eprintln(&format!("warning: {warning}"));
                }
                out::println(&format!(
                    "ok: {} ({}): {}, {}, {}; chain: {}",
                    file.display(),
                    suite.spec.name,
                    count(suite.spec.cases.len() as u64, "case"),
                    count(suite.spec.rules.len() as u64, "rule"),
                    count(
                        suite.corpus.as_ref().map_or(0, |c| c.documents.len()) as u64,
                        "document"
                    ),
                    suite.chain.describe()
                ));
            }
            Err(err) => problems.extend(err.problems),
        }
    }
    if problems.is_empty() {
        Ok(Outcome::Ok)
    } else {
        Err(ConfigError { problems }.into())
    }
}
