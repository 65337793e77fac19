//! A Chroma server over its HTTP API (v2): collections, upserts with ragprobe's own
//! embeddings (Chroma never computes them here), and queries with a `where` filter
//! translated into the subset Chroma accepts.

use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use crate::backend::error::ClientError;
use crate::backend::limits::Limits;
use crate::backend::{Backend, BackendError, ErrorKind};
use crate::chain::corpus::Document;
use crate::model::record::RetrievedDoc;
use crate::rules::{Clause, Condition, FieldOp, Where};
use crate::secrets::quote;

#[derive(Debug)]
pub struct ChromaClient {
    backend: Backend,
    /// `…/api/v2/tenants/{tenant}/databases/{database}`
    base: String,
    /// The server, as shown (credentials removed).
    pub url: String,
}

impl ChromaClient {
    pub fn new(
        url: &str,
        tenant: &str,
        database: &str,
        limits: Limits,
    ) -> Result<Self, ClientError> {
        let url = url.trim_end_matches('/');
        // Shown in messages and reports: without credentials a URL may carry.
        let shown = crate::secrets::redact_url(url);
        Ok(ChromaClient {
            backend: Backend::new(format!("Chroma at {shown}"), limits)?,
            base: format!("{url}/api/v2/tenants/{tenant}/databases/{database}"),
            url: shown,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BackendError> {
        let reply = self
            .backend
            .send(
                method,
                &format!("{}{path}", self.base),
                &Default::default(),
                body.map(|b| b.to_string()),
                0.0,
            )
            .await?;
        if reply.text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&reply.text).map_err(|err| {
            self.backend
                .error(ErrorKind::Malformed(err.to_string()), reply.attempts)
        })
    }

    /// The id of collection `name`; Chroma's own message when it does not exist.
    pub async fn collection_id(&self, name: &str) -> Result<String, BackendError> {
        let reply = self
            .call(reqwest::Method::GET, &format!("/collections/{name}"), None)
            .await?;
        id_of(&reply).ok_or_else(|| {
            self.backend.error(
                ErrorKind::Malformed(format!("collection `{name}` has no id")),
                1,
            )
        })
    }

    /// Creates collection `name` (cosine distance) unless it exists; returns its id.
    pub async fn create_collection(&self, name: &str) -> Result<String, BackendError> {
        let reply = self
            .call(
                reqwest::Method::POST,
                "/collections",
                Some(json!({
                    "name": name,
                    "configuration": {"hnsw": {"space": "cosine"}},
                    "get_or_create": true,
                })),
            )
            .await?;
        id_of(&reply).ok_or_else(|| {
            self.backend.error(
                ErrorKind::Malformed(format!("created collection `{name}` has no id")),
                1,
            )
        })
    }

    pub async fn delete_collection(&self, name: &str) -> Result<(), BackendError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/collections/{name}"),
            None,
        )
        .await
        .map(|_| ())
    }

