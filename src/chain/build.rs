//! Turns a chain configuration into a chain, checking everything that can be checked
//! before a run: required keys for the chosen kind, keys that belong to another kind,
//! corpus files, prompt templates, filters a store cannot express, API keys. Every
//! problem points at its line and column.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::{Backend, Limits};
use crate::chain::Chain;
use crate::chain::chroma::{ChromaClient, CollectionHandle, translate};
use crate::chain::config::{
    ChainConfig, ChainKind, DEFAULT_PROMPT, LlmKind, Preset, RetrieverConfig, RetrieverKind,
};
use crate::chain::corpus::{Corpus, CorpusError};
use crate::chain::embed::{Embedder, Idf};
use crate::chain::extractive::Extractive;
use crate::chain::intake::SpanIntake;
use crate::chain::memory::MemoryRetriever;
use crate::chain::openai::{ChatModel, ModelError};
use crate::chain::pipeline::{ChromaRetriever, Generator, PipelineChain, Retriever};
use crate::chain::prompt::{PromptTemplate, describe_template_error};
use crate::chain::service::{CommandChain, HttpChain, HttpSetupError, ReplyShape};
use crate::config::files::resolve;
use crate::config::files::{MAX_CONFIG_BYTES, read_capped, read_text};
use crate::config::locate::KeyPath;
use crate::config::problem::{ConfigError, Problem};

/// A YAML file and the key path, inside it, where the chain mapping starts.
pub struct ChainSource {
    pub file: PathBuf,
    pub text: String,
    pub root: KeyPath,
}

impl ChainSource {
    /// A chain file's text parsed as a chain, with the source its problems are placed in.
    pub fn parse(file: &Path, text: String) -> Result<(ChainConfig, ChainSource), Problem> {
        let config: ChainConfig = serde_yaml::from_str(&text)
            .map_err(|err| Problem::from_yaml_in(file, &err, Some(&text)))?;
        Ok((
            config,
            ChainSource {
                file: file.to_owned(),
                text,
                root: KeyPath::default(),
            },
        ))
    }

    pub fn problem(&self, path: KeyPath, message: impl Into<String>) -> Problem {
        let mut full = self.root.clone();
        full.0.extend(path.0);
        Problem::new(&self.file, message).at_path(&self.text, &full)
    }

    /// A path written in this file, resolved against the file's folder.
    pub fn resolve(&self, relative: &Path) -> PathBuf {
        resolve(&self.file, relative)
    }
}

/// A chain and the corpus it retrieves from, where ragprobe knows it.
pub struct BuiltChain {
    pub chain: Chain,
    pub corpus: Option<Arc<Corpus>>,
}

/// A chain file on its own (for `ragprobe index` and `ragprobe repro --chain`).
pub struct LoadedChain {
    pub config: ChainConfig,
    pub chain: Chain,
    pub corpus: Option<Arc<Corpus>>,
    pub file: PathBuf,
}

pub fn load_chain(path: &Path) -> Result<LoadedChain, ConfigError> {
    let text = read_text(path, "chain file")
        .map_err(|problem| problem.hint("give the path of a chain YAML file"))?;
    let (config, source) = ChainSource::parse(path, text)?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let built = build_chain(&config, &source, &mut problems, &mut warnings);
    match built.filter(|_| problems.is_empty()) {
        Some(built) => Ok(LoadedChain {
            config,
            chain: built.chain,
            corpus: built.corpus,
            file: path.to_owned(),
        }),
        None => Err(ConfigError { problems }),
    }
}

pub fn prompt_key(config: &ChainConfig) -> &'static str {
    if config.prompt_file.is_some() {
        "prompt_file"
    } else {
        "prompt"
    }
}

