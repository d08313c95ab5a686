//! Stores: where large step outputs go (DESIGN §7) and the run journal (DESIGN §9).

pub mod journal;
pub mod output;

pub use output::{MemoryOutputStore, OutputRecord, OutputStore};
