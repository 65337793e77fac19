//! ragprobe's own chain: retriever → prompt → generator. The default (memory retriever,
//! extractive reference generator) needs no server and no key; a Chroma retriever and an
//! OpenAI-compatible model slot into the same steps.
//!
//! Every step records a span. The retrieved context can be edited between retrieval and
//! prompt (`invoke_with`), which is how `ragprobe triage` runs its ablations on the very
//! same chain.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::backend::BackendError;
use crate::chain::chroma::{ChromaClient, CollectionHandle};
use crate::chain::corpus::{Corpus, Document};
use crate::chain::embed::Embedder;
use crate::chain::error::ChainError;
use crate::chain::extractive::Extractive;
use crate::chain::memory::MemoryRetriever;
use crate::chain::openai::ChatModel;
use crate::chain::prompt::{PromptTemplate, describe_template_error};
use crate::chain::{ChainFailure, ChainOutput, Conversation};
use crate::model::record::RetrievedDoc;
use crate::rules::Where;
use crate::trace::{OpenSpan, SpanKind, SpanStatus, TraceBuilder};

#[derive(Debug)]
pub enum Retriever {
    Memory(MemoryRetriever),
    Chroma(Box<ChromaRetriever>),
}

#[derive(Debug)]
pub struct ChromaRetriever {
    pub client: ChromaClient,
    pub collection: String,
    pub handle: CollectionHandle,
    pub k: usize,
    pub filter: Option<Where>,
    /// `filter` as Chroma takes it, translated once at load.
    pub chroma_filter: Option<Value>,
    pub embedder: Embedder,
}

#[derive(Debug)]
pub enum Generator {
    /// The offline reference generator (not a model), with an optional added wait.
    Extractive(Extractive, Duration),
    OpenAi(Box<ChatModel>),
    /// Retrieval only; the answer is empty.
    None,
}

#[derive(Debug)]
pub struct PipelineChain {
    pub retriever: Retriever,
    /// In a conversation, what the retriever is asked.
    pub history: crate::chain::history::HistoryMode,
    pub prompt: PromptTemplate,
    pub generator: Generator,
}

/// What a step failed with; the trace so far goes with it.
type StepResult<T> = Result<T, ChainError>;

impl ChromaRetriever {
    /// Loads `corpus` into the retriever's collection (deleting it first with `recreate`),
    /// embedded `batch` documents at a time by the retriever's own embedder; returns the
    /// vectors' length.
    pub async fn index(
        &self,
        corpus: &Corpus,
        batch: usize,
        recreate: bool,
    ) -> Result<usize, BackendError> {
        let client = &self.client;
        if recreate {
            // A collection that is not there yet is what --recreate wants anyway.
            let _ = client.delete_collection(&self.collection).await;
        }
        let id = client.create_collection(&self.collection).await?;
        let mut dims = 0;
        for documents in corpus.documents.chunks(batch.max(1)) {
            let texts: Vec<String> = documents.iter().map(|d| d.text.clone()).collect();
            let vectors = self
                .embedder
                .embed(&texts, crate::chain::embed::Purpose::Document)
                .await?;
            dims = vectors.first().map_or(dims, Vec::len);
            client.upsert(&id, documents, vectors).await?;
        }
        Ok(dims)
    }
}

impl Retriever {
    pub fn k(&self) -> usize {
        match self {
            Retriever::Memory(memory) => memory.k(),
            Retriever::Chroma(chroma) => chroma.k,
        }
    }

    pub fn filter(&self) -> Option<&Where> {
        match self {
            Retriever::Memory(memory) => memory.filter(),
            Retriever::Chroma(chroma) => chroma.filter.as_ref(),
        }
    }

    fn describe(&self, history: crate::chain::history::HistoryMode) -> String {
        let filter = match self.filter() {
            Some(f) => format!(", filter {f}"),
            None => ", no filter".to_owned(),
        };
        // In a conversation, what the retriever is asked; the default says nothing.
        let filter = if history.is_last() {
            filter
        } else {
            format!("{filter}; history: {}", history.label())
        };
        match self {
            Retriever::Memory(memory) => {
                format!("memory retriever (BM25, k={}{filter})", memory.k())
            }
            Retriever::Chroma(chroma) => format!(
                "Chroma collection `{}` at {} (k={}{filter}, {})",
                chroma.collection,
                chroma.client.url,
                chroma.k,
                chroma.embedder.describe()
            ),
        }
    }

