//! Loads a suite and its chain, checks everything that can be checked before a run, and
//! builds the chain. Problems are collected and reported together.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::chain::Chain;
use crate::chain::build::{BuiltChain, ChainSource, build_chain, prompt_key};
use crate::chain::config::ChainConfig;
use crate::chain::corpus::{Corpus, Document};
use crate::chain::invoke::RenderError;
use crate::config::files::read_text;
use crate::config::locate::KeyPath;
use crate::config::problem::{ConfigError, Problem};
use crate::model::record::Message;
use crate::seed::stable_hash;
use crate::suite::schema::{AnswerCheck, ChainRef, RunsSetting, SuiteSpec};

/// A suite ready to run: parsed, checked, with its chain built.
#[derive(Debug)]
pub struct Suite {
    pub path: PathBuf,
    pub spec: SuiteSpec,
    pub chain: Arc<Chain>,
    /// The chain as configured, for reports.
    pub chain_config: ChainConfig,
    /// The corpus the chain retrieves from, where ragprobe knows it.
    pub corpus: Option<Arc<Corpus>>,
    /// Changes when the suite, its chain file or its corpus change.
    pub fingerprint: u64,
    /// The chain file that replaced the suite's own chain (`run --chain`).
    pub chain_override: Option<PathBuf>,
    /// Things worth knowing that do not stop the suite.
    pub warnings: Vec<Problem>,
    /// The model that judges checks with `judge:`.
    pub judge: Option<Arc<crate::judge::Judge>>,
    /// The judge's calibration against people's labels, if the suite names one.
    pub calibration: Option<crate::model::calibration::Calibration>,
}

impl Suite {
    /// What the chain's model and the judge charge, as the suite and chain say.
    pub fn prices(&self) -> crate::chain::config::Prices {
        crate::chain::config::Prices {
            model: self.chain_config.llm.as_ref().and_then(|l| l.price),
            judge: self.spec.judge.as_ref().and_then(|j| j.price),
        }
    }
}

pub fn load(path: &Path) -> Result<Suite, ConfigError> {
    load_with(path, None)
}

/// Loads a suite; `chain` (a chain file) replaces the suite's own chain, to run the same
/// cases against another version of the chain.
pub fn load_with(path: &Path, chain: Option<&Path>) -> Result<Suite, ConfigError> {
    let text = read_text(path, "suite")
        .map_err(|err| err.hint("give the path of a suite YAML file or of a folder of suites"))?;
    let mut spec: SuiteSpec = serde_yaml::from_str(&text)
        .map_err(|err| Problem::from_yaml_in(path, &err, Some(&text)))?;
    let placer = crate::config::problem::Placer::new(path, &text);
    let at = |key_path: KeyPath, message: String| placer.problem(key_path, message);
    let (chain_config, chain_source) = chain_of(path, &text, &spec, chain, &at)?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    check_spec(&spec, &at, &mut problems);
    let judge = crate::suite::judge::build(&spec, path, &at, &mut problems);
    let calibration = read_calibration(&spec, path, &at, &mut problems);
    let built = build_chain(&chain_config, &chain_source, &mut problems, &mut warnings);
    if let Some(built) = &built {
        check_against_chain(
            &spec,
            built,
            &chain_config,
            &chain_source,
            &at,
            &mut problems,
        );
    }
    let Some(built) = built.filter(|_| problems.is_empty()) else {
        return Err(ConfigError { problems });
    };
    // The metrics' cutoff is the retriever's k unless a case sets its own.
    if let Some(retriever) = &chain_config.retriever {
        for case in &mut spec.cases {
            let turns = case.turns.iter_mut().flatten();
            let expects = case
                .expect
                .iter_mut()
                .chain(turns.filter_map(|t| t.expect.as_mut()));
            for expect in expects {
                expect.k.get_or_insert(retriever.k);
            }
        }
    }
    // A conversation shows as its questions in order wherever a case shows one line.
    for case in &mut spec.cases {
        if let Some(turns) = &case.turns {
            case.question = crate::suite::schema::conversation_title(turns);
        }
    }
    let corpus_bytes = built
        .corpus
        .as_ref()
        .and_then(|c| std::fs::read(&c.path).ok())
        .unwrap_or_default();
    let fingerprint = stable_hash(&[text.as_bytes(), chain_source.text.as_bytes(), &corpus_bytes]);
    Ok(Suite {
        path: path.to_owned(),
        spec,
        chain: Arc::new(built.chain),
        chain_config,
        corpus: built.corpus,
        fingerprint,
        chain_override: chain.map(|c| std::path::absolute(c).unwrap_or_else(|_| c.to_owned())),
        warnings,
        judge,
        calibration,
    })
}

