//! Keeping the host thread stoppable while Lua runs on it.
//!
//! The host VM and the flow evaluator share one thread, so Lua that never yields (a `while
//! true do end` in an inline agent, a module whose load loops) would starve every timer,
//! signal handler and other lane on it. The host VM therefore runs an instruction-count hook
//! that asks this module what to do every few thousand instructions:
//!
//! - **Preempt.** Lua polled as an async coroutine (inline agents, layers, REPL chunks,
//!   timer bodies: see [`Preemptible`]) is made to yield once it has held the thread for a
//!   slice ([`SLICE`]). The runtime then fires timers and signals, so a step's `timeout_ms`,
//!   a run's `cancel()` and Ctrl-C drop the coroutine exactly as they drop any future.
//! - **Stop.** Lua that cannot yield (a module being loaded, an extern, Lua called from a C
//!   function such as a `table.sort` comparator, a coroutine the script made itself) is
//!   stopped with an error when a deadline it runs under has passed ([`Deadline`]: a load's
//!   time limit, a step attempt's timeout) or when SIGINT or SIGTERM arrived
//!   ([`watch_signal`]).
//!
//! The state is per OS thread: every host VM on a thread shares it, and only one of them runs
//! Lua at a time.

pub mod lua;

use std::cell::RefCell;
use std::ffi::c_void;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How long async Lua may hold the thread before it is made to yield.
pub const SLICE: Duration = Duration::from_millis(2);

/// Why Lua that cannot yield is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT or SIGTERM arrived (the signal number).
    Signal(i32),
    /// A deadline passed: what it limited and its length.
    Deadline(Limit, Duration),
}

/// What a [`Deadline`] limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Loading a module (`--load-timeout`).
    Load,
    /// One attempt of a step (`timeout_ms`).
    Attempt,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Signal(libc::SIGINT) => write!(f, "interrupted (SIGINT)"),
            StopReason::Signal(libc::SIGTERM) => write!(f, "interrupted (SIGTERM)"),
            StopReason::Signal(n) => write!(f, "interrupted (signal {n})"),
            StopReason::Deadline(Limit::Load, d) => {
                write!(f, "loading took longer than {} ms (--load-timeout)", d.as_millis())
            }
            StopReason::Deadline(Limit::Attempt, d) => write!(f, "attempt timed out after {} ms", d.as_millis()),
        }
    }
}

/// The error the hook raises to stop Lua (see [`StopReason`]); callers downcast it to tell a
/// stop from the script's own errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Stopped(pub StopReason);

/// What the hook should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let Lua go on.
    Continue,
    /// Yield the running coroutine back to its poller.
    Yield,
    /// Stop Lua with [`Stopped`].
    Stop(StopReason),
}

/// Signals received so far, and how many of them the program has dealt with.
static SIGNALS: AtomicU64 = AtomicU64::new(0);
static HANDLED: AtomicU64 = AtomicU64::new(0);
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);

#[derive(Default)]
struct ThreadState {
    /// The async Lua threads being polled, innermost last (a sub-dispatch polls one inside
    /// another).
    polled: Vec<*const c_void>,
    /// When the outermost poll began: the slice the hook measures.
    slice_start: Option<Instant>,
    /// The hook asked for a yield in this slice and is still running: the coroutine cannot
    /// yield where it is.
    yield_requested: bool,
    /// The hook's last yield went through; the poller should let the runtime run first.
    hook_yielded: bool,
    /// Deadlines of the code being run, innermost last.
    deadlines: Vec<(Instant, Limit, Duration)>,
}

thread_local! {
    static STATE: RefCell<ThreadState> = RefCell::default();
}

/// Counts `signal` (SIGINT or SIGTERM) from now on, so Lua that cannot yield stops when it
/// arrives. Call it only where the program also handles that signal itself: it replaces the
/// default action of ending the process. Calling it again for the same signal does nothing.
pub fn watch_signal(signal: i32) -> std::io::Result<()> {
    static WATCHED: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());
    let mut watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    if watched.contains(&signal) {
        return Ok(());
    }
    // SAFETY: the action only does atomic stores, which are async-signal-safe.
    unsafe {
        signal_hook_registry::register(signal, move || {
            LAST_SIGNAL.store(signal, Ordering::SeqCst);
            SIGNALS.fetch_add(1, Ordering::SeqCst);
        })?;
    }
    watched.push(signal);
    Ok(())
}

