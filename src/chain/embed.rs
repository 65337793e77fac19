//! Embedders: the offline `hashing` one and OpenAI-compatible `/embeddings`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::backend::BackendError;
pub use crate::chain::config::Purpose;
use crate::chain::config::{EmbedderConfig, EmbedderKind};
use crate::chain::corpus::Corpus;
use crate::chain::openai::{EmbeddingModel, ModelError};
use crate::chain::text::tokens;
use crate::seed::stable_hash;

/// An embedder that cannot be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum EmbedderError {
    #[error("dims must be at least 1")]
    ZeroDims,
    #[error(
        "`input_type`, `query_prefix` and `document_prefix` are for `kind: openai`: the hashing embedder treats queries and documents alike"
    )]
    NoPurposes,
    #[error(transparent)]
    Model(#[from] ModelError),
}

#[derive(Debug)]
pub enum Embedder {
    Hashing {
        dims: usize,
        /// Word weights fitted on the chain's corpus, when it has one.
        idf: Option<Arc<Idf>>,
    },
    OpenAi(Box<EmbeddingModel>),
}

/// Inverse document frequencies, Lucene's form (as the BM25 retriever uses), so a rare
/// word such as "cost" outweighs a common one such as "database", as it does in BM25.
#[derive(Debug)]
pub struct Idf {
    weights: HashMap<String, f32>,
    /// The weight of a word no document has.
    unseen: f32,
    pub source: String,
}

impl Idf {
    pub fn fit(corpus: &Corpus) -> Self {
        let n = corpus.documents.len() as f64;
        let mut frequency: HashMap<String, usize> = HashMap::new();
        for doc in &corpus.documents {
            let words: HashSet<String> = tokens(&doc.text).into_iter().collect();
            for word in words {
                *frequency.entry(word).or_default() += 1;
            }
        }
        let idf = |df: f64| (1.0 + (n - df + 0.5) / (df + 0.5)).ln() as f32;
        Idf {
            weights: frequency
                .into_iter()
                .map(|(word, df)| (word, idf(df as f64)))
                .collect(),
            unseen: idf(0.0),
            source: corpus.path.display().to_string(),
        }
    }

    fn weight(&self, word: &str) -> f32 {
        self.weights.get(word).copied().unwrap_or(self.unseen)
    }
}

impl Embedder {
    pub fn new(config: &EmbedderConfig) -> Result<Self, EmbedderError> {
        match config.kind {
            EmbedderKind::Hashing if config.dims == 0 => Err(EmbedderError::ZeroDims),
            EmbedderKind::Hashing
                if config.input_type.is_some()
                    || config.query_prefix.is_some()
                    || config.document_prefix.is_some() =>
            {
                Err(EmbedderError::NoPurposes)
            }
            EmbedderKind::Hashing => Ok(Embedder::Hashing {
                dims: config.dims,
                idf: None,
            }),
            EmbedderKind::Openai => Ok(Embedder::OpenAi(Box::new(EmbeddingModel::new(config)?))),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Embedder::Hashing { dims, idf: None } => format!("hashing embedder ({dims} dims)"),
            Embedder::Hashing {
                dims,
                idf: Some(idf),
            } => format!("hashing embedder ({dims} dims, IDF from {})", idf.source),
            Embedder::OpenAi(model) => model.describe(),
        }
    }

    /// The name recorded on EMBEDDING spans.
    pub fn model_name(&self) -> String {
        match self {
            Embedder::Hashing { dims, .. } => format!("hashing-{dims}"),
            Embedder::OpenAi(model) => model.model().to_owned(),
        }
    }

    pub async fn embed(
        &self,
        inputs: &[String],
        purpose: Purpose,
    ) -> Result<Vec<Vec<f32>>, BackendError> {
        match self {
            Embedder::Hashing { dims, idf } => Ok(inputs
                .iter()
                .map(|t| weighted_hashing(t, *dims, idf.as_deref()))
                .collect()),
            Embedder::OpenAi(model) => model.embed(inputs, purpose).await,
        }
    }
}

/// Feature hashing without word weights (what the loopback server's `/embeddings` does).
pub fn hashing(text: &str, dims: usize) -> Vec<f32> {
    weighted_hashing(text, dims, None)
}

/// Feature hashing of the stemmed content words (the tokenizer BM25 uses), each word's
/// weight (1 + ln(count)) × IDF with a hashed sign, L2-normalised so that L2 and cosine
/// distance rank alike. Texts that share words point the same way; nothing else is learnt.
pub fn weighted_hashing(text: &str, dims: usize, idf: Option<&Idf>) -> Vec<f32> {
    let mut counts: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    for word in tokens(text) {
        *counts.entry(word).or_default() += 1;
    }
    let mut vector = vec![0f32; dims.max(1)];
    for (word, count) in counts {
        let hash = stable_hash(&[word.as_bytes()]);
        let slot = (hash % vector.len() as u64) as usize;
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        let weight = idf.map_or(1.0, |idf| idf.weight(&word));
        vector[slot] += sign * (1.0 + (count as f32).ln()) * weight;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn hashing_is_normalised_and_deterministic() {
        let v = hashing("How much does it cost to run a database?", 64);
        assert_eq!(v.len(), 64);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(v, hashing("How much does it cost to run a database?", 64));
        assert!(hashing("the of and", 8).iter().all(|x| *x == 0.0));
    }

    #[test]
    fn shared_words_make_texts_closer() {
        let q = hashing("cost of running a database", 256);
        let near = hashing("The cost of a database depends on the cluster", 256);
        let far = hashing("Notebooks support Python and SQL cells", 256);
        assert!(cosine(&q, &near) > cosine(&q, &far));
    }
}
