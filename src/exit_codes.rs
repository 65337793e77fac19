//! Process exit codes, decided in one place: a command ends in an [`Outcome`] or an
//! error, and [`code`] turns either into the number. The README and `--help` list the
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
            SuiteResult::Error => Outcome::Infrastructure,
            SuiteResult::Interrupted => Outcome::Interrupted,
        }
    }
}

pub const HELP: &str = "\
Exit codes:
  0    all checks passed
  1    checks failed (a case below its pass rate, or an error rule above its allowed rate)
  2    usage or configuration error (nothing was run)
  3    infrastructure errors exceeded the allowed rate (the chain could not be evaluated)
  130  interrupted; finished runs are saved, `ragprobe run --resume DIR` completes them";

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
