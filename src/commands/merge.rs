//! `ragprobe merge`: the shard folders of one `run --shard k/n` into one report folder,
//! with the same reports an unsharded run writes.

use crate::cli::MergeArgs;
use crate::commands::common::report_meta;
use crate::error::AppError;
use crate::exit_codes::Outcome;
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
    let plan = plan::merged(&metas, &args.out)?;
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    folder::prepare(&plan.out_dir, &plan.meta())?;
    let combined = merge::combine(&args.dirs, &args.out, &plan.case_ids())?;
    let planned_runs = plan.planned_runs();
    if combined < planned_runs {
        eprintln!(
            "warning: {combined} of {planned_runs} runs are in the shards; `ragprobe run --resume` on a shard completes it"
        );
    }
    let executed = Executed {
        planned_runs,
        interrupted: false,
    };
    let report = session::finish(&plan, executed, &mut Stages::new(false))?;
    print!("{}", render_text(&report, args.quiet));
    Ok(Outcome::from(report.result))
}