    pub async fn upsert(
        &self,
        collection_id: &str,
        documents: &[Document],
        embeddings: Vec<Vec<f32>>,
    ) -> Result<(), BackendError> {
        let body = json!({
            "ids": documents.iter().map(|d| &d.id).collect::<Vec<_>>(),
            "documents": documents.iter().map(|d| &d.text).collect::<Vec<_>>(),
            "metadatas": documents.iter().map(|d| chroma_metadata(&d.metadata)).collect::<Vec<_>>(),
            "embeddings": embeddings,
        });
        self.call(
            reqwest::Method::POST,
            &format!("/collections/{collection_id}/upsert"),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    pub async fn query(
        &self,
        collection_id: &str,
        embedding: &[f32],
        k: usize,
        filter: Option<&Value>,
    ) -> Result<Vec<RetrievedDoc>, BackendError> {
        let mut body = json!({
            "query_embeddings": [embedding],
            "n_results": k,
            "include": ["documents", "metadatas", "distances"],
        });
        if let Some(filter) = filter {
            body["where"] = filter.clone();
        }
        let reply = self
            .call(
                reqwest::Method::POST,
                &format!("/collections/{collection_id}/query"),
                Some(body),
            )
            .await?;
        parse_query(&reply).map_err(|what| {
            self.backend.error(
                ErrorKind::Malformed(format!(
                    "query result: {what}: {}",
                    quote(&reply.to_string())
                )),
                1,
            )
        })
    }
}

fn id_of(collection: &Value) -> Option<String> {
    collection
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Chroma's metadata holds scalars only; the corpus check in `ragprobe index` has made
/// sure there is nothing else.
fn chroma_metadata(metadata: &Map<String, Value>) -> Value {
    if metadata.is_empty() {
        Value::Null
    } else {
        Value::Object(metadata.clone())
    }
}

/// The first (only) query's results, as retrieved documents scored 1 − cosine distance.
fn parse_query(reply: &Value) -> Result<Vec<RetrievedDoc>, &'static str> {
    let first = |key: &str| {
        reply
            .get(key)
            .and_then(|v| v.get(0))
            .and_then(Value::as_array)
    };
    let ids = first("ids").ok_or("no ids[0]")?;
    let texts = first("documents");
    let metadatas = first("metadatas");
    let distances = first("distances");
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let id = id.as_str().ok_or("an id is not a string")?.to_owned();
            let text = texts
                .and_then(|t| t.get(i))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let metadata = metadatas
                .and_then(|m| m.get(i))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let distance = distances
                .and_then(|d| d.get(i))
                .and_then(Value::as_f64)
                .unwrap_or(1.0);
            Ok(RetrievedDoc {
                id,
                text,
                metadata,
                score: Some(((1.0 - distance) * 10_000.0).round() / 10_000.0),
            })
        })
        .collect()
}

/// A collection id looked up once, on first use.
#[derive(Debug, Default)]
pub struct CollectionHandle(OnceCell<String>);

impl CollectionHandle {
    pub async fn id(&self, client: &ChromaClient, name: &str) -> Result<String, BackendError> {
        self.0
            .get_or_try_init(|| client.collection_id(name))
            .await
            .cloned()
    }
}

/// Metadata that Chroma cannot store (lists, objects, null), named by document and key.
pub fn unstorable_metadata(documents: &[Document]) -> Option<String> {
    documents.iter().find_map(|doc| {
        doc.metadata.iter().find_map(|(key, value)| {
            (!is_scalar(value)).then(|| {
                format!(
                    "document `{}`: metadata `{key}` is {value}; Chroma stores only strings, numbers and booleans",
                    doc.id
                )
            })
        })
    })
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// A `where` that Chroma cannot run, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

/// ragprobe's `where` in the form Chroma accepts: one key per object (several keys
/// become `$and`), explicit operators, scalar operands. What Chroma cannot express
/// (`$exists`, `$not`, comparisons of strings) is an error that says so.
pub fn translate(filter: &Where) -> Result<Value, FilterError> {
    let mut parts = Vec::new();
    for clause in &filter.clauses {
        parts.push(translate_clause(clause)?);
    }
    Ok(join("$and", parts))
}

fn translate_clause(clause: &Clause) -> Result<Value, FilterError> {
    match clause {
        Clause::Field { name, condition } => translate_condition(name, condition),
        Clause::And(items) => Ok(join(
            "$and",
            items.iter().map(translate).collect::<Result<_, _>>()?,
        )),
        Clause::Or(items) => {
            let parts: Vec<Value> = items.iter().map(translate).collect::<Result<_, _>>()?;
            Ok(join("$or", parts))
        }
        Clause::Not(_) => Err(FilterError(
            "Chroma's where has no `$not`; write the negation out ($ne, $nin, or $lt for $gte)"
                .into(),
        )),
    }
}

fn translate_condition(name: &str, condition: &Condition) -> Result<Value, FilterError> {
    let mut parts = Vec::new();
    for op in &condition.ops {
        let (operator, operand) = match op {
            FieldOp::Eq(v) => ("$eq", scalar(name, v)?),
            FieldOp::Ne(v) => ("$ne", scalar(name, v)?),
            FieldOp::Gt(v) => ("$gt", number(name, "$gt", v)?),
            FieldOp::Gte(v) => ("$gte", number(name, "$gte", v)?),
            FieldOp::Lt(v) => ("$lt", number(name, "$lt", v)?),
            FieldOp::Lte(v) => ("$lte", number(name, "$lte", v)?),
            FieldOp::In(vs) => ("$in", list(name, "$in", vs)?),
            FieldOp::Nin(vs) => ("$nin", list(name, "$nin", vs)?),
            FieldOp::Exists(_) => {
                return Err(FilterError(format!(
                    "`{name}: {{$exists: …}}`: Chroma's where has no `$exists`"
                )));
            }
            FieldOp::Not(_) => {
                return Err(FilterError(format!(
                    "`{name}: {{$not: …}}`: Chroma's where has no `$not`; use $ne or $nin"
                )));
            }
        };
        parts.push(json!({ name: { operator: operand } }));
    }
    Ok(join("$and", parts))
}

/// One part stays as it is; several are joined, since Chroma wants two or more.
fn join(operator: &str, mut parts: Vec<Value>) -> Value {
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        json!({ operator: parts })
    }
}

