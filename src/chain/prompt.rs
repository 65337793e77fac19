//! The prompt template: minijinja with strict undefined, so a misspelt variable is an error
//! rather than an empty string in the prompt.

use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;
use serde_json::Map;

use crate::chain::corpus::Document;

pub struct PromptTemplate {
    env: Environment<'static>,
    name: String,
}

impl std::fmt::Debug for PromptTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTemplate")
            .field("name", &self.name)
            .finish()
    }
}

#[derive(Serialize)]
struct PromptContext<'a> {
    question: &'a str,
    documents: &'a [&'a Document],
    vars: &'a Map<String, serde_json::Value>,
    /// The conversation before the question (empty for a single question).
    history: &'a [crate::model::record::Message],
    /// `history` with the question after it.
    messages: Vec<crate::model::record::Message>,
    /// The turn's number in a conversation (1 first; 1 for a single question).
    turn: u32,
}

/// Work one render of a prompt, body or header template may do (minijinja's fuel: about
/// one unit per instruction or per 64 bytes made): a nested `range(100000)` loop stops
/// with an error in milliseconds instead of spinning for minutes; the largest real prompt
/// (a few MB of documents) needs a small share of it.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// A template environment as every chain template gets it: strict about undefined names,
/// bounded in work.
pub fn template_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env
}

impl PromptTemplate {
    /// Compiles `source`; a syntax error is reported with the template's line.
    pub fn new(name: &str, source: String) -> Result<Self, minijinja::Error> {
        let mut env = template_environment();
        env.add_template_owned(name.to_owned(), source)?;
        Ok(PromptTemplate {
            env,
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn render(
        &self,
        question: &str,
        documents: &[&Document],
        vars: &Map<String, serde_json::Value>,
        conversation: Option<crate::chain::Conversation<'_>>,
    ) -> Result<String, minijinja::Error> {
        let template = self.env.get_template(&self.name)?;
        let conversation = conversation.unwrap_or(crate::chain::Conversation {
            session: "",
            history: &[],
            turn: 1,
        });
        template.render(Value::from(Serde(PromptContext {
            question,
            documents,
            vars,
            history: conversation.history,
            messages: conversation.messages(question),
            turn: conversation.turn,
        })))
    }
}

/// One line that says what went wrong in a template, with its line when known.
pub fn describe_template_error(err: &minijinja::Error) -> String {
    let detail = err.detail().map(|d| format!(": {d}")).unwrap_or_default();
    if err.kind() == minijinja::ErrorKind::OutOfFuel {
        return "the template does more work than a render may (a loop over a huge range?)"
            .to_owned();
    }
    match err.line() {
        Some(line) => format!("{}{detail} (template line {line})", err.kind()),
        None => format!("{}{detail}", err.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_documents_and_vars() {
        let t = PromptTemplate::new(
            "p",
            "{{ vars.product }}: {% for d in documents %}[{{ d.id }}|{{ d.metadata.docs }}] {{ d.text }} {% endfor %}Q: {{ question }}".into(),
        )
        .expect("compiles");
        let doc = Document {
            id: "4".into(),
            text: "t4g.micro <b>".into(),
            metadata: serde_json::json!({"docs": "aws"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let mut vars = Map::new();
        vars.insert("product".into(), "Databricks".into());
        let out = t.render("cost?", &[&doc], &vars, None).expect("renders");
        assert_eq!(out, "Databricks: [4|aws] t4g.micro <b> Q: cost?");
    }

    #[test]
    fn runaway_loops_run_out_of_fuel() {
        let t = PromptTemplate::new(
            "p",
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
                .into(),
        )
        .expect("compiles");
        let err = t.render("q", &[], &Map::new(), None).expect_err("bounded");
        assert_eq!(err.kind(), minijinja::ErrorKind::OutOfFuel);
        assert!(describe_template_error(&err).contains("more work"));
    }

    #[test]
    fn undefined_variables_are_errors() {
        let t = PromptTemplate::new("p", "{{ questoin }}".into()).expect("compiles");
        let err = t.render("q", &[], &Map::new(), None).expect_err("strict");
        assert!(describe_template_error(&err).contains("undefined"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = PromptTemplate::new("p", "ok\n{% for x in %}".into()).expect_err("bad syntax");
        assert!(describe_template_error(&err).contains("line 2"), "{err}");
    }
}
