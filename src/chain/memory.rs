//! The `memory` retriever: BM25 over an in-process corpus, through an inverted index.
//!
//! The filter is applied before ranking, as a vector store does: documents that fail it are
//! not in the index at all, so they neither appear nor shift the statistics. IDF uses the
//! Lucene form ln(1 + (N − n + 0.5)/(n + 0.5)), which stays positive when a word is in half
//! or more of a small (or filtered) corpus, where the classic Okapi form drops to zero or
//! below and every document would score 0.
//!
//! A query walks only the postings of its own terms, term by term in sorted order, so each
//! document's score is the same sum, added in the same order, as scoring every document
//! one by one would give: rankings and scores are bit for bit those of a full scan (a test
//! compares), at a cost that grows with the query terms' document frequencies rather than
//! with the corpus.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use crate::chain::corpus::Corpus;
use crate::chain::postings::PostingList;
use crate::chain::text::{stem, tokens, words};
use crate::rules::Where;

const K1: f64 = 1.2;
const B: f64 = 0.75;

#[derive(Debug)]
pub struct MemoryRetriever {
    corpus: Arc<Corpus>,
    k: usize,
    filter: Option<Where>,
    index: InvertedIndex,
}

/// One ranked document: its position in the corpus and its BM25 score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub position: usize,
    pub score: f64,
}

#[derive(Debug, Default)]
struct InvertedIndex {
    /// Corpus position of each indexed document (those the filter keeps), ascending, so
    /// comparing document numbers compares corpus positions.
    positions: Vec<u32>,
    /// BM25's length normalisation per document: K1 · (1 − B + B · length / mean length).
    norms: Vec<f64>,
    terms: HashMap<String, u32>,
    /// Per term, the documents holding it, in document order.
    postings: Vec<PostingList>,
    /// Score accumulators (one per corpus document) kept between queries: allocating and
    /// zeroing one per query would cost more than the query at a million documents.
    scratch: Mutex<Vec<Vec<f64>>>,
}

impl InvertedIndex {
    fn build(corpus: &Corpus, filter: Option<&Where>) -> InvertedIndex {
        let mut index = InvertedIndex::default();
        // Stemming is the costly step: each distinct word is stemmed once.
        let mut word_terms: HashMap<String, Option<u32>> = HashMap::new();
        let mut lowered = String::new();
        let mut doc_terms: Vec<u32> = Vec::new();
        let mut lengths: Vec<u32> = Vec::new();
        for (position, doc) in corpus.documents.iter().enumerate() {
            if filter.is_some_and(|f| !f.matches(&doc.metadata)) {
                continue;
            }
            let number = index.positions.len() as u32;
            doc_terms.clear();
            for word in words(&doc.text) {
                let key: &str = if !word.is_ascii() {
                    // Unicode lower-casing depends on context (a final sigma): as `tokens`.
                    lowered = word.to_lowercase();
                    &lowered
                } else if word.bytes().any(|b| b.is_ascii_uppercase()) {
                    lowered.clear();
                    lowered.push_str(word);
                    lowered.make_ascii_lowercase();
                    &lowered
                } else {
                    word
                };
                let term = match word_terms.get(key) {
                    Some(term) => *term,
                    None => {
                        let term = stem(key).map(|stemmed| index.intern(stemmed));
                        word_terms.insert(key.to_owned(), term);
                        term
                    }
                };
                doc_terms.extend(term);
            }
            lengths.push(doc_terms.len() as u32);
            doc_terms.sort_unstable();
            for run in doc_terms.chunk_by(|a, b| a == b) {
                index.postings[run[0] as usize].push(number, run.len() as u32);
            }
            index.positions.push(position as u32);
        }
        let total: u64 = lengths.iter().map(|&l| u64::from(l)).sum();
        let average_length = if lengths.is_empty() {
            0.0
        } else {
            total as f64 / lengths.len() as f64
        };
        index.norms = lengths
            .iter()
            .map(|&length| K1 * (1.0 - B + B * f64::from(length) / average_length.max(1.0)))
            .collect();
        for list in &mut index.postings {
            list.shrink_to_fit();
            list.max_weight = list
                .iter()
                .map(|(doc, frequency)| {
                    let tf = f64::from(frequency);
                    tf / (tf + index.norms[doc as usize])
                })
                .fold(0.0, f64::max);
        }
        index
    }

    fn intern(&mut self, term: String) -> u32 {
        let next = self.postings.len() as u32;
        *self.terms.entry(term).or_insert_with(|| {
            self.postings.push(PostingList::default());
            next
        })
    }

