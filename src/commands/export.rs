//! `ragprobe export DIR`: the traces of an earlier report, to an OTLP endpoint or a file.

use std::io::Write;

use crate::cli::{ExportArgs, OtlpArgs};
use crate::error::AppError;
use crate::exit_codes;
use crate::export::send::{self, ExportReport, OtlpTarget};
use crate::export::{json, otlp};
use crate::store::{Meta, RunReader};

/// Traces per request or per line.
const BATCH: usize = 64;

pub fn resolve_target(args: &OtlpArgs) -> Result<Option<OtlpTarget>, AppError> {
    OtlpTarget::resolve(
        args.otlp.as_deref(),
        &args.otlp_headers,
        args.otlp_protocol.as_deref(),
    )
    .map_err(AppError::Usage)
}

pub fn export(args: ExportArgs) -> Result<i32, AppError> {
    let meta = Meta::read(&args.dir).map_err(|e| {
        AppError::Usage(format!(
            "{} is not a report folder: {e}",
            args.dir.display()
        ))
    })?;
    let target = resolve_target(&args.otlp)?;
    if target.is_none() && args.out.is_none() {
        return Err(AppError::Usage(
            "nowhere to export: give --otlp URL (or set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or --out FILE".into(),
        ));
    }
    let read_error = |e| AppError::Io {
        context: format!("cannot read {}", args.dir.display()),
        source: e,
    };
    let mut batches: Vec<Vec<otlp::OtlpSpan>> = Vec::new();
    let mut file = match &args.out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(AppError::io(format!("cannot write {}", path.display())))?,
        )),
        None => None,
    };
    let mut current: Vec<otlp::OtlpSpan> = Vec::new();
    let mut in_batch = 0;
    let mut total = 0u64;
    let mut flush = |spans: Vec<otlp::OtlpSpan>,
                     file: &mut Option<std::io::BufWriter<std::fs::File>>|
     -> Result<(), AppError> {
        match file {
            Some(out) => {
                serde_json::to_writer(&mut *out, &json::request(&spans)).map_err(|e| {
                    AppError::Io {
                        context: "cannot write OTLP JSON".into(),
                        source: std::io::Error::other(e),
                    }
                })?;
                out.write_all(b"\n")
                    .map_err(AppError::io("cannot write OTLP JSON"))?;
            }
            None => batches.push(spans),
        }
        Ok(())
    };
    for record in RunReader::open(&args.dir).map_err(read_error)? {
        let record = record.map_err(read_error)?;
        current.extend(otlp::spans_for(&record, &meta.suite_name));
        in_batch += 1;
        total += 1;
        if in_batch == BATCH {
            flush(std::mem::take(&mut current), &mut file)?;
            in_batch = 0;
        }
    }
    if in_batch > 0 {
        flush(current, &mut file)?;
    }
    if let (Some(out), Some(path)) = (file.as_mut(), &args.out) {
        out.flush()
            .map_err(AppError::io(format!("cannot write {}", path.display())))?;
        eprintln!("otlp: {total} traces written to {}", path.display());
        return Ok(exit_codes::OK);
    }
    let Some(target) = target else {
        return Ok(exit_codes::OK);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::io("cannot start the async runtime"))?;
    let report = runtime.block_on(async {
        let client = send::client().map_err(AppError::Usage)?;
        let mut report = ExportReport::default();
        for spans in &batches {
            let traces = spans.iter().filter(|s| s.parent_span_id.is_none()).count() as u64;
            match send::post(&client, &target, spans).await {
                Ok(()) => report.sent += traces,
                Err(error) => {
                    report.failed += traces;
                    report.first_error.get_or_insert(error);
                }
            }
        }
        Ok::<_, AppError>(report)
    })?;
    eprintln!("{}", report.summary(&target));
    Ok(if report.failed > 0 {
        exit_codes::INFRASTRUCTURE
    } else {
        exit_codes::OK
    })
}
