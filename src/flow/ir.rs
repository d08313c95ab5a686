//! The flow IR: nodes and expressions as serde types whose JSON is the mlua-flow-ir 0.2 wire
//! shape (`kind` / `op` tags, `ref`, `in`, `out`, `then`, `else`, `children`), plus the optional
//! extensions `timeout_ms`, `retry`, `max_concurrency`, `collect` and the `wait` node. Unknown
//! fields are rejected.

use serde::{Deserialize, Serialize};

use super::path::Path;
pub use super::wire::MAX_TIMEOUT_MS;
pub(crate) use super::wire::list;
use super::wire::{
    fanout_max_concurrency, loop_max, retry_backoff_factor, retry_backoff_ms, retry_max_attempts, signal_name,
    step_timeout_ms, wait_timeout_ms,
};
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
    /// Suspends its strand of the flow until a signal arrives; see [`Wait`].
    Wait(Wait),
}

/// `wait`: the flow (or the fanout lane) stops here until a signal of the name arrives, and
/// writes the signal's value at `out`. A wait that runs past `timeout_ms` fails with kind
/// `timeout`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// The signal's name, or an expression whose value (a string) is the name.
    #[serde(deserialize_with = "signal_name")]
    pub signal: SignalName,
    /// Where the signal's value is written; without it the value is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<PathExpr>,
    /// The wait fails with kind `timeout` once this long has passed since it began.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "wait_timeout_ms")]
    pub timeout_ms: Option<u64>,
}

/// The name a `wait` waits for: written on the wire as a string, or as an expression object
/// evaluated on the (lane's) ctx, so each fanout lane can wait for a name of its own.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SignalName {
    /// A fixed name.
    Name(String),
    /// An expression giving the name.
    Expr(Expr),
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

/// A path in a path position (`out`, `bind`, `counter`, `at`, `err_at`, `collect`). On the wire
/// it is a path expression, `{"op":"path","at":"$.x"}`, as in mlua-flow-ir 0.2.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PathExpr(pub Path);

impl std::fmt::Display for PathExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

// The shape of a node, described once. Every walk (the journal's step keys, the compiler's
// checks and source map, the progress count, the Lua site walker) goes through `children`,
// and `NODE_SHAPES` tells Lua and the tests which field holds what. A new node kind needs a
// variant above, an arm in `kind_name` and `children`, and a row in `NODE_SHAPES`.

/// What a node field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// One child node.
    Node,
    /// A list of child nodes.
    NodeList,
    /// An expression.
    Expr,
    /// A path into the ctx (a path expression on the wire).
    Path,
    /// A whole number.
    Number,
    /// One of a fixed set of names.
    Enum(&'static [&'static str]),
    /// An agent's name.
    Agent,
    /// A step's retry policy.
    Retry,
    /// A signal's name, or an expression giving it.
    Signal,
}

/// One field of a node kind.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Field {
    /// The JSON name; for a child, also its segment in a node pointer.
    pub wire: &'static str,
    /// The option the Lua builder takes it as (`F.step{agent = ...}` fills `ref`); `None` when
    /// the builder takes the value itself (`F.seq{...}` is the list of children).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lua: Option<&'static str>,
    /// What the field holds (a child node, an expression, a path, ...).
    pub role: Role,
    /// The wire form may leave it out.
    pub optional: bool,
}

/// A node kind and its fields, in wire order.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Shape {
    /// The node's `kind` tag.
    pub kind: &'static str,
    /// Its fields besides `kind`.
    pub fields: &'static [Field],
}

const fn field(wire: &'static str, lua: &'static str, role: Role) -> Field {
    Field { wire, lua: Some(lua), role, optional: false }
}

const fn optional(wire: &'static str, lua: &'static str, role: Role) -> Field {
    Field { wire, lua: Some(lua), role, optional: true }
}

/// The names `fanout`'s `join` takes, in the order of [`Join`]'s variants.
pub const JOIN_NAMES: &[&str] = &["all", "any", "race", "all_settled"];

