//! Finds where a key path (`cases[1].expect.sources[0]`) sits in a YAML file, so that
//! problems found after parsing (an unknown document id, a missing corpus) are reported at
//! their line and column like syntax errors are.
//!
//! It walks the document with the YAML parser itself and raises an error on the target
//! node; the parser stamps its own errors with the node's position, which is read back.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into a YAML document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn key(mut self, key: &str) -> Self {
        self.0.push(Seg::Key(key.to_owned()));
        self
    }

    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Seg::Index(index));
        self
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

const FOUND: &str = "\u{1}ragprobe-locate-found";

/// Line and column (1-based) of the node at `path`, if the document has one there.
pub fn locate(text: &str, path: &KeyPath) -> Option<(usize, usize)> {
    let result = serde_yaml::Deserializer::from_str(text)
        .next()
        .map(|doc| Seek { path: &path.0 }.deserialize(doc));
    match result {
        Some(Err(err)) if err.to_string().contains(FOUND) => {
            err.location().map(|l| (l.line(), l.column()))
        }
        _ => None,
    }
}

/// Line and column of the value of the first key that repeats in its mapping: the parser
/// reports a duplicate at the start of the mapping (often 1:1), which hides it.
pub fn locate_duplicate_key(text: &str) -> Option<(usize, usize)> {
    let result = serde_yaml::Deserializer::from_str(text)
        .next()
        .map(|doc| FindDuplicate.deserialize(doc));
    match result {
        Some(Err(err)) if err.to_string().contains(FOUND) => {
            err.location().map(|l| (l.line(), l.column()))
        }
        _ => None,
    }
}

struct FindDuplicate;

impl<'de> DeserializeSeed<'de> for FindDuplicate {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FindDuplicate {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<KeyText>()? {
            if !seen.insert(key.0) {
                // Raised on the repeated key's value, so the parser stamps its position.
                return map.next_value_seed(Seek { path: &[] });
            }
            map.next_value_seed(FindDuplicate)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(FindDuplicate)?.is_some() {}
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// The parser's message without its trailing " at line L column C" (shown separately).
pub fn message_without_position(err: &serde_yaml::Error) -> String {
    let text = err.to_string();
    if let Some(location) = err.location() {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(stripped) = text.strip_suffix(&suffix) {
            return stripped.to_owned();
        }
    }
    text
}

struct Seek<'p> {
    path: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        while let Some(key) = map.next_key::<KeyText>()? {
            if matches!(first, Seg::Key(k) if *k == key.0) {
                return map.next_value_seed(Seek { path: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        let mut index = 0;
        loop {
            if matches!(first, Seg::Index(i) if *i == index) {
                return seq.next_element_seed(Seek { path: rest }).map(|_| ());
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.leaf()
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.leaf()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }
}

impl Seek<'_> {
    fn leaf<E: de::Error>(self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

/// A mapping key read as text whatever its YAML type (`0:` as well as `id:`).
struct KeyText(String);

impl<'de> serde::Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
name: demo
cases:
  - id: storage
    expect:
      sources: [\"1\", \"2\"]
  - id: cost
    expect:
      sources:
        - \"2\"
        - \"7\"
";

    #[test]
    fn finds_the_repeated_key() {
        assert_eq!(
            locate_duplicate_key("name: a\nruns: 2\nruns: 3\n"),
            Some((3, 7))
        );
        assert_eq!(
            locate_duplicate_key("cases:\n  - id: a\n    question: q\n    id: b\n"),
            Some((4, 9))
        );
        assert_eq!(locate_duplicate_key("a: 1\nb: 2\n"), None);
    }

    #[test]
    fn finds_nested_nodes() {
        let at = |p: KeyPath| locate(DOC, &p);
        assert_eq!(at(KeyPath::default().key("name")), Some((1, 7)));
        assert_eq!(at(KeyPath::default().key("cases").index(0)), Some((3, 5)));
        assert_eq!(
            at(KeyPath::default()
                .key("cases")
                .index(0)
                .key("expect")
                .key("sources")
                .index(1)),
            Some((5, 22))
        );
        assert_eq!(
            at(KeyPath::default()
                .key("cases")
                .index(1)
                .key("expect")
                .key("sources")
                .index(1)),
            Some((10, 11))
        );
        assert_eq!(at(KeyPath::default().key("nope")), None);
        assert_eq!(at(KeyPath::default().key("cases").index(5)), None);
    }

    #[test]
    fn displays_like_serde_paths() {
        let p = KeyPath::default().key("cases").index(1).key("expect");
        assert_eq!(p.to_string(), "cases[1].expect");
    }
}