/// The judge's calibration file, relative to the suite; problems located at
/// `judge.calibration`.
fn read_calibration(
    spec: &SuiteSpec,
    path: &Path,
    at: &At<'_>,
    problems: &mut Vec<Problem>,
) -> Option<crate::model::calibration::Calibration> {
    let file = spec.judge.as_ref()?.calibration.as_ref()?;
    let here = || KeyPath::default().key("judge").key("calibration");
    let full = path.parent().unwrap_or(Path::new(".")).join(file);
    let text = match crate::config::files::read_capped(&full, 1 << 20) {
        Ok(text) => text,
        Err(e) => {
            problems.push(at(here(), format!("cannot read {}: {e}", full.display())));
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(calibration) => Some(calibration),
        Err(e) => {
            problems.push(
                at(
                    here(),
                    format!("{} is not a calibration: {e}", full.display()),
                )
                .hint("write one with `ragprobe calibrate --save FILE`"),
            );
            None
        }
    }
}

type At<'a> = dyn Fn(KeyPath, String) -> Problem + 'a;

/// The suite's chain, inline or in a file of its own (or the `--chain` file replacing it),
/// with the text and key path its problems are located in.
fn chain_of(
    path: &Path,
    text: &str,
    spec: &SuiteSpec,
    replacement: Option<&Path>,
    at: &At<'_>,
) -> Result<(ChainConfig, ChainSource), Problem> {
    let chain_ref = match replacement {
        Some(file) => ChainRef::Path(std::path::absolute(file).unwrap_or_else(|_| file.to_owned())),
        None => spec.chain.clone(),
    };
    match chain_ref {
        ChainRef::Inline(config) => Ok((
            *config,
            ChainSource {
                file: path.to_owned(),
                text: text.to_owned(),
                root: KeyPath::default().key("chain"),
            },
        )),
        ChainRef::Path(relative) => {
            let chain_path = crate::config::files::resolve(path, &relative);
            let chain_text = read_text(&chain_path, "chain file").map_err(|err| {
                at(KeyPath::default().key("chain"), err.message)
                    .hint("the chain path is relative to the suite file")
            })?;
            ChainSource::parse(&chain_path, chain_text)
        }
    }
}

/// Checks that need the suite alone: counts, unique ids, rules that check something.
fn check_spec(spec: &SuiteSpec, at: &At<'_>, problems: &mut Vec<Problem>) {
    if spec.runs == RunsSetting::Fixed(0) {
        problems.push(at(
            KeyPath::default().key("runs"),
            "runs must be at least 1".into(),
        ));
    }
    if spec.max_runs == 0 {
        problems.push(at(
            KeyPath::default().key("max_runs"),
            "max_runs must be at least 1".into(),
        ));
    }
    if spec.min_runs > spec.max_runs {
        problems.push(at(
            KeyPath::default().key("min_runs"),
            format!(
                "min_runs ({}) is more than max_runs ({})",
                spec.min_runs, spec.max_runs
            ),
        ));
    }
    if spec.tolerance.0 <= 0.0 || spec.tolerance.0 >= 0.5 {
        problems.push(at(
            KeyPath::default().key("tolerance"),
            "tolerance must be above 0 and below 0.5: it is the zone around a threshold where either verdict is acceptable (0.05 = 5 points)".into(),
        ));
    }
    if spec.detect.0 <= 0.0 {
        problems.push(at(
            KeyPath::default().key("detect"),
            "detect must be above 0: it is the pass-rate drop a comparison with the baseline must catch (0.2 = 20 points)".into(),
        ));
    }
    for (index, case) in spec.cases.iter().enumerate() {
        let min_effect = case.min_effect.unwrap_or(spec.min_effect).0;
        if min_effect >= spec.detect.0 {
            let key = if case.min_effect.is_some() {
                KeyPath::default()
                    .key("cases")
                    .index(index)
                    .key("min_effect")
            } else {
                KeyPath::default().key("min_effect")
            };
            problems.push(at(
                key,
                format!(
                    "min_effect ({min_effect}) must be below detect ({}): a drop smaller than min_effect never counts, so the gate could not catch one of `detect`",
                    spec.detect.0
                ),
            ));
        }
        if let Some(RunsSetting::Fixed(_)) = case.runs {
            problems.push(at(
                KeyPath::default().key("cases").index(index).key("runs"),
                "a case's `runs` can only be `auto`: the suite's `runs` sets the count".into(),
            ));
        }
    }
    if spec.concurrency == Some(0) {
        problems.push(at(
            KeyPath::default().key("concurrency"),
            "concurrency must be at least 1".into(),
        ));
    }
    if spec.timeout_ms == 0 {
        problems.push(at(
            KeyPath::default().key("timeout_ms"),
            "timeout_ms must be at least 1".into(),
        ));
    }
    if spec.cases.is_empty() {
        problems.push(at(
            KeyPath::default().key("cases"),
            "the suite has no cases".into(),
        ));
    }
    check_rules(spec, at, problems);
    check_cases(spec, at, problems);
}

fn check_rules(spec: &SuiteSpec, at: &At<'_>, problems: &mut Vec<Problem>) {
    let mut rule_ids = HashSet::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        let here = KeyPath::default().key("rules").index(i);
        check_id("rule", &rule.id, here.clone().key("id"), at, problems);
        if !rule_ids.insert(rule.id.as_str()) {
            problems.push(
                at(
                    here.clone().key("id"),
                    format!("rule id `{}` is used twice", rule.id),
                )
                .hint("rule ids name rules in reports: keep them unique"),
            );
        }
        match (&rule.retrieved, &rule.answer) {
            (None, None) => problems.push(
                at(here, format!("rule `{}` checks nothing", rule.id))
                    .hint("add `retrieved: {every: {...}}` or `answer: {not_matches: ...}`"),
            ),
            (Some(_), Some(_)) => problems.push(
                at(
                    here,
                    format!("rule `{}` has both `retrieved` and `answer`", rule.id),
                )
                .hint("split it into two rules, so each violation rate means one thing"),
            ),
            (None, Some(check)) => check_answer_check(check, here.key("answer"), at, problems),
            _ => {}
        }
    }
}

