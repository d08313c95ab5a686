//! Every expression op, read from its JSON wire shape and evaluated against one ctx.
//!
//! Results are compared as JSON text, so an int where a float is due (or the reverse) fails:
//! `5` and `5.0` are equal as values but not as text.

use luaswarm::Value;
use luaswarm::flow::{ErrorKind, Expr, ExternTable, NoExterns, eval_expr};
use serde_json::{Value as J, json};

use crate::util::flow::{lit, p};

fn ctx() -> Value {
    Value::from(json!({
        "n": 5, "f": 2.5, "s": "héllo", "z": null, "t": true, "no": false,
        "arr": [1, "two", {"k": 3}], "obj": {"a": 1, "b": 2}, "empty": []
    }))
}

fn bin(op: &str, lhs: J, rhs: J) -> J {
    json!({"op": op, "lhs": lhs, "rhs": rhs})
}

fn un(op: &str, arg: J) -> J {
    json!({"op": op, "arg": arg})
}

fn args(op: &str, args: Vec<J>) -> J {
    json!({"op": op, "args": args})
}

fn call(name: &str, args: Vec<J>) -> J {
    json!({"op": "call_extern", "ref": name, "args": args})
}

/// Fails with a known message; put after a deciding operand to prove it is never evaluated.
fn boom() -> J {
    bin("div", lit(json!(1)), lit(json!(0)))
}

fn externs() -> ExternTable {
    let mut table = ExternTable::new();
    table.insert("concat", |args: &[Value]| {
        Ok(Value::from(args.iter().map(|a| a.as_str().map_or_else(|| a.to_json(), str::to_string)).collect::<String>()))
    });
    table.insert("argc", |args: &[Value]| Ok(Value::int(args.len() as i64)));
    table.insert("refuse", |_: &[Value]| Err("not today".to_string()));
    table
}

fn eval(expr: J, externs: &dyn luaswarm::flow::Externs) -> Result<Value, luaswarm::flow::FlowError> {
    let expr: Expr = serde_json::from_value(expr.clone()).unwrap_or_else(|e| panic!("{expr}: {e}"));
    eval_expr(&expr, &ctx(), externs)
}

