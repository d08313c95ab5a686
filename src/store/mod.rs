//! Stores: where large step outputs go and the run journal (docs/engine.md).

pub mod journal;
pub mod output;

pub use output::{MemoryOutputStore, OutputRecord, OutputStore};