/// The signals received so far have been dealt with (a run cancelled, a prompt shown again):
/// Lua started from now on runs until the next one.
pub fn acknowledge_signals() {
    HANDLED.store(SIGNALS.load(Ordering::SeqCst), Ordering::SeqCst);
}

fn pending_signal() -> Option<i32> {
    (SIGNALS.load(Ordering::Relaxed) != HANDLED.load(Ordering::Relaxed)).then(|| LAST_SIGNAL.load(Ordering::SeqCst))
}

/// The hook's question: `current` names the Lua thread running now (asked only when needed,
/// as it costs a registry lookup).
pub fn decide(current: impl FnOnce() -> *const c_void) -> Decision {
    STATE.with(|state| {
        let mut state = state.borrow_mut();
        let now = Instant::now();
        let stop = pending_signal().map(StopReason::Signal).or_else(|| {
            let (at, limit, length) = *state.deadlines.iter().min_by_key(|(at, ..)| *at)?;
            (now >= at).then_some(StopReason::Deadline(limit, length))
        });
        let slice_over = state.slice_start.is_some_and(|start| now.duration_since(start) >= SLICE);
        if stop.is_none() && !slice_over {
            return Decision::Continue;
        }
        let yieldable = state.polled.last().is_some_and(|&top| top == current()) && !state.yield_requested;
        if yieldable {
            // Whether the yield goes through is known at the next call: a poll that ended
            // resets the flag.
            state.yield_requested = true;
            state.hook_yielded = true;
            return Decision::Yield;
        }
        state.hook_yielded = false;
        match stop {
            Some(reason) => Decision::Stop(reason),
            None => Decision::Continue,
        }
    })
}

/// Runs `f` under a deadline: Lua in it that cannot yield is stopped once it passes.
pub fn with_deadline<R>(limit: Limit, length: Duration, f: impl FnOnce() -> R) -> R {
    let _deadline = Deadline::enter(limit, length);
    f()
}

/// A deadline in force while it lives (see [`with_deadline`]).
pub struct Deadline(());

impl Deadline {
    /// Puts a deadline of `length` from now in force on this thread until the guard drops; with
    /// several in force, the earliest counts.
    pub fn enter(limit: Limit, length: Duration) -> Deadline {
        let at = Instant::now().checked_add(length).unwrap_or_else(far_future);
        STATE.with(|s| s.borrow_mut().deadlines.push((at, limit, length)));
        Deadline(())
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        STATE.with(|s| s.borrow_mut().deadlines.pop());
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// A future whose polls run under a deadline fixed when it was made (a step attempt's
/// `timeout_ms`): the async timeout fires between polls, this stops Lua that cannot yield
/// within one.
pub struct DeadlineScoped<F> {
    inner: F,
    at: Instant,
    limit: Limit,
    length: Duration,
}

/// `inner`, polled under a deadline `length` from now.
pub fn deadline_scoped<F: Future + Unpin>(limit: Limit, length: Duration, inner: F) -> DeadlineScoped<F> {
    let at = Instant::now().checked_add(length).unwrap_or_else(far_future);
    DeadlineScoped { inner, at, limit, length }
}

impl<F: Future + Unpin> Future for DeadlineScoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        STATE.with(|s| s.borrow_mut().deadlines.push((this.at, this.limit, this.length)));
        let _pop = PopDeadline;
        Pin::new(&mut this.inner).poll(cx)
    }
}

struct PopDeadline;

impl Drop for PopDeadline {
    fn drop(&mut self) {
        STATE.with(|s| s.borrow_mut().deadlines.pop());
    }
}

