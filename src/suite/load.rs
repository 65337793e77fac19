//! Loads a suite and its chain, checks everything that can be checked before a run, and
//! builds the chain. Problems are collected and reported together.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::chain::config::{ChainConfig, DEFAULT_PROMPT};
use crate::chain::corpus::Corpus;
use crate::chain::memory::MemoryRetriever;
use crate::chain::prompt::{PromptTemplate, describe_template_error};
use crate::chain::{Chain, EmbeddedChain};
use crate::seed::stable_hash;
use crate::suite::error::{ConfigError, Problem};
use crate::suite::locate::KeyPath;
use crate::suite::schema::{ChainRef, SuiteSpec};

/// A suite ready to run: parsed, checked, with its chain built.
#[derive(Debug)]
pub struct Suite {
    pub path: PathBuf,
    pub spec: SuiteSpec,
    pub chain: Arc<Chain>,
    /// The chain as configured, for reports.
    pub chain_config: ChainConfig,
    pub corpus: Arc<Corpus>,
    /// Changes when the suite, its chain file or its corpus change.
    pub fingerprint: u64,
    /// Things worth knowing that do not stop the suite.
    pub warnings: Vec<Problem>,
}

/// A YAML file and the key path, inside it, where the chain mapping starts.
struct ChainSource {
    file: PathBuf,
    text: String,
    root: KeyPath,
}

impl ChainSource {
    fn problem(&self, path: KeyPath, message: impl Into<String>) -> Problem {
        let mut full = self.root.clone();
        full.0.extend(path.0);
        Problem::new(&self.file, message).at_path(&self.text, &full)
    }

    /// A path written in this file, resolved against the file's folder.
    fn resolve(&self, relative: &Path) -> PathBuf {
        resolve(&self.file, relative)
    }
}

