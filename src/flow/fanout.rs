//! `fanout`: one isolated lane per item, combined by the node's join.
//!
//! A lane is a clone of the parent ctx (a reference-count bump) with its item written at
//! `bind`, so lanes never see each other's writes or reach the parent. Lanes are futures in a
//! `FuturesUnordered` on the evaluator's own thread; a join that has its answer returns and
//! drops the set, which cancels the lanes still running at their next await.

use std::future::Future;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::at::At;
use super::dispatch::Dispatcher;
use super::error::FlowError;
use super::eval::{Evaluator, write};
use super::ir::{Fanout, Join};
use crate::value::Value;

type LaneResult = Result<Value, FlowError>;

impl<D: Dispatcher> Evaluator<'_, D> {
    /// Runs the lanes, combines them by `join` and writes the result at `out`; `at` is the
    /// fanout's place in the flow.
    pub(super) async fn fanout(&self, fanout: &Fanout, ctx: &mut Value, at: &At<'_>) -> Result<(), FlowError> {
        let items_at = at.field("items");
        let items = match self.expr(&fanout.items, ctx, &items_at)? {
            Value::Array(items) => items,
            other => {
                return Err(FlowError::eval(format!("fanout items must be an array, got {}", other.type_name()))
                    .with_value(other)
                    .with_pointer(|| items_at.pointer()));
            }
        };
        let limit = match fanout.max_concurrency {
            Some(n) if n > 0 => n as usize,
            _ => usize::MAX,
        };
        let base: &Value = ctx;
        let start = |i: usize| {
            // Counted from the moment it is queued, so a lane not yet polled is not taken
            // for one that waits.
            let strand = Strand::new(self.dispatcher, 1);
            let lane = self.lane(fanout, base, items[i].clone(), at);
            async move {
                let _strand = strand;
                lane.await
            }
        };
        // The flow itself waits on the join meanwhile: one strand fewer until it goes on.
        let _paused = Strand::new(self.dispatcher, -1);
        let result = match fanout.join {
            Join::All => {
                let mut results = vec![Value::Null; items.len()];
                let failed = run_lanes(items.len(), limit, start, |i, outcome| match outcome {
                    Ok(value) => {
                        results[i] = value;
                        None
                    }
                    Err(err) => Some(err),
                })
                .await;
                match failed {
                    Some(err) => return Err(err),
                    None => Value::array(results),
                }
            }
            Join::Any => {
                need_an_item(fanout.join, items.len())?;
                let mut last_error = None;
                let won = run_lanes(items.len(), limit, start, |_, outcome| match outcome {
                    Ok(value) => Some(value),
                    Err(err) => {
                        last_error = Some(err);
                        None
                    }
                })
                .await;
                match (won, last_error) {
                    (Some(value), _) => value,
                    (None, Some(err)) => return Err(err),
                    (None, None) => unreachable!("a lane ran, so it either won or failed"),
                }
            }
            Join::Race => {
                need_an_item(fanout.join, items.len())?;
                let first = run_lanes(items.len(), limit, start, |_, outcome| Some(outcome)).await;
                first.expect("a lane ran, so one settled first")?
            }
            Join::AllSettled => {
                let mut settled = vec![Value::Null; items.len()];
                run_lanes(items.len(), limit, start, |i, outcome| {
                    settled[i] = match outcome {
                        Ok(value) => Value::from_pairs([("status", Value::from("fulfilled")), ("value", value)]),
                        Err(err) => {
                            Value::from_pairs([("status", Value::from("rejected")), ("reason", err.to_value())])
                        }
                    };
                    None::<()>
                })
                .await;
                Value::array(settled)
            }
        };
        write(&fanout.out, ctx, result, &at.field("out"))
    }

    /// One lane: its own ctx with the item bound, the body run over it, then the whole lane ctx
    /// or the value at `collect`.
    async fn lane(&self, fanout: &Fanout, base: &Value, item: Value, at: &At<'_>) -> LaneResult {
        let mut lane = base.clone();
        write(&fanout.bind, &mut lane, item, &at.field("bind"))?;
        self.node(&fanout.body, &mut lane, &at.field("body")).await?;
        match &fanout.collect {
            Some(path) => {
                let collected =
                    path.0.read(&lane).map_err(|e| FlowError::from(e).with_pointer(|| at.field("collect").pointer()));
                Ok(collected?.clone())
            }
            None => Ok(lane),
        }
    }
}

/// A change in the number of the flow's strands, undone when dropped: a lane's `+1`, the
/// paused flow's `-1` (see [`Dispatcher::strands`]).
struct Strand<'d, D: Dispatcher> {
    dispatcher: &'d D,
    delta: isize,
}

impl<'d, D: Dispatcher> Strand<'d, D> {
    fn new(dispatcher: &'d D, delta: isize) -> Self {
        dispatcher.strands(delta);
        Strand { dispatcher, delta }
    }
}

impl<D: Dispatcher> Drop for Strand<'_, D> {
    fn drop(&mut self) {
        self.dispatcher.strands(-self.delta);
    }
}

/// `any` and `race` have no answer for zero lanes.
fn need_an_item(join: Join, count: usize) -> Result<(), FlowError> {
    if count == 0 {
        return Err(FlowError::eval(format!("fanout join {} needs at least one item", join.name())));
    }
    Ok(())
}

/// Runs lanes `0..count`, at most `limit` at once (the next starts as one settles), and hands
/// each outcome to `settle` in completion order. Returns the first verdict `settle` gives,
/// dropping — and so cancelling — the lanes still running, or `None` once all have settled.
async fn run_lanes<F, R>(
    count: usize,
    limit: usize,
    mut start: impl FnMut(usize) -> F,
    mut settle: impl FnMut(usize, LaneResult) -> Option<R>,
) -> Option<R>
where
    F: Future<Output = LaneResult>,
{
    let mut running = FuturesUnordered::new();
    let mut next = 0;
    loop {
        while next < count && running.len() < limit {
            let lane = start(next);
            let index = next;
            running.push(async move { (index, lane.await) });
            next += 1;
        }
        let (index, outcome) = running.next().await?;
        if let Some(verdict) = settle(index, outcome) {
            return Some(verdict);
        }
    }
}
