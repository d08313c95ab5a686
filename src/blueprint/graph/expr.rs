//! Expressions as short infix text for graph labels: `$.score >= 0.8`, `not exists($.x)`.

use crate::flow::Expr;

/// Labels longer than this are cut, so one long condition cannot stretch the whole drawing.
const MAX_CHARS: usize = 80;
/// Literals are previewed at this many bytes, so the operators around them stay visible.
const MAX_LITERAL: usize = 32;

/// Renders `expr` compactly for a label: paths as written, literals as JSON, operators infix
/// with parentheses only where precedence needs them, cut to a sane length with `…`.
pub fn describe_expr(expr: &Expr) -> String {
    let mut text = String::new();
    write(expr, Prec::Or, &mut text);
    if let Some((cut, _)) = text.char_indices().nth(MAX_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Binding strength, weakest first (Lua's order).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prec {
    Or,
    And,
    Compare,
    Sum,
    Product,
    Not,
    Atom,
}

impl Prec {
    fn tighter(self) -> Prec {
        match self {
            Prec::Or => Prec::And,
            Prec::And => Prec::Compare,
            Prec::Compare => Prec::Sum,
            Prec::Sum => Prec::Product,
            Prec::Product => Prec::Not,
            Prec::Not | Prec::Atom => Prec::Atom,
        }
    }
}

/// Writes `expr`, parenthesized if it binds more loosely than its context needs (`min`).
fn write(expr: &Expr, min: Prec, out: &mut String) {
    let prec = prec(expr);
    let wrap = prec < min;
    if wrap {
        out.push('(');
    }
    match expr {
        Expr::Path { at } => out.push_str(&at.to_string()),
        Expr::Lit { value } => out.push_str(&value.preview(MAX_LITERAL)),
        Expr::Eq { lhs, rhs } => infix(lhs, "==", rhs, prec, out),
        Expr::Ne { lhs, rhs } => infix(lhs, "!=", rhs, prec, out),
        Expr::Lt { lhs, rhs } => infix(lhs, "<", rhs, prec, out),
        Expr::Lte { lhs, rhs } => infix(lhs, "<=", rhs, prec, out),
        Expr::Gt { lhs, rhs } => infix(lhs, ">", rhs, prec, out),
        Expr::Gte { lhs, rhs } => infix(lhs, ">=", rhs, prec, out),
        Expr::In { needle, haystack } => infix(needle, "in", haystack, prec, out),
        Expr::Add { lhs, rhs } => infix(lhs, "+", rhs, prec, out),
        Expr::Sub { lhs, rhs } => infix(lhs, "-", rhs, prec, out),
        Expr::Mul { lhs, rhs } => infix(lhs, "*", rhs, prec, out),
        Expr::Div { lhs, rhs } => infix(lhs, "/", rhs, prec, out),
        Expr::Mod { lhs, rhs } => infix(lhs, "%", rhs, prec, out),
        Expr::Not { arg } => {
            out.push_str("not ");
            write(arg, Prec::Not, out);
        }
        Expr::And { args } | Expr::Or { args } if args.is_empty() => {
            out.push_str(expr.op_name());
            out.push_str("()");
        }
        Expr::And { args } | Expr::Or { args } => {
            let sep = if matches!(expr, Expr::And { .. }) { " and " } else { " or " };
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                // A nested and/or always gets parentheses: few readers remember which binds tighter.
                write(arg, Prec::Compare, out);
            }
        }
        Expr::Exists { arg } => call("exists", std::slice::from_ref(&**arg), out),
        Expr::Len { arg } => call("len", std::slice::from_ref(&**arg), out),
        Expr::CallExtern { name, args } => call(&format!("ext({name})"), args, out),
    }
    if wrap {
        out.push(')');
    }
}

fn prec(expr: &Expr) -> Prec {
    match expr {
        Expr::Or { args } | Expr::And { args } if args.is_empty() => Prec::Atom,
        Expr::Or { .. } => Prec::Or,
        Expr::And { .. } => Prec::And,
        Expr::Eq { .. }
        | Expr::Ne { .. }
        | Expr::Lt { .. }
        | Expr::Lte { .. }
        | Expr::Gt { .. }
        | Expr::Gte { .. }
        | Expr::In { .. } => Prec::Compare,
        Expr::Add { .. } | Expr::Sub { .. } => Prec::Sum,
        Expr::Mul { .. } | Expr::Div { .. } | Expr::Mod { .. } => Prec::Product,
        Expr::Not { .. } => Prec::Not,
        Expr::Path { .. } | Expr::Lit { .. } | Expr::Exists { .. } | Expr::Len { .. } | Expr::CallExtern { .. } => {
            Prec::Atom
        }
    }
}

/// Arithmetic is left-associative, so only the right side needs the tighter context; the
/// comparisons do not chain, so both sides need it.
fn infix(lhs: &Expr, op: &str, rhs: &Expr, prec: Prec, out: &mut String) {
    let left = if prec == Prec::Compare { prec.tighter() } else { prec };
    write(lhs, left, out);
    out.push(' ');
    out.push_str(op);
    out.push(' ');
    write(rhs, prec.tighter(), out);
}

fn call(name: &str, args: &[Expr], out: &mut String) {
    out.push_str(name);
    out.push('(');
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write(arg, Prec::Or, out);
    }
    out.push(')');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(json: &str) -> String {
        describe_expr(&serde_json::from_str(json).unwrap())
    }

    fn path(at: &str) -> String {
        format!(r#"{{"op":"path","at":"{at}"}}"#)
    }

    fn lit(value: &str) -> String {
        format!(r#"{{"op":"lit","value":{value}}}"#)
    }

    fn bin(op: &str, lhs: &str, rhs: &str) -> String {
        format!(r#"{{"op":"{op}","lhs":{lhs},"rhs":{rhs}}}"#)
    }

    #[test]
    fn reads_like_the_condition_it_is() {
        assert_eq!(describe(&bin("gte", &path("$.score"), &lit("0.8"))), "$.score >= 0.8");
        let exists = format!(r#"{{"op":"exists","arg":{}}}"#, path("$.x"));
        assert_eq!(describe(&format!(r#"{{"op":"not","arg":{exists}}}"#)), "not exists($.x)");
        let len = format!(r#"{{"op":"len","arg":{}}}"#, path("$.items"));
        assert_eq!(describe(&bin("gt", &len, &lit("0"))), "len($.items) > 0");
        let member = format!(r#"{{"op":"in","needle":{},"haystack":{}}}"#, lit(r#""a""#), path("$.tags"));
        assert_eq!(describe(&member), r#""a" in $.tags"#);
        let call = format!(r#"{{"op":"call_extern","ref":"score","args":[{},{}]}}"#, path("$.doc"), lit("[1,2]"));
        assert_eq!(describe(&call), "ext(score)($.doc, [1,2])");
        assert_eq!(describe(&lit(r#"{"k":null}"#)), r#"{"k":null}"#);
    }

    #[test]
    fn parenthesizes_only_where_precedence_needs_it() {
        let a = bin("eq", &path("$.a"), &lit("1"));
        let b = bin("ne", &path("$.b"), &lit("true"));
        let c = path("$.c");
        let or = format!(r#"{{"op":"or","args":[{b},{c}]}}"#);
        assert_eq!(describe(&format!(r#"{{"op":"and","args":[{a},{or}]}}"#)), "$.a == 1 and ($.b != true or $.c)");
        let and = format!(r#"{{"op":"and","args":[{a},{c}]}}"#);
        assert_eq!(describe(&format!(r#"{{"op":"or","args":[{and},{b}]}}"#)), "($.a == 1 and $.c) or $.b != true");
        assert_eq!(describe(&format!(r#"{{"op":"not","arg":{a}}}"#)), "not ($.a == 1)");
        let sum = bin("sub", &bin("sub", &path("$.x"), &lit("1")), &bin("add", &lit("2"), &lit("3")));
        assert_eq!(describe(&sum), "$.x - 1 - (2 + 3)");
        assert_eq!(describe(&bin("mul", &bin("add", &lit("1"), &lit("2")), &lit("4"))), "(1 + 2) * 4");
        assert_eq!(describe(&bin("lt", &bin("mod", &path("$.n"), &lit("2")), &lit("1"))), "$.n % 2 < 1");
        assert_eq!(describe(r#"{"op":"and","args":[]}"#), "and()");
    }

    #[test]
    fn long_expressions_are_cut() {
        let long = format!(r#""{}""#, "x".repeat(200));
        let text = describe(&bin("eq", &path("$.a"), &lit(&long)));
        assert!(text.starts_with(r#"$.a == "xxx"#), "{text}");
        assert!(text.ends_with('…') && text.len() < 50, "{text}");
        let many: Vec<String> = (0..40).map(|i| path(&format!("$.field{i}"))).collect();
        let text = describe(&format!(r#"{{"op":"or","args":[{}]}}"#, many.join(",")));
        assert_eq!(text.chars().count(), MAX_CHARS + 1);
        assert!(text.ends_with('…'));
    }
}
