//! Ctx paths: `$`, `$.a.b`, `$["key.with.dots"]`, `$.results[0].out`.
//!
//! A path is parsed once, when the flow is loaded, and printed back in canonical form
//! (dot segments where the key allows, brackets otherwise), so a round trip through JSON is
//! stable. Reads of a missing path are errors; writes create missing or null objects on the
//! way and refuse to write through anything else.

use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::value::path::{Path, Segment};
use crate::value::{Map, Value};

/// Why a path string does not parse; `at` is the byte offset of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid path `{text}` at byte {at}: {reason}")]
pub struct PathSyntaxError {
    /// The path as written.
    pub text: String,
    /// The byte offset of the problem.
    pub at: usize,
    /// What is wrong there.
    pub reason: &'static str,
}

/// Why a path cannot be read or written in a given ctx.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PathError {
    /// Nothing at `path`; `hint` is the path with the nearest existing key where the first
    /// missing one was, when one is near enough to be a likely typo.
    #[error("path not found: {path}{}", did_you_mean(hint))]
    NotFound {
        /// The path that was read.
        path: String,
        /// A likely intended path, when one is near.
        hint: Option<String>,
    },
    /// A write would go through a value that is not an object.
    #[error("cannot write {path}: {prefix} is {found}, not an object")]
    NotAnObject {
        /// The path being written.
        path: String,
        /// The part of the path that holds the wrong value.
        prefix: String,
        /// The type found there.
        found: &'static str,
    },
    /// A write would index a value that is not an array.
    #[error("cannot write {path}: {prefix} is {found}, not an array")]
    NotAnArray {
        /// The path being written.
        path: String,
        /// The part of the path that holds the wrong value.
        prefix: String,
        /// The type found there.
        found: &'static str,
    },
    /// A write would index past the end of an array.
    #[error("cannot write {path}: index {index} is out of bounds for an array of length {len}")]
    OutOfBounds {
        /// The path being written.
        path: String,
        /// The index in the path.
        index: usize,
        /// The array's length.
        len: usize,
    },
}

impl Path {
    /// The value at this path.
    pub fn read<'v>(&self, root: &'v Value) -> Result<&'v Value, PathError> {
        let mut cur = root;
        for (depth, seg) in self.segments.iter().enumerate() {
            let next = match (seg, cur) {
                (Segment::Key(k), Value::Object(map)) => map.get(&**k),
                (Segment::Index(i), Value::Array(items)) => items.get(*i),
                _ => None,
            };
            cur = next.ok_or_else(|| PathError::NotFound { path: self.to_string(), hint: self.hint(depth, cur) })?;
        }
        Ok(cur)
    }

    /// This path with segment `depth`, a key missing from `parent`, replaced by the nearest key
    /// `parent` has, if one is a likely typo of it.
    fn hint(&self, depth: usize, parent: &Value) -> Option<String> {
        let (Segment::Key(missing), Value::Object(map)) = (&self.segments[depth], parent) else { return None };
        let nearest = nearest_key(missing, map.keys().map(|k| &**k))?;
        let mut segments = self.segments.clone();
        segments[depth] = Segment::Key(nearest.into());
        Some(Path { segments }.to_string())
    }

    /// Writes `value` at this path, creating absent or null objects on the way.
    pub fn write(&self, root: &mut Value, value: Value) -> Result<(), PathError> {
        let Some((last, parents)) = self.segments.split_last() else {
            *root = value;
            return Ok(());
        };
        let mut cur = root;
        for (depth, seg) in parents.iter().enumerate() {
            cur = self.step_into(cur, seg, depth)?;
        }
        match last {
            Segment::Key(k) => {
                self.object_at(cur, parents.len())?.insert(k.clone(), value);
            }
            Segment::Index(i) => {
                let items = self.array_at(cur, parents.len())?;
                let len = items.len();
                let slot = items.get_mut(*i).ok_or_else(|| PathError::OutOfBounds {
                    path: self.to_string(),
                    index: *i,
                    len,
                })?;
                *slot = value;
            }
        }
        Ok(())
    }

    fn step_into<'v>(&self, cur: &'v mut Value, seg: &Segment, depth: usize) -> Result<&'v mut Value, PathError> {
        match seg {
            Segment::Key(k) => {
                let map = self.object_at(cur, depth)?;
                Ok(map.entry(k.clone()).or_insert(Value::Null))
            }
            Segment::Index(i) => {
                let items = self.array_at(cur, depth)?;
                let len = items.len();
                items.get_mut(*i).ok_or_else(|| PathError::OutOfBounds { path: self.to_string(), index: *i, len })
            }
        }
    }

    /// The object at `cur`, turning null into an empty object.
    fn object_at<'v>(&self, cur: &'v mut Value, depth: usize) -> Result<&'v mut Map, PathError> {
        if let Value::Null = cur {
            *cur = Value::object();
        }
        match cur {
            Value::Object(map) => Ok(Arc::make_mut(map)),
            other => Err(PathError::NotAnObject {
                path: self.to_string(),
                prefix: self.prefix(depth).to_string(),
                found: other.type_name(),
            }),
        }
    }

    fn array_at<'v>(&self, cur: &'v mut Value, depth: usize) -> Result<&'v mut Vec<Value>, PathError> {
        match cur {
            Value::Array(items) => Ok(Arc::make_mut(items)),
            other => Err(PathError::NotAnArray {
                path: self.to_string(),
                prefix: self.prefix(depth).to_string(),
                found: other.type_name(),
            }),
        }
    }

    fn prefix(&self, depth: usize) -> Path {
        Path { segments: self.segments[..depth].to_vec() }
    }
}