/// Each case: the expression, then `Ok(expected JSON)` or `Err(exact message)`.
fn cases() -> Vec<(J, Result<J, &'static str>)> {
    let s = |t: &str| lit(json!(t));
    let n = |v: J| lit(v);
    vec![
        // path and lit
        (p("$.n"), Ok(json!(5))),
        (p("$.arr[2].k"), Ok(json!(3))),
        (p("$"), Ok(serde_json::Value::from(&ctx()))),
        (p("$.missing"), Err("path not found: $.missing")),
        (p("$.n.deeper"), Err("path not found: $.n.deeper")),
        (lit(json!({"a": [1, 2.0, null]})), Ok(json!({"a": [1, 2.0, null]}))),
        // eq / ne: deep, numbers by value, never a type error
        (bin("eq", n(json!(5)), n(json!(5.0))), Ok(json!(true))),
        (bin("eq", p("$.z"), s("pass")), Ok(json!(false))),
        (bin("eq", n(json!(1)), s("1")), Ok(json!(false))),
        (bin("eq", p("$.arr"), lit(json!([1.0, "two", {"k": 3}]))), Ok(json!(true))),
        (bin("eq", p("$.obj"), lit(json!({"a": 1}))), Ok(json!(false))),
        (bin("ne", p("$.z"), s("pass")), Ok(json!(true))),
        (bin("ne", n(json!(2)), n(json!(2.0))), Ok(json!(false))),
        (bin("eq", p("$.missing"), p("$.z")), Err("path not found: $.missing")),
        // ordering: numbers by value, strings by bytes, nothing else
        (bin("lt", n(json!(1)), n(json!(2))), Ok(json!(true))),
        (bin("lt", n(json!(2)), n(json!(1.5))), Ok(json!(false))),
        (bin("lte", n(json!(2)), n(json!(2.0))), Ok(json!(true))),
        (bin("lte", n(json!(2.5)), n(json!(2))), Ok(json!(false))),
        (bin("gt", s("b"), s("a")), Ok(json!(true))),
        (bin("gt", s("a"), s("a")), Ok(json!(false))),
        (bin("gte", s("a"), s("a")), Ok(json!(true))),
        (bin("gte", s("a"), s("b")), Ok(json!(false))),
        (bin("lt", s("B"), s("a")), Ok(json!(true))),
        (bin("lt", s("z"), s("é")), Ok(json!(true))),
        (bin("lt", s("ab"), s("abc")), Ok(json!(true))),
        (bin("lt", n(json!(1)), s("2")), Err("type error in lt: cannot compare number with string")),
        (bin("lte", p("$.z"), n(json!(1))), Err("type error in lte: cannot compare null with number")),
        (bin("gt", p("$.t"), p("$.no")), Err("type error in gt: cannot compare boolean with boolean")),
        (bin("gte", p("$.arr"), p("$.arr")), Err("type error in gte: cannot compare array with array")),
        // not / and / or: truthiness, boolean results, short circuit
        (un("not", p("$.z")), Ok(json!(true))),
        (un("not", p("$.no")), Ok(json!(true))),
        (un("not", n(json!(0))), Ok(json!(false))),
        (un("not", s("")), Ok(json!(false))),
        (un("not", p("$.empty")), Ok(json!(false))),
        (args("and", vec![]), Ok(json!(true))),
        (args("and", vec![n(json!(1)), s("x")]), Ok(json!(true))),
        (args("and", vec![p("$.t"), p("$.z")]), Ok(json!(false))),
        (args("and", vec![p("$.no"), boom()]), Ok(json!(false))),
        (args("and", vec![p("$.t"), boom()]), Err("division by zero")),
        (args("or", vec![]), Ok(json!(false))),
        (args("or", vec![p("$.z"), n(json!(0))]), Ok(json!(true))),
        (args("or", vec![p("$.z"), p("$.no")]), Ok(json!(false))),
        (args("or", vec![n(json!(0)), boom()]), Ok(json!(true))),
        (args("or", vec![p("$.z"), boom()]), Err("division by zero")),
        // exists: only absence and null are false
        (un("exists", p("$.missing")), Ok(json!(false))),
        (un("exists", p("$.z")), Ok(json!(false))),
        (un("exists", p("$.no")), Ok(json!(true))),
        (un("exists", p("$.n")), Ok(json!(true))),
        (un("exists", p("$.arr[5]")), Ok(json!(false))),
        (un("exists", p("$.n.deeper")), Ok(json!(false))),
        (un("exists", lit(json!(null))), Ok(json!(false))),
        (un("exists", bin("add", p("$.missing"), n(json!(1)))), Ok(json!(false))),
        (
            un("exists", bin("add", s("a"), n(json!(1)))),
            Err("type error in add: expected numbers, got string \"a\" and number 1"),
        ),
        (un("exists", call("refuse", vec![])), Err("extern 'refuse': not today")),
        // add / sub / mul: int op int stays int (wrapping), anything else is a float
        (bin("add", n(json!(2)), n(json!(3))), Ok(json!(5))),
        (bin("add", n(json!(2.0)), n(json!(3))), Ok(json!(5.0))),
        (bin("add", n(json!(2)), n(json!(0.5))), Ok(json!(2.5))),
        (bin("add", n(json!(i64::MAX)), n(json!(1))), Ok(json!(i64::MIN))),
        (bin("sub", n(json!(2)), n(json!(5))), Ok(json!(-3))),
        (bin("sub", n(json!(1.5)), n(json!(0.5))), Ok(json!(1.0))),
        (bin("mul", n(json!(3)), n(json!(4))), Ok(json!(12))),
        (bin("mul", n(json!(4)), n(json!(2.5))), Ok(json!(10.0))),
        (bin("add", s("a"), n(json!(1))), Err("type error in add: expected numbers, got string \"a\" and number 1")),
        (bin("sub", p("$.n"), p("$.z")), Err("type error in sub: expected numbers, got number 5 and null")),
        (bin("mul", p("$.empty"), n(json!(2))), Err("type error in mul: expected numbers, got array [] and number 2")),
        // div: always a float; zero divisors are errors
        (bin("div", n(json!(7)), n(json!(2))), Ok(json!(3.5))),
        (bin("div", n(json!(6)), n(json!(3))), Ok(json!(2.0))),
        (bin("div", n(json!(1)), n(json!(0))), Err("division by zero")),
        (bin("div", n(json!(1.5)), n(json!(0.0))), Err("division by zero")),
        (
            bin("div", p("$.obj"), n(json!(1))),
            Err("type error in div: expected numbers, got object {\"a\":1,\"b\":2} and number 1"),
        ),
        // mod: Lua's, the result has the divisor's sign
        (bin("mod", n(json!(7)), n(json!(3))), Ok(json!(1))),
        (bin("mod", n(json!(-7)), n(json!(3))), Ok(json!(2))),
        (bin("mod", n(json!(7)), n(json!(-3))), Ok(json!(-2))),
        (bin("mod", n(json!(-7)), n(json!(-3))), Ok(json!(-1))),
        (bin("mod", n(json!(5.5)), n(json!(2))), Ok(json!(1.5))),
        (bin("mod", n(json!(-5.5)), n(json!(2))), Ok(json!(0.5))),
        (bin("mod", n(json!(5.5)), n(json!(-2))), Ok(json!(-0.5))),
        (bin("mod", n(json!(7)), n(json!(2.0))), Ok(json!(1.0))),
        (bin("mod", n(json!(7)), n(json!(0))), Err("modulo by zero")),
        (bin("mod", n(json!(7.5)), n(json!(0.0))), Err("modulo by zero")),
        (bin("mod", s("7"), n(json!(2))), Err("type error in mod: expected numbers, got string \"7\" and number 2")),
        // len: an int for arrays, strings (in chars) and objects
        (un("len", p("$.arr")), Ok(json!(3))),
        (un("len", p("$.empty")), Ok(json!(0))),
        (un("len", p("$.s")), Ok(json!(5))),
        (un("len", p("$.obj")), Ok(json!(2))),
        (un("len", p("$.f")), Err("type error in len: expected an array, string or object, got number 2.5")),
        (un("len", p("$.z")), Err("type error in len: expected an array, string or object, got null")),
        (un("len", p("$.missing")), Err("path not found: $.missing")),
        // in: membership with eq semantics, arrays only
        (json!({"op": "in", "needle": n(json!(1.0)), "haystack": p("$.arr")}), Ok(json!(true))),
        (json!({"op": "in", "needle": lit(json!({"k": 3})), "haystack": p("$.arr")}), Ok(json!(true))),
        (json!({"op": "in", "needle": s("three"), "haystack": p("$.arr")}), Ok(json!(false))),
        (json!({"op": "in", "needle": n(json!(1)), "haystack": p("$.empty")}), Ok(json!(false))),
        (
            json!({"op": "in", "needle": s("h"), "haystack": p("$.s")}),
            Err("type error in in: haystack must be an array, got string \"héllo\""),
        ),
        (
            json!({"op": "in", "needle": s("a"), "haystack": p("$.obj")}),
            Err("type error in in: haystack must be an array, got object {\"a\":1,\"b\":2}"),
        ),
        // call_extern: args in order, errors named after the extern
        (call("concat", vec![p("$.s"), s("!"), p("$.n")]), Ok(json!("héllo!5"))),
        (call("argc", vec![]), Ok(json!(0))),
        (call("refuse", vec![p("$.n")]), Err("extern 'refuse': not today")),
        (call("absent", vec![]), Err("extern 'absent': unknown extern 'absent'")),
        (call("concat", vec![s("a"), p("$.missing")]), Err("path not found: $.missing")),
    ]
}

