//! What ragprobe's own retriever is asked in a conversation (`retriever.history`): the last
//! question, a standalone question built from the history, or the whole history. The
//! standalone rewrite is deterministic (no model): a question that leans on what came
//! before is joined to the previous question's standalone form.

use serde::{Deserialize, Serialize};

use crate::model::record::{Message, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryMode {
    /// The current question alone: the history reaches the prompt, not the retriever.
    #[default]
    Last,
    /// The current question, joined to the previous user question (itself made
    /// standalone) when it leans on it: "And how much does it cost?" after "How does
    /// Databricks store databases?" becomes both.
    Standalone,
    /// Every message so far, users' and assistant's, and the current question.
    All,
}

impl HistoryMode {
    pub fn is_last(&self) -> bool {
        *self == HistoryMode::Last
    }

    pub fn label(self) -> &'static str {
        match self {
            HistoryMode::Last => "last",
            HistoryMode::Standalone => "standalone",
            HistoryMode::All => "all",
        }
    }

    /// The text the retriever is asked for `question` after `history`.
    pub fn query(self, question: &str, history: &[Message]) -> String {
        match self {
            HistoryMode::Last => question.to_owned(),
            HistoryMode::All => history
                .iter()
                .map(|m| m.content.as_str())
                .chain([question])
                .collect::<Vec<_>>()
                .join("\n"),
            HistoryMode::Standalone => {
                let mut standalone = String::new();
                let asked = history.iter().filter(|m| m.role == Role::User);
                for next in asked.map(|m| m.content.as_str()).chain([question]) {
                    standalone = if !standalone.is_empty() && leans_on_history(next) {
                        format!("{standalone} {next}")
                    } else {
                        next.to_owned()
                    };
                }
                standalone
            }
        }
    }
}

/// Words that start a follow-up ("And …", "So …").
const CONTINUATIONS: &[&str] = &["and", "also", "so", "then", "but", "or", "plus"];
/// Words that point back at something said before.
const REFERENCES: &[&str] = &[
    "it", "its", "it's", "that", "this", "these", "those", "they", "them", "their", "one", "ones",
    "same", "such", "he", "she", "him", "her",
];

/// Whether `question` needs the conversation to be understood: it starts with a
/// continuation, points back with a pronoun, or is under three words ("Why?").
pub fn leans_on_history(question: &str) -> bool {
    let lower = question.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect();
    words.len() < 3
        || words.first().is_some_and(|w| CONTINUATIONS.contains(w))
        || words.iter().any(|w| REFERENCES.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Message {
        Message {
            role: Role::User,
            content: text.into(),
        }
    }

    fn assistant(text: &str) -> Message {
        Message {
            role: Role::Assistant,
            content: text.into(),
        }
    }

    #[test]
    fn a_follow_up_joins_the_question_it_leans_on() {
        let history = [
            user("How does Databricks store databases?"),
            assistant("As Delta files."),
        ];
        let follow_up = "And how much does it cost to run one?";
        assert_eq!(HistoryMode::Last.query(follow_up, &history), follow_up);
        assert_eq!(
            HistoryMode::Standalone.query(follow_up, &history),
            "How does Databricks store databases? And how much does it cost to run one?"
        );
        assert_eq!(
            HistoryMode::All.query(follow_up, &history),
            "How does Databricks store databases?\nAs Delta files.\nAnd how much does it cost to run one?"
        );
    }

    #[test]
    fn a_question_that_stands_alone_starts_over() {
        let history = [user("How does Databricks store databases?"), assistant("…")];
        let fresh = "What is a serverless SQL warehouse?";
        assert!(!leans_on_history(fresh));
        assert_eq!(HistoryMode::Standalone.query(fresh, &history), fresh);
    }

    #[test]
    fn standalone_chains_through_several_follow_ups() {
        let history = [
            user("How does Databricks store databases?"),
            assistant("…"),
            user("And what does it cost?"),
            assistant("…"),
        ];
        assert_eq!(
            HistoryMode::Standalone.query("Why?", &history),
            "How does Databricks store databases? And what does it cost? Why?"
        );
        // The first question has nothing to lean on, whatever its words.
        assert_eq!(HistoryMode::Standalone.query("And it?", &[]), "And it?");
    }
}
