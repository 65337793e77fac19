//! `ragprobe show DIR`: one run's trace as a tree, or as OTLP JSON.

use crate::cli::ShowArgs;
use crate::commands::common::report_meta;
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::export::{json, otlp};
use crate::model::record::{RunRecord, RunStatus};
use crate::out;
use crate::report::trace_tree;
use crate::store::RunReader;

pub fn show(args: ShowArgs) -> Result<Outcome, AppError> {
    let meta = report_meta(&args.dir)?;
    if let Some(case) = args.case.as_ref().filter(|c| !meta.cases.contains(c)) {
        return Err(AppError::Usage(format!(
            "no case `{case}` in {} (cases: {})",
            args.dir.display(),
            meta.cases.join(", ")
        )));
    }
    let reader = RunReader::open(&args.dir)
        .map_err(AppError::io(format!("cannot read {}", args.dir.display())))?;
    let mut chosen: Option<RunRecord> = None;
    for record in reader {
        let record = record.map_err(AppError::io(format!("cannot read {}", args.dir.display())))?;
        if args.case.as_ref().is_some_and(|c| *c != record.case) {
            continue;
        }
        let matches = if args.failed {
            record.status != RunStatus::Passed
        } else {
            record.run == args.run.unwrap_or(0)
        };
        // The lowest run index wins, whatever order runs finished in.
        if matches
            && chosen
                .as_ref()
                .is_none_or(|c| (record.run, &record.case) < (c.run, &c.case))
        {
            chosen = Some(record);
        }
    }
    let Some(record) = chosen else {
        return Err(AppError::Usage(match (&args.case, args.failed) {
            (Some(case), true) => {
                format!("case `{case}` has no failing run in {}", args.dir.display())
            }
            (None, true) => format!("no failing run in {}", args.dir.display()),
            (case, false) => format!(
                "no run {} {}in {}",
                args.run.unwrap_or(0),
                case.as_ref()
                    .map(|c| format!("of case `{c}` "))
                    .unwrap_or_default(),
                args.dir.display()
            ),
        }));
    };
    if args.json {
        let request = json::request(&otlp::spans_for(&record, &meta.suite_name));
        out::print_data(&serde_json::to_string_pretty(&request).unwrap_or_default());
    } else {
        out::print(&trace_tree::render(&record, &meta.suite_name));
        if args.waterfall || std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            out::print(&trace_tree::waterfall(&record));
        }
    }
    Ok(Outcome::Ok)
}
