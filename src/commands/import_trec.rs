//! `ragprobe import --qrels QRELS --topics TOPICS --suite FILE`: existing relevance
//! judgements as a new suite, one case per topic with its graded documents as expected
//! sources, so a retriever is scored on the judgements a team already has.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// The suite written, in the order a person reads one.
#[derive(Serialize)]
struct TrecSuite {
    name: String,
    description: String,
    chain: String,
    runs: u32,
    cases: Vec<TrecCase>,
}

#[derive(Serialize)]
struct TrecCase {
    id: String,
    question: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expect: Option<TrecExpect>,
}

#[derive(Serialize)]
struct TrecExpect {
    /// Document id → grade, in the qrels' order.
    sources: indexed::Grades,
    min_recall: f64,
}

mod indexed {
    use serde::ser::{Serialize, SerializeMap, Serializer};

    /// A mapping that keeps insertion order when written.
    pub struct Grades(pub Vec<(String, i64)>);

    impl FromIterator<(String, i64)> for Grades {
        fn from_iter<I: IntoIterator<Item = (String, i64)>>(iter: I) -> Self {
            Grades(iter.into_iter().collect())
        }
    }

    impl Serialize for Grades {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(Some(self.0.len()))?;
            for (doc, grade) in &self.0 {
                map.serialize_entry(doc, grade)?;
            }
            map.end()
        }
    }
}

use crate::cli::ImportArgs;
use crate::commands::common::read_input;
use crate::suite::load::id_problem;

/// The longest topic or document id taken: far above any real collection's.
const MAX_ID_BYTES: usize = 1024;
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::out;

pub fn import_trec(args: &ImportArgs, qrels: &Path, topics: &Path) -> Result<Outcome, AppError> {
    if args.suite.exists() {
        return Err(AppError::Usage(format!(
            "{} exists: --qrels writes a new suite (give a new --suite path)",
            args.suite.display()
        )));
    }
    let Some(chain) = &args.chain else {
        return Err(AppError::Usage(
            "--qrels writes a new suite: give its --chain".into(),
        ));
    };
    let judged = read_qrels(qrels)?;
    let questions = read_topics(topics)?;
    if questions.is_empty() {
        return Err(AppError::Usage(format!(
            "{}: no topics: a suite needs at least one case",
            topics.display()
        )));
    }
    let topic_ids: std::collections::HashSet<&str> =
        questions.iter().map(|(q, _)| q.as_str()).collect();
    let mut cases = Vec::new();
    let mut unjudged = 0;
    for (qid, question) in &questions {
        let expect = judged.get(qid).map(|grades| TrecExpect {
            sources: grades.iter().cloned().collect(),
            // Scored, not gated: a retriever rarely finds every judged document.
            min_recall: 0.0,
        });
        unjudged += usize::from(expect.is_none());
        cases.push(TrecCase {
            id: qid.clone(),
            question: question.clone(),
            expect,
        });
    }
    let orphans = judged
        .keys()
        .filter(|qid| !topic_ids.contains(qid.as_str()))
        .count();
    let name = args
        .suite
        .file_stem()
        .map_or("imported".into(), |s| s.to_string_lossy().into_owned());
    let chain = crate::suite::append::chain_from(&args.suite, chain);
    let count = cases.len();
    let suite = TrecSuite {
        name,
        description: format!("Imported from {} and {}", qrels.display(), topics.display()),
        chain: chain.display().to_string(),
        runs: 1,
        cases,
    };
    let yaml = serde_yaml::to_string(&suite)
        .map_err(|e| AppError::Usage(format!("cannot write the suite: {e}")))?;
    let header = "# Written by `ragprobe import --qrels … --topics …`: one case per topic, its judged\n# documents and grades as expected sources (0 = judged not relevant).\n";
    let text = format!("{header}{yaml}");
    // The same checks `validate` makes: import never writes a suite validate refuses.
    crate::suite::load::check_written(&args.suite, &text)?;
    // And the checks that need the chain (expected sources in its corpus): the suite is
    // loaded as `validate` would, from a scratch file beside it, before it is written.
    validate_beside(&args.suite, &text)?;
    crate::atomic::write(&args.suite, text).map_err(AppError::io(format!(
        "cannot write {}",
        args.suite.display()
    )))?;
    out::println(&format!(
        "wrote {count} cases to {} ({} judged documents; {unjudged} topics without judgements, {orphans} judged topics without a question)",
        args.suite.display(),
        judged.values().map(Vec::len).sum::<usize>()
    ));
    Ok(Outcome::Ok)
}

