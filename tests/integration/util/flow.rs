//! Flows in their JSON wire shape, as the engine and evaluator tests write them.

use luaswarm::Value;
use serde_json::{Value as J, json};

pub fn p(at: &str) -> J {
    json!({"op": "path", "at": at})
}

pub fn lit(value: J) -> J {
    json!({"op": "lit", "value": value})
}

pub fn step(agent: &str, input: J, out: &str) -> J {
    json!({"kind": "step", "ref": agent, "in": input, "out": p(out)})
}

pub fn seq(children: Vec<J>) -> J {
    json!({"kind": "seq", "children": children})
}

/// A fanout over `items` bound at `$.item`, each lane's `$.out` collected at `$.res`.
pub fn fanout(items: J, body: J) -> J {
    json!({"kind": "fanout", "items": items, "bind": p("$.item"), "body": body, "join": "all",
           "out": p("$.res"), "collect": p("$.out")})
}

pub fn try_catch(body: J, err_at: &str) -> J {
    json!({"kind": "try", "body": body, "catch": seq(vec![]), "err_at": p(err_at)})
}

#[track_caller]
pub fn assert_json(got: &Value, want: J) {
    assert_eq!(got.to_json(), Value::from(want).to_json());
}
