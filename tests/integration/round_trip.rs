//! The Lua builders emit exactly the wire format: build → JSON → parse → JSON is
//! byte-identical, for every builder and every expression operator.

use std::path::Path;

use luaswarm::flow::Node;
use luaswarm::host::Host;
use luaswarm::host::convert::from_lua;
use mlua::{Table, Value as LuaValue};

fn built_flow_json(file: &str) -> String {
    let host = Host::new().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let source = std::fs::read_to_string(&path).unwrap();
    let bp: Table = host.lua().load(source).set_name(format!("@{file}")).eval().unwrap();
    let flow: LuaValue = bp.get("flow").unwrap();
    from_lua(host.lua(), &flow).unwrap().to_json()
}

fn reencode(json: &str) -> String {
    let node: Node =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("the builders' JSON must parse: {e}\n{json}"));
    serde_json::to_value(&node).unwrap().to_string()
}

#[test]
fn every_builder_round_trips_byte_for_byte() {
    let built = built_flow_json("tests/fixtures/every_builder.lua");
    assert_eq!(reencode(&built), built);
    // Every node kind and every operator really is in the fixture.
    for needle in [
        "\"kind\":\"step\"",
        "\"kind\":\"seq\"",
        "\"kind\":\"branch\"",
        "\"kind\":\"loop\"",
        "\"kind\":\"fanout\"",
        "\"kind\":\"try\"",
        "\"kind\":\"assign\"",
        "\"op\":\"path\"",
        "\"op\":\"lit\"",
        "\"op\":\"eq\"",
        "\"op\":\"ne\"",
        "\"op\":\"lt\"",
        "\"op\":\"lte\"",
        "\"op\":\"gt\"",
        "\"op\":\"gte\"",
        "\"op\":\"not\"",
        "\"op\":\"and\"",
        "\"op\":\"or\"",
        "\"op\":\"exists\"",
        "\"op\":\"add\"",
        "\"op\":\"sub\"",
        "\"op\":\"mul\"",
        "\"op\":\"div\"",
        "\"op\":\"mod\"",
        "\"op\":\"len\"",
        "\"op\":\"in\"",
        "\"op\":\"call_extern\"",
        "\"timeout_ms\"",
        "\"retry\"",
        "\"max_concurrency\"",
        "\"collect\"",
        "\"err_at\"",
        "$.results[0].out",
        "[\\\"key.with.dots\\\"]",
    ] {
        assert!(built.contains(needle), "the fixture lacks {needle}");
    }
}

#[test]
fn the_examples_round_trip_byte_for_byte() {
    for example in ["examples/hello.lua", "examples/review.lua"] {
        let built = built_flow_json(example);
        assert_eq!(reencode(&built), built, "{example}");
    }
}
