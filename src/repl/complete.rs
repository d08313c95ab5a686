//! Completion of globals, dotted table fields (`swarm.flow.st` → `swarm.flow.step`), methods
//! after `:`, and the REPL's own commands. Runs on the host thread, which owns the VM.

use mlua::{Lua, Table, Value};

use super::commands::COMMANDS;
use super::pretty::is_identifier;

const KEYWORDS: &[&str] = &[
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in", "local", "nil",
    "not", "or", "repeat", "return", "then", "true", "until", "while",
];

/// `(start, candidates)`: each candidate replaces `line[start..pos]`.
pub fn complete(lua: &Lua, line: &str, pos: usize) -> (usize, Vec<String>) {
    let pos = pos.min(line.len());
    let before = &line[..pos];
    if before.starts_with(':') && !before.contains(char::is_whitespace) {
        let words = COMMANDS.iter().map(|(name, _, _)| format!(":{name}")).filter(|c| c.starts_with(before)).collect();
        return (0, words);
    }
    let start = before
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':'))
        .last()
        .map_or(pos, |(i, _)| i);
    let word = &before[start..];
    if word.starts_with(|c: char| c.is_ascii_digit()) {
        return (pos, Vec::new());
    }
    let (owner, separator, partial) = match word.rfind(['.', ':']) {
        Some(i) => (&word[..i], &word[i..=i], &word[i + 1..]),
        None => ("", "", word),
    };
    let mut names: Vec<String> = match resolve(lua, owner) {
        Some(table) => fields(&table, separator == ":"),
        None => Vec::new(),
    };
    if owner.is_empty() {
        names.extend(KEYWORDS.iter().map(|k| k.to_string()));
    }
    names.retain(|n| n.starts_with(partial));
    names.sort();
    names.dedup();
    let prefix = if owner.is_empty() { String::new() } else { format!("{owner}{separator}") };
    (start, names.into_iter().map(|n| format!("{prefix}{n}")).collect())
}

/// The table a dotted path names, starting from the globals; `None` when any part is not one.
fn resolve(lua: &Lua, path: &str) -> Option<Table> {
    let mut table = lua.globals();
    if path.is_empty() {
        return Some(table);
    }
    for part in path.split(['.', ':']) {
        table = match lookup(&table, part)? {
            Value::Table(t) => t,
            _ => return None,
        };
    }
    Some(table)
}

/// A field, raw or through `__index` tables (no metamethod functions run: completing must not
/// have side effects).
fn lookup(table: &Table, key: &str) -> Option<Value> {
    let mut current = table.clone();
    for _ in 0..8 {
        match current.raw_get::<Value>(key).ok()? {
            Value::Nil => {}
            found => return Some(found),
        }
        current = match current.metatable()?.raw_get::<Value>("__index").ok()? {
            Value::Table(t) => t,
            _ => return None,
        };
    }
    None
}

/// The identifier keys of `table` and of its `__index` tables; only functions when `methods`.
fn fields(table: &Table, methods: bool) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = Some(table.clone());
    for _ in 0..8 {
        let Some(t) = current else { break };
        for (key, value) in t.pairs::<Value, Value>().filter_map(Result::ok) {
            if let Value::String(s) = key {
                let name = s.to_string_lossy();
                if is_identifier(&name) && !name.starts_with("__") && (!methods || value.is_function()) {
                    names.push(name);
                }
            }
        }
        current = match t.metatable().and_then(|mt| mt.raw_get::<Value>("__index").ok()) {
            Some(Value::Table(next)) => Some(next),
            _ => None,
        };
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_methods_and_commands() {
        let lua = Lua::new();
        lua.load(
            "swarm = {flow = {step = 1, seq = 2, stop = 3}, fail = 1}
             obj = setmetatable({}, {__index = {greet = function() end, name = 'x'}})",
        )
        .exec()
        .unwrap();
        assert_eq!(complete(&lua, "swarm.fl", 8), (0, vec!["swarm.flow".to_string()]));
        assert_eq!(
            complete(&lua, "x = swarm.flow.st", 17),
            (4, vec!["swarm.flow.step".into(), "swarm.flow.stop".into()])
        );
        assert_eq!(complete(&lua, "obj:", 4), (0, vec!["obj:greet".to_string()]));
        assert_eq!(complete(&lua, "obj.na", 6), (0, vec!["obj.name".to_string()]));
        assert!(complete(&lua, "swa", 3).1.contains(&"swarm".to_string()));
        assert_eq!(complete(&lua, "nothing.he", 10).1, Vec::<String>::new());
        assert_eq!(complete(&lua, ":lo", 3), (0, vec![":load".to_string()]));
    }
}
