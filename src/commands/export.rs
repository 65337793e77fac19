//! `ragprobe export DIR`: the traces of an earlier report, to an OTLP endpoint or a file.

use crate::cli::ExportArgs;
use crate::commands::common::{report_meta, runtime};
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::export::folder;
use crate::export::send::{self, OtlpTarget};
use crate::report::out;

pub fn export(args: ExportArgs) -> Result<Outcome, AppError> {
    let meta = report_meta(&args.dir)?;
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
            "nowhere to export: give --otlp URL (or set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or --out FILE".into(),
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
