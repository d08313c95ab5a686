//! The flow IR: nodes and expressions as serde types whose JSON is the mlua-flow-ir 0.2 wire
//! shape (`kind` / `op` tags, `ref`, `in`, `out`, `then`, `else`, `children`), plus the optional
//! extensions `timeout_ms`, `retry`, `max_concurrency` and `collect`. Unknown fields are rejected.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::path::Path;
use crate::value::Value;

/// A flow node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    /// Dispatches one agent; see [`Step`].
    Step(Step),
    /// Runs its children in order; the first error stops it.
    Seq {
        /// The nodes to run, in order.
        #[serde(deserialize_with = "list")]
        children: Vec<Node>,
    },
    /// Runs one of two nodes by a boolean condition.
    Branch {
        /// Must evaluate to a boolean; any other value is an `eval` error.
        cond: Expr,
        /// Runs when `cond` is `true`.
        #[serde(rename = "then")]
        then_branch: Box<Node>,
        /// Runs when `cond` is `false`.
        #[serde(rename = "else")]
        else_branch: Box<Node>,
    },
    /// Runs `body` while `counter < max` and `cond` is truthy, counting iterations at `counter`.
    Loop {
        /// Where the iteration count is kept, from 0; after the loop it holds the iterations done.
        counter: PathExpr,
        /// Tested for truthiness before each iteration.
        cond: Expr,
        /// At most this many iterations, so a loop always ends.
        #[serde(deserialize_with = "loop_max")]
        max: u32,
        /// Runs once per iteration.
        body: Box<Node>,
    },
    /// Runs `body` once per item in isolated lanes; see [`Fanout`].
    Fanout(Fanout),
    /// Runs `body`; when it fails, rolls back its writes and runs `catch`.
    Try {
        /// The node to run.
        body: Box<Node>,
        /// Runs when `body` fails, after the ctx is restored.
        catch: Box<Node>,
        /// Where the error object is written before `catch` runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        err_at: Option<PathExpr>,
    },
    /// Writes an expression's value at a path; no agent is involved.
    Assign {
        /// Where to write.
        at: PathExpr,
        /// What to write.
        value: Expr,
    },
}

/// `step`: dispatch `in`'s value to agent `ref`, write the result at `out`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The agent to dispatch (`ref` on the wire).
    #[serde(rename = "ref")]
    pub agent: String,
    /// The agent's input (`in` on the wire).
    #[serde(rename = "in")]
    pub input: Expr,
    /// Where the agent's result is written.
    pub out: PathExpr,
    /// Each attempt is cancelled after this long and counts as `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "step_timeout_ms")]
    pub timeout_ms: Option<u64>,
    /// Whether and how failed attempts are tried again; `None` tries once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

/// `fanout`: one isolated lane per item, combined by `join`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fanout {
    /// Must evaluate to an array; one lane per element.
    pub items: Expr,
    /// Where each lane sees its item.
    pub bind: PathExpr,
    /// The node each lane runs.
    pub body: Box<Node>,
    /// How the lanes' results combine.
    #[serde(default)]
    pub join: Join,
    /// Where the combined result is written.
    pub out: PathExpr,
    /// Lanes in flight at once; 0 or absent means unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "fanout_max_concurrency")]
    pub max_concurrency: Option<u32>,
    /// A lane's result is the value here instead of its whole ctx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collect: Option<PathExpr>,
}

/// How fanout lanes combine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Join {
    /// Every lane's result in item order; any error fails the fanout.
    #[default]
    All,
    /// The first success; all failed gives the last error.
    Any,
    /// The first lane to settle, success or error.
    Race,
    /// Every lane as `{status, value}` or `{status, reason}`.
    AllSettled,
}

impl Join {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Join::All => "all",
            Join::Any => "any",
            Join::Race => "race",
            Join::AllSettled => "all_settled",
        }
    }
}

/// A step's retry policy: attempt `n + 1` waits `backoff_ms * backoff_factor^(n - 1)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts in all, the first included; at least 1.
    #[serde(deserialize_with = "retry_max_attempts")]
    pub max_attempts: u32,
    /// The wait before the second attempt, in milliseconds.
    #[serde(default, deserialize_with = "retry_backoff_ms")]
    pub backoff_ms: u64,
    /// Each later wait is the previous one times this.
    #[serde(default = "Retry::default_factor", deserialize_with = "retry_backoff_factor")]
    pub backoff_factor: f64,
    /// Which failures are retried; by default `failed` and `timeout`.
    #[serde(default = "Retry::default_on", deserialize_with = "list")]
    pub on: Vec<RetryOn>,
}

