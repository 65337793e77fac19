//! Text about a backend that is safe to show: URLs without credentials, server replies cut
//! to one bounded line.

/// A URL without `user:password@`.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Server text for an error message: one line, bounded.
pub fn quote(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "(empty body)".into();
    }
    match one_line.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// Longest server text quoted in an error.
const QUOTE_LIMIT: usize = 600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://user:s3cret@mlflow.example/v1/traces"),
            "https://mlflow.example/v1/traces"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:5000/v1/traces"),
            "http://127.0.0.1:5000/v1/traces"
        );
    }

    #[test]
    fn quotes_are_one_bounded_line() {
        assert_eq!(quote("a\n  b"), "a b");
        assert_eq!(quote(""), "(empty body)");
        assert!(quote(&"x".repeat(2_000)).chars().count() <= QUOTE_LIMIT + 1);
    }
}
