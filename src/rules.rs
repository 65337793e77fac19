//! The `where` predicate language, implemented once and used twice: to filter what a
//! retriever may return, and to judge the documents it did return.
//!
//! It is the filter language Chroma and MongoDB users know:
//! `{field: value}`, `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte`, `$in`, `$nin`, `$exists`,
//! `$and`, `$or`, `$not`. Several keys in one mapping must all hold.
//!
//! Semantics, spelled out because stores disagree on them:
//! - Equality is by JSON value; integers and floats compare numerically (`1 == 1.0`).
//! - `$gt`/`$gte`/`$lt`/`$lte` compare numbers with numbers and strings with strings
//!   (lexicographically). Any other pairing, or a missing field, is false — never an error.
//! - A missing field fails `{field: v}`, `$eq`, `$in`, the order operators and
//!   `$exists: true`; it satisfies `$ne`, `$nin` and `$exists: false` (as in MongoDB).
//! - `$not` negates: `{field: {$not: {$gt: 3}}}` on one field, `{$not: <where>}` on a whole
//!   document.

use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Document metadata, as loaded from a corpus.
pub type Metadata = Map<String, Value>;

/// A parsed `where` expression: every clause must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Where {
    pub clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    Field { name: String, condition: Condition },
    And(Vec<Where>),
    Or(Vec<Where>),
    Not(Box<Where>),
}

/// What must hold for one field; several operators on one field must all hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub ops: Vec<FieldOp>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldOp {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Not(Condition),
}

impl Where {
    /// Whether a document's metadata satisfies this expression.
    pub fn matches(&self, metadata: &Metadata) -> bool {
        self.clauses.iter().all(|clause| clause.matches(metadata))
    }

    /// The JSON form of the expression, as a user would write it (for traces and reports).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for clause in &self.clauses {
            match clause {
                Clause::Field { name, condition } => {
                    map.insert(name.clone(), condition.to_json());
                }
                Clause::And(items) => {
                    map.insert("$and".into(), items.iter().map(Where::to_json).collect());
                }
                Clause::Or(items) => {
                    map.insert("$or".into(), items.iter().map(Where::to_json).collect());
                }
                Clause::Not(inner) => {
                    map.insert("$not".into(), inner.to_json());
                }
            }
        }
        Value::Object(map)
    }
}

impl fmt::Display for Where {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl Serialize for Where {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl Clause {
    fn matches(&self, metadata: &Metadata) -> bool {
        match self {
            Clause::Field { name, condition } => condition.matches(metadata.get(name)),
            Clause::And(items) => items.iter().all(|w| w.matches(metadata)),
            Clause::Or(items) => items.iter().any(|w| w.matches(metadata)),
            Clause::Not(inner) => !inner.matches(metadata),
        }
    }
}

impl Condition {
    fn matches(&self, value: Option<&Value>) -> bool {
        self.ops.iter().all(|op| op.matches(value))
    }

    fn to_json(&self) -> Value {
        if let [FieldOp::Eq(v)] = self.ops.as_slice() {
            return v.clone();
        }
        let mut map = Map::new();
        for op in &self.ops {
            let (key, value) = match op {
                FieldOp::Eq(v) => ("$eq", v.clone()),
                FieldOp::Ne(v) => ("$ne", v.clone()),
                FieldOp::Gt(v) => ("$gt", v.clone()),
                FieldOp::Gte(v) => ("$gte", v.clone()),
                FieldOp::Lt(v) => ("$lt", v.clone()),
                FieldOp::Lte(v) => ("$lte", v.clone()),
                FieldOp::In(vs) => ("$in", Value::Array(vs.clone())),
                FieldOp::Nin(vs) => ("$nin", Value::Array(vs.clone())),
                FieldOp::Exists(b) => ("$exists", Value::Bool(*b)),
                FieldOp::Not(c) => ("$not", c.to_json()),
            };
            map.insert(key.into(), value);
        }
        Value::Object(map)
    }
}

impl FieldOp {
    fn matches(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (FieldOp::Exists(want), v) => v.is_some() == *want,
            (FieldOp::Not(inner), v) => !inner.matches(v),
            (FieldOp::Ne(_) | FieldOp::Nin(_), None) => true,
            (_, None) => false,
            (FieldOp::Eq(want), Some(v)) => values_equal(v, want),
            (FieldOp::Ne(want), Some(v)) => !values_equal(v, want),
            (FieldOp::In(set), Some(v)) => set.iter().any(|w| values_equal(v, w)),
            (FieldOp::Nin(set), Some(v)) => !set.iter().any(|w| values_equal(v, w)),
            (FieldOp::Gt(w), Some(v)) => compare(v, w) == Some(Ordering::Greater),
            (FieldOp::Gte(w), Some(v)) => {
                matches!(compare(v, w), Some(Ordering::Greater | Ordering::Equal))
            }
            (FieldOp::Lt(w), Some(v)) => compare(v, w) == Some(Ordering::Less),
            (FieldOp::Lte(w), Some(v)) => {
                matches!(compare(v, w), Some(Ordering::Less | Ordering::Equal))
            }
        }
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        _ => a == b,
    }
}

/// Orders two values of the same kind; `None` for kinds that do not order together.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

const LOGICAL_OPERATORS: &[&str] = &["$and", "$or", "$not"];
const FIELD_OPERATORS: &[&str] = &[
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not",
];

impl<'de> Deserialize<'de> for Where {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(WhereVisitor)
    }
}

