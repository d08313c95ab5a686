//! Reading an agent's `spec` object field by field, so every kind reports a wrong type or an
//! unknown field the same way.

use crate::value::{Map, Number, Value};

/// A spec being read; [`SpecReader::finish`] rejects the fields nobody asked for.
pub struct SpecReader<'a> {
    map: &'a Map,
    seen: Vec<&'static str>,
}

impl<'a> SpecReader<'a> {
    /// `what` describes the expected shape for the error when the spec is not an object.
    pub fn new(spec: &'a Value, what: &str) -> Result<SpecReader<'a>, String> {
        match spec {
            Value::Object(map) => Ok(SpecReader { map, seen: Vec::new() }),
            Value::Null => Err(format!("spec is missing; expected {what}")),
            other => Err(format!("spec must be an object ({what}), got {}", other.type_name())),
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.seen.push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// Whether `key` is set to anything but `null`; does not count as reading it.
    pub fn has(&self, key: &str) -> bool {
        matches!(self.map.get(key), Some(v) if *v != Value::Null)
    }

    /// A non-empty string, if set.
    pub fn string(&mut self, key: &'static str) -> Result<Option<&'a str>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(Value::String(_)) => Err(format!("`{key}` must not be empty")),
            Some(other) => Err(format!("`{key}` must be a string, got {}", other.type_name())),
        }
    }

    /// A non-empty string, which must be set.
    pub fn required_string(&mut self, key: &'static str) -> Result<&'a str, String> {
        self.string(key)?.ok_or_else(|| format!("`{key}` is required"))
    }

    /// A boolean, if set.
    pub fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(format!("`{key}` must be true or false, got {}", other.type_name())),
        }
    }

    /// A whole number ≥ 1.
    pub fn positive(&mut self, key: &'static str) -> Result<Option<u64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(Number::Int(i))) if *i >= 1 => Ok(Some(*i as u64)),
            Some(Value::Number(Number::Float(f))) if f.fract() == 0.0 && *f >= 1.0 && *f < 9.0e15 => {
                Ok(Some(*f as u64))
            }
            Some(other) => Err(format!("`{key}` must be a whole number of at least 1, got {}", other.preview(40))),
        }
    }

    /// A whole number from 1 to `max`; anything else is an error naming the field and the range.
    pub fn bounded(&mut self, key: &'static str, max: u64) -> Result<Option<u64>, String> {
        let got = self.map.get(key).map(|v| v.preview(40));
        match self.positive(key) {
            Ok(Some(n)) if n <= max => Ok(Some(n)),
            Ok(None) => Ok(None),
            _ => Err(format!("`{key}` must be a whole number from 1 to {max}, got {}", got.unwrap_or_default())),
        }
    }

    /// A list of strings; unset is empty.
    pub fn strings(&mut self, key: &'static str) -> Result<Vec<String>, String> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("`{key}` must be a list of strings")))
                .collect(),
            Some(Value::Object(m)) if m.is_empty() => Ok(Vec::new()),
            Some(other) => Err(format!("`{key}` must be a list of strings, got {}", other.type_name())),
        }
    }

    /// A table of strings by name, sorted by name; unset is empty.
    pub fn string_map(&mut self, key: &'static str) -> Result<Vec<(String, String)>, String> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Object(m)) => {
                let mut pairs = m
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => Ok((k.to_string(), s.to_string())),
                        other => Err(format!("`{key}.{k}` must be a string, got {}", other.type_name())),
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                pairs.sort();
                Ok(pairs)
            }
            Some(other) => Err(format!("`{key}` must be a table of strings, got {}", other.type_name())),
        }
    }

    /// Fails on the first (by name) field no reader asked for.
    pub fn finish(self) -> Result<(), String> {
        let unknown = self.map.keys().filter(|k| !self.seen.contains(&&***k)).min();
        match unknown {
            None => Ok(()),
            Some(key) => {
                let mut known = self.seen.clone();
                known.sort_unstable();
                Err(format!("unknown field `{key}` (known: {})", known.join(", ")))
            }
        }
    }
}
