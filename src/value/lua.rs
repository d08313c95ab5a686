//! Lua values ↔ [`Value`].
//!
//! Strict where silence would lose data: a table that mixes list items and keys, a sparse
//! list, a function, NaN or a non-UTF-8 string is an error naming where it sits (`$.a[2]`).
//! An empty table is an object unless it carries the array metatable (`swarm.array{}`).
//! Going back, arrays get the array metatable so they stay arrays on the way out again, and
//! `null` becomes `nil` in objects but `swarm.null` inside arrays, where a `nil` would end the list.
//!
//! Every conversion from Lua runs under a size budget (about the memory the value takes here),
//! charged as it walks: a table reached twice is charged twice, so a table that shares its
//! subtables (`x = {a = x, b = x}`, sixty times over) is refused after a few million nodes
//! instead of expanding exponentially and exhausting the host. The budget is the VM's
//! [`ResultLimit`] (the host's configuration, or a script call's `max_result_bytes`).

use std::cell::Cell;
use std::sync::Arc;

use mlua::{Lua, LuaSerdeExt, Table, Value as LuaValue};

use super::path::{Path, Segment};
use crate::value::{Map, Number, Value};

/// Deeper than this is almost certainly a cycle.
const MAX_DEPTH: usize = 128;

/// What one converted node costs the host, about: a [`Value`], or a map entry's bookkeeping.
const NODE: usize = 16;

/// The default budget of one conversion: 64 MiB.
pub const DEFAULT_MAX_RESULT_BYTES: u64 = 64 * 1024 * 1024;

/// The largest budget that may be configured: 4 GiB.
pub const MAX_RESULT_BYTES_LIMIT: u64 = 4 * 1024 * 1024 * 1024;

/// The conversion budget of a VM, kept in its app data; without one, the default applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultLimit(pub u64);

impl ResultLimit {
    /// Sets the budget of every conversion from `lua` from now on.
    pub fn install(lua: &Lua, max_bytes: u64) {
        lua.set_app_data(ResultLimit(max_bytes));
    }

    /// The budget of conversions from `lua`.
    pub fn of(lua: &Lua) -> u64 {
        lua.app_data_ref::<ResultLimit>().map_or(DEFAULT_MAX_RESULT_BYTES, |limit| limit.0)
    }
}

/// Checks a configured `max_result_bytes`: a whole number from 1 byte to 4 GiB.
pub fn check_max_result_bytes(n: u64) -> Result<u64, String> {
    if (1..=MAX_RESULT_BYTES_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(format!("`max_result_bytes` must be between 1 and {MAX_RESULT_BYTES_LIMIT} (4 GiB), got {n}"))
    }
}

/// Why a Lua value has no JSON form; `at` says where inside the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot convert {at} to JSON: {reason}")]
pub struct ConvertError {
    /// Where inside the value, as a path from `$`.
    pub at: String,
    /// Why it has no JSON form.
    pub reason: String,
}

struct Failure {
    segments: Vec<Segment>,
    reason: String,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Failure {
        Failure { segments: Vec::new(), reason: reason.into() }
    }

    fn inside(mut self, seg: Segment) -> Failure {
        self.segments.push(seg);
        self
    }

    fn finish(mut self) -> ConvertError {
        self.segments.reverse();
        let mut path = Path::root();
        for seg in self.segments {
            path = match seg {
                Segment::Key(k) => path.key(&k),
                Segment::Index(i) => path.index(i),
            };
        }
        ConvertError { at: path.to_string(), reason: self.reason }
    }
}

/// Converts a Lua value to a [`Value`], within the VM's [`ResultLimit`].
pub fn from_lua(lua: &Lua, value: &LuaValue) -> Result<Value, ConvertError> {
    from_lua_within(lua, value, ResultLimit::of(lua))
}

/// Converts a Lua value to a [`Value`] of at most about `max_bytes` of JSON.
pub fn from_lua_within(lua: &Lua, value: &LuaValue, max_bytes: u64) -> Result<Value, ConvertError> {
    let walk = Walk { array_mt: lua.array_metatable(), max_bytes, left: Cell::new(max_bytes) };
    walk.convert(value, 0).map_err(Failure::finish)
}

/// One conversion: the array metatable to recognise lists, and what is left of the budget.
struct Walk {
    array_mt: Table,
    max_bytes: u64,
    left: Cell<u64>,
}