struct WhereVisitor;

impl<'de> Visitor<'de> for WhereVisitor {
    type Value = Where;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a `where` mapping such as {docs: databricks}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Where, A::Error> {
        let mut clauses = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let clause = match key.as_str() {
                "$and" => Clause::And(non_empty(map.next_value::<Vec<Where>>()?, "$and")?),
                "$or" => Clause::Or(non_empty(map.next_value::<Vec<Where>>()?, "$or")?),
                "$not" => Clause::Not(Box::new(map.next_value::<Where>()?)),
                op if op.starts_with('$') => {
                    return Err(de::Error::custom(format!(
                        "unknown logical operator `{op}`, expected one of {}; \
                         field operators such as `$eq` go under a field name",
                        LOGICAL_OPERATORS.join(", ")
                    )));
                }
                _ => Clause::Field {
                    name: key,
                    condition: map.next_value::<Condition>()?,
                },
            };
            clauses.push(clause);
        }
        Ok(Where { clauses })
    }
}

fn non_empty<E: de::Error>(items: Vec<Where>, op: &str) -> Result<Vec<Where>, E> {
    if items.is_empty() {
        return Err(E::custom(format!("`{op}` needs at least one expression")));
    }
    Ok(items)
}

/// A literal compared against metadata: a scalar (string, number, bool or null).
struct Literal(Value);

impl<'de> Deserialize<'de> for Literal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        match value {
            Value::Array(_) | Value::Object(_) => Err(de::Error::custom(
                "expected a scalar (string, number, boolean or null) to compare with",
            )),
            scalar => Ok(Literal(scalar)),
        }
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ConditionVisitor)
    }
}

struct ConditionVisitor;

impl ConditionVisitor {
    fn equal(value: Value) -> Condition {
        Condition {
            ops: vec![FieldOp::Eq(value)],
        }
    }
}