impl Retry {
    fn default_factor() -> f64 {
        1.0
    }

    /// Blocked is a verdict, not a transient failure, so it is retried only when asked.
    fn default_on() -> Vec<RetryOn> {
        vec![RetryOn::Failed, RetryOn::Timeout]
    }
}

/// Which failed attempts a retry policy retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The worker failed.
    Failed,
    /// The worker refused with a blocked verdict.
    Blocked,
    /// The attempt ran past its time limit.
    Timeout,
}

/// An expression.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expr {
    /// The value at a ctx path; a missing path is an `eval` error.
    Path {
        /// The path to read.
        at: Path,
    },
    /// A constant.
    Lit {
        /// The constant's value.
        value: Value,
    },
    /// Deep equality; never an error.
    Eq {
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// Deep inequality; never an error.
    Ne {
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `lhs < rhs` for two numbers or two strings.
    Lt {
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `lhs <= rhs` for two numbers or two strings.
    Lte {
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `lhs > rhs` for two numbers or two strings.
    Gt {
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `lhs >= rhs` for two numbers or two strings.
    Gte {
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `true` when `arg` is falsy.
    Not {
        /// The operand.
        arg: Box<Expr>,
    },
    /// `true` when every arg is truthy; stops at the first falsy one.
    And {
        /// The operands, in order.
        args: Vec<Expr>,
    },
    /// `true` when some arg is truthy; stops at the first truthy one.
    Or {
        /// The operands, in order.
        args: Vec<Expr>,
    },
    /// `false` when `arg` hits a missing path or gives `null`, else `true`.
    Exists {
        /// The operand.
        arg: Box<Expr>,
    },
    /// `lhs + rhs`, with Lua 5.4 number rules.
    Add {
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `lhs - rhs`, with Lua 5.4 number rules.
    Sub {
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `lhs * rhs`, with Lua 5.4 number rules.
    Mul {
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `lhs / rhs`; always a float.
    Div {
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `lhs % rhs`, floored, taking the divisor's sign.
    Mod {
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// The length of an array, a string (in characters) or an object (its keys).
    Len {
        /// The operand.
        arg: Box<Expr>,
    },
    /// `true` when the array `haystack` has an element equal to `needle`.
    In {
        /// The value to look for.
        needle: Box<Expr>,
        /// The array to search.
        haystack: Box<Expr>,
    },
    /// Calls a host-provided extern with the evaluated args.
    CallExtern {
        /// The extern's name (`ref` on the wire).
        #[serde(rename = "ref")]
        name: String,
        /// The arguments, evaluated in order.
        #[serde(deserialize_with = "list")]
        args: Vec<Expr>,
    },
}

impl Expr {
    /// A path expression, as [`Expr::Path`].
    pub fn path(at: Path) -> Expr {
        Expr::Path { at }
    }

    /// A literal, as [`Expr::Lit`].
    pub fn lit(value: impl Into<Value>) -> Expr {
        Expr::Lit { value: value.into() }
    }

    /// The wire name of the operator.
    pub fn op_name(&self) -> &'static str {
        match self {
            Expr::Path { .. } => "path",
            Expr::Lit { .. } => "lit",
            Expr::Eq { .. } => "eq",
            Expr::Ne { .. } => "ne",
            Expr::Lt { .. } => "lt",
            Expr::Lte { .. } => "lte",
            Expr::Gt { .. } => "gt",
            Expr::Gte { .. } => "gte",
            Expr::Not { .. } => "not",
            Expr::And { .. } => "and",
            Expr::Or { .. } => "or",
            Expr::Exists { .. } => "exists",
            Expr::Add { .. } => "add",
            Expr::Sub { .. } => "sub",
            Expr::Mul { .. } => "mul",
            Expr::Div { .. } => "div",
            Expr::Mod { .. } => "mod",
            Expr::Len { .. } => "len",
            Expr::In { .. } => "in",
            Expr::CallExtern { .. } => "call_extern",
        }
    }
}

/// Reads a list, also accepting an empty object: a Lua table `{}` has no way to say which it
/// is, and in a list position an empty list is the only sensible reading.
/// The longest time a step, a subprocess or a script may be given: a year, in ms.
pub const MAX_TIMEOUT_MS: u64 = 365 * 24 * 3600 * 1000;

/// A number as the wire gives it, before its range is checked.
#[derive(Clone, Copy)]
enum WireNumber {
    Int(i128),
    Float(f64),
}

impl<'de> Deserialize<'de> for WireNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<WireNumber, D::Error> {
        struct NumberVisitor;

        impl serde::de::Visitor<'_> for NumberVisitor {
            type Value = WireNumber;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number")
            }

            fn visit_i64<E>(self, n: i64) -> Result<WireNumber, E> {
                Ok(WireNumber::Int(n.into()))
            }

            fn visit_u64<E>(self, n: u64) -> Result<WireNumber, E> {
                Ok(WireNumber::Int(n.into()))
            }

            fn visit_f64<E>(self, n: f64) -> Result<WireNumber, E> {
                Ok(WireNumber::Float(n))
            }
        }

        d.deserialize_any(NumberVisitor)
    }
}

/// `n` as a whole number from `min` to `max`; `what` names the node and field in the error.
fn whole<E: serde::de::Error>(n: WireNumber, min: u64, max: u64, what: &str) -> Result<u64, E> {
    let whole = match n {
        WireNumber::Int(i) => u64::try_from(i).ok(),
        // Below 2^53 every whole float is exact.
        WireNumber::Float(f) if f.fract() == 0.0 && (0.0..9.0e15).contains(&f) => Some(f as u64),
        WireNumber::Float(_) => None,
    };
    match whole {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => {
            let got = match n {
                WireNumber::Int(i) => i.to_string(),
                WireNumber::Float(f) => f.to_string(),
            };
            Err(E::custom(format!("{what} must be a whole number from {min} to {max}, got {got}")))
        }
    }
}

fn loop_max<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = whole(WireNumber::deserialize(d)?, 0, u32::MAX.into(), "loop `max`")?;
    Ok(u32::try_from(n).expect("checked against u32::MAX"))
}

fn retry_max_attempts<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = whole(WireNumber::deserialize(d)?, 1, u32::MAX.into(), "step `retry.max_attempts`")?;
    Ok(u32::try_from(n).expect("checked against u32::MAX"))
}

fn retry_backoff_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole(WireNumber::deserialize(d)?, 0, MAX_TIMEOUT_MS, "step `retry.backoff_ms`")
}

fn retry_backoff_factor<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match WireNumber::deserialize(d)? {
        WireNumber::Int(i) if (0..=1_000_000).contains(&i) => Ok(i as f64),
        WireNumber::Float(f) if (0.0..=1.0e6).contains(&f) => Ok(f),
        _ => Err(serde::de::Error::custom("step `retry.backoff_factor` must be a number from 0 to 1000000")),
    }
}

fn step_timeout_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<WireNumber>::deserialize(d)?.map(|n| whole(n, 1, MAX_TIMEOUT_MS, "step `timeout_ms`")).transpose()
}

fn fanout_max_concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = Option::<WireNumber>::deserialize(d)?;
    let n = n.map(|n| whole(n, 0, u32::MAX.into(), "fanout `max_concurrency`")).transpose()?;
    Ok(n.map(|n| u32::try_from(n).expect("checked against u32::MAX")))
}

