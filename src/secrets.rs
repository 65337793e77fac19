//! Text about a backend that is safe to show: URLs without credentials, server replies cut
//! to one bounded line, and recorded text with every secret ragprobe holds replaced.
//!
//! Secrets are remembered where they enter the process (an `api_key_env` value, a header
//! value, a URL's credentials) in one process-wide list, because the text that may echo
//! them (a server's 401 body, a model's answer, a client error naming the URL) is recorded
//! far from where they were read.

use std::borrow::Cow;
use std::sync::{Mutex, PoisonError};

/// What a secret is replaced by in recorded text.
pub const REDACTED: &str = "[redacted]";

/// Shorter values are not treated as secrets: replacing every "ab" would garble text and
/// hide nothing worth hiding.
const MIN_SECRET_LEN: usize = 4;

/// Header names whose values are protocol, not credentials.
const PLAIN_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "user-agent",
    "traceparent",
    "tracestate",
];

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Remembers `value` as a secret: from now on [`scrub`] replaces it, and the forms a
/// server may echo it in (JSON-escaped, HTML-escaped, percent-encoded).
pub fn remember_secret(value: &str) {
    let value = value.trim();
    if value.chars().count() < MIN_SECRET_LEN {
        return;
    }
    let json = serde_json::to_string(value).unwrap_or_default();
    let forms = [
        value.to_owned(),
        json.trim_matches('"').to_owned(),
        value
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;"),
        percent_encoded(value),
    ];
    let mut secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
    for form in forms {
        if !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    // Longest first, so a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `value` percent-encoded, unreserved characters (RFC 3986) kept: as servers echo a
/// secret in a URL, and as a query-string value is sent.
pub fn percent_encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Remembers a header's value, unless the header is plain protocol; for `Bearer X` and
/// `Basic X`, the credential alone too.
pub fn remember_header(name: &str, value: &str) {
    if PLAIN_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
        return;
    }
    remember_secret(value);
    if let Some((_, credential)) = value.split_once(' ') {
        remember_secret(credential);
    }
}

/// Remembers the `user:password` of a URL, the password alone, and the Basic credential
/// an HTTP client makes of them.
pub fn remember_url(url: &str) {
    if let Some(userinfo) = userinfo(url) {
        use base64::Engine;
        // HTTP clients percent-decode the userinfo before they build the Basic header.
        let decoded = percent_decoded(userinfo);
        for form in [userinfo, decoded.as_str()] {
            remember_secret(form);
            remember_secret(&base64::engine::general_purpose::STANDARD.encode(form));
            if let Some((_, password)) = form.split_once(':') {
                remember_secret(password);
            }
        }
    }
}

/// `%XX` sequences decoded (invalid ones kept as they are).
pub fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn userinfo(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    rest[..authority_end(rest)]
        .rsplit_once('@')
        .map(|(info, _)| info)
}

/// `text` with every remembered secret, and the credentials of every URL in it, replaced
/// by [`REDACTED`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    if text.contains("://") && text.contains('@') {
        out = Cow::Owned(redact_url(text));
    }
    let secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
        }
    }
    out
}

/// Whether [`scrub`] has anything beyond URL credentials to replace.
pub fn holds_secrets() -> bool {
    !SECRETS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_empty()
}

/// `text` (a URL, or free text holding URLs) with the `user:password@` of every
/// `scheme://user:password@host` removed.
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority = &after[..authority_end(after)];
        match authority.rfind('@') {
            Some(at) => rest = &after[at + 1..],
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// Where the authority (`user:password@host:port`) that starts `after_scheme` ends: at the
/// path, query or fragment, or where the URL ends in free text.
fn authority_end(after_scheme: &str) -> usize {
    after_scheme
        .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'') || c.is_whitespace())
        .unwrap_or(after_scheme.len())
}

/// Server text for an error message: secrets replaced (before cutting, so no secret is cut
/// in half and missed), one line, bounded.
pub fn quote(text: &str) -> String {
    let text = scrub(text);
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
    fn remembered_secrets_and_url_credentials_are_scrubbed() {
        remember_secret("sk-test-0123456789");
        remember_header("Authorization", "Bearer tok-abcdefgh");
        remember_header("Content-Type", "application/json");
        remember_url("http://alice:hunter22@127.0.0.1:9/v1");
        remember_secret("sk-q\"uo\\te");
        let text = "echo: sk-test-0123456789, Bearer tok-abcdefgh, hunter22, \
                    Basic YWxpY2U6aHVudGVyMjI=, {\"key\": \"sk-q\\\"uo\\\\te\"}, \
                    see http://bob:pw1@host/x and application/json";
        let clean = scrub(text);
        for secret in [
            "sk-test-0123456789",
            "tok-abcdefgh",
            "hunter22",
            "bob:pw1",
            "YWxpY2U6aHVudGVyMjI=",
            "uo",
        ] {
            assert!(!clean.contains(secret), "{secret} left in {clean}");
        }
        assert!(clean.contains("http://host/x"), "{clean}");
        assert!(clean.contains("application/json"), "{clean}");
        assert!(holds_secrets());
        assert_eq!(scrub("nothing here"), "nothing here");
    }

    #[test]
    fn quotes_are_one_bounded_line() {
        assert_eq!(quote("a\n  b"), "a b");
        assert_eq!(quote(""), "(empty body)");
        assert!(quote(&"x".repeat(2_000)).chars().count() <= QUOTE_LIMIT + 1);
    }
}