/// `qid iter docid grade` per line, in file order per topic; a malformed line is an error
/// with its number.
fn read_qrels(path: &Path) -> Result<BTreeMap<String, Vec<(String, i64)>>, AppError> {
    let text = read_input(path)?;
    let mut judged: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    let mut seen: std::collections::HashMap<String, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let bad = |why: &str| {
            AppError::Usage(format!(
                "{}:{}: {why}: {:?}",
                path.display(),
                number + 1,
                crate::report::text::one_line(line, 80)
            ))
        };
        let [qid, _, doc, grade] = fields[..] else {
            return Err(bad("a qrels line is `qid iter docid grade`"));
        };
        let grade: i64 = grade
            .parse()
            .map_err(|_| bad("the grade is not an integer"))?;
        if grade < 0 {
            return Err(bad("grades are 0 or more"));
        }
        for (what, id) in [("topic", qid), ("document", doc)] {
            if let Some(problem) = id_problem(what, id) {
                return Err(bad(&problem));
            }
            if id.len() > MAX_ID_BYTES {
                return Err(bad(&format!("the {what} id is over {MAX_ID_BYTES} bytes")));
            }
        }
        // A set per topic: a linear scan per line made 3 million lines take minutes.
        if !seen
            .entry(qid.to_owned())
            .or_default()
            .insert(doc.to_owned())
        {
            return Err(bad("this document is judged twice for the topic"));
        }
        judged
            .entry(qid.to_owned())
            .or_default()
            .push((doc.to_owned(), grade));
    }
    Ok(judged)
}

/// `qid<TAB>query` lines, or JSON Lines with `qid` (or `id`) and `query` (or `question`).
fn read_topics(path: &Path) -> Result<Vec<(String, String)>, AppError> {
    let text = read_input(path)?;
    let mut topics = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| AppError::Usage(format!("{}:{}: {why}", path.display(), number + 1));
        let topic = if line.trim_start().starts_with('{') {
            let value: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
            let field = |keys: &[&str]| {
                keys.iter().find_map(|k| match value.get(*k) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                })
            };
            (
                field(&["qid", "id"]).ok_or_else(|| bad("no `qid`"))?,
                field(&["query", "question", "text"]).ok_or_else(|| bad("no `query`"))?,
            )
        } else {
            let (qid, query) = line
                .split_once('\t')
                .ok_or_else(|| bad("a topic line is `qid<TAB>query`"))?;
            (qid.trim().to_owned(), query.trim().to_owned())
        };
        if let Some(problem) = id_problem("topic", &topic.0) {
            return Err(bad(&problem));
        }
        if topic.0.len() > MAX_ID_BYTES {
            return Err(bad(&format!("the topic id is over {MAX_ID_BYTES} bytes")));
        }
        if topic.1.trim().is_empty() {
            return Err(bad("the query is empty"));
        }
        if !seen.insert(topic.0.clone()) {
            return Err(bad(&format!("topic `{}` is listed twice", topic.0)));
        }
        topics.push(topic);
    }
    Ok(topics)
}

/// Loads `text` as the suite at `path` would load (its chain resolved from the same
/// folder); problems name `path`, at the line the written file would have.
fn validate_beside(path: &Path, text: &str) -> Result<(), AppError> {
    let name = path
        .file_name()
        .map_or("suite.yaml".into(), |n| n.to_string_lossy().into_owned());
    let scratch = path.with_file_name(format!(".{name}.ragprobe-import-{}", std::process::id()));
    std::fs::write(&scratch, text)
        .map_err(AppError::io(format!("cannot write {}", scratch.display())))?;
    let loaded = crate::suite::load::load(&scratch);
    let _ = std::fs::remove_file(&scratch);
    loaded.map(|_| ()).map_err(|mut error| {
        for problem in &mut error.problems {
            if problem.file == scratch {
                problem.file = path.to_owned();
            }
        }
        AppError::from(error)
    })
}
