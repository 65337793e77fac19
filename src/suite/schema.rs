//! The suite file as a user writes it (serde, unknown keys denied). Checks that span
//! several keys, or need the corpus, live in `validate.rs`.

use std::fmt;
use std::path::PathBuf;

use regex::Regex;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::chain::config::ChainConfig;
use crate::model::record::{Severity, Sources};
use crate::rules::Where;

pub const DEFAULT_RUNS: u32 = 10;
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteSpec {
    /// Shown in reports and used in the output folder name.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A path to a chain file (relative to this suite) or an inline chain mapping.
    pub chain: ChainRef,
    /// Repetitions per case, or `auto`: each case until its verdict is decided.
    #[serde(default = "default_runs")]
    pub runs: RunsSetting,
    /// With `runs: auto`, the most runs a case gets; undecided then.
    #[serde(default = "default_max_runs")]
    pub max_runs: u32,
    /// With `runs: auto`, the fewest runs a case gets before a verdict.
    #[serde(default = "default_min_runs")]
    pub min_runs: u32,
    /// With `runs: auto`, the indifference zone around each threshold: rates closer than
    /// this to it may end either way.
    #[serde(default = "default_tolerance")]
    pub tolerance: Rate,
    /// With `runs: auto`, the verdict of a case undecided at `max_runs`.
    #[serde(default)]
    pub undecided: crate::sequential::Undecided,
    /// Seed for every sampled choice; `--seed` overrides it.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Runs in flight at once; `--concurrency` overrides it.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Wall-clock limit for one run; a run over it is recorded as an error.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// A case passes when this share of its runs pass (cases may override it).
    #[serde(default = "Rate::one")]
    pub min_pass_rate: Rate,
    /// Share of runs allowed to end in infrastructure errors before ragprobe exits 3.
    #[serde(default)]
    pub max_error_rate: Rate,
    /// Allowed violation rate of rules that set no `max_rate` (cases may override it).
    #[serde(default)]
    pub max_violation_rate: Option<Rate>,
    /// Against `--baseline`: the chance, shared by all cases, that a build whose chain did
    /// not change fails on a pass-rate drop (the family-wise error rate).
    #[serde(default = "default_significance")]
    pub significance: Significance,
    /// Against `--baseline`: how the cases share `significance` (`discrete_holm`, `holm`,
    /// or `none`: every case on its own, the old behaviour).
    #[serde(default)]
    pub correction: crate::model::summary::Correction,
    /// Against `--baseline`: the smallest pass-rate drop that counts (0.05 = 5 points);
    /// a real but smaller drop does not fail the build (cases may override it).
    #[serde(default)]
    pub min_effect: Rate,
    /// Against `--baseline`: the drop the comparison must catch with 80% power (0.2 = 20
    /// points). Reports warn about cases that cannot; with `runs: auto`, a case stops as
    /// "no worse" once a drop this large is ruled out.
    #[serde(default = "default_detect")]
    pub detect: Rate,
    /// The retrieval measure whose significant drop against `--baseline` fails the run.
    #[serde(default)]
    pub retrieval_gate: crate::model::summary::RetrievalGate,
    /// Variables for the prompt template, shared by every case.
    #[serde(default)]
    pub vars: Map<String, Value>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// The model that judges checks with `judge:` (any OpenAI-compatible endpoint).
    #[serde(default)]
    pub judge: Option<JudgeSpec>,
    pub cases: Vec<CaseSpec>,
}

// The judge's own configuration lives with the judge; suites name it here.
pub use crate::judge::spec::{Criterion, JudgeCheck, JudgeKind, JudgeSpec};

fn default_significance() -> Significance {
    Significance(0.05)
}

fn default_runs() -> RunsSetting {
    RunsSetting::Fixed(DEFAULT_RUNS)
}

fn default_detect() -> Rate {
    Rate(0.2)
}

fn default_max_runs() -> u32 {
    100
}

fn default_min_runs() -> u32 {
    3
}

fn default_tolerance() -> Rate {
    Rate(0.05)
}

