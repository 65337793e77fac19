//! The `extractive` reference generator. It is not a language model: it composes an answer
//! from sentences of the retrieved documents, so the whole pipeline runs offline and its
//! answers can only ever contain what retrieval put in front of it — which is exactly what
//! a RAG evaluation needs to exercise.
//!
//! How it answers:
//! 1. Every sentence of the retrieved documents gets a relevance: the number of distinct
//!    question words (stemmed, stopwords dropped) it contains.
//! 2. If no sentence shares a word with the question, it says it does not know.
//! 3. Otherwise it draws up to `max_sentences` sentences without replacement, each with
//!    probability proportional to exp(relevance / temperature); temperature 0 takes the
//!    most relevant. After a sentence is drawn, the sentence that follows it in the same
//!    document gains one point, because a continuation is read together with what it
//!    continues.
//! 4. The drawn sentences are joined in document order.
//!
//! With a seed, the same inputs give the same answer.

use std::collections::HashSet;

use crate::chain::corpus::Document;
use crate::chain::text::{sentences, tokens};

pub const DONT_KNOW: &str = "I don't know: the retrieved documents do not answer this question.";

#[derive(Debug, Clone)]
pub struct Extractive {
    pub temperature: f64,
    pub max_sentences: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub answer: String,
    /// (document id, sentence index) of each sentence used, in answer order.
    pub sentences: Vec<(String, usize)>,
    /// `stop`, or `no_context` when nothing relevant was retrieved.
    pub finish_reason: &'static str,
}

struct Candidate<'a> {
    doc_rank: usize,
    doc_id: &'a str,
    index: usize,
    text: &'a str,
    relevance: f64,
}

impl Extractive {
    pub fn generate(
        &self,
        question: &str,
        documents: &[&Document],
        rng: &mut fastrand::Rng,
    ) -> Generation {
        let question_terms: HashSet<String> = tokens(question).into_iter().collect();
        let mut candidates: Vec<Candidate> = Vec::new();
        for (doc_rank, doc) in documents.iter().enumerate() {
            for (index, text) in sentences(&doc.text).into_iter().enumerate() {
                let words: HashSet<String> = tokens(text).into_iter().collect();
                let relevance = words.intersection(&question_terms).count() as f64;
                candidates.push(Candidate {
                    doc_rank,
                    doc_id: &doc.id,
                    index,
                    text,
                    relevance,
                });
            }
        }
        if candidates.iter().all(|c| c.relevance == 0.0) {
            return Generation {
                answer: DONT_KNOW.to_owned(),
                sentences: Vec::new(),
                finish_reason: "no_context",
            };
        }

        let mut chosen: Vec<usize> = Vec::new();
        let wanted = self.max_sentences.min(candidates.len());
        while chosen.len() < wanted {
            let available: Vec<usize> = (0..candidates.len())
                .filter(|i| !chosen.contains(i))
                .collect();
            let pick = self.draw(&candidates, &available, rng);
            chosen.push(pick);
            // The continuation of the drawn sentence reads naturally next.
            let (rank, index) = (candidates[pick].doc_rank, candidates[pick].index);
            if let Some(next) = candidates
                .iter_mut()
                .find(|c| c.doc_rank == rank && c.index == index + 1)
            {
                next.relevance += 1.0;
            }
        }
        chosen.sort_by_key(|&i| (candidates[i].doc_rank, candidates[i].index));
        Generation {
            answer: chosen
                .iter()
                .map(|&i| candidates[i].text)
                .collect::<Vec<_>>()
                .join(" "),
            sentences: chosen
                .iter()
                .map(|&i| (candidates[i].doc_id.to_owned(), candidates[i].index))
                .collect(),
            finish_reason: "stop",
        }
    }

    fn draw(
        &self,
        candidates: &[Candidate],
        available: &[usize],
        rng: &mut fastrand::Rng,
    ) -> usize {
        if self.temperature <= 0.0 {
            // Greedy: most relevant, earliest on ties.
            return available.iter().copied().fold(available[0], |best, i| {
                if candidates[i].relevance > candidates[best].relevance {
                    i
                } else {
                    best
                }
            });
        }
        let top = available
            .iter()
            .map(|&i| candidates[i].relevance)
            .fold(f64::MIN, f64::max);
        // Subtracting the maximum keeps exp() finite at low temperatures.
        let weights: Vec<f64> = available
            .iter()
            .map(|&i| ((candidates[i].relevance - top) / self.temperature).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut target = rng.f64() * total;
        for (slot, weight) in weights.iter().enumerate() {
            if target < *weight {
                return available[slot];
            }
            target -= weight;
        }
        available[available.len() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, text: &str) -> Document {
        Document {
            id: id.into(),
            text: text.into(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn says_it_does_not_know_without_relevant_context() {
        let d = doc("1", "Parquet files hold columns.");
        let g = Extractive {
            temperature: 1.0,
            max_sentences: 3,
        };
        let out = g.generate(
            "Who won the match?",
            &[&d],
            &mut fastrand::Rng::with_seed(1),
        );
        assert_eq!(out.answer, DONT_KNOW);
        assert_eq!(out.finish_reason, "no_context");
    }

    #[test]
    fn temperature_zero_is_greedy_and_seed_reproduces() {
        let a = doc(
            "a",
            "Billing is hourly. Cats are nice. Billing is per second.",
        );
        let greedy = Extractive {
            temperature: 0.0,
            max_sentences: 1,
        };
        for seed in 0..5 {
            let out = greedy.generate("billing", &[&a], &mut fastrand::Rng::with_seed(seed));
            assert_eq!(out.answer, "Billing is hourly.");
        }
        let hot = Extractive {
            temperature: 2.0,
            max_sentences: 2,
        };
        let run = |seed| hot.generate("billing", &[&a], &mut fastrand::Rng::with_seed(seed));
        assert_eq!(run(9), run(9));
        let distinct: HashSet<String> = (0..50).map(|s| run(s).answer).collect();
        assert!(distinct.len() > 1, "sampling never varied: {distinct:?}");
    }

    #[test]
    fn answers_only_contain_retrieved_sentences_in_document_order() {
        let a = doc("a", "Delta stores data. Delta logs commits.");
        let b = doc("b", "Delta runs on S3.");
        let g = Extractive {
            temperature: 1.0,
            max_sentences: 3,
        };
        let out = g.generate("delta", &[&a, &b], &mut fastrand::Rng::with_seed(3));
        assert_eq!(
            out.answer,
            "Delta stores data. Delta logs commits. Delta runs on S3."
        );
        assert_eq!(out.sentences[0], ("a".to_owned(), 0));
    }
}