pub fn load(path: &Path) -> Result<Suite, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        Problem::new(path, format!("cannot read suite: {err}"))
            .hint("give the path of a suite YAML file or of a folder of suites")
    })?;
    let spec: SuiteSpec =
        serde_yaml::from_str(&text).map_err(|err| Problem::from_yaml(path, &err))?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let at =
        |key_path: KeyPath, message: String| Problem::new(path, message).at_path(&text, &key_path);

    // The chain: inline, or in a file of its own.
    let (chain_config, chain_source): (ChainConfig, ChainSource) = match &spec.chain {
        ChainRef::Inline(config) => (
            (**config).clone(),
            ChainSource {
                file: path.to_owned(),
                text: text.clone(),
                root: KeyPath::default().key("chain"),
            },
        ),
        ChainRef::Path(relative) => {
            let chain_path = resolve(path, relative);
            let chain_text = std::fs::read_to_string(&chain_path).map_err(|err| {
                at(
                    KeyPath::default().key("chain"),
                    format!("cannot read chain file {}: {err}", chain_path.display()),
                )
                .hint("the chain path is relative to the suite file")
            })?;
            let config: ChainConfig = serde_yaml::from_str(&chain_text)
                .map_err(|err| Problem::from_yaml(&chain_path, &err))?;
            (
                config,
                ChainSource {
                    file: chain_path,
                    text: chain_text,
                    root: KeyPath::default(),
                },
            )
        }
    };

    // Suite-level checks.
    if spec.runs == 0 {
        problems.push(at(
            KeyPath::default().key("runs"),
            "runs must be at least 1".into(),
        ));
    }
    if spec.concurrency == Some(0) {
        problems.push(at(
            KeyPath::default().key("concurrency"),
            "concurrency must be at least 1".into(),
        ));
    }
    if spec.cases.is_empty() {
        problems.push(at(
            KeyPath::default().key("cases"),
            "the suite has no cases".into(),
        ));
    }
    let mut rule_ids = HashSet::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        let here = KeyPath::default().key("rules").index(i);
        if !rule_ids.insert(rule.id.as_str()) {
            problems.push(
                at(
                    here.clone().key("id"),
                    format!("rule id `{}` is used twice", rule.id),
                )
                .hint("rule ids name rules in reports: keep them unique"),
            );
        }
        match (&rule.retrieved, &rule.answer) {
            (None, None) => problems.push(
                at(here, format!("rule `{}` checks nothing", rule.id))
                    .hint("add `retrieved: {every: {...}}` or `answer: {not_matches: ...}`"),
            ),
            (Some(_), Some(_)) => problems.push(
                at(
                    here,
                    format!("rule `{}` has both `retrieved` and `answer`", rule.id),
                )
                .hint("split it into two rules, so each violation rate means one thing"),
            ),
            (None, Some(check)) if check.is_empty() => problems.push(
                at(here.key("answer"), "the answer rule has no check".into())
                    .hint("add contains, contains_any, not_contains, matches or not_matches"),
            ),
            _ => {}
        }
    }
    let mut case_ids = HashSet::new();
    for (i, case) in spec.cases.iter().enumerate() {
        let here = KeyPath::default().key("cases").index(i);
        if !case_ids.insert(case.id.as_str()) {
            problems.push(
                at(
                    here.clone().key("id"),
                    format!("case id `{}` is used twice", case.id),
                )
                .hint("case ids align runs across reports: keep them unique"),
            );
        }
        if case.question.trim().is_empty() {
            problems.push(at(
                here.clone().key("question"),
                "the question is empty".into(),
            ));
        }
        if let Some(check) = case.expect.as_ref().and_then(|e| e.answer.as_ref()) {
            if check.is_empty() {
                problems.push(
                    at(
                        here.key("expect").key("answer"),
                        "the answer expectation has no check".into(),
                    )
                    .hint("add contains, contains_any, not_contains, matches or not_matches"),
                );
            }
        }
    }

    // The chain: corpus, retriever, prompt.
    let retriever_path = KeyPath::default().key("retriever");
    let corpus_path = chain_source.resolve(&chain_config.retriever.corpus);
    let corpus = match Corpus::load(&corpus_path) {
        Ok(corpus) => Some(Arc::new(corpus)),
        Err(err) if err.line.is_none() && err.message.starts_with("cannot read") => {
            problems.push(
                chain_source
                    .problem(
                        retriever_path.clone().key("corpus"),
                        format!(
                            "corpus file {} not found or unreadable",
                            corpus_path.display()
                        ),
                    )
                    .hint("the corpus path is relative to the file that names it"),
            );
            None
        }
        Err(err) => {
            let mut problem = Problem::new(&err.path, err.message);
            if let (Some(line), Some(column)) = (err.line, err.column) {
                problem = problem.at(line, column);
            }
            problem.hint = err.hint;
            problems.push(problem);
            None
        }
    };
    if chain_config.retriever.k == 0 {
        problems
            .push(chain_source.problem(retriever_path.clone().key("k"), "k must be at least 1"));
    }
    let prompt_source = match (&chain_config.prompt, &chain_config.prompt_file) {
        (Some(_), Some(_)) => {
            problems.push(
                chain_source
                    .problem(
                        KeyPath::default().key("prompt_file"),
                        "both `prompt` and `prompt_file` are set",
                    )
                    .hint("keep one of them"),
            );
            None
        }
        (Some(inline), None) => Some(("prompt".to_owned(), inline.clone())),
        (None, Some(file)) => {
            let prompt_path = chain_source.resolve(file);
            match std::fs::read_to_string(&prompt_path) {
                Ok(source) => Some((file.display().to_string(), source)),
                Err(err) => {
                    problems.push(
                        chain_source
                            .problem(
                                KeyPath::default().key("prompt_file"),
                                format!("cannot read prompt file {}: {err}", prompt_path.display()),
                            )
                            .hint("the prompt path is relative to the file that names it"),
                    );
                    None
                }
            }
        }
        (None, None) => Some(("default-prompt".to_owned(), DEFAULT_PROMPT.to_owned())),
    };
    let prompt_key = if chain_config.prompt_file.is_some() {
        "prompt_file"
    } else {
        "prompt"
    };
    let template =
        prompt_source.and_then(|(name, source)| match PromptTemplate::new(&name, source) {
            Ok(template) => Some(template),
            Err(err) => {
                problems.push(
                    chain_source
                        .problem(
                            KeyPath::default().key(prompt_key),
                            format!("prompt template: {}", describe_template_error(&err)),
                        )
                        .hint("minijinja syntax: {{ variable }}, {% for x in list %}…{% endfor %}"),
                );
                None
            }
        });

    let Some(corpus) = corpus else {
        return Err(ConfigError { problems });
    };

    // Checks that need the corpus.
    let known_ids = || {
        let ids: Vec<&str> = corpus
            .documents
            .iter()
            .map(|d| d.id.as_str())
            .take(12)
            .collect();
        let more = if corpus.documents.len() > 12 {
            ", …"
        } else {
            ""
        };
        format!("{}{more}", ids.join(", "))
    };
    for (i, case) in spec.cases.iter().enumerate() {
        let Some(expect) = &case.expect else { continue };
        for (j, source) in expect.sources.iter().enumerate() {
            if !corpus.contains(&source.0) {
                problems.push(
                    at(
                        KeyPath::default()
                            .key("cases")
                            .index(i)
                            .key("expect")
                            .key("sources")
                            .index(j),
                        format!(
                            "document `{source}` is not in the corpus {}",
                            corpus.path.display()
                        ),
                    )
                    .hint(format!("known ids: {}", known_ids())),
                );
            }
        }
    }
    let retriever = MemoryRetriever::new(
        Arc::clone(&corpus),
        chain_config.retriever.k,
        chain_config.retriever.filter.clone(),
    );
    if retriever.searchable() == 0 {
        let message = if corpus.documents.is_empty() {
            "the corpus is empty".to_owned()
        } else {
            "the retriever filter excludes every document".to_owned()
        };
        warnings.push(chain_source.problem(retriever_path.key("filter"), message));
    }

    // A strict template fails on a misspelt variable: try it on every case now rather
    // than on every run later.
    if let Some(template) = &template {
        let sample: Vec<&crate::chain::corpus::Document> = corpus
            .documents
            .iter()
            .take(chain_config.retriever.k)
            .collect();
        for case in &spec.cases {
            let vars = merged_vars(&spec.vars, &case.vars);
            if let Err(err) = template.render(&case.question, &sample, &vars) {
                problems.push(
                    chain_source
                        .problem(
                            KeyPath::default().key(prompt_key),
                            format!(
                                "prompt template fails for case `{}`: {}",
                                case.id,
                                describe_template_error(&err)
                            ),
                        )
                        .hint("the template sees `question`, `documents` (id, text, metadata) and `vars`"),
                );
                break;
            }
        }
    }

    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let Some(template) = template else {
        return Err(ConfigError { problems });
    };
    let corpus_bytes = std::fs::read(&corpus.path).unwrap_or_default();
    let fingerprint = stable_hash(&[text.as_bytes(), chain_source.text.as_bytes(), &corpus_bytes]);
    let chain = Chain::Embedded(EmbeddedChain::new(retriever, template, &chain_config.llm));
    Ok(Suite {
        path: path.to_owned(),
        spec,
        chain: Arc::new(chain),
        chain_config,
        corpus,
        fingerprint,
        warnings,
    })
}

/// `relative` as written in the file `from`, resolved against that file's folder, with
/// `a/b/../c` folded to `a/c` so messages show short paths.
fn resolve(from: &Path, relative: &Path) -> PathBuf {
    let joined = from.parent().unwrap_or(Path::new("")).join(relative);
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if matches!(
                    out.components().next_back(),
                    Some(std::path::Component::Normal(_))
                ) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Case variables over suite variables.
pub fn merged_vars(suite: &Map<String, Value>, case: &Map<String, Value>) -> Map<String, Value> {
    let mut vars = suite.clone();
    vars.extend(case.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

/// The suite files under `path`: the file itself, or every `.yaml`/`.yml` below a folder
/// with a top-level `cases:` key (chain and corpus files are skipped), in path order.
pub fn discover(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut found = Vec::new();
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry_path = entry?.path();
            if entry_path.is_dir() {
                pending.push(entry_path);
            } else if matches!(
                entry_path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) && looks_like_suite(&entry_path)
            {
                found.push(entry_path);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn looks_like_suite(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|text| text.lines().any(|line| line.starts_with("cases:")))
        .unwrap_or(false)
}
