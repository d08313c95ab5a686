//! luaswarm: a Lua-first host for agent swarms. The pipeline: Lua module → blueprint → compile
//! → link → dispatch → evaluate. The README and docs/ describe what a user sees.
//!
//! The embedding API is [`host::Host`] (a Lua VM with the `swarm` module), [`engine::Engine`],
//! the [`blueprint`] types, the [`worker`]s and the [`middleware`] layers. The `swarm` binary's
//! front end (the command line, the REPL and the hot-reload watcher) sits behind the default
//! `cli` feature; build with `default-features = false` to embed the library without it.

#![warn(missing_docs)]

pub mod blueprint;
#[cfg(feature = "cli")]
pub mod cli;
pub mod engine;
pub mod flow;
pub mod gate;
pub mod host;
pub mod interrupt;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod middleware;
#[cfg(feature = "cli")]
pub mod reload;
#[cfg(feature = "cli")]
pub mod repl;
pub mod schema;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "cli")]
mod stdout;
pub mod store;
pub mod value;
pub mod worker;

pub use value::Value;

#[cfg(test)]
mod layering;
