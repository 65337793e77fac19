//! The embedded default chain: memory retriever → prompt → extractive generator (or none).
//! Needs no server and no key.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::chain::config::LlmKind;
use crate::chain::extractive::Extractive;
use crate::chain::memory::MemoryRetriever;
use crate::chain::prompt::{PromptTemplate, describe_template_error};
use crate::chain::{ChainFailure, ChainOutput, RetrievedDoc};
use crate::trace::{SpanKind, SpanStatus, TraceBuilder};

#[derive(Debug)]
pub struct EmbeddedChain {
    pub retriever: MemoryRetriever,
    pub prompt: PromptTemplate,
    pub generator: Option<Extractive>,
    pub latency: Duration,
}

impl EmbeddedChain {
    pub fn new(
        retriever: MemoryRetriever,
        prompt: PromptTemplate,
        llm: &crate::chain::config::LlmConfig,
    ) -> Self {
        let generator = match llm.kind {
            LlmKind::Extractive => Some(Extractive {
                temperature: llm.temperature,
                max_sentences: llm.max_sentences,
            }),
            LlmKind::None => None,
        };
        EmbeddedChain {
            retriever,
            prompt,
            generator,
            latency: Duration::from_millis(llm.latency_ms),
        }
    }

    pub fn describe(&self) -> String {
        let filter = match self.retriever.filter() {
            Some(f) => format!(", filter {f}"),
            None => ", no filter".to_owned(),
        };
        let generator = match &self.generator {
            Some(g) => format!(
                "extractive reference generator (not a model; temperature {}, at most {} sentences)",
                g.temperature, g.max_sentences
            ),
            None => "no generator (retrieval only)".to_owned(),
        };
        format!(
            "memory retriever (BM25, k={}{filter}) → {generator}",
            self.retriever.k()
        )
    }

    pub async fn invoke(
        &self,
        question: &str,
        vars: &Map<String, Value>,
        seed: u64,
    ) -> Result<ChainOutput, ChainFailure> {
        let mut trace = TraceBuilder::new(seed);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut root = trace.start("rag-chain", SpanKind::Chain, None);
        root.set("question", question);

        let mut retrieve = trace.start("retrieve", SpanKind::Retriever, Some(&root));
        let hits = self.retriever.retrieve(question);
        let corpus = &self.retriever.corpus().documents;
        let documents: Vec<&crate::chain::corpus::Document> =
            hits.iter().map(|h| &corpus[h.position]).collect();
        retrieve.set("retriever", "memory");
        retrieve.set("query", question);
        retrieve.set("k", self.retriever.k());
        if let Some(filter) = self.retriever.filter() {
            retrieve.set("filter", filter.to_json());
        }
        retrieve.set(
            "document_ids",
            documents.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        );
        retrieve.set(
            "scores",
            hits.iter().map(|h| round4(h.score)).collect::<Vec<_>>(),
        );
        trace.end(retrieve, SpanStatus::Ok);

        let mut render = trace.start("prompt", SpanKind::Prompt, Some(&root));
        render.set("template", self.prompt.name());
        let prompt = match self.prompt.render(question, &documents, vars) {
            Ok(text) => text,
            Err(err) => {
                let message = format!("prompt template: {}", describe_template_error(&err));
                trace.end(
                    render,
                    SpanStatus::Error {
                        message: message.clone(),
                    },
                );
                trace.end(
                    root,
                    SpanStatus::Error {
                        message: message.clone(),
                    },
                );
                return Err(ChainFailure {
                    message,
                    trace: Some(trace.finish()),
                });
            }
        };
        render.set("prompt_chars", prompt.chars().count());
        trace.end(render, SpanStatus::Ok);

        let answer = match &self.generator {
            Some(generator) => {
                let mut llm = trace.start("extractive", SpanKind::Llm, Some(&root));
                if !self.latency.is_zero() {
                    tokio::time::sleep(self.latency).await;
                }
                let generation = generator.generate(question, &documents, &mut rng);
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
                generation.answer
            }
            None => String::new(),
        };
        trace.end(root, SpanStatus::Ok);

        let retrieved = hits
            .iter()
            .zip(&documents)
            .map(|(hit, doc)| RetrievedDoc {
                id: doc.id.clone(),
                text: doc.text.clone(),
                metadata: doc.metadata.clone(),
                score: round4(hit.score),
            })
            .collect();
        Ok(ChainOutput {
            retrieved,
            prompt,
            answer,
            trace: trace.finish(),
        })
    }
}

/// Scores are shown and compared at four decimals; more only adds noise to diffs.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
