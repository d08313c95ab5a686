//! Values as the REPL shows them: strings quoted, tables with sorted keys (lists as lists),
//! nested tables up to a depth, a table inside itself as `<cycle>`, `swarm.null` as `null`.

use std::ffi::c_void;

use mlua::{Table, Value};

/// Nested tables deeper than this show as `{...}`.
const MAX_DEPTH: usize = 6;
/// Entries shown per table; the rest are counted.
const MAX_ENTRIES: usize = 200;
/// A table whose one-line form is longer than this is laid out one entry per line.
const LINE_WIDTH: usize = 72;

/// Renders `value` for the prompt.
pub fn pretty(value: &Value) -> String {
    let mut path = Vec::new();
    render(value, 0, &mut path)
}

/// Renders several values as the REPL prints a chunk's results: separated by tabs.
pub fn pretty_all<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    values.into_iter().map(pretty).collect::<Vec<_>>().join("\t")
}

fn render(value: &Value, indent: usize, path: &mut Vec<*const c_void>) -> String {
    match value {
        Value::Nil => "nil".into(),
        Value::LightUserData(p) if p.0.is_null() => "null".into(),
        Value::String(s) => quote(&s.to_string_lossy()),
        Value::Table(t) => render_table(t, indent, path),
        other => other.to_string().unwrap_or_else(|_| format!("<{}>", other.type_name())),
    }
}

fn render_table(t: &Table, indent: usize, path: &mut Vec<*const c_void>) -> String {
    let id = t.to_pointer();
    if path.contains(&id) {
        return "<cycle>".into();
    }
    if let Some(mt) = t.metatable()
        && let Ok(Some(_)) = mt.raw_get::<Option<mlua::Function>>("__tostring")
        && let Ok(text) = Value::Table(t.clone()).to_string()
    {
        return text;
    }
    if path.len() >= MAX_DEPTH {
        return "{...}".into();
    }
    let mut entries: Vec<(Value, Value)> = t.pairs::<Value, Value>().filter_map(Result::ok).collect();
    if entries.is_empty() {
        return "{}".into();
    }
    entries.sort_by(|(a, _), (b, _)| {
        let (a, b) = (key_order(a), key_order(b));
        a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then_with(|| a.2.cmp(&b.2))
    });
    let is_list = entries.iter().enumerate().all(|(i, (k, _))| matches!(k, Value::Integer(n) if *n == i as i64 + 1));
    let total = entries.len();
    path.push(id);
    let mut items: Vec<String> = entries
        .iter()
        .take(MAX_ENTRIES)
        .map(|(k, v)| {
            let shown = render(v, indent + 1, path);
            if is_list { shown } else { format!("{} = {shown}", key_text(k)) }
        })
        .collect();
    path.pop();
    if total > MAX_ENTRIES {
        items.push(format!("... ({} more)", total - MAX_ENTRIES));
    }
    let one_line = format!("{{ {} }}", items.join(", "));
    if one_line.len() + indent * 2 <= LINE_WIDTH && !one_line.contains('\n') {
        return one_line;
    }
    let pad = "  ".repeat(indent + 1);
    let mut out = String::from("{\n");
    for item in items {
        out.push_str(&pad);
        out.push_str(&item);
        out.push_str(",\n");
    }
    out.push_str(&"  ".repeat(indent));
    out.push('}');
    out
}

/// Numbers first (by value), then strings (alphabetically), then the rest (by their text).
fn key_order(key: &Value) -> (u8, f64, String) {
    match key {
        Value::Integer(n) => (0, *n as f64, String::new()),
        Value::Number(n) => (0, *n, String::new()),
        Value::String(s) => (1, 0.0, s.to_string_lossy()),
        other => (2, 0.0, other.to_string().unwrap_or_default()),
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => {
            let s = s.to_string_lossy();
            if is_identifier(&s) { s } else { format!("[{}]", quote(&s)) }
        }
        Value::Integer(n) => format!("[{n}]"),
        other => format!("[{}]", render(other, 0, &mut Vec::new())),
    }
}

const KEYWORDS: &[&str] = &[
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in", "local", "nil",
    "not", "or", "repeat", "return", "then", "true", "until", "while",
];

/// Whether `s` can be written as `t.s` in Lua.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !KEYWORDS.contains(&s)
}

/// A string as Lua source would write it.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\{}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::Lua;

    fn shown(lua: &Lua, code: &str) -> String {
        let values: mlua::MultiValue = lua.load(code).eval().unwrap();
        pretty_all(values.iter())
    }

    #[test]
    fn values_read_like_lua() {
        let lua = Lua::new();
        lua.globals().set("null", Value::NULL).unwrap();
        assert_eq!(
            shown(&lua, r#"return 1, "a\"b\n", nil, true, 2.5, null"#),
            "1\t\"a\\\"b\\n\"\tnil\ttrue\t2.5\tnull"
        );
        assert_eq!(shown(&lua, "return {3, 2, 1}"), "{ 3, 2, 1 }");
        assert_eq!(
            shown(&lua, r#"return {b = 1, a = {x = "y"}, [2] = 0, ["not id"] = 1}"#),
            r#"{ [2] = 0, a = { x = "y" }, b = 1, ["not id"] = 1 }"#
        );
        assert_eq!(shown(&lua, "return {}"), "{}");
    }

    #[test]
    fn cycles_depth_and_long_tables() {
        let lua = Lua::new();
        assert_eq!(shown(&lua, "local t = {name = 't'}; t.self = t; return t"), r#"{ name = "t", self = <cycle> }"#);
        assert_eq!(shown(&lua, "return {{{{{{{{1}}}}}}}}"), "{ { { { { { {...} } } } } } }");
        let long = shown(&lua, "local t = {} for i = 1, 30 do t['key' .. i] = i end return t");
        assert!(long.starts_with("{\n  key1 = 1,\n  key10 = 10,\n"), "{long}");
        assert!(long.ends_with("key9 = 9,\n}"), "{long}");
    }
}
