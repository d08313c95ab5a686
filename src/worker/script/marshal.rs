//! What a script's call comes to: its returned value (`{value, ok}` or a plain value) or what
//! it raised, as the attempt's result or failure.

use mlua::{Lua, Value as LuaValue};

use super::ScriptFailure;
use super::limits::Breach;
use crate::value::Value;
use crate::value::lua::from_lua;
use crate::value::lua::lua_error_message;
use crate::value::raised::Raised;

/// A failure outside the script's own code (setting up its globals, compiling).
pub(super) fn outside_failure(e: mlua::Error, max_memory: u64) -> ScriptFailure {
    match e {
        mlua::Error::MemoryError(_) => Breach::Memory(max_memory).into(),
        other => ScriptFailure::new(first_line(&lua_error_message(&other))),
    }
}

/// What a script raised: a string fails with its first line (`file:line: message`); a table
/// or other value fails with that value, and its `message` field when it has one.
pub(super) fn raised_failure(lua: &Lua, raised: LuaValue, max_memory: u64) -> ScriptFailure {
    match raised {
        // Lua's own out-of-memory error object; a script's `error("...")` carries a position.
        LuaValue::String(text) if text.as_bytes()[..] == b"not enough memory"[..] => Breach::Memory(max_memory).into(),
        LuaValue::String(text) => ScriptFailure::new(first_line(&text.to_string_lossy())),
        LuaValue::Error(e) => outside_failure(*e, max_memory),
        other => {
            let Raised { message, value } = crate::value::raised::raised(lua, &other, "the script");
            ScriptFailure { message, value }
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// A table with a `value` or `ok` key is `{value, ok}` (ok unless `ok == false`); anything
/// else is the value, and passes.
pub(super) fn marshal(lua: &Lua, returned: LuaValue) -> Result<Value, ScriptFailure> {
    let convert = |v: &LuaValue| from_lua(lua, v).map_err(|e| ScriptFailure::new(format!("the script returned {e}")));
    if let LuaValue::Table(t) = &returned {
        let value: LuaValue = t.raw_get("value").unwrap_or(LuaValue::Nil);
        let ok: LuaValue = t.raw_get("ok").unwrap_or(LuaValue::Nil);
        if !value.is_nil() || !ok.is_nil() {
            let value = convert(&value)?;
            if ok == LuaValue::Boolean(false) {
                return Err(match value {
                    Value::Null => ScriptFailure::new("the script returned ok = false"),
                    Value::String(ref message) => ScriptFailure { message: message.to_string(), value: Some(value) },
                    other => ScriptFailure {
                        message: format!("the script returned ok = false with value {}", other.preview(200)),
                        value: Some(other),
                    },
                });
            }
            return Ok(value);
        }
    }
    convert(&returned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(code: &str) -> Result<Value, ScriptFailure> {
        let lua = Lua::new();
        let value: LuaValue = lua.load(code).eval().unwrap();
        marshal(&lua, value)
    }

    #[test]
    fn results_marshal_by_their_value_and_ok_keys() {
        assert_eq!(eval("return {value = 3}").unwrap(), Value::int(3));
        assert_eq!(eval("return {value = 'x', ok = true}").unwrap(), Value::string("x"));
        assert_eq!(eval("return {ok = true}").unwrap(), Value::Null);
        assert_eq!(eval("return {a = 1}").unwrap().to_json(), r#"{"a":1}"#);
        let failed = eval("return {value = 'nope', ok = false}").unwrap_err();
        assert_eq!((failed.message.as_str(), failed.value), ("nope", Some(Value::string("nope"))));
        let failed = eval("return {value = {code = 3}, ok = false}").unwrap_err();
        assert_eq!(failed.message, r#"the script returned ok = false with value {"code":3}"#);
        assert_eq!(eval("return {ok = false}").unwrap_err().message, "the script returned ok = false");
        assert!(eval("return {value = function() end}").unwrap_err().message.contains("no JSON form"));
    }
}