fn check_cases(spec: &SuiteSpec, at: &At<'_>, problems: &mut Vec<Problem>) {
    let mut case_ids = HashSet::new();
    for (i, case) in spec.cases.iter().enumerate() {
        let here = KeyPath::default().key("cases").index(i);
        check_id("case", &case.id, here.clone().key("id"), at, problems);
        for (t, tag) in case.tags.iter().enumerate() {
            check_id("tag", tag, here.clone().key("tags").index(t), at, problems);
        }
        if !case_ids.insert(case.id.as_str()) {
            problems.push(
                at(
                    here.clone().key("id"),
                    format!("case id `{}` is used twice", case.id),
                )
                .hint("case ids align runs across reports: keep them unique"),
            );
        }
        match &case.turns {
            None if case.question.trim().is_empty() => problems.push(
                at(here.clone().key("question"), "the question is empty".into())
                    .hint("write `question:`, or `turns:` for a conversation"),
            ),
            None => {}
            Some(turns) => check_turns(spec, case, turns, here.clone(), at, problems),
        }
        if let Some(expect) = &case.expect {
            check_expect(expect, here.key("expect"), at, problems);
        }
    }
}

/// A conversation: a question per turn and nothing that reads as a single question; a
/// scripted answer only before the last turn (the last one is what is tested), and skips
/// that name the suite's rules.
fn check_turns(
    spec: &SuiteSpec,
    case: &crate::suite::schema::CaseSpec,
    turns: &[crate::suite::schema::TurnSpec],
    here: KeyPath,
    at: &At<'_>,
    problems: &mut Vec<Problem>,
) {
    if !case.question.is_empty() {
        problems.push(
            at(
                here.clone().key("question"),
                "a case has `question` or `turns`, not both".into(),
            )
            .hint("in a conversation, each turn has its own `question`"),
        );
    }
    if case.expect.is_some() {
        problems.push(
            at(
                here.clone().key("expect"),
                "a conversation case has no case-level `expect`".into(),
            )
            .hint("put `expect:` under the turn it is about"),
        );
    }
    if turns.is_empty() {
        problems.push(
            at(
                here.clone().key("turns"),
                "the conversation has no turns".into(),
            )
            .hint("a turn is `- question: …`, with an optional `expect:`"),
        );
        return;
    }
    if turns.len() > crate::suite::schema::MAX_TURNS {
        problems.push(
            at(
                here.clone().key("turns"),
                format!(
                    "the conversation has {} turns, more than the {} a case may have",
                    turns.len(),
                    crate::suite::schema::MAX_TURNS
                ),
            )
            .hint("test a long conversation from a later point: script the turns before it with `answer:`, or split it"),
        );
        return;
    }
    let rule_ids: HashSet<&str> = spec.rules.iter().map(|r| r.id.as_str()).collect();
    for (t, turn) in turns.iter().enumerate() {
        let there = here.clone().key("turns").index(t);
        if turn.question.trim().is_empty() {
            problems.push(at(
                there.clone().key("question"),
                "the question is empty".into(),
            ));
        }
        if turn.answer.is_some() {
            if t + 1 == turns.len() {
                problems.push(
                    at(
                        there.clone().key("answer"),
                        "the last turn has a scripted `answer`: nothing would be asked".into(),
                    )
                    .hint("scripted answers are history for the turns after them; remove it, or add the turn to test"),
                );
            }
            if turn.expect.is_some() {
                problems.push(
                    at(
                        there.clone().key("expect"),
                        "a turn with a scripted `answer` is not asked, so it has nothing to expect".into(),
                    )
                    .hint("remove `answer:` to ask the chain, or `expect:` to keep the turn as history"),
                );
            }
            if !turn.skip.is_empty() {
                problems.push(
                    at(
                        there.clone().key("skip"),
                        "a turn with a scripted `answer` is not asked, so no rule applies to it"
                            .into(),
                    )
                    .hint("remove `skip:`, or `answer:` to ask the chain"),
                );
            }
        }
        for (j, skip) in turn.skip.iter().enumerate() {
            if !rule_ids.contains(skip.as_str()) {
                problems.push(
                    at(
                        there.clone().key("skip").index(j),
                        format!("turn skips `{skip}`, which is not one of the suite's rules"),
                    )
                    .hint(known_rules(spec)),
                );
            }
        }
        if let Some(expect) = &turn.expect {
            check_expect(expect, there.key("expect"), at, problems);
        }
    }
}

