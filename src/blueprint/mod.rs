//! Blueprints: the schema (plain data), its source map, and the compiler (stage 1).

pub mod compile;
pub mod graph;
pub mod schema;

pub use schema::{AgentDef, Blueprint, Hints, Location, OperatorDef, Profile, SourceMap, Strategy};
