//! The Lua conformance scripts under `tests/lua/`, a test each, so one failing script hides no
//! other. A script added there without a name below fails [`every_script_has_a_test`].

use crate::util::lua::{run, scripts};

/// A `#[test]` per named script, running `tests/lua/NAME.lua`, and the list of them.
macro_rules! lua_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*

        /// The scripts that have a test.
        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

lua_tests!(
    blueprint_builder,
    builtin_layers,
    engine_runs,
    eval_errors,
    exec,
    flow_builders,
    interrupt,
    journal,
    layers,
    operators,
    script_agents,
    std_layers,
    std_pipeline,
    structured_errors,
    tokens,
    waits,
);

#[test]
fn every_script_has_a_test() {
    // Scripts that need a server are run by the tests that start it.
    let served = crate::http::SCRIPTS;
    let missing: Vec<String> = scripts()
        .into_iter()
        .filter(|name| !TESTED.contains(&name.as_str()) && !served.contains(&name.as_str()))
        .collect();
    assert!(missing.is_empty(), "tests/lua scripts without a test: add {missing:?} to lua_tests! in {}", file!());
}
