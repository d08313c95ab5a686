//! Stores: where large step outputs go (DESIGN §7). The run journal joins them later.

pub mod output;

pub use output::{MemoryOutputStore, OutputRecord, OutputStore};
