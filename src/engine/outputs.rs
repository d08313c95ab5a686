//! The output store: large step outputs live here and the ctx holds a short reference,
//! `{ref = "out-…", size = N}` (docs/engine.md, "Large outputs"). In memory for now.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use crate::value::{Number, Value};

/// One stored output.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputRecord {
    /// `out-` and 10 hex digits.
    pub id: Arc<str>,
    /// The run that produced it.
    pub run_id: Arc<str>,
    /// The task that produced it.
    pub task_id: Arc<str>,
    /// The attempt that produced it, from 1.
    pub attempt: u32,
    /// The agent that produced it.
    pub producer: Arc<str>,
    /// The output itself.
    pub value: Value,
    /// Its size as JSON, in bytes.
    pub size: usize,
}

/// Where outputs are kept.
pub trait OutputStore {
    /// Stores `value` and returns its new id.
    fn append(
        &self,
        run_id: &Arc<str>,
        task_id: &Arc<str>,
        attempt: u32,
        producer: &Arc<str>,
        value: Value,
        size: usize,
    ) -> Arc<str>;
    /// The output with id `id`, if it is stored.
    fn get(&self, id: &str) -> Option<OutputRecord>;
    /// The newest output of `producer`, across runs and tasks.
    fn latest_by_producer(&self, producer: &str) -> Option<OutputRecord>;
    /// The outputs of one attempt, oldest first.
    fn list_for_attempt(&self, task_id: &str, attempt: u32) -> Vec<OutputRecord>;
    /// The ids of a run's outputs, oldest first.
    fn refs_for_run(&self, run_id: &str) -> Vec<Arc<str>>;
}

/// Outputs kept in memory for the life of the engine.
#[derive(Default)]
pub struct MemoryOutputStore {
    records: RefCell<Vec<OutputRecord>>,
    by_id: RefCell<HashMap<Arc<str>, usize>>,
    counter: Cell<u64>,
    salt: u64,
}

impl MemoryOutputStore {
    /// An empty store whose ids differ from those of other stores and processes.
    pub fn new() -> MemoryOutputStore {
        use std::hash::{BuildHasher, Hasher};
        let salt = std::collections::hash_map::RandomState::new().build_hasher().finish();
        MemoryOutputStore { salt, ..MemoryOutputStore::default() }
    }

    fn next_id(&self) -> Arc<str> {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        // Unpredictable enough to not collide across engines, short enough to read.
        let mut x = self.salt ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        format!("out-{:010x}", (x ^ (x >> 29)) & 0xff_ffff_ffff).into()
    }
}

impl OutputStore for MemoryOutputStore {
    fn append(
        &self,
        run_id: &Arc<str>,
        task_id: &Arc<str>,
        attempt: u32,
        producer: &Arc<str>,
        value: Value,
        size: usize,
    ) -> Arc<str> {
        let id = self.next_id();
        let record = OutputRecord {
            id: id.clone(),
            run_id: run_id.clone(),
            task_id: task_id.clone(),
            attempt,
            producer: producer.clone(),
            value,
            size,
        };
        let mut records = self.records.borrow_mut();
        self.by_id.borrow_mut().insert(id.clone(), records.len());
        records.push(record);
        id
    }

    fn get(&self, id: &str) -> Option<OutputRecord> {
        let index = *self.by_id.borrow().get(id)?;
        self.records.borrow().get(index).cloned()
    }

    fn latest_by_producer(&self, producer: &str) -> Option<OutputRecord> {
        self.records.borrow().iter().rev().find(|r| &*r.producer == producer).cloned()
    }

    fn list_for_attempt(&self, task_id: &str, attempt: u32) -> Vec<OutputRecord> {
        self.records.borrow().iter().filter(|r| &*r.task_id == task_id && r.attempt == attempt).cloned().collect()
    }

    fn refs_for_run(&self, run_id: &str) -> Vec<Arc<str>> {
        self.records.borrow().iter().filter(|r| &*r.run_id == run_id).map(|r| r.id.clone()).collect()
    }
}

/// Whether `value`'s JSON is longer than `limit` bytes, walking only as far as needed: most
/// step outputs are small, and this runs on every one. Exact but for string escapes (not
/// counted) and floats (counted at their longest).
pub fn exceeds(value: &Value, limit: usize) -> bool {
    /// Takes `v`'s length off `budget`; true as soon as the budget runs out.
    fn walk(v: &Value, budget: &mut isize) -> bool {
        let separators = |n: usize| n.saturating_sub(1) as isize;
        match v {
            Value::Null | Value::Bool(true) => *budget -= 4,
            Value::Bool(false) => *budget -= 5,
            Value::Number(Number::Int(i)) => {
                let digits = i.unsigned_abs().checked_ilog10().map_or(1, |d| d + 1) as isize;
                *budget -= digits + isize::from(*i < 0);
            }
            Value::Number(Number::Float(_)) => *budget -= 24,
            Value::String(s) => *budget -= s.len() as isize + 2,
            Value::Array(items) => {
                *budget -= 2 + separators(items.len());
                for item in items.iter() {
                    if walk(item, budget) {
                        return true;
                    }
                }
            }
            Value::Object(map) => {
                *budget -= 2 + separators(map.len());
                for (k, item) in map.iter() {
                    *budget -= k.len() as isize + 3;
                    if walk(item, budget) {
                        return true;
                    }
                }
            }
        }
        *budget < 0
    }
    let mut budget = limit as isize;
    walk(value, &mut budget)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::from_json;

    #[test]
    fn stores_and_finds_outputs() {
        let store = MemoryOutputStore::new();
        let (run, t1, t2, a) = (Arc::from("r"), Arc::from("r.1"), Arc::from("r.2"), Arc::from("writer"));
        let first = store.append(&run, &t1, 1, &a, Value::from("one"), 5);
        let second = store.append(&run, &t2, 1, &a, Value::from("two"), 5);
        assert!(first.starts_with("out-") && first.len() == 14, "{first}");
        assert_ne!(first, second);
        assert_eq!(store.get(&first).unwrap().value, Value::from("one"));
        assert_eq!(store.latest_by_producer("writer").unwrap().id, second);
        assert_eq!(store.list_for_attempt("r.1", 1).len(), 1);
        assert_eq!(store.refs_for_run("r"), [first, second]);
        assert!(store.get("out-0000000000").is_none());
    }

    #[test]
    fn the_size_check_agrees_with_the_encoding_to_the_byte() {
        for text in [
            r#"{"text":"abcdefghij","list":[1,-22,333],"nested":{"a":null,"b":false,"c":true}}"#,
            r#"[[],{},[0],{"k":[1,2]},"",-9223372036854775808]"#,
            r#""just a string""#,
            "12345",
        ] {
            let v = from_json(text).unwrap();
            let real = v.to_json().len();
            assert!(!exceeds(&v, real), "{text}: {real} bytes is not over {real}");
            assert!(exceeds(&v, real - 1), "{text}: {real} bytes is over {}", real - 1);
        }
    }
}