impl Walk {
    /// Takes `bytes` from the budget, or fails once it is spent.
    fn charge(&self, bytes: usize) -> Result<(), Failure> {
        match self.left.get().checked_sub(bytes as u64) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(Failure::new(format!(
                "the value is larger than max_result_bytes ({} bytes; a table reached twice counts twice)",
                self.max_bytes
            ))),
        }
    }

    fn convert(&self, value: &LuaValue, depth: usize) -> Result<Value, Failure> {
        // About what the converted value takes in the host, charged before anything is copied.
        Ok(match value {
            LuaValue::Nil => self.charge(NODE).map(|()| Value::Null)?,
            LuaValue::LightUserData(ud) if ud.0.is_null() => self.charge(NODE).map(|()| Value::Null)?,
            LuaValue::Boolean(b) => self.charge(NODE).map(|()| Value::Bool(*b))?,
            LuaValue::Integer(i) => self.charge(NODE).map(|()| Value::Number(Number::Int(*i)))?,
            LuaValue::Number(f) if f.is_finite() => self.charge(NODE).map(|()| Value::Number(Number::Float(*f)))?,
            LuaValue::Number(f) => return Err(Failure::new(format!("{f} is not a JSON number"))),
            LuaValue::String(s) => {
                self.charge(NODE + s.as_bytes().len())?;
                match s.to_str() {
                    Ok(text) => Value::String(Arc::from(&*text)),
                    Err(_) => return Err(Failure::new("the string is not valid UTF-8")),
                }
            }
            LuaValue::Table(t) => {
                if depth >= MAX_DEPTH {
                    return Err(Failure::new(format!("tables nest deeper than {MAX_DEPTH} (a cycle?)")));
                }
                self.charge(2 * NODE)?;
                self.table(t, depth + 1)?
            }
            other => return Err(Failure::new(format!("a {} has no JSON form", other.type_name()))),
        })
    }

    fn table(&self, t: &Table, depth: usize) -> Result<Value, Failure> {
        let len = t.raw_len();
        let is_array = t.metatable().is_some_and(|mt| mt.to_pointer() == self.array_mt.to_pointer());
        if is_array {
            return self.list(t, len, depth);
        }
        let mut map = Map::new();
        let mut list_items = 0usize;
        let mut failure = None;
        let walked = t.for_each::<LuaValue, LuaValue>(|key, item| {
            let result = match &key {
                LuaValue::String(s) => match s.to_str() {
                    Ok(k) => self.charge(2 * NODE + k.len()).and_then(|()| self.convert(&item, depth)).map(|v| {
                        map.insert(Arc::from(&*k), v);
                    }),
                    Err(_) => Err(Failure::new("a key is not valid UTF-8")),
                },
                LuaValue::Integer(i) if *i >= 1 && (*i as usize) <= len => {
                    list_items += 1;
                    Ok(())
                }
                LuaValue::Integer(i) => Err(Failure::new(format!("index {i} leaves a gap in the list"))),
                other => Err(Failure::new(format!("a {} key has no JSON form", other.type_name()))),
            };
            if let Err(f) = result {
                failure = Some(match &key {
                    LuaValue::String(s) => f.inside(Segment::Key(s.to_string_lossy().into())),
                    _ => f,
                });
                return Err(mlua::Error::runtime("stop"));
            }
            Ok(())
        });
        if let Some(f) = failure {
            return Err(f);
        }
        walked.map_err(|e| Failure::new(e.to_string()))?;
        match (list_items, map.is_empty()) {
            (0, _) => Ok(Value::Object(Arc::new(map))),
            (n, true) if n == len => self.list(t, len, depth),
            (_, true) => Err(Failure::new("the list has holes (nil items); use swarm.null for a null item")),
            (_, false) => {
                let key = map.keys().min().map(|k| k.to_string()).unwrap_or_default();
                Err(Failure::new(format!("the table mixes list items with keys (such as '{key}')")))
            }
        }
    }

    fn list(&self, t: &Table, len: usize, depth: usize) -> Result<Value, Failure> {
        let mut items = Vec::with_capacity(len.min(1 << 16));
        for i in 1..=len {
            let item: LuaValue = t.raw_get(i).map_err(|e| Failure::new(e.to_string()))?;
            items.push(self.convert(&item, depth).map_err(|f| f.inside(Segment::Index(i - 1)))?);
        }
        Ok(Value::array(items))
    }
}

/// Converts a [`Value`] to a Lua value.
pub fn to_lua(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    let array_mt = lua.array_metatable();
    push(lua, value, &array_mt, false)
}