fn scalar(name: &str, value: &Value) -> Result<Value, FilterError> {
    if is_scalar(value) {
        Ok(value.clone())
    } else {
        Err(FilterError(format!(
            "`{name}`: Chroma compares only strings, numbers and booleans, not {value}"
        )))
    }
}

fn number(name: &str, operator: &str, value: &Value) -> Result<Value, FilterError> {
    if value.is_number() {
        Ok(value.clone())
    } else {
        Err(FilterError(format!(
            "`{name}: {{{operator}: {value}}}`: Chroma's {operator} compares numbers only"
        )))
    }
}

fn list(name: &str, operator: &str, values: &[Value]) -> Result<Value, FilterError> {
    if values.is_empty() {
        return Err(FilterError(format!(
            "`{name}: {{{operator}: []}}`: Chroma needs a non-empty list"
        )));
    }
    values
        .iter()
        .map(|v| scalar(name, v))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn where_(yaml: &str) -> Where {
        serde_yaml::from_str(yaml).expect("where")
    }

    #[test]
    fn translates_what_chroma_accepts() {
        let cases = [
            ("{docs: databricks}", json!({"docs": {"$eq": "databricks"}})),
            (
                "{docs: databricks, year: {$gte: 2024}}",
                json!({"$and": [{"docs": {"$eq": "databricks"}}, {"year": {"$gte": 2024}}]}),
            ),
            (
                "{year: {$gt: 1, $lt: 5}}",
                json!({"$and": [{"year": {"$gt": 1}}, {"year": {"$lt": 5}}]}),
            ),
            (
                "{$or: [{docs: aws}, {tier: {$in: [1, 2]}}]}",
                json!({"$or": [{"docs": {"$eq": "aws"}}, {"tier": {"$in": [1, 2]}}]}),
            ),
            (
                "{docs: {$nin: [aws, gcp]}}",
                json!({"docs": {"$nin": ["aws", "gcp"]}}),
            ),
            ("{$and: [{a: true}]}", json!({"a": {"$eq": true}})),
        ];
        for (input, expected) in cases {
            assert_eq!(translate(&where_(input)).expect(input), expected, "{input}");
        }
    }

    #[test]
    fn rejects_what_chroma_cannot_express() {
        for (input, needle) in [
            ("{docs: {$exists: true}}", "$exists"),
            ("{$not: {docs: aws}}", "$not"),
            ("{docs: {$not: {$eq: aws}}}", "$not"),
            ("{name: {$gt: m}}", "numbers only"),
            ("{docs: {$in: []}}", "non-empty"),
            ("{docs: null}", "not null"),
        ] {
            let err = translate(&where_(input)).expect_err(input);
            assert!(err.0.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn query_results_become_scored_documents() {
        let reply = json!({
            "ids": [["4", "2"]],
            "documents": [["aws text", "dbx text"]],
            "metadatas": [[{"docs": "aws"}, null]],
            "distances": [[0.25, 0.5]],
        });
        let docs = parse_query(&reply).expect("parse");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].id, "4");
        assert_eq!(docs[0].metadata.get("docs"), Some(&json!("aws")));
        assert_eq!(docs[0].score, Some(0.75));
        assert!(docs[1].metadata.is_empty());
        assert!(parse_query(&json!({"error": "x"})).is_err());
    }
}
