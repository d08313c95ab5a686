//! Expression evaluation (DESIGN §2). Placeholder until the evaluator lands.
