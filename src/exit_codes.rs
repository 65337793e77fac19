//! Process exit codes, decided in one place: a command ends in an [`Outcome`] or an
//! error, and [`code`] turns either into the number. The book (docs/reference/exit-codes.md) and `--help` list the
//! same.

use crate::model::summary::SuiteResult;

/// Every case passed (flaky cases within their thresholds count as passed).
pub const OK: i32 = 0;
/// A check failed: a case below its pass rate, or an `error` rule above its allowed rate.
pub const CHECKS_FAILED: i32 = 1;
/// Usage or configuration error, found before any run started.
pub const CONFIG_ERROR: i32 = 2;
/// Infrastructure errors (timeouts, unreachable services) exceeded the allowed rate, or
/// left a case with no run to judge: the chain could not be evaluated. Takes precedence
/// over 1.
pub const INFRASTRUCTURE: i32 = 3;
/// Stopped by Ctrl-C or SIGTERM; finished runs are saved and `--resume` completes them.
pub const INTERRUPTED: i32 = 130;

/// How a command that ran to its end came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Everything checked passed (for `repro` and `triage`: the bad answer was reproduced).
    Ok,
    /// A check failed or a regression was found (for `repro`: not reproduced).
    ChecksFailed,
    /// The chain could not be evaluated.
    Infrastructure,
    /// Stopped by a signal; what finished is saved.
    Interrupted,
}

impl Outcome {
    /// The exit code of this outcome.
    pub fn code(self) -> i32 {
        match self {
            Outcome::Ok => OK,
            Outcome::ChecksFailed => CHECKS_FAILED,
            Outcome::Infrastructure => INFRASTRUCTURE,
            Outcome::Interrupted => INTERRUPTED,
        }
    }

    /// With several suites the worst wins: interrupted over infrastructure over failed
    /// checks over success.
    pub fn worst(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
        outcomes.into_iter().max().unwrap_or(Outcome::Ok)
    }
}

impl From<SuiteResult> for Outcome {
    fn from(result: SuiteResult) -> Outcome {
        match result {
            SuiteResult::Pass => Outcome::Ok,
            SuiteResult::Fail => Outcome::ChecksFailed,
            SuiteResult::Error | SuiteResult::Incomplete => Outcome::Infrastructure,
            SuiteResult::Interrupted => Outcome::Interrupted,
        }
    }
}

/// `ragprobe run` (and the top-level help).
pub const HELP: &str = "\
Exit codes:
  0    all checks passed
  1    checks failed (a case below its pass rate, or an error rule above its allowed rate)
  2    usage or configuration error (nothing was run)
  3    the chain could not be evaluated (errors over the allowed rate), or the results
       could not be written (runs already recorded are kept; --resume finishes them),
       or MLflow (--mlflow) could not be reached before the runs or did not take the
       results after them (the report folder has them all: `ragprobe export DIR --mlflow
       URL` publishes them later), or --max-cost / --max-calls stopped new runs (result
       INCOMPLETE; `ragprobe run --resume DIR` completes them)
  130  interrupted; finished runs are saved, `ragprobe run --resume DIR` completes them";

pub const VALIDATE_HELP: &str = "\
Exit codes:
  0    every suite, chain and corpus is valid
  2    a problem was found (each is printed with its file, line and column)";

pub const DIFF_HELP: &str = "\
Exit codes:
  0    no case got significantly worse from A to B
  1    at least one regression
  2    usage error, or a folder is not a report";

pub const PLAN_HELP: &str = "\
Exit codes:
  0    the plan was printed
  2    usage or configuration error (a suite or baseline that cannot be read)";

pub const SHOW_HELP: &str = "\
Exit codes:
  0    the run was printed
  2    usage error: no such folder, case or run";

pub const EXPORT_HELP: &str = "\
Exit codes:
  0    every trace was exported (with --mlflow: the report is published)
  2    usage or configuration error (nothing was sent)
  3    some traces could not be sent (the endpoint refused or did not answer), or MLflow
       did not take the report (publishing again later adds nothing twice)";

pub const MERGE_HELP: &str = "\
Exit codes:
  0    all checks passed
  1    checks failed
  2    the folders (or the --mlflow group's runs) are not the shards of one run (nothing
       was written)
  3    the chain could not be evaluated, or a shard is unfinished (the merged report is
       marked INCOMPLETE; `ragprobe run --resume SHARD` finishes it); with --mlflow, a
       shard of the group missing or unfinished, or MLflow not taking the merged report";

pub const INDEX_HELP: &str = "\
Exit codes:
  0    the corpus was indexed
  2    usage or configuration error
  3    Chroma or the embedder could not be reached";

pub const IMPORT_HELP: &str = "\
Exit codes:
  0    the case was appended (with --filter: every new question, possibly none)
  2    usage error: no such trace or file, the suite cannot take the case, or MLflow
       refused the request (unknown experiment, a filter it cannot parse, credentials)
  3    the MLflow server could not be reached, or failed (5xx)";

pub const REPRO_HELP: &str = "\
Exit codes:
  0    the bad answer was reproduced
  1    it was not reproduced within the budget
  2    usage or configuration error (nothing was run)
  3    every run failed for infrastructure reasons";

pub const CALIBRATE_HELP: &str = "\
Exit codes:
  0    every labelled rule's judge agrees with people (Cohen's kappa >= 0.6, enough labels)
  1    a rule's kappa is below 0.6, or its labels are too few to say (20, 5 of each verdict)
  2    usage error, or a label that names no recorded run or no judged rule";

pub const COMPLETIONS_HELP: &str = "\
Exit codes:
  0    the script was printed
  2    usage error";

pub const INIT_HELP: &str = "\
Exit codes:
  0    the files were written
  2    a file is already there (nothing was written), or the folder cannot be written";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_outcome_wins() {
        let worst = |o: &[Outcome]| Outcome::worst(o.iter().copied()).code();
        assert_eq!(worst(&[Outcome::Ok, Outcome::ChecksFailed, Outcome::Ok]), 1);
        assert_eq!(worst(&[Outcome::ChecksFailed, Outcome::Infrastructure]), 3);
        assert_eq!(worst(&[Outcome::Infrastructure, Outcome::Interrupted]), 130);
        assert_eq!(worst(&[]), 0);
    }
}