    /// The top `k` documents with a positive score, best first; ties keep corpus order.
    ///
    /// Exact, with pruning: terms are walked rarest first (largest possible contribution
    /// first); once the k-th best partial score is above all that the terms not yet walked
    /// could add, no document they alone hold can make the top k, and their (long) lists are
    /// not walked. The documents that still can are then scored in full, term by term in
    /// sorted order as a full scan sums them, by looking their frequencies up.
    fn search(&self, query: &str, k: usize) -> Vec<(u32, f64)> {
        let mut query_terms = tokens(query);
        query_terms.sort();
        query_terms.dedup();
        let n = self.positions.len() as f64;
        let terms: Vec<QueryTerm> = query_terms
            .iter()
            .filter_map(|term| {
                let list = &self.postings[*self.terms.get(term)? as usize];
                let df = f64::from(list.len());
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                Some(QueryTerm {
                    list,
                    idf,
                    bound: idf * (K1 + 1.0) * list.max_weight,
                })
            })
            .collect();
        if terms.is_empty() || k == 0 {
            return Vec::new();
        }
        let mut order: Vec<usize> = (0..terms.len()).collect();
        order.sort_by(|&a, &b| terms[b].bound.total_cmp(&terms[a].bound));
        // What the terms from the j-th on (in walking order) could add at most.
        let mut rest = vec![0.0; order.len() + 1];
        for j in (0..order.len()).rev() {
            rest[j] = rest[j + 1] + terms[order[j]].bound;
        }
        let mut scores = self
            .scratch
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .unwrap_or_else(|| vec![0.0; self.positions.len()]);
        let mut touched: Vec<u32> = Vec::new();
        let mut walked = 0;
        let mut threshold = 0.0;
        for &t in &order {
            let term = &terms[t];
            for (doc, frequency) in term.list.iter() {
                let score = &mut scores[doc as usize];
                // Every contribution is positive, so zero means "not seen yet".
                if *score == 0.0 {
                    touched.push(doc);
                }
                *score += term.contribution(frequency, self.norms[doc as usize]);
            }
            walked += 1;
            let unwalked: u64 = order[walked..]
                .iter()
                .map(|&t| u64::from(terms[t].list.len()))
                .sum();
            // Checking costs a pass over the touched documents: worth it only when the
            // lists left are much longer.
            if walked < order.len() && touched.len() >= k && (touched.len() as u64) * 4 < unwalked {
                threshold = kth_largest(&scores, &touched, k);
                // Stopping pays when the documents left to score in full cost less to look
                // up (a block decoded per term, ~40 postings' worth) than the lists left.
                let to_score = || {
                    touched
                        .iter()
                        .filter(|&&doc| !above(threshold, scores[doc as usize] + rest[walked]))
                        .count() as u64
                };
                if above(threshold, rest[walked])
                    && to_score() * terms.len() as u64 * LOOKUP_COST < unwalked
                {
                    #[cfg(test)]
                    tests::PRUNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
            }
        }
        if touched.len() >= k {
            threshold = kth_largest(&scores, &touched, k);
        }
        let remaining = rest[walked];
        // Walked in sorted order and in full, the partial sums are already the scores.
        let exact = walked == order.len() && order.iter().enumerate().all(|(i, &t)| i == t);
        let mut best: BinaryHeap<Worst> =
            BinaryHeap::with_capacity(k.min(touched.len()).saturating_add(1));
        for &doc in &touched {
            let slot = &mut scores[doc as usize];
            let partial = *slot;
            *slot = 0.0;
            if above(threshold, partial + remaining) {
                continue;
            }
            let score = if exact {
                partial
            } else {
                let norm = self.norms[doc as usize];
                terms
                    .iter()
                    .filter_map(|term| Some(term.contribution(term.list.frequency(doc)?, norm)))
                    .sum()
            };
            keep_best(&mut best, Worst(score, doc), k);
        }
        if let Ok(mut pool) = self.scratch.lock() {
            pool.push(scores);
        }
        best.into_sorted_vec()
            .into_iter()
            .map(|Worst(score, doc)| (doc, score))
            .collect()
    }
}

/// What looking one document up in a posting list costs, in postings walked.
const LOOKUP_COST: u64 = 40;

/// A query term found in the index.
struct QueryTerm<'a> {
    list: &'a PostingList,
    idf: f64,
    /// The most it adds to any document's score.
    bound: f64,
}

impl QueryTerm<'_> {
    fn contribution(&self, frequency: u32, norm: f64) -> f64 {
        let tf = f64::from(frequency);
        self.idf * tf * (K1 + 1.0) / (tf + norm)
    }
}

