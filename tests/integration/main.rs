//! The integration tests: one test binary (one link, on a machine with few cores), a module
//! per area, and the helpers they share in [`util`].
//!
//! Tests that run the real `swarm` binary find it through `CARGO_BIN_EXE_swarm`; the Lua
//! conformance scripts under `tests/lua/` each get a test of their own.

mod util;

mod api;
mod cli;
mod cli_help;
mod cli_output;
mod compile_errors;
mod console_operator;
mod docs_examples;
mod embed;
mod engine_ops;
mod engine_runs;
mod flow_eval;
mod flow_expr;
mod gate;
mod http;
mod interrupt_cli;
mod journal_cli;
mod journal_lua;
mod lua_scripts;
mod mcp;
mod remote;
mod repl_piped;
mod repl_pty;
mod round_trip;
mod run_cli;
mod script_agents;
mod script_cli;
mod script_cpu;
mod script_limits;
mod script_sandbox;
mod serve_cli;
mod serve_repl;
mod stdlib;
mod subprocess_cli;
mod subprocess_keep_alive;
mod subprocess_process;
mod subprocess_streams;
mod subprocess_tree_cli;
mod token_scrub_cli;
mod types_and_init;
mod waits_cli;
mod watch_cli;
mod web;