fn did_you_mean(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!(" (did you mean {h}?)")).unwrap_or_default()
}

/// The key among `keys` nearest to `missing` by edit distance, if it is within a third of
/// the key's length, or differs only in case: near enough to be a typo, not just another key
/// (`y` is not a typo of `x`).
fn nearest_key<'k>(missing: &str, keys: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let limit = missing.chars().count() / 3;
    keys.filter_map(|key| {
        let d = if key.to_lowercase() == missing.to_lowercase() { 0 } else { edit_distance(missing, key) };
        (d == 0 || d <= limit).then_some((d, key))
    })
    .min_by_key(|(d, _)| *d)
    .map(|(_, key)| key)
}

/// Levenshtein distance, with a swap of two neighbours counting as one edit (`reslut`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // rows[i][j]: distance between a[..i] and b[..j]; three rows are all the swap needs.
    let mut before = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut row = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        row[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (prev[j] + 1).min(row[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

impl FromStr for Path {
    type Err = PathSyntaxError;

    fn from_str(text: &str) -> Result<Path, PathSyntaxError> {
        let fail = |at: usize, reason: &'static str| PathSyntaxError { text: text.to_string(), at, reason };
        let bytes = text.as_bytes();
        if bytes.first() != Some(&b'$') {
            return Err(fail(0, "a path starts with `$`"));
        }
        let mut segments = Vec::new();
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'.' => {
                    let start = i + 1;
                    let end = text[start..].find(['.', '[']).map_or(text.len(), |n| start + n);
                    let key = &text[start..end];
                    if key.is_empty() {
                        return Err(fail(start, "empty key after `.`"));
                    }
                    if let Some(n) = key.find([']', '"']) {
                        return Err(fail(start + n, "unexpected character in a key; use $[\"...\"]"));
                    }
                    segments.push(Segment::Key(key.into()));
                    i = end;
                }
                b'[' => {
                    let start = i + 1;
                    if bytes.get(start) == Some(&b'"') {
                        let key_start = start + 1;
                        let close = text[key_start..]
                            .find('"')
                            .map(|n| key_start + n)
                            .ok_or_else(|| fail(start, "unterminated string in brackets"))?;
                        if close == key_start {
                            return Err(fail(key_start, "empty key in brackets"));
                        }
                        if bytes.get(close + 1) != Some(&b']') {
                            return Err(fail(close + 1, "expected `]` after the quoted key"));
                        }
                        segments.push(Segment::Key(text[key_start..close].into()));
                        i = close + 2;
                    } else {
                        let close =
                            text[start..].find(']').map(|n| start + n).ok_or_else(|| fail(i, "unterminated `[`"))?;
                        let digits = &text[start..close];
                        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                            return Err(fail(start, "brackets hold an array index or a quoted key"));
                        }
                        let index = digits.parse().map_err(|_| fail(start, "array index too large"))?;
                        segments.push(Segment::Index(index));
                        i = close + 1;
                    }
                    if i < bytes.len() && !matches!(bytes[i], b'.' | b'[') {
                        return Err(fail(i, "expected `.` or `[` after `]`"));
                    }
                }
                _ => return Err(fail(i, "expected `.` or `[`")),
            }
        }
        Ok(Path { segments })
    }
}

impl Serialize for Path {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Path {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Path, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::from_json;

