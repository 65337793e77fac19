//! `ragprobe run` with MLflow: the run found or made before the first suite run (and the
//! baseline taken from the experiment), published after the reports, marked FAILED when
//! the suite stops short with an error. What is said on stderr on the way.

use std::path::Path;

use crate::error::AppError;
use crate::export::send::{self, OtlpTarget};
use crate::mlflow::assessments;
use crate::mlflow::client::Mlflow;
use crate::mlflow::link::{self, RunRef, Scope};
use crate::mlflow::publish;
use crate::mlflow::target::MlflowTarget;
use crate::model::summary::Baseline;
use crate::out;
use crate::plan::Plan;
use crate::secrets::scrub;

/// Where a `run` logs, and whether its baseline comes from there.
pub struct MlflowLog {
    pub target: MlflowTarget,
    pub client: Mlflow,
    pub baseline: bool,
    /// The group a shard's run joins (`--group`), for `merge --mlflow`.
    pub group: Option<String>,
}

impl MlflowLog {
    /// The run `plan` logs to, with the baseline set from the experiment when asked, and
    /// the OTLP target its traces stream to (none when they go later, under other ids).
    pub async fn start(
        &self,
        plan: &mut Plan,
        reopen: bool,
        quiet: bool,
    ) -> Result<(RunRef, Option<(OtlpTarget, reqwest::Client)>), AppError> {
        let suite = plan.suite.spec.name.clone();
        let scope = Scope {
            subset: plan.cases.len() < plan.suite.spec.cases.len(),
            reopen,
            group: plan
                .shard
                .and(self.group.clone())
                .map(|name| link::GroupTag {
                    name,
                    role: "shard",
                }),
        };
        let run = link::begin(
            &self.client,
            &self.target.experiment,
            &plan.out_dir,
            &plan.meta(),
            scope,
        )
        .await?;
        if !quiet {
            out::eprintln(&format!(
                "mlflow: logging to run {} in experiment `{}`",
                run.url, run.experiment_name
            ));
        }
        if self.baseline {
            let found =
                link::last_summary(&self.client, &run.experiment_id, &suite, &run.run_id).await;
            match found {
                Ok(Some((label, summary))) => plan.baseline = Some(Baseline { label, summary }),
                Ok(None) => out::eprintln(&format!(
                    "warning: --baseline mlflow: experiment `{}` has no finished run of the whole suite `{suite}` with its report files yet: the gate is the suite's thresholds",
                    run.experiment_name
                )),
                Err(error) => {
                    self.fail(&run).await;
                    return Err(error.into());
                }
            }
        }
        let stream = if run.owns_trace_ids() {
            Some((link::otlp_target(&self.client, &run), send::client()?))
        } else {
            None
        };
        Ok((run, stream))
    }

    /// Publishes the finished folder; `false` (and what to do, on stderr) when MLflow did
    /// not take it.
    pub async fn finish(&self, run: &RunRef, plan: &Plan, quiet: bool) -> bool {
        let started = std::time::Instant::now();
        let checks = assessments::case_checks(&plan.suite);
        let dir = &plan.out_dir;
        match publish::publish(&self.client, run, dir, &checks).await {
            Ok(done) => {
                if !quiet {
                    out::eprintln(&publish::describe(&done, run, started.elapsed()));
                }
                for warning in &done.warnings {
                    out::eprintln(&format!("warning: mlflow: {warning}"));
                }
                if let Some(why) = &done.artifacts_skipped {
                    out::eprintln(&format!("warning: mlflow: no report files uploaded: {why}"));
                }
                true
            }
            Err(error) => {
                out::eprintln(&format!("error: {}", scrub(&error.to_string())));
                out::eprintln(&format!(
                    "mlflow: {} has every result; `{}` publishes it into the same run when the server takes it",
                    dir.display(),
                    republish_command(dir, run)
                ));
                false
            }
        }
    }

    /// Best effort, for a suite that stopped with an error after its run was made: the run
    /// is not left RUNNING.
    pub async fn fail(&self, run: &RunRef) {
        self.mark(run, "FAILED").await;
    }

    /// The runs were interrupted: the MLflow run is marked KILLED, nothing is published
    /// (the signal asked to stop; `export --mlflow` publishes the folder later).
    pub async fn interrupted(&self, run: &RunRef, dir: &Path) {
        self.mark(run, "KILLED").await;
        out::eprintln(&format!(
            "mlflow: interrupted, nothing published; {} has every finished run: `ragprobe run --resume {}` finishes it, then `{}` publishes it",
            dir.display(),
            dir.display(),
            republish_command(dir, run)
        ));
    }

    async fn mark(&self, run: &RunRef, status: &str) {
        let mark = link::set_status(&self.client, &run.run_id, status, Some(link::now_ms()));
        // Bounded: a server that hangs must not hold the error (or a Ctrl-C) up.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), mark).await;
    }
}

/// The command that publishes `dir` to `run` later, quoted for a POSIX shell.
fn republish_command(dir: &Path, run: &RunRef) -> String {
    let quote = |s: &str| {
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:".contains(c))
        {
            s.to_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    format!(
        "ragprobe export {} --mlflow {} --experiment {}",
        quote(&dir.display().to_string()),
        quote(&run.tracking_uri),
        quote(&run.experiment_name)
    )
}
