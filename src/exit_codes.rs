//! Process exit codes. The README and `--help` list the same.

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

pub const HELP: &str = "\
Exit codes:
  0    all checks passed
  1    checks failed (a case below its pass rate, or an error rule above its allowed rate)
  2    usage or configuration error (nothing was run)
  3    infrastructure errors exceeded the allowed rate (the chain could not be evaluated)
  130  interrupted; finished runs are saved, `ragprobe run --resume DIR` completes them";
