//! The `memory` retriever: BM25 over an in-process corpus.
//!
//! The filter is applied before ranking, as a vector store does: documents that fail it are
//! not in the index at all, so they neither appear nor shift the statistics. IDF uses the
//! Lucene form ln(1 + (N − n + 0.5)/(n + 0.5)), which stays positive when a word is in half
//! or more of a small (or filtered) corpus, where the classic Okapi form drops to zero or
//! below and every document would score 0.

use std::collections::HashMap;
use std::sync::Arc;

use crate::chain::corpus::Corpus;
use crate::chain::text::tokens;
use crate::rules::Where;

const K1: f64 = 1.2;
const B: f64 = 0.75;

#[derive(Debug)]
pub struct MemoryRetriever {
    corpus: Arc<Corpus>,
    k: usize,
    filter: Option<Where>,
    index: Vec<IndexedDoc>,
    document_frequency: HashMap<String, usize>,
    average_length: f64,
}

#[derive(Debug)]
struct IndexedDoc {
    /// Position in the corpus.
    position: usize,
    term_frequency: HashMap<String, u32>,
    length: usize,
}

/// One ranked document: its position in the corpus and its BM25 score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub position: usize,
    pub score: f64,
}

impl MemoryRetriever {
    pub fn new(corpus: Arc<Corpus>, k: usize, filter: Option<Where>) -> Self {
        let mut index = Vec::new();
        let mut document_frequency: HashMap<String, usize> = HashMap::new();
        for (position, doc) in corpus.documents.iter().enumerate() {
            if filter.as_ref().is_some_and(|f| !f.matches(&doc.metadata)) {
                continue;
            }
            let words = tokens(&doc.text);
            let mut term_frequency: HashMap<String, u32> = HashMap::new();
            for word in &words {
                *term_frequency.entry(word.clone()).or_default() += 1;
            }
            for word in term_frequency.keys() {
                *document_frequency.entry(word.clone()).or_default() += 1;
            }
            index.push(IndexedDoc {
                position,
                term_frequency,
                length: words.len(),
            });
        }
        let total: usize = index.iter().map(|d| d.length).sum();
        let average_length = if index.is_empty() {
            0.0
        } else {
            total as f64 / index.len() as f64
        };
        MemoryRetriever {
            corpus,
            k,
            filter,
            index,
            document_frequency,
            average_length,
        }
    }

    pub fn corpus(&self) -> &Corpus {
        &self.corpus
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn filter(&self) -> Option<&Where> {
        self.filter.as_ref()
    }

    /// How many documents pass the filter.
    pub fn searchable(&self) -> usize {
        self.index.len()
    }

    /// The top `k` documents with a positive score, best first; ties keep corpus order.
    pub fn retrieve(&self, query: &str) -> Vec<Hit> {
        let mut query_terms = tokens(query);
        query_terms.sort();
        query_terms.dedup();
        let n = self.index.len() as f64;
        let idf: Vec<(String, f64)> = query_terms
            .into_iter()
            .filter_map(|term| {
                let df = *self.document_frequency.get(&term)? as f64;
                Some((term, (1.0 + (n - df + 0.5) / (df + 0.5)).ln()))
            })
            .collect();
        let mut hits: Vec<Hit> = self
            .index
            .iter()
            .filter_map(|doc| {
                let norm = K1 * (1.0 - B + B * doc.length as f64 / self.average_length.max(1.0));
                let score: f64 = idf
                    .iter()
                    .filter_map(|(term, idf)| {
                        let tf = f64::from(*doc.term_frequency.get(term)?);
                        Some(idf * tf * (K1 + 1.0) / (tf + norm))
                    })
                    .sum();
                (score > 0.0).then_some(Hit {
                    position: doc.position,
                    score,
                })
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.position.cmp(&b.position))
        });
        hits.truncate(self.k);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::corpus::Document;
    use serde_json::json;

    fn corpus(docs: &[(&str, &str, &str)]) -> Arc<Corpus> {
        Arc::new(Corpus {
            path: "test.jsonl".into(),
            documents: docs
                .iter()
                .map(|(id, text, source)| Document {
                    id: (*id).into(),
                    text: (*text).into(),
                    metadata: json!({ "docs": source })
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect(),
        })
    }

    #[test]
    fn ranks_by_bm25_and_cuts_at_k() {
        let c = corpus(&[
            ("a", "cats purr and cats sleep", "x"),
            ("b", "dogs bark", "x"),
            ("c", "a cat and a dog", "x"),
        ]);
        let r = MemoryRetriever::new(c, 2, None);
        let hits = r.retrieve("cat");
        let ids: Vec<usize> = hits.iter().map(|h| h.position).collect();
        assert_eq!(ids, [0, 2]);
        assert!(hits[0].score > hits[1].score);
        assert!(r.retrieve("giraffe").is_empty());
    }

    #[test]
    fn filter_applies_before_ranking_and_idf_stays_positive() {
        // Every remaining document contains "storage": the Okapi IDF would be negative
        // and rank nothing; the Lucene form still ranks by term frequency.
        let c = corpus(&[
            ("1", "storage storage storage", "keep"),
            ("2", "storage", "keep"),
            ("3", "storage billing storage storage storage", "drop"),
        ]);
        let where_keep: Where = serde_yaml::from_str("{docs: keep}").expect("valid filter");
        let r = MemoryRetriever::new(c, 5, Some(where_keep));
        assert_eq!(r.searchable(), 2);
        let hits = r.retrieve("storage");
        let ids: Vec<usize> = hits.iter().map(|h| h.position).collect();
        assert_eq!(ids, [0, 1]);
        assert!(hits.iter().all(|h| h.score > 0.0));
    }
}