/// Whether `threshold` is surely above `bound`: by more than rounding, since bounds and
/// partial sums are added in other orders than the scores they bound.
fn above(threshold: f64, bound: f64) -> bool {
    const MARGIN: f64 = 1e-9;
    bound * (1.0 + MARGIN) < threshold * (1.0 - MARGIN)
}

/// The k-th largest partial score among the touched documents (k ≥ 1, at least k touched).
fn kth_largest(scores: &[f64], touched: &[u32], k: usize) -> f64 {
    let mut best: BinaryHeap<Worst> =
        BinaryHeap::with_capacity(k.min(touched.len()).saturating_add(1));
    for &doc in touched {
        keep_best(&mut best, Worst(scores[doc as usize], doc), k);
    }
    best.peek().map_or(0.0, |worst| worst.0)
}

/// Adds `hit` to the `k` best so far, if it is better than their worst.
fn keep_best(best: &mut BinaryHeap<Worst>, hit: Worst, k: usize) {
    if best.len() < k {
        best.push(hit);
    } else if best.peek().is_some_and(|worst| hit < *worst) {
        best.pop();
        best.push(hit);
    }
}

/// A scored document ordered so that the worse of two is the greater: lower score, or on a
/// tie the later document. A max-heap of these keeps its worst on top.
#[derive(Debug, PartialEq)]
struct Worst(f64, u32);

impl Eq for Worst {}

impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