impl<'de> Visitor<'de> for ConditionVisitor {
    type Value = Condition;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value to compare with, or a mapping of operators such as {$in: [a, b]}")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Condition, E> {
        Ok(Self::equal(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Condition, E> {
        Ok(Self::equal(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Condition, E> {
        Ok(Self::equal(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Condition, E> {
        Ok(Self::equal(Value::from(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Condition, E> {
        Ok(Self::equal(Value::String(v.to_owned())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Condition, E> {
        Ok(Self::equal(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Condition, E> {
        Ok(Self::equal(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<Condition, A::Error> {
        Err(de::Error::custom(
            "a list cannot be compared directly; write {$in: [...]} to match any of several values",
        ))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Condition, A::Error> {
        let mut ops = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let op = match key.as_str() {
                "$eq" => FieldOp::Eq(map.next_value::<Literal>()?.0),
                "$ne" => FieldOp::Ne(map.next_value::<Literal>()?.0),
                "$gt" => FieldOp::Gt(map.next_value::<Literal>()?.0),
                "$gte" => FieldOp::Gte(map.next_value::<Literal>()?.0),
                "$lt" => FieldOp::Lt(map.next_value::<Literal>()?.0),
                "$lte" => FieldOp::Lte(map.next_value::<Literal>()?.0),
                "$in" => FieldOp::In(literals(map.next_value::<Vec<Literal>>()?)),
                "$nin" => FieldOp::Nin(literals(map.next_value::<Vec<Literal>>()?)),
                "$exists" => FieldOp::Exists(map.next_value::<bool>()?),
                "$not" => FieldOp::Not(map.next_value::<Condition>()?),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown field operator `{other}`, expected one of {}{}",
                        FIELD_OPERATORS.join(", "),
                        if other.starts_with('$') {
                            ""
                        } else {
                            " (nested fields are not supported: name the field directly)"
                        }
                    )));
                }
            };
            ops.push(op);
        }
        if ops.is_empty() {
            return Err(de::Error::custom("empty operator mapping"));
        }
        Ok(Condition { ops })
    }
}

fn literals(items: Vec<Literal>) -> Vec<Value> {
    items.into_iter().map(|l| l.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(yaml: &str) -> Where {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    fn meta(value: Value) -> Metadata {
        match value {
            Value::Object(map) => map,
            _ => panic!("test metadata must be an object"),
        }
    }

    #[test]
    fn operators_table() {
        let doc = meta(json!({
            "docs": "databricks", "year": 2024, "score": 0.5, "public": true,
            "owner": null, "tier": "gold"
        }));
        // (expression, expected result on `doc`)
        let table: &[(&str, bool)] = &[
            ("{docs: databricks}", true),
            ("{docs: aws}", false),
            ("{docs: {$eq: databricks}}", true),
            ("{docs: {$ne: aws}}", true),
            ("{docs: {$ne: databricks}}", false),
            ("{year: 2024}", true),
            ("{year: 2024.0}", true),
            ("{year: {$gt: 2023}}", true),
            ("{year: {$gt: 2024}}", false),
            ("{year: {$gte: 2024}}", true),
            ("{year: {$lt: 2025}}", true),
            ("{year: {$lte: 2023}}", false),
            ("{score: {$gt: 0.25, $lt: 0.75}}", true),
            ("{score: {$gt: 0.25, $lt: 0.4}}", false),
            ("{tier: {$gt: alpha}}", true),
            ("{tier: {$lt: alpha}}", false),
            ("{docs: {$in: [aws, databricks]}}", true),
            ("{docs: {$in: [aws, gcp]}}", false),
            ("{docs: {$nin: [aws, gcp]}}", true),
            ("{docs: {$nin: [databricks]}}", false),
            ("{public: true}", true),
            ("{public: false}", false),
            ("{owner: null}", true),
            ("{owner: {$exists: true}}", true),
            ("{missing: {$exists: false}}", true),
            ("{missing: {$exists: true}}", false),
            ("{docs: {$not: {$eq: aws}}}", true),
            ("{year: {$not: {$gt: 2000}}}", false),
            ("{$not: {docs: aws}}", true),
            ("{$not: {docs: databricks}}", false),
            ("{$and: [{docs: databricks}, {year: 2024}]}", true),
            ("{$and: [{docs: databricks}, {year: 1999}]}", false),
            ("{$or: [{docs: aws}, {year: 2024}]}", true),
            ("{$or: [{docs: aws}, {year: 1999}]}", false),
            ("{docs: databricks, year: 2024}", true),
            ("{docs: databricks, year: 1999}", false),
            ("{}", true),
        ];
        for (expr, expected) in table {
            assert_eq!(parse(expr).matches(&doc), *expected, "{expr}");
        }
    }

    #[test]
    fn type_mismatches_are_false_not_errors() {
        let doc = meta(json!({"year": "2024", "n": 3, "flag": true}));
        let table: &[(&str, bool)] = &[
            ("{year: 2024}", false),         // string vs number
            ("{year: {$gt: 2000}}", false),  // string vs number order
            ("{n: {$gt: abc}}", false),      // number vs string order
            ("{n: {$lt: abc}}", false),      // neither way
            ("{flag: {$gt: false}}", false), // booleans do not order
            ("{n: \"3\"}", false),
            ("{n: {$ne: \"3\"}}", true),
            ("{n: {$in: [\"3\", 4]}}", false),
            ("{n: {$nin: [\"3\", 4]}}", true),
        ];
        for (expr, expected) in table {
            assert_eq!(parse(expr).matches(&doc), *expected, "{expr}");
        }
    }

    #[test]
    fn missing_fields() {
        let doc = meta(json!({"docs": "aws"}));
        let table: &[(&str, bool)] = &[
            ("{team: x}", false),
            ("{team: {$eq: x}}", false),
            ("{team: {$ne: x}}", true),
            ("{team: {$gt: 1}}", false),
            ("{team: {$gte: 1}}", false),
            ("{team: {$lt: 1}}", false),
            ("{team: {$lte: 1}}", false),
            ("{team: {$in: [x]}}", false),
            ("{team: {$nin: [x]}}", true),
            ("{team: {$not: {$eq: x}}}", true),
            ("{team: null}", false),
        ];
        for (expr, expected) in table {
            assert_eq!(parse(expr).matches(&doc), *expected, "{expr}");
        }
    }

    #[test]
    fn malformed_expressions_are_rejected() {
        let table: &[(&str, &str)] = &[
            ("{docs: {$regex: aws}}", "unknown field operator `$regex`"),
            ("{$nor: [{a: 1}]}", "unknown logical operator `$nor`"),
            ("{docs: [a, b]}", "write {$in: [...]}"),
            ("{docs: {$in: aws}}", "invalid type"),
            ("{docs: {$in: [[a]]}}", "expected a scalar"),
            ("{docs: {$exists: yes-please}}", "invalid type"),
            ("{$and: []}", "needs at least one"),
            ("{docs: {}}", "empty operator mapping"),
            ("[docs]", "invalid type"),
        ];
        for (expr, needle) in table {
            let err = serde_yaml::from_str::<Where>(expr).expect_err(expr);
            assert!(
                err.to_string().contains(needle),
                "{expr}: `{err}` lacks `{needle}`"
            );
        }
    }

    #[test]
    fn json_form_round_trips() {
        for expr in [
            "{docs: databricks}",
            "{year: {$gte: 2020, $lt: 2030}}",
            "{$or: [{docs: aws}, {$not: {tier: gold}}]}",
            "{docs: {$nin: [aws, gcp]}, public: {$exists: true}}",
        ] {
            let parsed = parse(expr);
            let again: Where = serde_json::from_value(parsed.to_json()).expect("re-parse");
            assert_eq!(parsed, again, "{expr}");
        }
    }
}