/// Polls an async Lua coroutine (`thread`, identified by its pointer) so the hook may
/// preempt it: while it is polled it is the one the hook may yield, and after a yield the
/// hook forced, it lets the runtime poll its timers and signals before resuming.
pub struct Preemptible<F> {
    inner: F,
    thread: *const c_void,
    /// Set when the hook forced a yield: the next poll defers to the runtime first.
    after_hook_yield: bool,
    deferring: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

/// `inner` (the future of the Lua coroutine `thread`) made preemptible.
pub fn preemptible<F: Future + Unpin>(thread: *const c_void, inner: F) -> Preemptible<F> {
    Preemptible { inner, thread, after_hook_yield: false, deferring: None }
}

impl<F: Future + Unpin> Future for Preemptible<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if this.after_hook_yield {
            // The coroutine woke itself at once when it yielded; yielding to the runtime once
            // more lets the driver run (tokio defers this wake until it has polled timers).
            this.after_hook_yield = false;
            let mut defer: Pin<Box<dyn Future<Output = ()>>> = Box::pin(tokio::task::yield_now());
            if defer.as_mut().poll(cx).is_pending() {
                this.deferring = Some(defer);
                return Poll::Pending;
            }
        }
        if let Some(defer) = &mut this.deferring {
            if defer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.deferring = None;
        }
        let polled = Polled::enter(this.thread);
        let poll = Pin::new(&mut this.inner).poll(cx);
        if poll.is_pending() && polled.hook_yielded() {
            this.after_hook_yield = true;
        }
        poll
    }
}

/// Marks `thread` as the coroutine being polled, for the length of one poll.
struct Polled;

impl Polled {
    fn enter(thread: *const c_void) -> Polled {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            if s.polled.is_empty() {
                s.slice_start = Some(Instant::now());
            }
            s.polled.push(thread);
            s.yield_requested = false;
            s.hook_yielded = false;
        });
        Polled
    }

    /// Whether the poll ended because the hook made the coroutine yield.
    fn hook_yielded(&self) -> bool {
        STATE.with(|s| std::mem::take(&mut s.borrow_mut().hook_yielded))
    }
}

impl Drop for Polled {
    fn drop(&mut self) {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.polled.pop();
            s.yield_requested = false;
            if s.polled.is_empty() {
                s.slice_start = None;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptr(n: usize) -> *const c_void {
        n as *const c_void
    }

    #[test]
    fn nothing_to_do_outside_polls_and_deadlines() {
        assert_eq!(decide(|| ptr(1)), Decision::Continue);
    }

    #[test]
    fn a_passed_deadline_stops_code_that_cannot_yield() {
        let _d = Deadline::enter(Limit::Load, Duration::ZERO);
        assert_eq!(decide(|| ptr(1)), Decision::Stop(StopReason::Deadline(Limit::Load, Duration::ZERO)));
    }

    #[test]
    fn deadlines_end_with_their_scope() {
        with_deadline(Limit::Load, Duration::ZERO, || {
            assert!(matches!(decide(|| ptr(1)), Decision::Stop(_)));
        });
        assert_eq!(decide(|| ptr(1)), Decision::Continue);
    }

    #[test]
    fn the_polled_coroutine_yields_first_and_is_stopped_if_it_cannot() {
        let _polled = Polled::enter(ptr(7));
        let _d = Deadline::enter(Limit::Attempt, Duration::ZERO);
        // Another coroutine (one the script made) cannot be yielded by us.
        assert!(matches!(decide(|| ptr(8)), Decision::Stop(_)));
        assert_eq!(decide(|| ptr(7)), Decision::Yield);
        // Still running after asking: the yield was refused (a C boundary), so stop.
        assert!(matches!(decide(|| ptr(7)), Decision::Stop(_)));
    }

    #[test]
    fn a_long_slice_yields_without_a_stop() {
        let _polled = Polled::enter(ptr(3));
        STATE.with(|s| s.borrow_mut().slice_start = Some(Instant::now() - SLICE));
        assert_eq!(decide(|| ptr(3)), Decision::Yield);
        assert_eq!(decide(|| ptr(3)), Decision::Continue);
    }
}
