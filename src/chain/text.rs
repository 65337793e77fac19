//! Text handling shared by the BM25 retriever and the extractive generator: one tokenizer,
//! so that both agree on what a word is.

use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};

static STEMMER: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// Function words that carry no topic; BM25 would only add noise for them.
const STOPWORDS: &[&str] = &[
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can", "could",
    "do", "does", "did", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is",
    "it", "its", "just", "me", "much", "my", "of", "on", "or", "our", "should", "so", "such",
    "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "was",
    "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you",
    "your",
];

/// Lower-cased, stemmed content words of `text`, in order.
pub fn tokens(text: &str) -> Vec<String> {
    words(text)
        .filter_map(|w| stem(&w.to_lowercase()))
        .collect()
}

/// The raw words of `text` (runs of alphanumeric characters), as `tokens` splits them.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// The term a lower-cased word stands for, or `None` for a stopword. `tokens` is
/// `words` → lower case → `stem`; the index caches `stem` per distinct word.
pub fn stem(lowercase_word: &str) -> Option<String> {
    (!STOPWORDS.contains(&lowercase_word)).then(|| STEMMER.stem(lowercase_word).into_owned())
}

/// Splits text into sentences at `.`, `!` or `?` followed by white space; a dot inside a
/// word (`t4g.micro`, `3.5`) does not end a sentence.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let ends = matches!(b, b'.' | b'!' | b'?')
            && bytes
                .get(i + 1)
                .is_none_or(|next| next.is_ascii_whitespace());
        if ends {
            let sentence = text[start..=i].trim();
            if !sentence.is_empty() {
                out.push(sentence);
            }
            start = i + 1;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stemmed_content_words() {
        assert_eq!(
            tokens("How does Databricks store databases?"),
            ["databrick", "store", "databas"]
        );
        assert_eq!(tokens("Stored as Delta files"), ["store", "delta", "file"]);
        assert_eq!(tokens("running, runs"), ["run", "run"]);
    }

    #[test]
    fn sentences_split_at_terminal_punctuation_only() {
        assert_eq!(
            sentences("Billed by the hour. For prototyping, t4g.micro instances are good!  Why?"),
            [
                "Billed by the hour.",
                "For prototyping, t4g.micro instances are good!",
                "Why?"
            ]
        );
        assert_eq!(sentences("no end mark"), ["no end mark"]);
        assert!(sentences("   ").is_empty());
    }
}