pub(crate) fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    struct ListVisitor<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ListVisitor<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(items)
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
            match map.next_key::<serde::de::IgnoredAny>()? {
                None => Ok(Vec::new()),
                Some(_) => Err(serde::de::Error::invalid_type(serde::de::Unexpected::Map, &self)),
            }
        }
    }

    d.deserialize_any(ListVisitor(std::marker::PhantomData))
}

/// A path in a path position (`out`, `bind`, `counter`, `at`, `err_at`, `collect`). On the wire
/// it is a path expression, `{"op":"path","at":"$.x"}`, as in mlua-flow-ir 0.2.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PathExpr(pub Path);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathExprWire {
    op: PathOp,
    at: Path,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PathOp {
    Path,
}

impl Serialize for PathExpr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PathExprWire { op: PathOp::Path, at: self.0.clone() }.serialize(s)
    }
}

/// Reads the wire form, and also a bare path string, which is what a hand-written Lua table
/// naturally holds; either way it prints back as the wire form.
impl<'de> Deserialize<'de> for PathExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PathExpr, D::Error> {
        struct PathExprVisitor;

        impl<'de> serde::de::Visitor<'de> for PathExprVisitor {
            type Value = PathExpr;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"a path expression {"op":"path","at":"$..."}"#)
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<PathExpr, E> {
                text.parse().map(PathExpr).map_err(E::custom)
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<PathExpr, A::Error> {
                let wire =
                    PathExprWire::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map_err(|e| {
                        serde::de::Error::custom(format!(
                            r#"expected a path expression {{"op":"path","at":"$..."}}: {e}"#
                        ))
                    })?;
                Ok(PathExpr(wire.at))
            }
        }

