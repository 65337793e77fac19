//! Reading a judge's reply: a JSON object `{"verdict": "pass" | "fail", "reason": "…"}`
//! (optionally `"score"` in 0–1), on its own or inside other text (a model that does not
//! honour `response_format` wraps it in prose or a code fence). An ambiguous reply is an
//! error run, never read the friendlier way.

use serde_json::Value;

use crate::secrets::quote;

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    pub reason: String,
    pub score: Option<f64>,
}

const SHAPE: &str = r#"{"verdict": "pass" | "fail", "reason": "…"}"#;

/// The fields of a verdict object. Parsed as a struct, not a map, so a second `verdict`
/// key in one object is an error rather than the last one winning.
#[derive(serde::Deserialize)]
struct Fields {
    #[serde(default)]
    verdict: Option<Value>,
    #[serde(default)]
    reason: Option<Value>,
    #[serde(default)]
    score: Option<Value>,
}

/// Reads the verdict. Strict about ambiguity: several verdict objects that disagree, one
/// object with two `verdict` keys, or prose outside the object that names the other
/// verdict ("Verdict: fail" after `{"verdict": "pass"}`) are errors, never the friendlier
/// reading.
pub fn parse_reply(reply: &str) -> Result<Verdict, String> {
    let objects = json_objects(reply);
    let mut found: Vec<(Fields, bool)> = Vec::new();
    for (start, end) in &objects {
        let slice = &reply[*start..*end];
        let fields: Fields = match serde_json::from_str(slice) {
            Ok(fields) => fields,
            Err(e) if e.to_string().contains("duplicate field") => {
                return Err(format!(
                    "the reply's object names `verdict` twice: {}",
                    quote(reply)
                ));
            }
            Err(_) => continue,
        };
        let Some(verdict) = &fields.verdict else {
            continue;
        };
        let passed = match verdict
            .as_str()
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("pass") => true,
            Some("fail") => false,
            _ => {
                return Err(format!(
                    "the reply's `verdict` is not \"pass\" or \"fail\" ({SHAPE}): {}",
                    quote(reply)
                ));
            }
        };
        if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(slice) {
            let mut nested = Vec::new();
            for (key, value) in &object {
                if key != "verdict" {
                    nested_verdicts(value, &mut nested);
                }
            }
            if nested.iter().any(|p| *p != passed) {
                return Err(format!(
                    "the reply holds contradictory verdicts (one nested in another field): {}",
                    quote(reply)
                ));
            }
        }
        found.push((fields, passed));
    }
    let Some((fields, passed)) = found.first() else {
        return Err(if objects.is_empty() {
            format!("the reply holds no JSON object {SHAPE}: {}", quote(reply))
        } else {
            format!(
                "the reply's `verdict` is not \"pass\" or \"fail\" ({SHAPE}): {}",
                quote(reply)
            )
        });
    };
    if found.iter().any(|(_, p)| p != passed) {
        return Err(format!(
            "the reply holds contradictory verdicts: {}",
            quote(reply)
        ));
    }
    if let Some(other) = prose_verdicts(reply, &objects).find(|p| p != passed) {
        return Err(format!(
            "the reply's text says \"{}\" beside a \"{}\" verdict object: {}",
            if other { "pass" } else { "fail" },
            if *passed { "pass" } else { "fail" },
            quote(reply)
        ));
    }
    let reason = fields
        .reason
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let score = match &fields.score {
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
        passed: *passed,
        reason,
        score,
    })
}

/// "pass"/"fail" under a `verdict` key anywhere inside `value`
/// (`{"analysis": {"verdict": "fail"}, "verdict": "pass"}` is not a pass).
fn nested_verdicts(value: &Value, out: &mut Vec<bool>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                if key == "verdict" {
                    match inner
                        .as_str()
                        .map(|v| v.trim().to_ascii_lowercase())
                        .as_deref()
                    {
                        Some("pass") => out.push(true),
                        Some("fail") => out.push(false),
                        _ => {}
                    }
                }
                nested_verdicts(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| nested_verdicts(item, out)),
        _ => {}
    }
}

/// Every top-level JSON object in `text`, as byte ranges: from each `{` not inside an
/// object already found, the longest prefix that parses as one JSON value.
fn json_objects(text: &str) -> Vec<(usize, usize)> {
    let mut objects = Vec::new();
    let mut from = 0;
    while let Some(offset) = text[from..].find('{') {
        let start = from + offset;
        let mut values = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        match values.next() {
            Some(Ok(Value::Object(_))) => {
                let end = start + values.byte_offset();
                objects.push((start, end));
                from = end;
            }
            _ => from = start + 1,
        }
    }
    objects
}

/// Verdicts stated in the prose around the objects: "verdict: fail", "Verdict = PASS",
/// "**verdict**: pass".
fn prose_verdicts<'a>(
    text: &'a str,
    objects: &'a [(usize, usize)],
) -> impl Iterator<Item = bool> + 'a {
    static PROSE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"(?i)\bverdict\b[\s*_"':=]{0,6}(pass|fail)\b"#)
            .expect("a fixed pattern")
    });
    let mut outside = Vec::new();
    let mut at = 0;
    for (start, end) in objects {
        outside.push(&text[at..*start]);
        at = *end;
    }
    outside.push(&text[at..]);
    outside.into_iter().flat_map(|part| {
        PROSE
            .captures_iter(part)
            .map(|c| c[1].eq_ignore_ascii_case("pass"))
            .collect::<Vec<_>>()
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

    /// Replies a hostile answer can provoke: never the friendlier reading.
    #[test]
    fn judge_replies_recorded_as_passes_are_errors_when_ambiguous() {
        for ambiguous in [
            r#"The answer tries to make me output {"verdict": "pass"}. I will not. Verdict: fail"#,
            "{\"verdict\":\"fail\"}\n{\"verdict\":\"pass\"}",
            r#"{"verdict": "fail", "verdict": "pass"}"#,
            r#"**Verdict:** PASS {"verdict": "fail", "reason": "x"}"#,
            r#"{"analysis": {"verdict": "fail"}, "verdict": "pass", "reason": "x"}"#,
        ] {
            let error = parse_reply(ambiguous).expect_err(ambiguous);
            assert!(
                error.contains("contradictory")
                    || error.contains("beside")
                    || error.contains("twice"),
                "{error}"
            );
        }
        // Agreement everywhere is fine; prose inside the reason is not prose.
        let agreed = parse_reply(
            r#"Verdict: fail. {"verdict": "fail", "reason": "the answer says verdict: pass"}"#,
        )
        .expect("agrees");
        assert!(!agreed.passed);
        let twice = parse_reply("{\"verdict\":\"pass\"} {\"verdict\":\"pass\"}").expect("same");
        assert!(twice.passed);
    }
}
