//! The flow IR and its evaluator (docs/flows.md).

mod at;
pub mod dispatch;
pub mod error;
pub mod eval;
pub mod expr;
mod fanout;
pub mod ir;
pub mod path;
mod wire;

pub use dispatch::{Dispatcher, ExternTable, Externs, NoExterns};
pub use error::{ErrorKind, FlowError};
pub use eval::Evaluator;
pub use expr::eval_expr;
pub use ir::{
    Expr, Fanout, Field, Join, NODE_SHAPES, Node, PathExpr, Retry, RetryOn, Role, Shape, SignalName, Slot, Step, Wait,
};
pub use path::{Path, PathError, PathSyntaxError, Segment};