fn known_rules(spec: &SuiteSpec) -> String {
    if spec.rules.is_empty() {
        return "the suite has no rules".into();
    }
    let ids: Vec<&str> = spec.rules.iter().map(|r| r.id.as_str()).collect();
    format!("rules: {}", ids.join(", "))
}

/// What a case's (or a turn's) `expect` must hold on its own.
fn check_expect(
    expect: &crate::suite::schema::Expect,
    here: KeyPath,
    at: &At<'_>,
    problems: &mut Vec<Problem>,
) {
    if expect.k == Some(0) {
        problems.push(at(here.clone().key("k"), "k must be at least 1".into()));
    }
    if expect.relevance_level == 0 {
        problems.push(
            at(
                here.clone().key("relevance_level"),
                "relevance_level must be at least 1 (grade 0 is judged not relevant)".into(),
            )
            .hint("relevance_level: 1 counts every document graded 1 or more"),
        );
    }
    if let Some(check) = &expect.answer {
        check_answer_check(check, here.key("answer"), at, problems);
    }
}

/// Ids and tags name things in file names, terminal tables, HTML attributes and the
/// results table, where ragprobe joins lists with a control character: they must be
/// non-empty, one line, without control characters.
fn check_id(what: &str, id: &str, here: KeyPath, at: &At<'_>, problems: &mut Vec<Problem>) {
    if let Some(problem) = id_problem(what, id) {
        problems.push(
            at(here, problem)
                .hint("ids are one line of visible text: letters, digits, `-`, `_`, spaces"),
        );
    }
}

/// What is wrong with `id` as an id (of a case, tag, rule or document), if anything.
pub fn id_problem(what: &str, id: &str) -> Option<String> {
    if id.trim().is_empty() {
        return Some(format!("the {what} id is empty"));
    }
    id.chars()
        // U+FFFE and U+FFFF too: no XML document (junit.xml) can hold them.
        .find(|c| crate::invisible::is_layout_control(*c) || matches!(c, '\u{fffe}' | '\u{ffff}'))
        .map(|c| {
            format!(
                "{what} `{}` holds the control character U+{:04X}",
                id.escape_debug(),
                u32::from(c)
            )
        })
}