/// Every node kind, with the fields of each.
pub const NODE_SHAPES: &[Shape] = &[
    Shape {
        kind: "step",
        fields: &[
            field("ref", "agent", Role::Agent),
            field("in", "input", Role::Expr),
            field("out", "out", Role::Path),
            optional("timeout_ms", "timeout_ms", Role::Number),
            optional("retry", "retry", Role::Retry),
        ],
    },
    Shape { kind: "seq", fields: &[Field { wire: "children", lua: None, role: Role::NodeList, optional: false }] },
    Shape {
        kind: "branch",
        fields: &[
            field("cond", "cond", Role::Expr),
            field("then", "on_true", Role::Node),
            field("else", "on_false", Role::Node),
        ],
    },
    Shape {
        kind: "loop",
        fields: &[
            field("counter", "counter", Role::Path),
            field("cond", "cond", Role::Expr),
            field("max", "max", Role::Number),
            field("body", "body", Role::Node),
        ],
    },
    Shape {
        kind: "fanout",
        fields: &[
            field("items", "items", Role::Expr),
            field("bind", "bind", Role::Path),
            field("body", "body", Role::Node),
            optional("join", "join", Role::Enum(JOIN_NAMES)),
            field("out", "out", Role::Path),
            optional("max_concurrency", "max_concurrency", Role::Number),
            optional("collect", "collect", Role::Path),
        ],
    },
    Shape {
        kind: "try",
        fields: &[
            field("body", "body", Role::Node),
            field("catch", "catch", Role::Node),
            optional("err_at", "err_at", Role::Path),
        ],
    },
    Shape { kind: "assign", fields: &[field("at", "at", Role::Path), field("value", "value", Role::Expr)] },
    Shape {
        kind: "wait",
        fields: &[
            field("signal", "signal", Role::Signal),
            optional("out", "out", Role::Path),
            optional("timeout_ms", "timeout_ms", Role::Number),
        ],
    },
];

