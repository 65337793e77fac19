//! `ragprobe export DIR`: the traces of an earlier report, to an OTLP endpoint or a file.

use crate::cli::ExportArgs;
use crate::commands::common::{report_meta, runtime};
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::export::folder;
use crate::export::send::{self, OtlpTarget};
use crate::mlflow::client::Mlflow;
use crate::mlflow::publish;
use crate::mlflow::target::MlflowTarget;
use crate::model::meta::Meta;
use crate::model::summary::read_summary;
use crate::report::out;

pub fn export(args: ExportArgs) -> Result<Outcome, AppError> {
    let meta = report_meta(&args.dir)?;
    let mlflow = MlflowTarget::resolve(
        args.mlflow.mlflow.as_deref(),
        args.mlflow.experiment.as_deref(),
        args.mlflow.no_mlflow,
    )?;
    // --out and --otlp say where traces go; otherwise MLflow (flag or variable) takes all.
    if let Some(target) = mlflow.filter(|_| args.out.is_none() && args.otlp.otlp.is_none()) {
        return publish_folder(&args, &meta, &target);
    }
    let target = OtlpTarget::resolve(
        args.otlp.otlp.as_deref(),
        &args.otlp.otlp_headers,
        args.otlp.otlp_protocol.as_deref(),
    )?;
    if let Some(path) = &args.out {
        let file = std::fs::File::create(path)
            .map_err(AppError::io(format!("cannot write {}", path.display())))?;
        let total = folder::write_json_lines(
            &args.dir,
            &meta.suite_name,
            &mut std::io::BufWriter::new(file),
        )
        .map_err(AppError::io(format!("cannot write {}", path.display())))?;
        out::eprintln(&format!(
            "otlp: {total} traces written to {}",
            path.display()
        ));
        return Ok(Outcome::Ok);
    }
    let Some(target) = target else {
        return Err(AppError::Usage(
            "nowhere to export: give --mlflow URL, --otlp URL (or set MLFLOW_TRACKING_URI or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or --out FILE".into(),
        ));
    };
    let client = send::client()?;
    let report = runtime()?
        .block_on(folder::send(&args.dir, &meta.suite_name, &target, &client))
        .map_err(AppError::io(format!("cannot read {}", args.dir.display())))?;
    out::eprintln(&report.summary(&target));
    Ok(if report.failed > 0 {
        Outcome::Infrastructure
    } else {
        Outcome::Ok
    })
}

/// The folder as an MLflow run: the run its `mlflow.json` names when it is on this server
/// and in this experiment (continued), else a new one.
fn publish_folder(
    args: &ExportArgs,
    meta: &Meta,
    target: &MlflowTarget,
) -> Result<Outcome, AppError> {
    if read_summary(&args.dir).is_err() {
        return Err(AppError::Usage(format!(
            "{} has no summary.json: finish it first (`ragprobe run --resume {}`)",
            args.dir.display(),
            args.dir.display()
        )));
    }
    let client = Mlflow::new(&target.tracking_uri, target.auth.clone())?;
    let started = std::time::Instant::now();
    let checks = publish::checks_from_folder(meta);
    let (run, done) = runtime()?.block_on(async {
        let run = publish::begin(
            &client,
            &target.experiment_for(&meta.suite_name),
            &args.dir,
            meta,
        )
        .await?;
        let done = publish::publish(&client, &run, &args.dir, &checks).await?;
        Ok::<_, AppError>((run, done))
    })?;
    out::eprintln(&publish::describe(&done, &run, started.elapsed()));
    if let Some(why) = &done.artifacts_skipped {
        out::eprintln(&format!("warning: mlflow: no report files uploaded: {why}"));
    }
    Ok(Outcome::Ok)
}
