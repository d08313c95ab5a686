//! luaswarm: a Lua-first host for agent swarms. The pipeline: Lua module → blueprint → compile
//! → link → dispatch → evaluate. The README and docs/ describe what a user sees.

pub mod blueprint;
pub mod cli;
pub mod engine;
pub mod flow;
pub mod gate;
pub mod host;
pub mod interrupt;
pub mod middleware;
pub mod reload;
pub mod repl;
pub mod store;
pub mod value;
pub mod worker;

pub use value::Value;