    /// Retrieves for `query`, recording a RETRIEVER span (and an EMBEDDING span where an
    /// embedder runs) under `parent`.
    pub async fn retrieve(
        &self,
        query: &str,
        trace: &mut TraceBuilder,
        parent: &OpenSpan,
    ) -> StepResult<Vec<RetrievedDoc>> {
        match self {
            Retriever::Memory(memory) => {
                let mut span = trace.start("retrieve", SpanKind::Retriever, Some(parent));
                span.set("retriever", "memory");
                describe_query(&mut span, query, memory.k(), memory.filter());
                let corpus = &memory.corpus().documents;
                let docs: Vec<RetrievedDoc> = memory
                    .retrieve(query)
                    .iter()
                    .map(|hit| {
                        let doc = &corpus[hit.position];
                        RetrievedDoc {
                            id: doc.id.clone(),
                            text: doc.text.clone(),
                            metadata: doc.metadata.clone(),
                            score: Some(round4(hit.score)),
                        }
                    })
                    .collect();
                record_documents(&mut span, &docs);
                trace.end(span, SpanStatus::Ok);
                Ok(docs)
            }
            Retriever::Chroma(chroma) => {
                let mut embed = trace.start("embed-query", SpanKind::Embedding, Some(parent));
                embed.set("model", chroma.embedder.model_name());
                embed.set("input", query);
                let vector = match chroma
                    .embedder
                    .embed(&[query.to_owned()], crate::chain::embed::Purpose::Query)
                    .await
                {
                    Ok(mut vectors) if vectors.len() == 1 => vectors.remove(0),
                    Ok(_) => return fail(trace, embed, ChainError::NoVector),
                    Err(err) => return fail(trace, embed, err.into()),
                };
                embed.set("dims", vector.len());
                trace.end(embed, SpanStatus::Ok);

                let mut span = trace.start("retrieve", SpanKind::Retriever, Some(parent));
                span.set("retriever", "chroma");
                span.set("collection", chroma.collection.as_str());
                describe_query(&mut span, query, chroma.k, chroma.filter.as_ref());
                let result = async {
                    let id = chroma.handle.id(&chroma.client, &chroma.collection).await?;
                    chroma
                        .client
                        .query(&id, &vector, chroma.k, chroma.chroma_filter.as_ref())
                        .await
                }
                .await;
                match result {
                    Ok(docs) => {
                        record_documents(&mut span, &docs);
                        trace.end(span, SpanStatus::Ok);
                        Ok(docs)
                    }
                    Err(err) => fail(trace, span, err.into()),
                }
            }
        }
    }
}

fn describe_query(span: &mut OpenSpan, query: &str, k: usize, filter: Option<&Where>) {
    span.set("query", query);
    span.set("k", k);
    if let Some(filter) = filter {
        span.set("filter", filter.to_json());
    }
}

fn record_documents(span: &mut OpenSpan, docs: &[RetrievedDoc]) {
    span.set(
        "document_ids",
        docs.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
    );
    span.set("scores", docs.iter().map(|d| d.score).collect::<Vec<_>>());
}

/// Ends `span` with an error and hands the error up.
fn fail<T>(trace: &mut TraceBuilder, span: OpenSpan, error: ChainError) -> StepResult<T> {
    trace.end(
        span,
        SpanStatus::Error {
            message: error.to_string(),
        },
    );
    Err(error)
}

impl PipelineChain {
    pub fn describe(&self) -> String {
        let generator = match &self.generator {
            Generator::Extractive(g, _) => format!(
                "extractive reference generator (not a model; temperature {}, at most {} sentences)",
                g.temperature, g.max_sentences
            ),
            Generator::OpenAi(model) => model.describe(),
            Generator::None => "no generator (retrieval only)".to_owned(),
        };
        format!("{} → {generator}", self.retriever.describe(self.history))
    }

    pub async fn invoke(
        &self,
        question: &str,
        vars: &Map<String, Value>,
        seed: u64,
        conversation: Option<Conversation<'_>>,
    ) -> Result<ChainOutput, ChainFailure> {
        self.invoke_with(question, vars, seed, conversation, &|docs| docs)
            .await
    }