/// `runs: 20` or `runs: auto` (in a suite, a case, or `--runs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RunsSetting {
    Fixed(u32),
    Auto,
}

impl std::str::FromStr for RunsSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "auto" => Ok(RunsSetting::Auto),
            number => number
                .parse()
                .map(RunsSetting::Fixed)
                .map_err(|_| format!("`{text}` is not a number of runs or `auto`")),
        }
    }
}

impl<'de> Deserialize<'de> for RunsSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = RunsSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of runs, or `auto`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RunsSetting, E> {
                u32::try_from(v)
                    .map(RunsSetting::Fixed)
                    .map_err(|_| E::custom(format!("{v} runs is more than ragprobe makes")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RunsSetting, E> {
                Err(E::custom(format!("{v} is not a number of runs")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RunsSetting, E> {
                match v {
                    "auto" => Ok(RunsSetting::Auto),
                    other => Err(E::custom(format!(
                        "`{other}` is not a number of runs: write a number, or `auto`"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// `chain:` is either a path or the chain itself.
#[derive(Debug, Clone)]
pub enum ChainRef {
    Path(PathBuf),
    Inline(Box<ChainConfig>),
}

impl<'de> Deserialize<'de> for ChainRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChainRefVisitor;
        impl<'de> Visitor<'de> for ChainRefVisitor {
            type Value = ChainRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path to a chain file, or a chain mapping with `retriever` and `llm`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ChainRef, E> {
                Ok(ChainRef::Path(PathBuf::from(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ChainRef, A::Error> {
                let config = ChainConfig::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ChainRef::Inline(Box::new(config)))
            }
        }
        deserializer.deserialize_any(ChainRefVisitor)
    }
}

/// A share between 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize)]
pub struct Rate(pub f64);

impl Rate {
    pub fn one() -> Rate {
        Rate(1.0)
    }
}

// Checked inside the visitor, so the parser places the error on the number itself.
impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl V {
            fn check<E: de::Error>(value: f64) -> Result<Rate, E> {
                if (0.0..=1.0).contains(&value) {
                    Ok(Rate(value))
                } else {
                    Err(E::custom(format!(
                        "{value} is not a rate: write a share between 0 and 1 (0.95, not 95)"
                    )))
                }
            }
        }
        impl Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a rate between 0 and 1")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Rate, E> {
                V::check(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Rate, E> {
                V::check(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Rate, E> {
                V::check(v as f64)
            }
        }
        deserializer.deserialize_f64(V)
    }
}

/// A significance level, strictly between 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Significance(pub f64);

impl<'de> Deserialize<'de> for Significance {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Rate(value) = Rate::deserialize(deserializer)?;
        if value <= 0.0 || value >= 1.0 {
            return Err(de::Error::custom(format!(
                "{value} is not a significance level: use a value strictly between 0 and 1, such as 0.05"
            )));
        }
        Ok(Significance(value))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub severity: Severity,
    /// Share of runs allowed to violate the rule [default: the case's or suite's
    /// `max_violation_rate`, else 0].
    #[serde(default)]
    pub max_rate: Option<Rate>,
    /// A rule on the retrieved documents.
    #[serde(default)]
    pub retrieved: Option<RetrievedRule>,
    /// With `retrieved: {every: …}` or `{none: …}`: a run (or a conversation turn) that
    /// retrieved no document passes. By default it fails, saying so: "every document
    /// matches" or "no document matches" over no documents would pass a broken reply
    /// without a look.
    #[serde(default)]
    pub allow_empty: bool,
    /// A rule on the answer text.
    #[serde(default)]
    pub answer: Option<AnswerCheck>,
}

/// Which retrieved documents must satisfy the `where` expression.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetrievedRule {
    /// Every retrieved document matches.
    Every(Where),
    /// No retrieved document matches.
    None(Where),
    /// At least one retrieved document matches.
    Any(Where),
}

// Written by hand: YAML would otherwise want `!every` tags, and users write `{every: …}`.
impl RetrievedRule {
    /// Whether this rule objects to one document on its own: `every` to a document that
    /// does not match, `none` to one that does; `any` is about the set, never one document.
    pub fn objects_to(&self, metadata: &crate::rules::Metadata) -> bool {
        match self {
            RetrievedRule::Every(w) => !w.matches(metadata),
            RetrievedRule::None(w) => w.matches(metadata),
            RetrievedRule::Any(_) => false,
        }
    }
}

impl<'de> Deserialize<'de> for RetrievedRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RetrievedRule;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("one of {every: <where>}, {none: <where>}, {any: <where>}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RetrievedRule, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "empty mapping: write {every: …}, {none: …} or {any: …}",
                    ));
                };
                let rule = match key.as_str() {
                    "every" => RetrievedRule::Every(map.next_value()?),
                    "none" => RetrievedRule::None(map.next_value()?),
                    "any" => RetrievedRule::Any(map.next_value()?),
                    other => {
                        return Err(de::Error::unknown_variant(other, &["every", "none", "any"]));
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "`{extra}` next to another quantifier: a rule takes one of every, none, any"
                    )));
                }
                Ok(rule)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// Checks on an answer's text; every key given must hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerCheck {
    /// Every one of these strings appears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<OneOrMany>,
    /// At least one of these strings appears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains_any: Option<OneOrMany>,
    /// None of these strings appears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_contains: Option<OneOrMany>,
    /// The regular expression matches somewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<Pattern>,
    /// The regular expression matches nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_matches: Option<Pattern>,
    /// Every sentence is supported by a retrieved document (offline, lexical).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounded: Option<Grounded>,
    /// A model's verdict (the suite's `judge:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeCheck>,
    /// Compare strings without regard to case (regexes take `(?i)` instead).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_case: bool,
}

/// `grounded: {min_support: 0.8}`: a sentence is supported when at least this share of its
/// content words (stemmed, stop words removed, as BM25 sees them) occurs in one retrieved
/// document.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Grounded {
    #[serde(default = "Grounded::default_min_support")]
    pub min_support: f64,
}

impl Grounded {
    fn default_min_support() -> f64 {
        0.8
    }
}

impl AnswerCheck {
    pub fn is_empty(&self) -> bool {
        self.contains.is_none()
            && self.contains_any.is_none()
            && self.not_contains.is_none()
            && self.matches.is_none()
            && self.not_matches.is_none()
            && self.grounded.is_none()
            && self.judge.is_none()
    }
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                if items.is_empty() {
                    return Err(de::Error::custom("the list is empty"));
                }
                Ok(OneOrMany(items))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A regular expression, compiled when the suite loads so a bad one stops the suite early.
#[derive(Debug, Clone)]
pub struct Pattern(pub Regex);

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

// Compiled inside the visitor, so the parser places the error on the string itself.
impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Pattern;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a regular expression")
            }
            fn visit_str<E: de::Error>(self, source: &str) -> Result<Pattern, E> {
                Regex::new(source).map(Pattern).map_err(|err| {
                    // The regex crate's message spans several lines with a caret; keep the
                    // line that names the problem.
                    let text = err.to_string();
                    let cause = text
                        .lines()
                        .rev()
                        .find(|l| l.trim_start().starts_with("error:"))
                        .map(|l| l.trim().trim_start_matches("error: ").to_owned())
                        .unwrap_or(text);
                    E::custom(format!("invalid regular expression `{source}`: {cause}"))
                })
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    pub id: String,
    /// The question; a conversation case has `turns` instead (and, once loaded, its
    /// questions joined by ` → ` here, for reports).
    #[serde(default)]
    pub question: String,
    /// A conversation: the turns, asked in order, each with the history before it.
    #[serde(default)]
    pub turns: Option<Vec<TurnSpec>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Variables for this case, over the suite's.
    #[serde(default)]
    pub vars: Map<String, Value>,
    #[serde(default)]
    pub expect: Option<Expect>,
    /// Overrides the suite's `min_pass_rate`.
    #[serde(default)]
    pub min_pass_rate: Option<Rate>,
    /// Overrides the suite's `max_violation_rate`.
    #[serde(default)]
    pub max_violation_rate: Option<Rate>,
    /// Makes this case stricter than the suite against `--baseline` (its adjusted p-value
    /// must also be at or below this); it cannot loosen the suite's shared budget.
    #[serde(default)]
    pub significance: Option<Significance>,
    /// Overrides the suite's `min_effect`.
    #[serde(default)]
    pub min_effect: Option<Rate>,
    /// Overrides the suite's `runs` (a number, or `auto`).
    #[serde(default)]
    pub runs: Option<RunsSetting>,
}

/// One turn of a conversation case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnSpec {
    pub question: String,
    /// What this turn's answer and retrieval must satisfy (the keys of a case's `expect`).
    #[serde(default)]
    pub expect: Option<Expect>,
    /// A scripted reply: the turn is not asked, and this is the assistant's answer in the
    /// history of the turns after it.
    #[serde(default)]
    pub answer: Option<String>,
    /// Ids of suite rules that do not apply to this turn.
    #[serde(default)]
    pub skip: Vec<String>,
}

/// The most turns a conversation case may have: every turn's history is sent again on the
/// next, so what a run records grows with the square of its turns.
pub const MAX_TURNS: usize = 100;

/// Joins a conversation's questions for places that show one line per case.
pub const TURN_JOINER: &str = " → ";

/// A conversation in one line: its questions joined, or for more than four turns the
/// first two and the last with the count.
pub fn conversation_title(turns: &[TurnSpec]) -> String {
    let questions: Vec<&str> = turns.iter().map(|t| t.question.as_str()).collect();
    if questions.len() <= 4 {
        return questions.join(TURN_JOINER);
    }
    format!(
        "{}{TURN_JOINER}{}{TURN_JOINER}…{TURN_JOINER}{} ({} turns)",
        questions[0],
        questions[1],
        questions[questions.len() - 1],
        questions.len()
    )
}

impl CaseSpec {
    /// Whether this case is a conversation.
    pub fn is_conversation(&self) -> bool {
        self.turns.is_some()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The documents a good retrieval returns: a list, or a mapping of id to grade.
    #[serde(default)]
    pub sources: Sources,
    /// Grade from which a document counts as relevant for P@k, R@k, hit@k, MRR and AP@k
    /// (nDCG uses the grades themselves).
    #[serde(default = "Expect::default_relevance_level")]
    pub relevance_level: u32,
    /// The cutoff for the metrics; default the retriever's `k` (for http and command
    /// chains, the number of documents returned).
    #[serde(default)]
    pub k: Option<usize>,
    /// Share of `sources` that must be retrieved for a run to pass (default: all of them).
    #[serde(default = "Rate::one")]
    pub min_recall: Rate,
    #[serde(default)]
    pub answer: Option<AnswerCheck>,
    /// What a correct answer says, for `judge: {criterion: correctness}`.
    #[serde(default)]
    pub reference_answer: Option<String>,
}

impl Expect {
    fn default_relevance_level() -> u32 {
        1
    }
}

impl RuleSpec {
    /// What the rule checks, in one line: `every {"docs":"databricks"}`,
    /// `answer not_matches /t4g/`.
    pub fn describe_check(&self) -> String {
        let mut parts = Vec::new();
        match &self.retrieved {
            Some(RetrievedRule::Every(w)) => parts.push(format!("retrieved every {w}")),
            Some(RetrievedRule::None(w)) => parts.push(format!("retrieved none {w}")),
            Some(RetrievedRule::Any(w)) => parts.push(format!("retrieved any {w}")),
            None => {}
        }
        if let Some(check) = &self.answer {
            parts.push(format!("answer {}", check.describe()));
        }
        parts.join("; ")
    }
}

impl AnswerCheck {
    /// The check as a user writes it, in YAML flow style with JSON-quoted strings:
    /// `{not_matches: "t4g\\.micro"}`.
    pub fn describe(&self) -> String {
        let Ok(serde_json::Value::Object(map)) = serde_json::to_value(self) else {
            return String::new();
        };
        let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{{{}}}", parts.join(", "))
    }
}
