//! Turning typed text into a chunk: an expression's value is shown (`return <text>` is tried
//! first), a statement just runs, and text that ends mid-construct asks for more lines.

use mlua::{Function, Lua, MultiValue, Value};

use super::pretty::pretty;
use crate::value::lua::lua_error_message;
use crate::worker::lua_fn::protected_call;

/// The chunk name in error messages (`repl:1: ...`).
const CHUNK_NAME: &str = "=repl";

/// What the text typed so far amounts to.
pub enum Chunk {
    Ready(Function),
    /// The text ends inside a construct (`function f()`, an open table): read another line.
    Incomplete,
    Error(String),
}

pub fn compile(lua: &Lua, text: &str) -> Chunk {
    let as_expression = lua.load(format!("return {text}")).set_name(CHUNK_NAME).into_function();
    let as_expression_incomplete = match as_expression {
        Ok(f) => return Chunk::Ready(f),
        Err(e) => is_incomplete(&e),
    };
    match lua.load(text).set_name(CHUNK_NAME).into_function() {
        Ok(f) => Chunk::Ready(f),
        Err(e) if is_incomplete(&e) || as_expression_incomplete => Chunk::Incomplete,
        Err(e) => Chunk::Error(lua_error_message(&e)),
    }
}

/// Runs a chunk as a coroutine under `pcall`: its values, or its error as the REPL shows it (a
/// raised table pretty-printed, not `table: 0x…`).
pub async fn run(lua: &Lua, chunk: Function) -> Result<MultiValue, String> {
    let protected = protected_call(lua).map_err(|e| lua_error_message(&e))?;
    let mut values = crate::interrupt::lua::call_async::<MultiValue>(lua, &protected, chunk)
        .await
        .map_err(|e| lua_error_message(&e))?;
    if values.pop_front() == Some(Value::Boolean(true)) {
        return Ok(values);
    }
    Err(match values.pop_front().unwrap_or(Value::Nil) {
        Value::Error(e) => lua_error_message(&e),
        Value::String(s) => s.to_string_lossy(),
        other => pretty(&other),
    })
}

fn is_incomplete(error: &mlua::Error) -> bool {
    matches!(error, mlua::Error::SyntaxError { incomplete_input: true, .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(lua: &Lua, text: &str) -> &'static str {
        match compile(lua, text) {
            Chunk::Ready(_) => "ready",
            Chunk::Incomplete => "incomplete",
            Chunk::Error(_) => "error",
        }
    }

    #[test]
    fn expressions_statements_and_unfinished_text() {
        let lua = Lua::new();
        assert_eq!(kind(&lua, "1 + 1"), "ready");
        assert_eq!(kind(&lua, "x = 1"), "ready");
        assert_eq!(kind(&lua, "function f(a)"), "incomplete");
        assert_eq!(kind(&lua, "function f(a)\n  return a\nend"), "ready");
        assert_eq!(kind(&lua, "{1,\n2"), "incomplete");
        assert_eq!(kind(&lua, "x = = 1"), "error");
        match compile(&lua, "1 +") {
            Chunk::Incomplete => {}
            _ => panic!("`1 +` waits for the rest"),
        }
    }
}
