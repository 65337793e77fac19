//! `ragprobe merge`: the shard folders of one `run --shard k/n` into one report folder,
//! with the same reports an unsharded run writes.

use crate::cli::MergeArgs;
use crate::commands::common::report_meta;
use crate::commands::github;
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::out;
use crate::plan;
use crate::report::terminal::render_text;
use crate::session::{self, Executed, Stages};
use crate::store::{folder, merge};

pub fn merge(args: MergeArgs) -> Result<Outcome, AppError> {
    let metas = args
        .dirs
        .iter()
        .map(|dir| Ok((dir.clone(), report_meta(dir)?)))
        .collect::<Result<Vec<_>, AppError>>()?;
    let plan = plan::merged(&metas, &args.out, args.baseline.as_deref())?;
    for warning in &plan.warnings {
        out::eprintln(&format!("warning: {warning}"));
    }
    let shards: Vec<&std::path::Path> = args.dirs.iter().map(std::path::PathBuf::as_path).collect();
    // Before anything is touched: `--force` would clear a shard that is also the output.
    folder::refuse_output_over_inputs(&plan.out_dir, &shards, true)?;
    let _lock = folder::prepare(&plan.out_dir, &plan.meta(), args.force)?;
    merge::combine(&args.dirs, &args.out, &plan.case_ids())?;
    let planned_runs = plan.planned_runs();
    let executed = Executed {
        planned_runs,
        adaptive_dropped: 0,
        interrupted: false,
        trace_export: None,
        budget_spent: None,
    };
    let report = session::finish(&plan, executed, &mut Stages::new(false))?;
    out::print(&render_text(&report, args.quiet));
    let actions = github::actions();
    if actions.is_some() || args.pr_comment {
        let reports = [report];
        let publication = github::Publication::of_reports(&reports, actions.as_ref());
        github::publish(&publication, actions.as_ref(), args.pr_comment, false);
        return Ok(Outcome::from(reports[0].result));
    }
    Ok(Outcome::from(report.result))
}
