//! What Lua code raised, as a failure: a string is the message; a table keeps its structure as
//! the failure's value (`error({code = 7, message = "boom"})` fails with message `boom` and that
//! table as its value), with its `message` field, or else its JSON, as the message.

use mlua::{Lua, Value as LuaValue};

use super::Value;
use super::lua::{from_lua, lua_error_message};

/// A raised value, read.
#[derive(Debug, PartialEq)]
pub struct Raised {
    /// The failure's message.
    pub message: String,
    /// The raised table as a value, when a table was raised.
    pub value: Option<Value>,
}

/// Reads what `who` ("the agent", "the script") raised. The value is converted within the VM's
/// conversion budget; one that cannot be converted still gives its `message`.
pub fn raised(lua: &Lua, raised: &LuaValue, who: &str) -> Raised {
    let message_field = match raised {
        LuaValue::Table(t) => match t.raw_get::<LuaValue>("message") {
            Ok(LuaValue::String(s)) => Some(s.to_string_lossy()),
            _ => None,
        },
        _ => None,
    };
    match raised {
        LuaValue::String(text) => Raised { message: text.to_string_lossy(), value: None },
        LuaValue::Error(e) => Raised { message: lua_error_message(e), value: None },
        LuaValue::Nil => Raised { message: format!("{who} raised nil"), value: None },
        other => match from_lua(lua, other) {
            Ok(value) => {
                let message = message_field.unwrap_or_else(|| format!("{who} raised {}", value.preview(200)));
                Raised { message, value: Some(value) }
            }
            Err(e) => {
                let message = message_field.unwrap_or_else(|| format!("{who} raised a {} ({e})", other.type_name()));
                Raised { message, value: None }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(code: &str) -> Raised {
        let lua = Lua::new();
        let value: LuaValue = lua.load(code).eval().unwrap();
        raised(&lua, &value, "the agent")
    }

    #[test]
    fn tables_keep_their_structure_and_give_a_message() {
        let r = read("return {code = 7, message = 'boom'}");
        assert_eq!(r.message, "boom");
        assert_eq!(r.value.unwrap().to_json(), r#"{"code":7,"message":"boom"}"#);
        let r = read("return {code = 7}");
        assert_eq!(r.message, r#"the agent raised {"code":7}"#);
        let r = read("return {message = 'bad', f = print}");
        assert_eq!((r.message.as_str(), r.value), ("bad", None));
        assert_eq!(read("return 'plain'").message, "plain");
        assert_eq!(read("return nil").message, "the agent raised nil");
    }
}
