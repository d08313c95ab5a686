//! luaswarm: a Lua-first host for agent swarms. See `DESIGN.md` in the shared folder and the
//! README for the pipeline: Lua module → blueprint → compile → link → dispatch → evaluate.

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
