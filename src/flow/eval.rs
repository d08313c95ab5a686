//! The async node evaluator. Placeholder until the evaluator lands.

/// Evaluates flows over a dispatcher.
pub struct Evaluator;
