//! Reading a judge's reply: a JSON object `{"verdict": "pass" | "fail", "reason": "…"}`
//! (optionally `"score"` in 0–1), on its own or inside other text (a model that does not
//! honour `response_format` wraps it in prose or a code fence).

use serde_json::Value;

use crate::backend::redact::quote;

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    pub reason: String,
    pub score: Option<f64>,
}

const SHAPE: &str = r#"{"verdict": "pass" | "fail", "reason": "…"}"#;

pub fn parse_reply(reply: &str) -> Result<Verdict, String> {
    let object = serde_json::from_str::<Value>(reply.trim())
        .ok()
        .filter(Value::is_object)
        .or_else(|| embedded_object(reply))
        .ok_or_else(|| format!("the reply holds no JSON object {SHAPE}: {}", quote(reply)))?;
    let verdict = object
        .get("verdict")
        .and_then(Value::as_str)
        .map(|v| v.trim().to_ascii_lowercase());
    let passed = match verdict.as_deref() {
        Some("pass") => true,
        Some("fail") => false,
        _ => {
            return Err(format!(
                "the reply's `verdict` is not \"pass\" or \"fail\" ({SHAPE}): {}",
                quote(reply)
            ));
        }
    };
    let reason = object
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let score = match object.get("score") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_f64() {
            Some(score) if (0.0..=1.0).contains(&score) => Some(score),
            _ => {
                return Err(format!(
                    "the reply's `score` is not a number from 0 to 1: {}",
                    quote(reply)
                ));
            }
        },
    };
    Ok(Verdict {
        passed,
        reason,
        score,
    })
}

/// The first `{…}` in `text` that parses as a JSON object, trying each opening brace.
fn embedded_object(text: &str) -> Option<Value> {
    let end = text.rfind('}')?;
    text.match_indices('{').find_map(|(start, _)| {
        (start < end)
            .then(|| serde_json::from_str::<Value>(&text[start..=end]).ok())
            .flatten()
            .filter(Value::is_object)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_strictly_or_from_inside_text() {
        let plain =
            parse_reply(r#"{"verdict": "fail", "reason": "cites t4g.micro", "score": 0.2}"#)
                .expect("reads");
        assert_eq!(
            plain,
            Verdict {
                passed: false,
                reason: "cites t4g.micro".into(),
                score: Some(0.2)
            }
        );
        let fenced =
            parse_reply("Sure.\n```json\n{\"verdict\": \"PASS\", \"reason\": \"ok\"}\n```")
                .expect("reads");
        assert!(fenced.passed && fenced.score.is_none());
        for bad in [
            "I think it passes.",
            r#"{"verdict": "maybe", "reason": "x"}"#,
            r#"{"verdict": "pass", "score": 3}"#,
            r#"["pass"]"#,
        ] {
            let error = parse_reply(bad).expect_err(bad);
            assert!(
                error.contains("verdict") || error.contains("score"),
                "{error}"
            );
        }
    }
}
