//! Stores: where large step outputs go and the run journal (docs/engine.md).

pub mod journal;

/// The output-store port is the engine's (with its in-memory store); the SQLite one beside the
/// journal implements it.
pub use crate::engine::outputs::{self as output, MemoryOutputStore, OutputRecord, OutputStore};
