//! `ragprobe merge`: the shard folders of one `run --shard k/n` into one report folder,
//! with the same reports an unsharded run writes.

use std::collections::HashMap;

use crate::cli::MergeArgs;
use crate::commands::run::{Stages, finish_report, make_plan, prepare_out_dir};
use crate::error::AppError;
use crate::plan::Shard;
use crate::report::terminal::render_text;
use crate::store::{Meta, RunReader, RunWriter};
use crate::suite::load::load_with;

pub fn merge(args: MergeArgs) -> Result<i32, AppError> {
    let metas: Vec<Meta> = args
        .dirs
        .iter()
        .map(|dir| Meta::read(dir).map_err(AppError::io(format!("cannot read {}", dir.display()))))
        .collect::<Result<_, _>>()?;
    let first = &metas[0];
    let mut seen: Vec<Option<u32>> = Vec::new();
    let mut count = None;
    for (meta, dir) in metas.iter().zip(&args.dirs) {
        let same = meta.suite_fingerprint == first.suite_fingerprint
            && meta.seed == first.seed
            && meta.runs == first.runs
            && meta.cases == first.cases
            && meta.chain_path == first.chain_path;
        if !same {
            return Err(AppError::Usage(format!(
                "{} is not a shard of the same run as {}: suite, chain, seed, runs and cases must match",
                dir.display(),
                args.dirs[0].display()
            )));
        }
        let shard = match meta.shard.as_deref() {
            Some(text) => Shard::parse(text).map_err(AppError::Usage)?,
            None => {
                return Err(AppError::Usage(format!(
                    "{} holds a whole run, not a shard",
                    dir.display()
                )));
            }
        };
        if *count.get_or_insert(shard.count) != shard.count {
            return Err(AppError::Usage(
                "the shards split the run in different numbers of slices".into(),
            ));
        }
        if seen.contains(&Some(shard.index)) {
            return Err(AppError::Usage(format!("shard {shard} is given twice")));
        }
        seen.push(Some(shard.index));
    }
    let count = count.unwrap_or(1);
    let missing: Vec<String> = (0..count)
        .filter(|k| !seen.contains(&Some(*k)))
        .map(|k| format!("{}/{count}", k + 1))
        .collect();
    if !missing.is_empty() {
        return Err(AppError::Usage(format!(
            "shards missing: {}; merge needs every slice",
            missing.join(", ")
        )));
    }

    let suite = load_with(&first.suite_path, first.chain_path.as_deref())?;
    if suite.fingerprint != first.suite_fingerprint {
        eprintln!(
            "warning: {} (or its chain or corpus) changed since the shards ran; the reports use the current files",
            first.suite_path.display()
        );
    }
    let order: HashMap<&str, usize> = first
        .cases
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let cases: Vec<usize> = first
        .cases
        .iter()
        .map(|id| {
            suite
                .spec
                .cases
                .iter()
                .position(|c| &c.id == id)
                .ok_or_else(|| {
                    AppError::Usage(format!(
                        "case `{id}` is no longer in {}",
                        first.suite_path.display()
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    let plan = make_plan(
        suite,
        cases,
        Some(first.runs),
        Some(first.seed),
        None,
        None,
        args.out.clone(),
    );
    prepare_out_dir(&plan)?;

    // Every run, in plan order: case by case, run by run.
    let mut records = Vec::new();
    for dir in &args.dirs {
        let reader =
            RunReader::open(dir).map_err(AppError::io(format!("cannot read {}", dir.display())))?;
        for record in reader {
            records.push(record.map_err(AppError::io(format!("cannot read {}", dir.display())))?);
        }
    }
    records.sort_by_key(|r| {
        (
            order.get(r.case.as_str()).copied().unwrap_or(usize::MAX),
            r.run,
        )
    });
    records.dedup_by_key(|r| (r.case.clone(), r.run));
    let mut writer = RunWriter::open(&args.out)
        .map_err(AppError::io(format!("cannot open {}", args.out.display())))?;
    for record in &records {
        writer
            .append(record)
            .map_err(AppError::io(format!("cannot write {}", args.out.display())))?;
    }
    drop(writer);
    let planned = first.runs * first.cases.len() as u32;
    if (records.len() as u32) < planned {
        eprintln!(
            "warning: {} of {planned} runs are in the shards; `ragprobe run --resume` on a shard completes it",
            records.len()
        );
    }
    let mut stages = Stages::new(false);
    let report = finish_report(&plan, planned, false, &mut stages)?;
    print!("{}", render_text(&report, args.quiet));
    Ok(report.exit_code)
}
