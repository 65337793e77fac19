//! `ragprobe export DIR`: an earlier report's traces to an OTLP endpoint or a file, or the
//! whole report to MLflow as a run.

use crate::cli::{ExportArgs, ExportFormat};
use crate::commands::common::{report_meta, runtime};
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::export::folder;
use crate::export::send::{self, OtlpTarget};
use crate::mlflow::client::Mlflow;
use crate::mlflow::link::{self, Scope};
use crate::mlflow::publish;
use crate::mlflow::target::MlflowTarget;
use crate::model::meta::Meta;
use crate::model::summary::read_summary;
use crate::out;

pub fn export(args: ExportArgs) -> Result<Outcome, AppError> {
    let meta = report_meta(&args.dir)?;
    let mlflow = MlflowTarget::resolve(
        args.mlflow.mlflow.as_deref(),
        args.mlflow.experiment.as_deref(),
        args.mlflow.no_mlflow,
        &mut |warning| out::eprintln(&format!("warning: {warning}")),
    )?;
    // `--mlflow` always publishes; MLFLOW_TRACKING_URI only when no other destination is
    // named, so that `export --out FILE` does not also write to a server.
    let mlflow = mlflow.filter(|_| {
        args.mlflow.mlflow.is_some() || (args.out.is_none() && args.otlp.otlp.is_none())
    });
    let otlp = OtlpTarget::resolve(
        args.otlp.otlp.as_deref(),
        &args.otlp.otlp_headers,
        args.otlp.otlp_protocol.as_deref(),
    )?;
    let mut outcome = Outcome::Ok;
    let mut done_something = false;
    if let Some(path) = &args.out {
        crate::store::folder::refuse_output_over_inputs(path, &[args.dir.as_path()], false)?;
    }
    if args.format == ExportFormat::Trec {
        let Some(path) = &args.out else {
            return Err(AppError::Usage(
                "--format trec writes a file: give --out FILE".into(),
            ));
        };
        if args.otlp.otlp.is_some() || args.mlflow.mlflow.is_some() {
            return Err(AppError::Usage(
                "--format trec writes a TREC run file only: export traces (--otlp, --mlflow) in a command of their own".into(),
            ));
        }
        let (queries, lines) = write_trec(&args.dir, &meta.suite_name, args.run, path)?;
        out::eprintln(&format!(
            "trec: {lines} lines for {queries} queries (run {} of each case) written to {}",
            args.run,
            path.display()
        ));
        return Ok(Outcome::Ok);
    }
    if let Some(path) = &args.out {
        // Written beside its name and renamed into place: a failure leaves no half file.
        let mut file = crate::atomic::Pending::create(path)
            .map_err(AppError::io(format!("cannot write {}", path.display())))?;
        let total = folder::write_json_lines(&args.dir, &meta.suite_name, &mut file)
            .map_err(AppError::io(format!("cannot write {}", path.display())))?;
        file.commit()
            .map_err(AppError::io(format!("cannot write {}", path.display())))?;
        out::eprintln(&format!(
            "otlp: {total} traces written to {}",
            path.display()
        ));
        done_something = true;
    }
    // The variables' endpoint counts when nothing else is named, as before.
    if let Some(target) =
        otlp.filter(|_| args.otlp.otlp.is_some() || !done_something && mlflow.is_none())
    {
        let client = send::client()?;
        let report = runtime()?
            .block_on(crate::session::unless_stopped(folder::send(
                &args.dir,
                &meta.suite_name,
                &target,
                &client,
            )))
            .ok_or_else(|| {
                AppError::Interrupted(
                    "while sending traces: some may have arrived; sending again adds them once more to collectors that do not deduplicate".into(),
                )
            })?
            .map_err(AppError::io(format!("cannot read {}", args.dir.display())))?;
        out::eprintln(&report.summary(&target));
        if report.failed > 0 {
            outcome = Outcome::Infrastructure;
        }
        done_something = true;
    }
    if let Some(target) = &mlflow {
        publish_folder(&args, &meta, target)?;
        done_something = true;
    }
    if !done_something {
        return Err(AppError::Usage(
            "nowhere to export: give --mlflow URL, --otlp URL (or set MLFLOW_TRACKING_URI or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or --out FILE".into(),
        ));
    }
    Ok(outcome)
}