    /// Like `invoke`, with the retrieved documents passed through `edit` before the
    /// prompt is rendered. The trace records the documents as retrieved and, when `edit`
    /// changed them, the ones the prompt saw.
    pub async fn invoke_with(
        &self,
        question: &str,
        vars: &Map<String, Value>,
        seed: u64,
        conversation: Option<Conversation<'_>>,
        edit: &(dyn Fn(Vec<RetrievedDoc>) -> Vec<RetrievedDoc> + Sync),
    ) -> Result<ChainOutput, ChainFailure> {
        let mut trace = TraceBuilder::new();
        let mut root = trace.start("rag-chain", SpanKind::Chain, None);
        root.set("question", question);
        // In a conversation the retriever (and the reference generator, which picks
        // sentences by the words asked) get the query the history mode builds.
        let query = match conversation {
            Some(conversation) => {
                root.set("turn", conversation.turn);
                root.set("history", self.history.label());
                self.history.query(question, conversation.history)
            }
            None => question.to_owned(),
        };

        let retrieved = match self.retriever.retrieve(&query, &mut trace, &root).await {
            Ok(docs) => docs,
            Err(error) => return Err(abort(trace, root, error)),
        };
        let as_retrieved: Vec<String> = retrieved.iter().map(|d| d.id.clone()).collect();
        let context = edit(retrieved);
        let context_ids: Vec<String> = context.iter().map(|d| d.id.clone()).collect();
        if context_ids != as_retrieved {
            root.set("context_document_ids", context_ids);
        }
        let documents: Vec<Document> = context
            .iter()
            .map(|d| Document {
                id: d.id.clone(),
                text: d.text.clone(),
                metadata: d.metadata.clone(),
            })
            .collect();
        let document_refs: Vec<&Document> = documents.iter().collect();

        let mut render = trace.start("prompt", SpanKind::Prompt, Some(&root));
        render.set("template", self.prompt.name());
        let prompt = match self
            .prompt
            .render(question, &document_refs, vars, conversation)
        {
            Ok(text) => text,
            Err(err) => {
                let error = ChainError::Prompt(describe_template_error(&err));
                let _ = fail::<()>(&mut trace, render, error.clone());
                return Err(abort(trace, root, error));
            }
        };
        render.set("prompt_chars", prompt.chars().count());
        trace.end(render, SpanStatus::Ok);

        let answer = match self
            .generate(
                &query,
                &prompt,
                conversation,
                &document_refs,
                seed,
                &mut trace,
                &root,
            )
            .await
        {
            Ok(answer) => answer,
            Err(error) => return Err(abort(trace, root, error)),
        };
        trace.end(root, SpanStatus::Ok);
        Ok(ChainOutput {
            retrieved: context,
            prompt,
            answer,
            trace: trace.finish(),
        })
    }

    /// The generation step: the answer, with an LLM span under `root`.
    #[allow(clippy::too_many_arguments)]
    async fn generate(
        &self,
        question: &str,
        prompt: &str,
        conversation: Option<Conversation<'_>>,
        documents: &[&Document],
        seed: u64,
        trace: &mut TraceBuilder,
        root: &OpenSpan,
    ) -> StepResult<String> {
        match &self.generator {
            Generator::Extractive(generator, latency) => {
                let mut llm = trace.start("extractive", SpanKind::Llm, Some(root));
                if !latency.is_zero() {
                    tokio::time::sleep(*latency).await;
                }
                let generation =
                    generator.generate(question, documents, &mut fastrand::Rng::with_seed(seed));
                llm.set("generator", "extractive");
                llm.set("temperature", generator.temperature);
                llm.set("max_sentences", generator.max_sentences);
                llm.set("seed", seed);
                llm.set("finish_reason", generation.finish_reason);
                llm.set(
                    "sentences",
                    generation
                        .sentences
                        .iter()
                        .map(|(id, index)| json!({"document": id, "sentence": index}))
                        .collect::<Vec<_>>(),
                );
                trace.end(llm, SpanStatus::Ok);
                Ok(generation.answer)
            }
            Generator::OpenAi(model) => {
                let mut llm = trace.start("chat", SpanKind::Llm, Some(root));
                llm.set("model", model.model());
                llm.set("temperature", model.temperature);
                if let Some(max_tokens) = model.max_tokens {
                    llm.set("max_tokens", max_tokens);
                }
                llm.set("seed", seed);
                let history = conversation.map_or(&[][..], |c| c.history);
                match model.complete(history, prompt, seed).await {
                    Ok(completion) => {
                        if let Some(reason) = &completion.finish_reason {
                            llm.set("finish_reason", reason.as_str());
                        }
                        if let Some(tokens) = completion.input_tokens {
                            llm.set("input_tokens", tokens);
                        }
                        if let Some(tokens) = completion.output_tokens {
                            llm.set("output_tokens", tokens);
                        }
                        llm.set("attempts", completion.attempts);
                        if model.system.is_some() || !history.is_empty() {
                            llm.set("messages", completion.messages);
                        }
                        trace.end(llm, SpanStatus::Ok);
                        Ok(completion.answer)
                    }
                    Err(err) => {
                        llm.set("attempts", err.attempts);
                        fail(trace, llm, ChainError::from(err))
                    }
                }
            }
            Generator::None => Ok(String::new()),
        }
    }
}

/// Ends the root span with the error and turns the trace into a failure.
fn abort(mut trace: TraceBuilder, root: OpenSpan, error: ChainError) -> ChainFailure {
    trace.end(
        root,
        SpanStatus::Error {
            message: error.to_string(),
        },
    );
    ChainFailure {
        error,
        trace: Some(trace.finish()),
    }
}

/// Scores are shown and compared at four decimals; more only adds noise to diffs.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