        d.deserialize_any(PathExprVisitor)
    }
}

impl std::fmt::Display for PathExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Node {
    /// The wire name of the node kind.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Node::Step(_) => "step",
            Node::Seq { .. } => "seq",
            Node::Branch { .. } => "branch",
            Node::Loop { .. } => "loop",
            Node::Fanout(_) => "fanout",
            Node::Try { .. } => "try",
            Node::Assign { .. } => "assign",
        }
    }

    /// Calls `f` on every step in the tree, in document order.
    pub fn for_each_step<'a>(&'a self, f: &mut impl FnMut(&'a Step)) {
        match self {
            Node::Step(step) => f(step),
            Node::Seq { children } => children.iter().for_each(|c| c.for_each_step(f)),
            Node::Branch { then_branch, else_branch, .. } => {
                then_branch.for_each_step(f);
                else_branch.for_each_step(f);
            }
            Node::Loop { body, .. } => body.for_each_step(f),
            Node::Fanout(fanout) => fanout.body.for_each_step(f),
            Node::Try { body, catch, .. } => {
                body.for_each_step(f);
                catch.for_each_step(f);
            }
            Node::Assign { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_wire_shape_and_prints_it_back() {
        let text = r#"{"kind":"seq","children":[{"kind":"step","ref":"a","in":{"op":"path","at":"$.x"},"out":{"op":"path","at":"$.y"}},{"kind":"branch","cond":{"op":"eq","lhs":{"op":"lit","value":1},"rhs":{"op":"lit","value":1.0}},"then":{"kind":"seq","children":[]},"else":{"kind":"assign","at":{"op":"path","at":"$.z"},"value":{"op":"lit","value":null}}}]}"#;
        let node: Node = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&node).unwrap(), text);
    }

    #[test]
    fn rejects_unknown_fields_everywhere() {
        for bad in [
            r#"{"kind":"seq","children":[],"extra":1}"#,
            r#"{"kind":"step","ref":"a","in":{"op":"lit","value":1},"out":{"op":"path","at":"$.y"},"typo":1}"#,
            r#"{"kind":"assign","at":{"op":"path","at":"$.y","x":1},"value":{"op":"lit","value":1}}"#,
            r#"{"kind":"assign","at":{"op":"path","at":"$.y"},"value":{"op":"lit","value":1,"x":2}}"#,
            r#"{"kind":"nope"}"#,
        ] {
            assert!(serde_json::from_str::<Node>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_positions_take_path_expressions_or_bare_path_strings() {
        let bare = r#"{"kind":"assign","at":"$[\"y\"]","value":{"op":"lit","value":1}}"#;
        let node: Node = serde_json::from_str(bare).unwrap();
        let canonical = r#"{"kind":"assign","at":{"op":"path","at":"$.y"},"value":{"op":"lit","value":1}}"#;
        assert_eq!(serde_json::to_string(&node).unwrap(), canonical);
        for bad in [
            r#"{"kind":"assign","at":{"op":"lit","at":"$.y"},"value":{"op":"lit","value":1}}"#,
            r#"{"kind":"assign","at":"y","value":{"op":"lit","value":1}}"#,
            r#"{"kind":"assign","at":3,"value":{"op":"lit","value":1}}"#,
        ] {
            let err = serde_json::from_str::<Node>(bad).unwrap_err().to_string();
            assert!(err.contains("path"), "{bad}: {err}");
        }
    }

    #[test]
    fn invalid_path_text_is_a_parse_error() {
        let bad = r#"{"kind":"assign","at":{"op":"path","at":"$.a..b"},"value":{"op":"lit","value":1}}"#;
        let err = serde_json::from_str::<Node>(bad).unwrap_err().to_string();
        assert!(err.contains("empty key"), "{err}");
    }
}
