//! `ragprobe validate`: load and check suites and chain files, run nothing.

use std::path::{Path, PathBuf};

use crate::chain::build::load_chain;
use crate::cli::ValidateArgs;
use crate::config::problem::{ConfigError, Problem};
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::out;
use crate::suite::discover::{
    DEFAULT_SUITES, DiscoverError, discover_where, looks_like_chain, looks_like_suite,
};
use crate::suite::load;
use crate::text::count;

pub fn validate(args: ValidateArgs) -> Result<Outcome, AppError> {
    let (suites, chains) = files(args.path.as_deref())?;
    let mut problems = Vec::new();
    for file in &suites {
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
    for file in &chains {
        validate_chain(file, &mut problems);
    }
    if problems.is_empty() {
        Ok(Outcome::Ok)
    } else {
        Err(ConfigError { problems }.into())
    }
}

fn validate_chain(file: &Path, problems: &mut Vec<Problem>) {
    match load_chain(file) {
        Ok(chain) => out::println(&format!(
            "ok: {} (chain): {}{}",
            file.display(),
            chain.chain.describe(),
            chain.corpus.as_ref().map_or(String::new(), |c| format!(
                "; {}",
                count(c.documents.len() as u64, "document")
            ))
        )),
        Err(err) => problems.extend(err.problems),
    }
}

/// Suites and chain files: a file is whichever it looks like (a suite has `cases:`); a
/// folder is searched for both.
fn files(path: Option<&Path>) -> Result<(Vec<PathBuf>, Vec<PathBuf>), DiscoverError> {
    let root = path.unwrap_or(Path::new(DEFAULT_SUITES));
    if !root.exists() {
        return Err(DiscoverError::Missing(root.to_owned()));
    }
    if !root.is_dir() {
        return Ok(if looks_like_suite(root) || !looks_like_chain(root) {
            (vec![root.to_owned()], Vec::new())
        } else {
            (Vec::new(), vec![root.to_owned()])
        });
    }
    let io = |source| DiscoverError::Io {
        path: root.to_owned(),
        source,
    };
    let suites = discover_where(root, looks_like_suite).map_err(io)?;
    let chains = discover_where(root, looks_like_chain).map_err(io)?;
    if suites.is_empty() && chains.is_empty() {
        return Err(DiscoverError::Empty(root.to_owned()));
    }
    Ok((suites, chains))
}