/// Builds the chain, pushing what is wrong; `None` when it cannot be built.
pub fn build_chain(
    config: &ChainConfig,
    source: &ChainSource,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<BuiltChain> {
    let config = &with_env(config, source, problems)?;
    let here = |key: &str| KeyPath::default().key(key);
    let mut misplaced = |key: &str, present: bool, kind: &str| {
        if present {
            problems.push(
                source
                    .problem(
                        here(key),
                        format!("`{key}` does not apply to a {kind} chain"),
                    )
                    .hint(format!(
                        "remove it, or set `kind:` to the chain kind it belongs to (now {kind})"
                    )),
            );
        }
    };
    match config.kind {
        ChainKind::Pipeline => {
            for (key, present) in [
                ("url", config.url.is_some()),
                ("method", config.method.is_some()),
                ("headers", !config.headers.is_empty()),
                ("body", config.body.is_some()),
                ("answer_pointer", config.answer_pointer.is_some()),
                ("documents_pointer", config.documents_pointer.is_some()),
                ("spans_pointer", config.spans_pointer.is_some()),
                ("limits", config.limits.is_some()),
                ("cmd", config.cmd.is_some()),
                ("preset", config.preset.is_some()),
                ("document_id", config.document_id.is_some()),
                ("positional_ids", config.positional_ids),
                ("receive_otlp", config.receive_otlp.is_some()),
                ("span_grace_ms", config.span_grace_ms.is_some()),
                ("documents_from", config.documents_from.is_some()),
            ] {
                misplaced(key, present, "pipeline");
            }
            build_pipeline(config, source, problems, warnings)
        }
        ChainKind::Http | ChainKind::Command => {
            let kind = if config.kind == ChainKind::Http {
                "http"
            } else {
                "command"
            };
            for (key, present) in [
                ("retriever", config.retriever.is_some()),
                ("embedder", config.embedder.is_some()),
                ("prompt", config.prompt.is_some()),
                ("prompt_file", config.prompt_file.is_some()),
                ("llm", config.llm.is_some()),
            ] {
                misplaced(key, present, kind);
            }
            if config.kind == ChainKind::Http {
                misplaced("cmd", config.cmd.is_some(), kind);
                build_http(config, source, problems)
            } else {
                for (key, present) in [
                    ("url", config.url.is_some()),
                    ("method", config.method.is_some()),
                    ("headers", !config.headers.is_empty()),
                    ("body", config.body.is_some()),
                ] {
                    misplaced(key, present, kind);
                }
                build_command(config, source, problems)
            }
        }
    }
}

/// The config with `${…}` expanded in every URL.
fn with_env(
    config: &ChainConfig,
    source: &ChainSource,
    problems: &mut Vec<Problem>,
) -> Option<ChainConfig> {
    let mut config = config.clone();
    let mut ok = true;
    let mut expand = |value: &mut Option<String>, path: KeyPath| {
        if let Some(text) = value.as_mut() {
            match crate::config::files::expand_env(text) {
                Ok(expanded) => *text = expanded,
                Err(err) => {
                    problems.push(
                        source
                            .problem(path, err.to_string())
                            .hint("export it, or write `${NAME:-default}`"),
                    );
                    ok = false;
                }
            }
        }
    };
    expand(&mut config.url, KeyPath::default().key("url"));
    expand(
        &mut config.receive_otlp,
        KeyPath::default().key("receive_otlp"),
    );
    if let Some(retriever) = config.retriever.as_mut() {
        expand(
            &mut retriever.url,
            KeyPath::default().key("retriever").key("url"),
        );
    }
    if let Some(embedder) = config.embedder.as_mut() {
        expand(
            &mut embedder.base_url,
            KeyPath::default().key("embedder").key("base_url"),
        );
        expand(
            &mut embedder.model,
            KeyPath::default().key("embedder").key("model"),
        );
    }
    if let Some(llm) = config.llm.as_mut() {
        expand(
            &mut llm.base_url,
            KeyPath::default().key("llm").key("base_url"),
        );
        expand(&mut llm.model, KeyPath::default().key("llm").key("model"));
    }
    ok.then_some(config)
}

fn shape(config: &ChainConfig, source: &ChainSource, problems: &mut Vec<Problem>) -> ReplyShape {
    for (key, pointer) in [
        ("answer_pointer", &config.answer_pointer),
        ("documents_pointer", &config.documents_pointer),
        ("spans_pointer", &config.spans_pointer),
        ("document_id", &config.document_id),
    ] {
        if let Some(pointer) = pointer
            && !pointer.is_empty()
            && !pointer.starts_with('/')
        {
            problems.push(
                source
                    .problem(
                        KeyPath::default().key(key),
                        format!("`{pointer}` is not a JSON pointer"),
                    )
                    .hint("JSON pointers start with `/`, e.g. /answer or /data/0/text"),
            );
        }
    }
    ReplyShape::new(
        config.preset,
        config.answer_pointer.as_deref(),
        config.documents_pointer.as_deref(),
        config.spans_pointer.as_deref(),
    )
    .with_document_ids(config.document_id.as_deref(), config.positional_ids)
    .with_documents_from(config.documents_from.unwrap_or_default())
}

fn intake(config: &ChainConfig, source: &ChainSource, problems: &mut Vec<Problem>) -> SpanIntake {
    if let Some(addr) = &config.receive_otlp
        && let Err(err) = crate::receiver::parse_addr(addr)
    {
        problems.push(source.problem(KeyPath::default().key("receive_otlp"), err.to_string()));
    }
    SpanIntake::from_config(config)
}

fn build_http(
    config: &ChainConfig,
    source: &ChainSource,
    problems: &mut Vec<Problem>,
) -> Option<BuiltChain> {
    let shape = shape(config, source, problems);
    let Some(url) = &config.url else {
        problems.push(
            source
                .problem(KeyPath::default().key("kind"), "an http chain needs `url`")
                .hint("url: http://127.0.0.1:8080/ask"),
        );
        return None;
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        problems.push(source.problem(
            KeyPath::default().key("url"),
            format!("`{url}` is not an http(s) URL"),
        ));
        return None;
    }
    let backend = match Backend::new(
        format!("RAG service at {}", crate::secrets::redact_url(url)),
        config.limits.clone().unwrap_or_default(),
    ) {
        Ok(backend) => backend,
        Err(err) => {
            problems.push(source.problem(KeyPath::default().key("url"), err.to_string()));
            return None;
        }
    };
    // LangServe serves a runnable at PATH and invokes it at PATH/invoke.
    let url = match config.preset {
        Some(Preset::Langserve) if !url.trim_end_matches('/').ends_with("/invoke") => {
            format!("{}/invoke", url.trim_end_matches('/'))
        }
        _ => url.clone(),
    };
    let body = config
        .body
        .as_deref()
        .or_else(|| config.preset.map(crate::chain::service::preset_body));
    match HttpChain::new(
        &url,
        config.method.as_deref(),
        &config.headers,
        body,
        shape,
        intake(config, source, problems),
        backend,
    ) {
        Ok(chain) => Some(BuiltChain {
            chain: Chain::Http(Box::new(chain)),
            corpus: None,
        }),
        Err(err) => {
            let key = match err {
                HttpSetupError::Header(_) | HttpSetupError::HeaderTemplate { .. } => "headers",
                HttpSetupError::Method => "method",
                HttpSetupError::Body(_) => "body",
            };
            problems.push(source.problem(KeyPath::default().key(key), err.to_string()));
            None
        }
    }
}

fn build_command(
    config: &ChainConfig,
    source: &ChainSource,
    problems: &mut Vec<Problem>,
) -> Option<BuiltChain> {
    let shape = shape(config, source, problems);
    match &config.cmd {
        Some(cmd) if !cmd.is_empty() => Some(BuiltChain {
            chain: Chain::Command(CommandChain {
                cmd: cmd.clone(),
                shape,
                intake: intake(config, source, problems),
                max_output_bytes: config.limits.as_ref().map_or_else(
                    || Limits::default().max_response_bytes,
                    |l| l.max_response_bytes,
                ),
            }),
            corpus: None,
        }),
        _ => {
            problems.push(
                source
                    .problem(
                        KeyPath::default().key("kind"),
                        "a command chain needs `cmd`",
                    )
                    .hint("cmd: [python3, examples/rag_service.py, --stdio]"),
            );
            None
        }
    }
}

fn build_pipeline(
    config: &ChainConfig,
    source: &ChainSource,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<BuiltChain> {
    let Some(retriever_config) = &config.retriever else {
        problems.push(
            source
                .problem(KeyPath::default(), "the chain has no `retriever`")
                .hint("retriever: {kind: memory, corpus: corpus.jsonl, k: 3}"),
        );
        return None;
    };
    let retriever_path = KeyPath::default().key("retriever");
    let corpus = retriever_config
        .corpus
        .as_ref()
        .and_then(|relative| load_corpus(&source.resolve(relative), source, problems));
    if retriever_config.k == 0 {
        problems.push(source.problem(retriever_path.clone().key("k"), "k must be at least 1"));
    }
    let template = prompt_template(config, source, problems);
    let retriever = match retriever_config.kind {
        RetrieverKind::Memory => {
            for (key, present) in [
                ("url", retriever_config.url.is_some()),
                ("collection", retriever_config.collection.is_some()),
                ("limits", retriever_config.limits.is_some()),
            ] {
                if present {
                    problems.push(source.problem(
                        retriever_path.clone().key(key),
                        format!("`{key}` does not apply to the memory retriever"),
                    ));
                }
            }
            if retriever_config.corpus.is_none() {
                problems.push(
                    source
                        .problem(
                            retriever_path.clone(),
                            "the memory retriever needs `corpus`",
                        )
                        .hint("corpus: corpus.jsonl (relative to this file)"),
                );
            }
            corpus.as_ref().map(|corpus| {
                let memory = MemoryRetriever::new(
                    Arc::clone(corpus),
                    retriever_config.k,
                    retriever_config.filter.clone(),
                );
                if memory.searchable() == 0 {
                    let message = if corpus.documents.is_empty() {
                        "the corpus is empty"
                    } else {
                        "the retriever filter excludes every document"
                    };
                    warnings.push(source.problem(retriever_path.clone().key("filter"), message));
                }
                Retriever::Memory(memory)
            })
        }
        RetrieverKind::Chroma => chroma_retriever(
            config,
            retriever_config,
            corpus.as_deref(),
            source,
            problems,
        ),
    };
    let generator = generator(config, source, problems);
    let (Some(retriever), Some(prompt), Some(generator)) = (retriever, template, generator) else {
        return None;
    };
    Some(BuiltChain {
        chain: Chain::Pipeline(Box::new(PipelineChain {
            retriever,
            history: retriever_config.history,
            prompt,
            generator,
        })),
        corpus,
    })
}

fn chroma_retriever(
    config: &ChainConfig,
    retriever: &RetrieverConfig,
    corpus: Option<&Corpus>,
    source: &ChainSource,
    problems: &mut Vec<Problem>,
) -> Option<Retriever> {
    let path = KeyPath::default().key("retriever");
    let mut missing = |key: &str, hint: &str| {
        problems.push(
            source
                .problem(path.clone(), format!("the chroma retriever needs `{key}`"))
                .hint(hint.to_owned()),
        );
    };
    if retriever.url.is_none() {
        missing("url", "url: http://127.0.0.1:8000");
    }
    if retriever.collection.is_none() {
        missing(
            "collection",
            "collection: support-docs (fill it with `ragprobe index`)",
        );
    }
    let chroma_filter = match retriever.filter.as_ref().map(translate) {
        Some(Ok(filter)) => Some(filter),
        Some(Err(err)) => {
            problems.push(
                source
                    .problem(
                        path.clone().key("filter"),
                        format!("Chroma cannot run this filter: {err}"),
                    )
                    .hint("Chroma's where takes $eq $ne $gt $gte $lt $lte $in $nin $and $or"),
            );
            None
        }
        None => None,
    };
    let embedder = match &config.embedder {
        Some(embedder) => match Embedder::new(embedder) {
            // Fitted on the corpus, so `ragprobe index` and the queries weigh words alike.
            Ok(Embedder::Hashing { dims, .. }) => Some(Embedder::Hashing {
                dims,
                idf: corpus.map(|c| Arc::new(Idf::fit(c))),
            }),
            Ok(embedder) => Some(embedder),
            Err(err) => {
                problems.push(source.problem(KeyPath::default().key("embedder"), err.to_string()));
                None
            }
        },
        None => {
            problems.push(
                source
                    .problem(path.clone(), "the chroma retriever needs an `embedder` for its queries")
                    .hint("embedder: {kind: hashing, dims: 256} works offline; use the one the collection was indexed with"),
            );
            None
        }
    };
    let (Some(url), Some(collection), Some(embedder)) =
        (&retriever.url, &retriever.collection, embedder)
    else {
        return None;
    };
    match ChromaClient::new(
        url,
        retriever.tenant.as_deref().unwrap_or("default_tenant"),
        retriever.database.as_deref().unwrap_or("default_database"),
        retriever.limits.clone().unwrap_or_default(),
    ) {
        Ok(client) => Some(Retriever::Chroma(Box::new(ChromaRetriever {
            client,
            collection: collection.clone(),
            handle: CollectionHandle::default(),
            k: retriever.k,
            filter: retriever.filter.clone(),
            chroma_filter,
            embedder,
        }))),
        Err(err) => {
            problems.push(source.problem(path.key("url"), err.to_string()));
            None
        }
    }
}

fn generator(
    config: &ChainConfig,
    source: &ChainSource,
    problems: &mut Vec<Problem>,
) -> Option<Generator> {
    let llm = config.llm.clone().unwrap_or_default();
    let here = KeyPath::default().key("llm");
    // OpenAI-compatible servers take 0 to 2; the extractive generator any non-negative.
    let (most, range) = if llm.kind == LlmKind::Openai {
        (2.0, "0 to 2")
    } else {
        (f64::MAX, "0 or more")
    };
    if !(llm.temperature.is_finite() && (0.0..=most).contains(&llm.temperature)) {
        problems.push(source.problem(
            here.clone().key("temperature"),
            format!("temperature {} is out of range: {range}", llm.temperature),
        ));
        return None;
    }
    if llm.max_sentences == 0 {
        problems.push(source.problem(
            here.clone().key("max_sentences"),
            "max_sentences must be at least 1 (an answer of no sentences is `kind: none`)",
        ));
        return None;
    }
    if llm.max_tokens == Some(0) {
        problems.push(source.problem(here.key("max_tokens"), "max_tokens must be at least 1"));
        return None;
    }
    match llm.kind {
        LlmKind::Extractive => Some(Generator::Extractive(
            Extractive {
                temperature: llm.temperature,
                max_sentences: llm.max_sentences,
            },
            std::time::Duration::from_millis(llm.latency_ms),
        )),
        LlmKind::None => Some(Generator::None),
        LlmKind::Openai => match ChatModel::new(&llm) {
            Ok(model) => Some(Generator::OpenAi(Box::new(model))),
            Err(err) => {
                let key = match err {
                    ModelError::Auth(_) => "api_key_env",
                    ModelError::Missing { .. } | ModelError::Client(_) => "kind",
                };
                problems.push(
                    source
                        .problem(KeyPath::default().key("llm").key(key), err.to_string())
                        .hint("llm: {kind: openai, base_url: http://127.0.0.1:8000/v1, model: …, api_key_env: OPENAI_API_KEY}"),
                );
                None
            }
        },
    }
}

fn load_corpus(
    path: &Path,
    source: &ChainSource,
    problems: &mut Vec<Problem>,
) -> Option<Arc<Corpus>> {
    match Corpus::load(path) {
        Ok(corpus) => Some(Arc::new(corpus)),
        Err(CorpusError::Unreadable(problem)) => {
            problems.push(
                source
                    .problem(
                        KeyPath::default().key("retriever").key("corpus"),
                        problem.message,
                    )
                    .hint("the corpus path is relative to the file that names it"),
            );
            None
        }
        Err(CorpusError::Invalid(problem)) => {
            problems.push(problem);
            None
        }
    }
}

fn prompt_template(
    config: &ChainConfig,
    source: &ChainSource,
    problems: &mut Vec<Problem>,
) -> Option<PromptTemplate> {
    let prompt_source = match (&config.prompt, &config.prompt_file) {
        (Some(_), Some(_)) => {
            problems.push(
                source
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
            let prompt_path = source.resolve(file);
            match read_capped(&prompt_path, MAX_CONFIG_BYTES) {
                Ok(text) => Some((file.display().to_string(), text)),
                Err(err) => {
                    problems.push(
                        source
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
    let (name, text) = prompt_source?;
    match PromptTemplate::new(&name, text) {
        Ok(template) => Some(template),
        Err(err) => {
            problems.push(
                source
                    .problem(
                        KeyPath::default().key(prompt_key(config)),
                        format!("prompt template: {}", describe_template_error(&err)),
                    )
                    .hint("minijinja syntax: {{ variable }}, {% for x in list %}…{% endfor %}"),
            );
            None
        }
    }
}
