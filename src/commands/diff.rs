//! `ragprobe diff A B`: the same report stage, fed two stores.

use crate::ci::github::{command, text_as_markdown, within_limits};
use crate::cli::{DiffArgs, Format};
use crate::commands::github;
use crate::diff::{DiffSettings, diff as compare};
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::model::summary::retrieval_regressed;
use crate::out;
use crate::report::{diff_text, html};

pub const DIFF_FILE: &str = "diff.html";

pub fn diff(args: DiffArgs) -> Result<Outcome, AppError> {
    if !(0.0..1.0).contains(&args.alpha) || args.alpha == 0.0 {
        return Err(AppError::Usage(format!(
            "--alpha {} is not a significance level: use a value between 0 and 1, such as 0.05",
            args.alpha
        )));
    }
    if !(0.0..1.0).contains(&args.min_effect) {
        return Err(AppError::Usage(format!(
            "--min-effect {} is not a share of runs: use a value from 0 up to 1, such as 0.05 for 5 points",
            args.min_effect
        )));
    }
    let settings = DiffSettings {
        alpha: args.alpha,
        correction: args.correction,
        min_effect: args.min_effect,
        retrieval_gate: args.retrieval_gate,
    };
    if let Some(out) = &args.out
        && out.file_name().is_none_or(|name| name != DIFF_FILE)
    {
        crate::store::folder::refuse_output_over_inputs(out, &[&args.a, &args.b], false)?;
    }
    let report = compare(&args.a, &args.b, settings).map_err(|e| AppError::Usage(e.to_string()))?;
    let page = html::render_diff(&report).map_err(|e| AppError::Io {
        context: "cannot render diff.html".into(),
        source: std::io::Error::other(e),
    })?;
    let out = args.out.clone().unwrap_or_else(|| args.b.join(DIFF_FILE));
    crate::atomic::write(&out, page)
        .map_err(AppError::io(format!("cannot write {}", out.display())))?;
    match args.format {
        Format::Text => {
            out::print(&diff_text::render(&report));
            out::println(&format!("diff: {}", out.display()));
        }
        Format::Json => out::print_data(&serde_json::to_string_pretty(&report).unwrap_or_default()),
    }
    publish_on_github(&args, &report);
    Ok(
        if report.regressions > 0 || retrieval_regressed(&report.retrieval) {
            Outcome::ChecksFailed
        } else {
            Outcome::Ok
        },
    )
}

/// On GitHub Actions: the diff in the job summary and an error annotation per regressed
/// case at its line in B's suite file; with --pr-comment, the comment.
fn publish_on_github(args: &DiffArgs, report: &crate::diff::DiffReport) {
    let actions = github::actions();
    if actions.is_none() && !args.pr_comment {
        return;
    }
    let annotations = match (&actions, crate::commands::common::report_meta(&args.b)) {
        (Some(actions), Ok(meta)) => {
            let places = actions.places(&meta.suite_path);
            let regressed: Vec<_> = report
                .cases
                .iter()
                .filter(|c| c.change == crate::model::summary::Change::Regression)
                .collect();
            let errors = regressed.into_iter().map(|c| {
                command(
                    "error",
                    &places.at(&c.id),
                    &format!("ragprobe: case {} regressed", c.id),
                    &format!(
                        "worse than {} (p = {:.4}, adjusted {:.4})",
                        args.a.display(),
                        c.p_value,
                        c.p_adjusted
                    ),
                )
            });
            within_limits(errors, std::iter::empty(), &report.b_suite)
        }
        _ => Vec::new(),
    };
    let publication = github::Publication {
        suites: vec![report.b_suite.as_str()],
        markdown: text_as_markdown(
            &format!("ragprobe diff · {}", report.b_suite),
            &diff_text::render(report),
        ),
        annotations,
    };
    github::publish(
        &publication,
        actions.as_ref(),
        args.pr_comment,
        args.format == Format::Json,
    );
}
