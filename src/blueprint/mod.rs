//! Blueprints: the compiler (stage 1: specs to spawners, then the link) and the graph.

pub mod compile;
pub mod graph;
/// The schema is plain data that the engine and the workers read too, so it sits below them
/// (`crate::schema`); it is re-exported here, where blueprints are compiled.
pub use crate::schema;

pub use crate::schema::{AgentDef, Blueprint, Hints, Location, OperatorDef, Profile, SourceMap, Strategy};