impl MemoryRetriever {
    pub fn new(corpus: Arc<Corpus>, k: usize, filter: Option<Where>) -> Self {
        let index = InvertedIndex::build(&corpus, filter.as_ref());
        MemoryRetriever {
            corpus,
            k,
            filter,
            index,
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

    /// The document frequency of each of the query's terms (absent terms: 0).
    pub fn document_frequencies(&self, query: &str) -> Vec<(String, u32)> {
        tokens(query)
            .into_iter()
            .map(|t| {
                let df = self
                    .index
                    .terms
                    .get(&t)
                    .map_or(0, |&id| self.index.postings[id as usize].len());
                (t, df)
            })
            .collect()
    }

    /// How many distinct terms the index holds.
    pub fn vocabulary(&self) -> usize {
        self.index.postings.len()
    }

    /// How many documents pass the filter.
    pub fn searchable(&self) -> usize {
        self.index.positions.len()
    }

    /// The top `k` documents with a positive score, best first; ties keep corpus order.
    pub fn retrieve(&self, query: &str) -> Vec<Hit> {
        self.index
            .search(query, self.k)
            .into_iter()
            .map(|(doc, score)| Hit {
                position: self.index.positions[doc as usize] as usize,
                score,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::corpus::Document;
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    /// Queries whose walk stopped early, to show the comparison covers pruning.
    pub(super) static PRUNED: AtomicUsize = AtomicUsize::new(0);

    fn corpus(docs: &[(&str, &str, &str)]) -> Arc<Corpus> {
        Arc::new(Corpus::new(
            "test.jsonl".into(),
            docs.iter()
                .map(|(id, text, source)| Document {
                    id: (*id).into(),
                    text: (*text).into(),
                    metadata: json!({ "docs": source })
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect(),
        ))
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

    /// The scan the index replaced: every document scored one by one.
    fn full_scan(
        docs: &[HashMap<String, u32>],
        lengths: &[usize],
        query: &str,
        k: usize,
    ) -> Vec<Hit> {
        let average = lengths.iter().sum::<usize>() as f64 / lengths.len() as f64;
        let n = docs.len() as f64;
        let mut terms = tokens(query);
        terms.sort();
        terms.dedup();
        let idf: Vec<(String, f64)> = terms
            .into_iter()
            .filter_map(|t| {
                let df = docs.iter().filter(|d| d.contains_key(&t)).count() as f64;
                (df > 0.0).then(|| (t, (1.0 + (n - df + 0.5) / (df + 0.5)).ln()))
            })
            .collect();
        let mut hits: Vec<Hit> = docs
            .iter()
            .enumerate()
            .filter_map(|(position, tf_of)| {
                let norm = K1 * (1.0 - B + B * lengths[position] as f64 / average.max(1.0));
                let score: f64 = idf
                    .iter()
                    .filter_map(|(t, idf)| {
                        let tf = f64::from(*tf_of.get(t)?);
                        Some(idf * tf * (K1 + 1.0) / (tf + norm))
                    })
                    .sum();
                (score > 0.0).then_some(Hit { position, score })
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.position.cmp(&b.position))
        });
        hits.truncate(k);
        hits
    }

    /// Every query at every k: the index's hits are the full scan's, scores bit for bit.
    fn assert_same_as_full_scan(c: &Arc<Corpus>, queries: &[String], ks: &[usize]) {
        let docs: Vec<HashMap<String, u32>> = c
            .documents
            .iter()
            .map(|d| {
                let mut tf = HashMap::new();
                for t in tokens(&d.text) {
                    *tf.entry(t).or_insert(0) += 1;
                }
                tf
            })
            .collect();
        let lengths: Vec<usize> = c.documents.iter().map(|d| tokens(&d.text).len()).collect();
        for &k in ks {
            let r = MemoryRetriever::new(Arc::clone(c), k, None);
            for query in queries {
                assert_eq!(
                    r.retrieve(query),
                    full_scan(&docs, &lengths, query, k),
                    "query {query:?}, k {k}"
                );
            }
        }
    }

    #[test]
    fn index_ranks_and_scores_exactly_as_a_full_scan() {
        // A small vocabulary makes many shared terms, repeated terms and tied scores.
        let vocabulary = [
            "Cluster",
            "cluster",
            "clusters",
            "storage",
            "Delta",
            "table",
            "billing",
            "hour",
            "instance",
            "t4g.micro",
            "AWS",
            "Azure",
            "ΣΊΣΥΦΟΣ",
            "über",
            "jobs",
            "run",
            "running",
            "the",
            "and",
            "of",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        let mut words = |count: usize| -> String {
            (0..count)
                .map(|_| vocabulary[rng.usize(..vocabulary.len())])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let docs: Vec<(String, String)> = (0..300)
            .map(|i| (i.to_string(), words(1 + i % 17)))
            .collect();
        let queries: Vec<String> = (0..200).map(|i| words(1 + i % 5)).collect();
        let c = corpus(
            &docs
                .iter()
                .map(|(id, text)| (id.as_str(), text.as_str(), "x"))
                .collect::<Vec<_>>(),
        );
        assert_same_as_full_scan(&c, &queries, &[1, 3, 10, 1000]);
        // Repeated queries reuse the accumulators: a second pass must not see the first's.
        let r = MemoryRetriever::new(Arc::clone(&c), 5, None);
        let first: Vec<Vec<Hit>> = queries.iter().map(|q| r.retrieve(q)).collect();
        let second: Vec<Vec<Hit>> = queries.iter().map(|q| r.retrieve(q)).collect();
        assert_eq!(first, second);
        assert!(r.retrieve("").is_empty());
        assert!(
            MemoryRetriever::new(c, 0, None)
                .retrieve("cluster")
                .is_empty()
        );
    }

    #[test]
    fn pruned_walks_rank_and_score_exactly_as_a_full_scan() {
        // Zipf-distributed words: queries mix rare terms, which settle the top k, with
        // common ones, whose lists pruning skips.
        let mut rng = fastrand::Rng::with_seed(3);
        let vocabulary: Vec<String> = (0..400).map(|i| format!("w{i}x")).collect();
        let weights: Vec<f64> = (1..=vocabulary.len()).map(|r| 1.0 / r as f64).collect();
        let total: f64 = weights.iter().sum();
        let pick = |rng: &mut fastrand::Rng| {
            let mut left = rng.f64() * total;
            for (word, weight) in vocabulary.iter().zip(&weights) {
                left -= weight;
                if left <= 0.0 {
                    return word.clone();
                }
            }
            vocabulary[0].clone()
        };
        let texts: Vec<String> = (0..2000)
            .map(|_| {
                let n = rng.usize(3..40);
                (0..n).map(|_| pick(&mut rng)).collect::<Vec<_>>().join(" ")
            })
            .collect();
        let queries: Vec<String> = (0..300)
            .map(|_| {
                let n = rng.usize(1..6);
                (0..n).map(|_| pick(&mut rng)).collect::<Vec<_>>().join(" ")
            })
            .collect();
        let ids: Vec<String> = (0..texts.len()).map(|i| i.to_string()).collect();
        let c = corpus(
            &ids.iter()
                .zip(&texts)
                .map(|(id, text)| (id.as_str(), text.as_str(), "x"))
                .collect::<Vec<_>>(),
        );
        let before = PRUNED.load(std::sync::atomic::Ordering::Relaxed);
        assert_same_as_full_scan(&c, &queries, &[1, 3, 10]);
        let pruned = PRUNED.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert!(pruned > 100, "only {pruned} of 900 searches pruned");
    }
}
