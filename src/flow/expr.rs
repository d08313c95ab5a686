//! Expression evaluation (docs/flows.md, "Expressions"): pure functions of the ctx and the externs.
//!
//! Numbers follow Lua 5.4: integers stay integers under `+ - *` (wrapping, as Lua does), `/` is
//! always a float, `%` takes the sign of the divisor. Equality never raises, because a Lua
//! author writes `x == "pass"` with `x` possibly null and expects false; ordering does, because
//! `1 < "2"` has no sensible answer.

use std::cmp::Ordering;

use super::dispatch::Externs;
use super::error::FlowError;
use super::ir::Expr;
use super::path::PathError;
use crate::value::{Number, Value};

/// How much of an operand an error message quotes.
pub(super) const PREVIEW: usize = 60;

/// Evaluates `expr` against `ctx`. Every failure is an `eval` error.
pub fn eval_expr(expr: &Expr, ctx: &Value, externs: &dyn Externs) -> Result<Value, FlowError> {
    eval(expr, ctx, externs).map_err(|failure| failure.error)
}

/// A failed evaluation that remembers whether it was a missing path, so `exists` can tell
/// absence from a real error without matching message text.
struct Failure {
    error: FlowError,
    missing: bool,
}

impl From<FlowError> for Failure {
    fn from(error: FlowError) -> Failure {
        Failure { error, missing: false }
    }
}

impl From<PathError> for Failure {
    fn from(e: PathError) -> Failure {
        Failure { missing: matches!(e, PathError::NotFound { .. }), error: e.into() }
    }
}

fn eval(expr: &Expr, ctx: &Value, externs: &dyn Externs) -> Result<Value, Failure> {
    let value = |e: &Expr| eval(e, ctx, externs);
    Ok(match expr {
        Expr::Path { at } => at.read(ctx)?.clone(),
        Expr::Lit { value } => value.clone(),
        Expr::Eq { lhs, rhs } => Value::Bool(value(lhs)? == value(rhs)?),
        Expr::Ne { lhs, rhs } => Value::Bool(value(lhs)? != value(rhs)?),
        Expr::Lt { lhs, rhs } => Value::Bool(compare("lt", &value(lhs)?, &value(rhs)?)?.is_some_and(Ordering::is_lt)),
        Expr::Lte { lhs, rhs } => Value::Bool(compare("lte", &value(lhs)?, &value(rhs)?)?.is_some_and(Ordering::is_le)),
        Expr::Gt { lhs, rhs } => Value::Bool(compare("gt", &value(lhs)?, &value(rhs)?)?.is_some_and(Ordering::is_gt)),
        Expr::Gte { lhs, rhs } => Value::Bool(compare("gte", &value(lhs)?, &value(rhs)?)?.is_some_and(Ordering::is_ge)),
        Expr::Not { arg } => Value::Bool(!value(arg)?.truthy()),
        Expr::And { args } => {
            for arg in args {
                if !value(arg)?.truthy() {
                    return Ok(Value::Bool(false));
                }
            }
            Value::Bool(true)
        }
        Expr::Or { args } => {
            for arg in args {
                if value(arg)?.truthy() {
                    return Ok(Value::Bool(true));
                }
            }
            Value::Bool(false)
        }
        Expr::Exists { arg } => match value(arg) {
            Ok(v) => Value::Bool(!matches!(v, Value::Null)),
            Err(failure) if failure.missing => Value::Bool(false),
            Err(failure) => return Err(failure),
        },
        Expr::Add { lhs, rhs } => arith(Arith::Add, &value(lhs)?, &value(rhs)?)?,
        Expr::Sub { lhs, rhs } => arith(Arith::Sub, &value(lhs)?, &value(rhs)?)?,
        Expr::Mul { lhs, rhs } => arith(Arith::Mul, &value(lhs)?, &value(rhs)?)?,
        Expr::Div { lhs, rhs } => arith(Arith::Div, &value(lhs)?, &value(rhs)?)?,
        Expr::Mod { lhs, rhs } => arith(Arith::Mod, &value(lhs)?, &value(rhs)?)?,
        Expr::Len { arg } => len(value(arg)?)?,
        Expr::In { needle, haystack } => {
            let needle = value(needle)?;
            match value(haystack)? {
                Value::Array(items) => Value::Bool(items.contains(&needle)),
                other => {
                    return Err(FlowError::type_error(
                        "in",
                        format_args!("haystack must be an array, got {}", describe(&other)),
                    )
                    .with_value(other)
                    .into());
                }
            }
        }
        Expr::CallExtern { name, args } => {
            let args = args.iter().map(value).collect::<Result<Vec<_>, _>>()?;
            externs.call(name, &args).map_err(|msg| FlowError::eval(format!("extern '{name}': {msg}")))?
        }
    })
}

/// Orders two numbers by value or two strings by bytes; `None` when a NaN is involved, which
/// makes every comparison false, as in Lua.
fn compare(op: &str, lhs: &Value, rhs: &Value) -> Result<Option<Ordering>, FlowError> {
    match (lhs, rhs) {
        (Value::Number(a), Value::Number(b)) => Ok(a.partial_cmp(b)),
        (Value::String(a), Value::String(b)) => Ok(Some(a.as_bytes().cmp(b.as_bytes()))),
        _ => {
            Err(FlowError::type_error(op, format_args!("cannot compare {} with {}", lhs.type_name(), rhs.type_name())))
        }
    }
}