    fn p(s: &str) -> Path {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_canonically() {
        for (input, canonical) in [
            ("$", "$"),
            ("$.a.b", "$.a.b"),
            ("$[\"a\"]", "$.a"),
            ("$[\"x.y\"].z", "$[\"x.y\"].z"),
            ("$.results[0].out", "$.results[0].out"),
            ("$.a[\"p.md\"][\"q\"]", "$.a[\"p.md\"].q"),
            ("$[12][3]", "$[12][3]"),
        ] {
            assert_eq!(p(input).to_string(), canonical, "{input}");
        }
    }

    #[test]
    fn rejects_malformed_paths_with_a_position() {
        for (input, at) in [
            ("", 0),
            ("a.b", 0),
            ("$foo", 1),
            ("$.", 2),
            ("$.a.", 4),
            ("$.a..b", 4),
            ("$[\"x", 2),
            ("$[\"\"]", 3),
            ("$[\"x\"b", 5),
            ("$[\"x\"]b", 6),
            ("$[x]", 2),
            ("$[]", 2),
            ("$[-1]", 2),
            ("$[1", 1),
            ("$.a]", 3),
        ] {
            let err = input.parse::<Path>().unwrap_err();
            assert_eq!(err.at, at, "{input}: {err}");
        }
    }

    #[test]
    fn reads_keys_and_indexes_and_reports_missing() {
        let ctx = from_json(r#"{"a":{"b":[10,{"c":"x"}]}}"#).unwrap();
        assert_eq!(p("$.a.b[0]").read(&ctx).unwrap(), &Value::int(10));
        assert_eq!(p("$.a.b[1].c").read(&ctx).unwrap(), &Value::string("x"));
        assert_eq!(p("$").read(&ctx).unwrap(), &ctx);
        for missing in ["$.z", "$.a.b[2]", "$.a.b.c", "$.a[0]"] {
            let err = p(missing).read(&ctx).unwrap_err();
            assert_eq!(err.to_string(), format!("path not found: {missing}"));
        }
    }

    #[test]
    fn a_missing_key_near_an_existing_one_is_suggested() {
        let ctx = from_json(r#"{"result":{"score":1,"scope":2},"items":[],"x":1}"#).unwrap();
        let message = |path: &str| p(path).read(&ctx).unwrap_err().to_string();
        assert_eq!(message("$.reslt"), "path not found: $.reslt (did you mean $.result?)");
        assert_eq!(message("$.reslut.score"), "path not found: $.reslut.score (did you mean $.result.score?)");
        assert_eq!(message("$.result.scor"), "path not found: $.result.scor (did you mean $.result.score?)");
        assert_eq!(message("$.y"), "path not found: $.y");
        assert_eq!(message("$.X"), "path not found: $.X (did you mean $.x?)");
        assert_eq!(message("$.totally_else"), "path not found: $.totally_else");
        assert_eq!(message("$.items[0]"), "path not found: $.items[0]");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn writes_create_objects_through_null_and_absent() {
        let mut ctx = from_json(r#"{"n":null}"#).unwrap();
        p("$.n.x.y").write(&mut ctx, Value::int(1)).unwrap();
        p("$.fresh.k").write(&mut ctx, Value::Bool(true)).unwrap();
        assert_eq!(ctx.to_json(), r#"{"fresh":{"k":true},"n":{"x":{"y":1}}}"#);
    }

    #[test]
    fn writes_refuse_non_object_intermediates() {
        let mut ctx = from_json(r#"{"s":"text","a":[1]}"#).unwrap();
        let err = p("$.s.x").write(&mut ctx, Value::Null).unwrap_err();
        assert_eq!(err.to_string(), "cannot write $.s.x: $.s is string, not an object");
        let err = p("$.a[3]").write(&mut ctx, Value::Null).unwrap_err();
        assert!(matches!(err, PathError::OutOfBounds { index: 3, len: 1, .. }));
        let err = p("$.s[0]").write(&mut ctx, Value::Null).unwrap_err();
        assert!(matches!(err, PathError::NotAnArray { .. }));
        p("$.a[0]").write(&mut ctx, Value::int(9)).unwrap();
        assert_eq!(p("$.a[0]").read(&ctx).unwrap(), &Value::int(9));
    }

    #[test]
    fn writing_root_replaces_the_ctx() {
        let mut ctx = Value::object();
        p("$").write(&mut ctx, Value::int(3)).unwrap();
        assert_eq!(ctx, Value::int(3));
    }

    #[test]
    fn writes_copy_only_shared_containers() {
        let mut ctx = from_json(r#"{"keep":{"big":[1,2,3]},"x":1}"#).unwrap();
        let snapshot = ctx.clone();
        p("$.x").write(&mut ctx, Value::int(2)).unwrap();
        assert_eq!(p("$.x").read(&snapshot).unwrap(), &Value::int(1));
        match (p("$.keep").read(&ctx).unwrap(), p("$.keep").read(&snapshot).unwrap()) {
            (Value::Object(a), Value::Object(b)) => assert!(Arc::ptr_eq(a, b)),
            _ => unreachable!(),
        }
    }
}
