//! Where results go in MLflow, configured the way MLflow users configure their clients:
//! `MLFLOW_TRACKING_URI`, `MLFLOW_EXPERIMENT_NAME` / `MLFLOW_EXPERIMENT_ID`,
//! `MLFLOW_TRACKING_TOKEN` or `MLFLOW_TRACKING_USERNAME` / `_PASSWORD`, and the flags
//! `--mlflow URL` and `--experiment NAME`, which win over the variables.

use base64::Engine;

use crate::secrets::{redact_url, remember_secret, remember_url};

/// MLflow settings that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MlflowConfigError {
    #[error(
        "MLflow tracking URI `{0}` is not an http(s) URL: ragprobe talks to a tracking server (`mlflow server`) over its REST API, not to a file, database or `databricks` URI"
    )]
    NotHttp(String),
    #[error(
        "MLFLOW_TRACKING_USERNAME is set without MLFLOW_TRACKING_PASSWORD (or the other way round)"
    )]
    HalfCredentials,
    #[error("--experiment is empty")]
    EmptyExperiment,
}

/// Which experiment the runs go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExperimentRef {
    /// Created if missing.
    Name(String),
    /// Must exist.
    Id(String),
    /// No name given: one experiment per suite, named after it (created if missing).
    SuiteName,
}

#[derive(Clone, PartialEq, Eq)]
pub struct MlflowTarget {
    pub tracking_uri: String,
    pub experiment: ExperimentRef,
    /// `Authorization` header value; a secret.
    pub auth: Option<String>,
}

impl std::fmt::Debug for MlflowTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MlflowTarget({}, {:?})",
            redact_url(&self.tracking_uri),
            self.experiment
        )
    }
}

impl MlflowTarget {
    /// Flags first, then the variables; `None` when no tracking URI is given, or when
    /// `off` (`--no-mlflow`) says so. A `MLFLOW_TRACKING_URI` that is not a server
    /// (`sqlite:…`, `databricks`, a folder: common for MLflow's Python client) is not an
    /// error unless `--mlflow` names it: `warn` is told, and MLflow is off.
    pub fn resolve(
        uri: Option<&str>,
        experiment: Option<&str>,
        off: bool,
        warn: &mut dyn FnMut(String),
    ) -> Result<Option<MlflowTarget>, MlflowConfigError> {
        if off {
            return Ok(None);
        }
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (uri, from_env) = match uri {
            Some(uri) => (uri.to_owned(), false),
            None => match env("MLFLOW_TRACKING_URI") {
                Some(uri) => (uri, true),
                None => return Ok(None),
            },
        };
        let uri = uri.trim().trim_end_matches('/').to_owned();
        if !uri.starts_with("http://") && !uri.starts_with("https://") {
            if from_env {
                warn(format!(
                    "MLFLOW_TRACKING_URI `{}` is not a tracking server's http(s) URL: nothing is logged to MLflow (--mlflow URL names a server)",
                    redact_url(&uri)
                ));
                return Ok(None);
            }
            return Err(MlflowConfigError::NotHttp(redact_url(&uri)));
        }
        remember_url(&uri);
        let experiment = match experiment {
            Some(name) if name.trim().is_empty() => {
                return Err(MlflowConfigError::EmptyExperiment);
            }
            Some(name) => ExperimentRef::Name(name.to_owned()),
            None => match (env("MLFLOW_EXPERIMENT_ID"), env("MLFLOW_EXPERIMENT_NAME")) {
                (Some(id), _) => ExperimentRef::Id(id.trim().to_owned()),
                (None, Some(name)) => ExperimentRef::Name(name),
                (None, None) => ExperimentRef::SuiteName,
            },
        };
        let auth = match (
            env("MLFLOW_TRACKING_TOKEN"),
            env("MLFLOW_TRACKING_USERNAME"),
            env("MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Some(token), _, _) => {
                remember_secret(&token);
                Some(format!("Bearer {token}"))
            }
            (None, Some(user), Some(password)) => {
                remember_secret(&password);
                let basic =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                remember_secret(&basic);
                Some(format!("Basic {basic}"))
            }
            (None, None, None) => None,
            (None, _, _) => return Err(MlflowConfigError::HalfCredentials),
        };
        Ok(Some(MlflowTarget {
            tracking_uri: uri,
            experiment,
            auth,
        }))
    }

    /// The experiment's name for `suite`, or its id.
    pub fn experiment_for(&self, suite: &str) -> ExperimentRef {
        match &self.experiment {
            ExperimentRef::SuiteName => ExperimentRef::Name(suite.to_owned()),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_name_the_server_and_the_experiment() {
        let target = MlflowTarget::resolve(
            Some("http://127.0.0.1:5000/"),
            Some("bots"),
            false,
            &mut |_| {},
        )
        .expect("valid")
        .expect("on");
        assert_eq!(target.tracking_uri, "http://127.0.0.1:5000");
        assert_eq!(
            target.experiment_for("s"),
            ExperimentRef::Name("bots".into())
        );
        assert_eq!(
            MlflowTarget::resolve(Some("http://h"), None, true, &mut |_| {}),
            Ok(None),
            "--no-mlflow wins"
        );
    }

    #[test]
    fn only_tracking_servers_are_accepted() {
        for uri in [
            "sqlite:///mlflow.db",
            "databricks",
            "./mlruns",
            "file:///tmp/x",
        ] {
            let err = MlflowTarget::resolve(Some(uri), None, false, &mut |_| {}).expect_err(uri);
            assert!(err.to_string().contains("not an http(s) URL"), "{err}");
        }
        assert_eq!(
            MlflowTarget::resolve(Some("http://h"), Some(" "), false, &mut |_| {}),
            Err(MlflowConfigError::EmptyExperiment)
        );
    }
}