/// Checks suite text that ragprobe is about to write (`import`) as `validate` would check
/// the file, short of building its chain: what import writes, validate accepts.
pub fn check_written(path: &Path, text: &str) -> Result<(), ConfigError> {
    if text.len() as u64 > crate::config::files::MAX_CONFIG_BYTES {
        return Err(ConfigError {
            problems: vec![Problem::new(
                path,
                format!(
                    "the suite would be larger than the {} bytes a suite file may hold",
                    crate::config::files::MAX_CONFIG_BYTES
                ),
            )],
        });
    }
    let spec: SuiteSpec =
        serde_yaml::from_str(text).map_err(|err| Problem::from_yaml_in(path, &err, Some(text)))?;
    let placer = crate::config::problem::Placer::new(path, text);
    let at = |key_path: KeyPath, message: String| placer.problem(key_path, message);
    let mut problems = Vec::new();
    check_spec(&spec, &at, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

/// An answer check must check something, and something that can pass: an empty string
/// is in every answer, so `not_contains: [""]` fails every run and `contains: [""]` checks
/// nothing.
fn check_answer_check(
    check: &AnswerCheck,
    here: KeyPath,
    at: &At<'_>,
    problems: &mut Vec<Problem>,
) {
    if check.is_empty() {
        problems
            .push(at(here, "the answer check has no check".into()).hint(
                "add contains, contains_any, not_contains, matches, not_matches or grounded",
            ));
        return;
    }
    if let Some(grounded) = &check.grounded
        && !(grounded.min_support > 0.0 && grounded.min_support <= 1.0)
    {
        problems.push(
            at(
                here.clone().key("grounded").key("min_support"),
                format!(
                    "min_support {} is not a share in (0, 1]",
                    grounded.min_support
                ),
            )
            .hint("e.g. grounded: {min_support: 0.8}"),
        );
    }
    for (key, list) in [
        ("contains", &check.contains),
        ("contains_any", &check.contains_any),
        ("not_contains", &check.not_contains),
    ] {
        let Some(list) = list else { continue };
        for (j, needle) in list.0.iter().enumerate() {
            if needle.is_empty() {
                let verdict = if key == "not_contains" {
                    "can never pass: every answer contains the empty string"
                } else {
                    "checks nothing: every answer contains the empty string"
                };
                problems.push(
                    at(
                        here.clone().key(key).index(j),
                        format!("an empty string {verdict}"),
                    )
                    .hint("write the text the answer must (or must not) contain"),
                );
            }
        }
    }
}

/// Checks that need the built chain: expected sources in its corpus, and its templates
/// tried on every case now rather than failing on every run later (a strict template
/// fails on a misspelt variable).
fn check_against_chain(
    spec: &SuiteSpec,
    built: &BuiltChain,
    chain_config: &ChainConfig,
    chain_source: &ChainSource,
    at: &At<'_>,
    problems: &mut Vec<Problem>,
) {
    if let Some(corpus) = &built.corpus {
        check_sources(spec, corpus, at, problems);
    }
    let sample: Vec<&Document> = match &built.chain {
        Chain::Pipeline(pipeline) => built
            .corpus
            .iter()
            .flat_map(|c| c.documents.iter())
            .take(pipeline.retriever.k())
            .collect(),
        Chain::Http(_) | Chain::Command(_) => Vec::new(),
    };
    for (i, case) in spec.cases.iter().enumerate() {
        let vars = merged_vars(&spec.vars, &case.vars);
        let rendered = match &case.turns {
            Some(turns) => {
                if let Err(why) = built.chain.carries_history() {
                    problems.push(
                        at(
                            KeyPath::default().key("cases").index(i).key("turns"),
                            format!(
                                "case `{}` is a conversation, but the chain cannot carry its history: {why}",
                                case.id
                            ),
                        )
                        .hint("send `messages` in the chain's body (or use a chain that takes history), or ask the turns as separate cases"),
                    );
                    break;
                }
                // The last turn, with every turn before it as history: the largest render.
                let history = sample_history(&turns[..turns.len().saturating_sub(1)]);
                let last = turns.last().map_or("", |t| t.question.as_str());
                let conversation = crate::chain::Conversation {
                    session: "ragprobe-validate",
                    history: &history,
                    turn: turns.len() as u32,
                };
                built
                    .chain
                    .check_render(last, &vars, &sample, Some(conversation))
            }
            None => built
                .chain
                .check_render(&case.question, &vars, &sample, None),
        };
        match rendered {
            Ok(()) => {}
            Err(RenderError::Prompt(detail)) => {
                problems.push(
                    chain_source
                        .problem(
                            KeyPath::default().key(prompt_key(chain_config)),
                            format!("prompt template fails for case `{}`: {detail}", case.id),
                        )
                        .hint("the template sees `question`, `documents` (id, text, metadata), `vars`, `messages` and `history`"),
                );
                break;
            }
            Err(RenderError::Request(detail)) => {
                problems.push(
                    chain_source
                        .problem(KeyPath::default().key("body"), detail)
                        .hint("the body sees `question`, `vars`, `seed`, `traceparent`, `env`, and in a conversation `messages`, `chat_history` and `turn`"),
                );
                break;
            }
        }
    }
}

/// `turns` as history, with stand-in answers where the suite scripts none: what templates
/// are tried with before any run (`validate`, `repro`).
pub fn sample_history(turns: &[crate::suite::schema::TurnSpec]) -> Vec<Message> {
    turns
        .iter()
        .flat_map(|t| Message::exchange(&t.question, t.answer.as_deref().unwrap_or("(answer)")))
        .collect()
}

/// Case variables over suite variables.
pub fn merged_vars(suite: &Map<String, Value>, case: &Map<String, Value>) -> Map<String, Value> {
    let mut vars = suite.clone();
    vars.extend(case.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

/// Loads every suite in `files`, collecting every problem of every file before giving up.
pub fn load_all(files: &[PathBuf], chain: Option<&Path>) -> Result<Vec<Suite>, ConfigError> {
    let mut suites = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match load_with(file, chain) {
            Ok(suite) => suites.push(suite),
            Err(err) => problems.extend(err.problems),
        }
    }
    if problems.is_empty() {
        Ok(suites)
    } else {
        Err(ConfigError { problems })
    }
}

/// Every `expect.sources` id must be in the corpus.
pub fn check_sources(spec: &SuiteSpec, corpus: &Corpus, at: &At<'_>, problems: &mut Vec<Problem>) {
    let known_ids = || {
        let ids: Vec<&str> = corpus
            .documents
            .iter()
            .map(|d| d.id.as_str())
            .take(12)
            .collect();
        let more = if corpus.documents.len() > 12 {
            ", …"
        } else {
            ""
        };
        format!("{}{more}", ids.join(", "))
    };
    let known = known_ids();
    for (here, expect) in expectations(spec) {
        let mut missing = 0usize;
        for (j, source) in expect.sources.ids().enumerate() {
            if !corpus.contains(&source.0) {
                missing += 1;
                // Ten per case say it; a count says the rest.
                if missing > MISSING_SHOWN {
                    continue;
                }
                let there = here.clone().key("sources");
                let there = match expect.sources.1 {
                    crate::model::record::SourcesForm::List => there.index(j),
                    crate::model::record::SourcesForm::Graded => there.key(&source.0),
                };
                problems.push(
                    at(
                        there,
                        format!(
                            "document `{source}` is not in the corpus {}",
                            corpus.path.display()
                        ),
                    )
                    .hint(format!("known ids: {known}")),
                );
            }
        }
        if missing > MISSING_SHOWN {
            problems.push(at(
                here.key("sources"),
                format!(
                    "… and {} more of the case's sources are not in the corpus {}",
                    missing - MISSING_SHOWN,
                    corpus.path.display()
                ),
            ));
        }
    }
}

/// Every `expect` in the suite with where it is written: cases' and conversation turns'.
fn expectations(spec: &SuiteSpec) -> Vec<(KeyPath, &crate::suite::schema::Expect)> {
    let mut out = Vec::new();
    for (i, case) in spec.cases.iter().enumerate() {
        let here = KeyPath::default().key("cases").index(i);
        if let Some(expect) = &case.expect {
            out.push((here.clone().key("expect"), expect));
        }
        for (t, turn) in case.turns.iter().flatten().enumerate() {
            if let Some(expect) = &turn.expect {
                out.push((here.clone().key("turns").index(t).key("expect"), expect));
            }
        }
    }
    out
}

/// Unknown sources named one by one per case; the rest are counted.
const MISSING_SHOWN: usize = 10;