fn push(lua: &Lua, value: &Value, array_mt: &Table, in_array: bool) -> mlua::Result<LuaValue> {
    Ok(match value {
        Value::Null if in_array => LuaValue::NULL,
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(Number::Int(i)) => LuaValue::Integer(*i),
        Value::Number(Number::Float(f)) => LuaValue::Number(*f),
        Value::String(s) => LuaValue::String(lua.create_string(&**s)?),
        Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, push(lua, item, array_mt, true)?)?;
            }
            t.set_metatable(Some(array_mt.clone()))?;
            LuaValue::Table(t)
        }
        Value::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, v) in map.iter() {
                t.raw_set(&**k, push(lua, v, array_mt, false)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

/// mlua appends Lua's traceback to runtime errors; people need the first line, not the stack.
fn without_traceback(message: &str) -> &str {
    message.split("\nstack traceback:").next().unwrap_or(message)
}

/// The message of a Lua error without mlua's wrapping or the traceback: what a person needs.
pub fn lua_error_message(err: &mlua::Error) -> String {
    match err {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(message) => without_traceback(message).to_string(),
        mlua::Error::CallbackError { cause, .. } => lua_error_message(cause),
        mlua::Error::WithContext { cause, .. } => lua_error_message(cause),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(lua: &Lua, code: &str) -> Result<Value, ConvertError> {
        let v: LuaValue = lua.load(code).eval().unwrap();
        from_lua(lua, &v)
    }

    fn lua() -> Lua {
        let lua = Lua::new();
        lua.globals().set("null", lua.null()).unwrap();
        lua.globals().set("array_mt", lua.array_metatable()).unwrap();
        lua
    }

    #[test]
    fn converts_scalars_lists_and_objects() {
        let lua = lua();
        let v = eval(&lua, r#"return {a = 1, b = 2.5, c = "x", d = {true, false}, e = {}, f = null}"#).unwrap();
        assert_eq!(v.to_json(), r#"{"a":1,"b":2.5,"c":"x","d":[true,false],"e":{},"f":null}"#);
        let v = eval(&lua, "return setmetatable({}, array_mt)").unwrap();
        assert_eq!(v.to_json(), "[]");
        let v = eval(&lua, "return {1, null, 3}").unwrap();
        assert_eq!(v.to_json(), "[1,null,3]");
    }

    #[test]
    fn refuses_what_json_cannot_hold_and_says_where() {
        let lua = lua();
        for (code, at, reason) in [
            ("return {a = {1, 2, x = 3}}", "$.a", "mixes list items"),
            ("return {a = {b = print}}", "$.a.b", "function has no JSON form"),
            ("return {list = {1, {0/0}}}", "$.list[1][0]", "not a JSON number"),
            ("return {[true] = 1}", "$", "boolean key"),
            ("return {[1] = 1, [5] = 2}", "$", "gap"),
            ("return {s = '\\xff'}", "$.s", "UTF-8"),
        ] {
            let err = eval(&lua, code).unwrap_err();
            assert_eq!(err.at, at, "{code}: {err}");
            assert!(err.reason.contains(reason), "{code}: {err}");
        }
        let err = eval(&lua, "local t = {} t.self = t return t").unwrap_err();
        assert!(err.reason.contains("cycle"), "{err}");
    }

    #[test]
    fn round_trips_values_through_lua() {
        let lua = lua();
        let original = crate::value::from_json(r#"{"a":[1,null,{"b":[]}],"c":{},"d":1.5,"e":"ü"}"#).unwrap();
        let back = from_lua(&lua, &to_lua(&lua, &original).unwrap()).unwrap();
        assert_eq!(back.to_json(), original.to_json());
    }

    #[test]
    fn shared_subtables_count_each_time_and_fail_fast() {
        let lua = lua();
        let started = std::time::Instant::now();
        let err = eval(&lua, "local x = {1} for i = 1, 60 do x = {a = x, b = x} end return x").unwrap_err();
        assert!(err.reason.contains("larger than max_result_bytes (67108864 bytes"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "refused fast, not expanded");
        // The VM's limit applies; a big string is refused before it is copied.
        ResultLimit::install(&lua, 1000);
        let err = eval(&lua, "return {s = string.rep('x', 2000)}").unwrap_err();
        assert_eq!(err.at, "$.s");
        assert!(err.reason.contains("max_result_bytes (1000 bytes"), "{err}");
        assert_eq!(
            eval(&lua, "return {s = string.rep('x', 900)}").unwrap().get("s").unwrap().as_str().unwrap().len(),
            900
        );
        let err = from_lua_within(&lua, &lua.load("return {1, 2, 3}").eval().unwrap(), 10).unwrap_err();
        assert!(err.reason.contains("max_result_bytes (10 bytes"), "{err}");
    }

    #[test]
    fn configured_budgets_are_range_checked() {
        assert_eq!(check_max_result_bytes(1), Ok(1));
        assert!(check_max_result_bytes(0).unwrap_err().contains("max_result_bytes"));
        assert!(check_max_result_bytes(MAX_RESULT_BYTES_LIMIT + 1).is_err());
    }
}