#[test]
fn every_op_gives_exact_results_and_errors() {
    let table = externs();
    let mut failures = Vec::new();
    for (expr, want) in cases() {
        let got = eval(expr.clone(), &table);
        let ok = match (&got, &want) {
            (Ok(value), Ok(want)) => value.to_json() == Value::from(want.clone()).to_json(),
            (Err(err), Err(want)) => err.message == *want && err.kind == ErrorKind::Eval && err.step.is_none(),
            _ => false,
        };
        if !ok {
            failures.push(format!("{expr}\n   want {want:?}\n   got  {:?}", got.map(|v| v.to_json())));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn without_externs_every_call_names_the_extern() {
    let err = eval(call("anything", vec![]), &NoExterns).unwrap_err();
    assert_eq!(err.message, "extern 'anything': unknown extern 'anything'");
}

#[test]
fn type_errors_carry_the_offending_operand() {
    let table = externs();
    let err = eval(bin("add", n_lit(1), lit(json!("x"))), &table).unwrap_err();
    assert_eq!(err.value, Some(Value::from("x")));
    let err = eval(un("len", lit(json!(true))), &table).unwrap_err();
    assert_eq!(err.value, Some(Value::Bool(true)));
    let err = eval(json!({"op": "in", "needle": n_lit(1), "haystack": lit(json!(7))}), &table).unwrap_err();
    assert_eq!(err.value, Some(Value::int(7)));
}

fn n_lit(i: i64) -> J {
    lit(json!(i))
}