/// Where a child sits in its parent: a field (`then`, `body`) or an item of a list field
/// (`children`, 2). Rendered as the pointer segment, `then` or `children/2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The child is the value of this field.
    Field(&'static str),
    /// The child is this item (from 0) of this list field.
    Item(&'static str, usize),
}

impl Slot {
    /// The field holding the child: `then`, or `children` for `children/2`.
    pub fn field(self) -> &'static str {
        match self {
            Slot::Field(name) | Slot::Item(name, _) => name,
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Slot::Field(name) => f.write_str(name),
            Slot::Item(name, index) => write!(f, "{name}/{index}"),
        }
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
            Node::Wait(_) => "wait",
        }
    }

    /// The kind's row in [`NODE_SHAPES`].
    pub fn shape(&self) -> &'static Shape {
        let kind = self.kind_name();
        NODE_SHAPES.iter().find(|shape| shape.kind == kind).expect("every kind has a row in NODE_SHAPES")
    }

    /// The child nodes with their slots, in document order.
    pub fn children(&self) -> Vec<(Slot, &Node)> {
        match self {
            Node::Seq { children } => {
                children.iter().enumerate().map(|(i, c)| (Slot::Item("children", i), c)).collect()
            }
            Node::Branch { then_branch, else_branch, .. } => {
                vec![(Slot::Field("then"), &**then_branch), (Slot::Field("else"), &**else_branch)]
            }
            Node::Loop { body, .. } => vec![(Slot::Field("body"), &**body)],
            Node::Fanout(fanout) => vec![(Slot::Field("body"), &*fanout.body)],
            Node::Try { body, catch, .. } => vec![(Slot::Field("body"), &**body), (Slot::Field("catch"), &**catch)],
            Node::Step(_) | Node::Assign { .. } | Node::Wait(_) => Vec::new(),
        }
    }

    /// Calls `f(pointer, node)` for every node, parents before children, in document order.
    /// The pointer is `""` for this node, then `/children/2`, `/then`, `/body/catch`...: the
    /// wire field names, so compile errors, source maps and journal step keys agree.
    pub fn walk<'a>(&'a self, f: &mut impl FnMut(&str, &'a Node)) {
        let mut pointer = String::new();
        self.walk_at(&mut pointer, f);
    }

    fn walk_at<'a>(&'a self, pointer: &mut String, f: &mut impl FnMut(&str, &'a Node)) {
        f(pointer, self);
        for (slot, child) in self.children() {
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&slot.to_string());
            child.walk_at(pointer, f);
            pointer.truncate(len);
        }
    }

    /// Calls `f` on every step in the tree, in document order.
    pub fn for_each_step<'a>(&'a self, f: &mut impl FnMut(&'a Step)) {
        self.walk(&mut |_, node| {
            if let Node::Step(step) = node {
                f(step);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserializer;

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
    /// The keys of a JSON object, in the order written.
    struct Keys(Vec<String>);

    impl<'de> Deserialize<'de> for Keys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
            struct KeysVisitor;

            impl<'de> serde::de::Visitor<'de> for KeysVisitor {
                type Value = Keys;

                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }

                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(key);
                    }
                    Ok(Keys(keys))
                }
            }

            d.deserialize_map(KeysVisitor)
        }
    }

    /// A wire node of `shape` with every field set, built from the table alone.
    fn sample(shape: &Shape) -> serde_json::Value {
        let seq = serde_json::json!({"kind": "seq", "children": []});
        let mut node = serde_json::Map::new();
        node.insert("kind".into(), shape.kind.into());
        for field in shape.fields {
            let value = match field.role {
                Role::Node => seq.clone(),
                Role::NodeList => serde_json::json!([seq, seq]),
                Role::Expr => serde_json::json!({"op": "lit", "value": 1}),
                Role::Path => serde_json::json!({"op": "path", "at": "$.x"}),
                Role::Number => 1.into(),
                Role::Enum(names) => names[0].into(),
                Role::Agent => "a".into(),
                Role::Retry => serde_json::json!({"max_attempts": 1}),
                Role::Signal => "approve".into(),
            };
            node.insert(field.wire.into(), value);
        }
        serde_json::Value::Object(node)
    }

    #[test]
    fn the_shape_table_is_the_serde_shape() {
        for shape in NODE_SHAPES {
            let full = sample(shape);
            let node: Node = serde_json::from_value(full.clone()).unwrap_or_else(|e| panic!("{}: {e}", shape.kind));
            assert_eq!(node.kind_name(), shape.kind);
            assert_eq!(node.shape().kind, shape.kind);
            // Every field the serde type writes is in the table, in the same order.
            let Keys(mut written) = serde_json::from_str(&serde_json::to_string(&node).unwrap()).unwrap();
            written.retain(|k| k != "kind");
            let listed: Vec<&str> = shape.fields.iter().map(|f| f.wire).collect();
            assert_eq!(written, listed, "{}", shape.kind);
            // `children` yields exactly the node fields, a list field item by item.
            let slots: Vec<String> = node.children().iter().map(|(slot, _)| slot.to_string()).collect();
            let mut expected = Vec::new();
            for field in shape.fields {
                match field.role {
                    Role::Node => expected.push(field.wire.to_string()),
                    Role::NodeList => expected.extend((0..2).map(|i| format!("{}/{i}", field.wire))),
                    _ => {}
                }
            }
            assert_eq!(slots, expected, "{}", shape.kind);
            // Optional fields may be left out; no other field may.
            for field in shape.fields {
                let mut without = full.clone();
                without.as_object_mut().unwrap().remove(field.wire);
                let parsed = serde_json::from_value::<Node>(without);
                assert_eq!(parsed.is_ok(), field.optional, "{}.{} optional: {parsed:?}", shape.kind, field.wire);
            }
        }
    }

    #[test]
    fn a_wait_signal_is_a_name_or_an_expression() {
        let named = r#"{"kind":"wait","signal":"approve","out":{"op":"path","at":"$.approval"},"timeout_ms":86400000}"#;
        let node: Node = serde_json::from_str(named).unwrap();
        let Node::Wait(wait) = &node else { panic!("{node:?}") };
        assert_eq!(wait.signal, SignalName::Name("approve".into()));
        assert_eq!(serde_json::to_string(&node).unwrap(), named);
        let computed = r#"{"kind":"wait","signal":{"op":"path","at":"$.item.signal"}}"#;
        let node: Node = serde_json::from_str(computed).unwrap();
        let Node::Wait(wait) = &node else { panic!("{node:?}") };
        assert!(matches!(wait.signal, SignalName::Expr(Expr::Path { .. })));
        assert_eq!(serde_json::to_string(&node).unwrap(), computed);
        for bad in [
            r#"{"kind":"wait","signal":3}"#,
            r#"{"kind":"wait","signal":{"op":"nope"}}"#,
            r#"{"kind":"wait","signal":"a","timeout_ms":-1}"#,
            r#"{"kind":"wait"}"#,
        ] {
            assert!(serde_json::from_str::<Node>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn join_names_are_the_join_variants() {
        let all = [Join::All, Join::Any, Join::Race, Join::AllSettled];
        let names: Vec<&str> = all.iter().map(|j| j.name()).collect();
        assert_eq!(names, JOIN_NAMES);
        for join in all {
            assert_eq!(serde_json::to_value(join).unwrap(), join.name());
        }
    }

    #[test]
    fn pointers_follow_the_wire_field_names() {
        let text = r#"{"kind":"seq","children":[
            {"kind":"assign","at":{"op":"path","at":"$.a"},"value":{"op":"lit","value":1}},
            {"kind":"try","body":{"kind":"seq","children":[]},"catch":{"kind":"branch","cond":{"op":"lit","value":true},
              "then":{"kind":"seq","children":[]},"else":{"kind":"seq","children":[]}}}]}"#;
        let node: Node = serde_json::from_str(text).unwrap();
        let mut seen = Vec::new();
        node.walk(&mut |p, n| seen.push(format!("{p}={}", n.kind_name())));
        assert_eq!(
            seen,
            [
                "=seq",
                "/children/0=assign",
                "/children/1=try",
                "/children/1/body=seq",
                "/children/1/catch=branch",
                "/children/1/catch/then=seq",
                "/children/1/catch/else=seq",
            ]
        );
    }
}