/// The folder as an MLflow run: the run its `mlflow.json` names on this server (in the
/// experiment asked for, else the one it went to last) is continued, else a new one is
/// made. The folder is locked meanwhile: no `--resume` writes it at the same time.
fn publish_folder(args: &ExportArgs, meta: &Meta, target: &MlflowTarget) -> Result<(), AppError> {
    read_summary(&args.dir).map_err(|_| {
        AppError::Usage(format!(
            "{} has no summary.json: finish it first (`ragprobe run --resume {}`)",
            args.dir.display(),
            args.dir.display()
        ))
    })?;
    let _lock = crate::store::folder::lock_existing(&args.dir)?;
    let client = Mlflow::new(&target.tracking_uri, target.auth.clone())?;
    let started = std::time::Instant::now();
    let checks = publish::checks_from_folder(meta);
    let subset = checks.len() > meta.cases.len();
    let scope = Scope {
        subset,
        reopen: false,
        group: None,
    };
    let (run, done) = runtime()?
        .block_on(crate::session::unless_stopped(async {
            let run = link::begin(&client, &target.experiment, &args.dir, meta, scope).await?;
            let done = publish::publish(&client, &run, &args.dir, &checks).await?;
            Ok::<_, AppError>((run, done))
        }))
        .ok_or_else(|| {
            AppError::Interrupted(format!(
                "while publishing {}: it is intact, and exporting it again finishes what is missing",
                args.dir.display()
            ))
        })??;
    out::eprintln(&publish::describe(&done, &run, started.elapsed()));
    for warning in &done.warnings {
        out::eprintln(&format!("warning: mlflow: {warning}"));
    }
    if let Some(why) = &done.artifacts_skipped {
        out::eprintln(&format!("warning: mlflow: no report files uploaded: {why}"));
    }
    Ok(())
}

/// A TREC run file: for run `run` of each case (the case id is the query id), one line per
/// retrieved document, `qid Q0 docid rank score tag`. The score is the retriever's where it
/// gave one, else descending from the number retrieved, so trec_eval's sort (score, then
/// document id) keeps ragprobe's order.
fn write_trec(
    dir: &std::path::Path,
    suite: &str,
    run: u32,
    path: &std::path::Path,
) -> Result<(usize, usize), AppError> {
    use std::io::Write;
    let read = |e: std::io::Error| AppError::io(format!("cannot read {}", dir.display()))(e);
    let write = |e: std::io::Error| AppError::io(format!("cannot write {}", path.display()))(e);
    let tag: String = suite
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    let (mut queries, mut lines) = (0, 0);
    // Runs finish in any order; the file lists queries by id, as trec_eval sorts them.
    let mut records = Vec::new();
    let mut most_runs = 0u32;
    for record in crate::store::RunReader::open(dir).map_err(read)? {
        let record = record.map_err(read)?;
        most_runs = most_runs.max(record.run + 1);
        if record.run == run && !record.retrieved.is_empty() {
            records.push(record);
        }
    }
    if records.is_empty() {
        return Err(AppError::Usage(if run >= most_runs {
            format!(
                "--run {run}: {} has runs 0 to {} of each case",
                dir.display(),
                most_runs.saturating_sub(1)
            )
        } else {
            format!("--run {run}: no case retrieved any document on that run")
        }));
    }
    records.sort_by(|a, b| a.case.cmp(&b.case));
    let mut out = crate::atomic::Pending::create(path).map_err(write)?;
    for record in records {
        queries += 1;
        let n = record.retrieved.len();
        let qid: String = record
            .case
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        for (rank, doc) in record.retrieved.iter().enumerate() {
            let score = doc.score.unwrap_or((n - rank) as f64);
            writeln!(out, "{qid} Q0 {} {} {score} {tag}", doc.id, rank + 1).map_err(write)?;
            lines += 1;
        }
    }
    out.commit().map_err(write)?;
    Ok((queries, lines))
}