#[derive(Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl Arith {
    fn name(self) -> &'static str {
        match self {
            Arith::Add => "add",
            Arith::Sub => "sub",
            Arith::Mul => "mul",
            Arith::Div => "div",
            Arith::Mod => "mod",
        }
    }
}

fn arith(op: Arith, lhs: &Value, rhs: &Value) -> Result<Value, FlowError> {
    let (Value::Number(a), Value::Number(b)) = (lhs, rhs) else {
        let offender = if matches!(lhs, Value::Number(_)) { rhs } else { lhs };
        return Err(FlowError::type_error(
            op.name(),
            format_args!("expected numbers, got {} and {}", describe(lhs), describe(rhs)),
        )
        .with_value(offender.clone()));
    };
    let (a, b) = (*a, *b);
    let result = match (op, a, b) {
        (Arith::Add, Number::Int(x), Number::Int(y)) => Number::Int(x.wrapping_add(y)),
        (Arith::Sub, Number::Int(x), Number::Int(y)) => Number::Int(x.wrapping_sub(y)),
        (Arith::Mul, Number::Int(x), Number::Int(y)) => Number::Int(x.wrapping_mul(y)),
        (Arith::Add, ..) => Number::Float(a.as_f64() + b.as_f64()),
        (Arith::Sub, ..) => Number::Float(a.as_f64() - b.as_f64()),
        (Arith::Mul, ..) => Number::Float(a.as_f64() * b.as_f64()),
        (Arith::Div | Arith::Mod, _, _) if b.as_f64() == 0.0 => {
            let what = if matches!(op, Arith::Div) { "division by zero" } else { "modulo by zero" };
            return Err(FlowError::eval(what));
        }
        (Arith::Div, ..) => Number::Float(a.as_f64() / b.as_f64()),
        (Arith::Mod, Number::Int(x), Number::Int(y)) => Number::Int(int_mod(x, y)),
        (Arith::Mod, ..) => Number::Float(float_mod(a.as_f64(), b.as_f64())),
    };
    Ok(Value::Number(result))
}

/// Lua's integer `%`: floored, so the result has the sign of the divisor. `y` is not zero.
fn int_mod(x: i64, y: i64) -> i64 {
    // wrapping_rem: i64::MIN % -1 overflows in Rust; Lua gives 0.
    let r = x.wrapping_rem(y);
    if r != 0 && (r ^ y) < 0 { r + y } else { r }
}

/// Lua's float `%`: `fmod` corrected to the sign of the divisor, which is `a - floor(a/b)*b`
/// without the rounding error of the division.
fn float_mod(x: f64, y: f64) -> f64 {
    let m = x % y;
    if (m > 0.0 && y < 0.0) || (m < 0.0 && y > 0.0) { m + y } else { m }
}

fn len(value: Value) -> Result<Value, FlowError> {
    let n = match &value {
        Value::Array(items) => items.len(),
        Value::String(text) => text.chars().count(),
        Value::Object(map) => map.len(),
        other => {
            return Err(FlowError::type_error(
                "len",
                format_args!("expected an array, string or object, got {}", describe(other)),
            )
            .with_value(value));
        }
    };
    Ok(Value::int(n as i64))
}

/// `number 5`, `string "abc"`, `null`: a value's type and a short preview, for error messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        other => format!("{} {}", other.type_name(), other.preview(PREVIEW)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_mod_is_floored_like_lua() {
        for (x, y, want) in [(7, 3, 1), (-7, 3, 2), (7, -3, -2), (-7, -3, -1), (6, -3, 0), (i64::MIN, -1, 0)] {
            assert_eq!(int_mod(x, y), want, "{x} % {y}");
        }
    }

    #[test]
    fn float_mod_takes_the_divisor_sign() {
        for (x, y, want) in [(5.5, 2.0, 1.5), (-5.5, 2.0, 0.5), (5.5, -2.0, -0.5), (-5.5, -2.0, -1.5), (4.0, -2.0, 0.0)]
        {
            assert_eq!(float_mod(x, y), want, "{x} % {y}");
        }
        assert_eq!(float_mod(5.0, f64::INFINITY), 5.0);
        assert_eq!(float_mod(-5.0, f64::INFINITY), f64::INFINITY);
    }

    #[test]
    fn exists_tells_a_missing_path_from_other_errors() {
        let ctx = crate::value::from_json(r#"{"s":"x"}"#).unwrap();
        let path = |at: &str| Box::new(Expr::path(at.parse().unwrap()));
        let missing_inside = Expr::Exists { arg: Box::new(Expr::Add { lhs: path("$.nope"), rhs: path("$.s") }) };
        assert_eq!(eval_expr(&missing_inside, &ctx, &super::super::NoExterns).unwrap(), Value::Bool(false));
        let type_error_inside = Expr::Exists { arg: Box::new(Expr::Len { arg: Box::new(Expr::lit(1)) }) };
        let err = eval_expr(&type_error_inside, &ctx, &super::super::NoExterns).unwrap_err();
        assert!(err.message.starts_with("type error in len"), "{err}");
    }
}
