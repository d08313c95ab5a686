//! What bounds one script call: the instruction count and the clock, checked by a count hook
//! inside the VM, and a watchdog thread for the time a VM spends inside C functions (a
//! pattern that backtracks for minutes never reaches a hook), which answers the attempt on
//! time and retires a VM that does not stop.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, VmState};
use tokio::sync::mpsc::UnboundedSender;

use super::Reply;
use crate::value::Value;

/// The limits of one call; a spec sets each, the host supplies the rest (DESIGN §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Lua VM instructions, counted in steps of at most 1,000.
    pub max_instructions: u64,
    /// Bytes the call may allocate on top of what the VM held when it started.
    pub max_memory: u64,
    /// Wall-clock time from the moment a VM picks the call up.
    pub timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_instructions: 100_000_000, max_memory: 64 * 1024 * 1024, timeout_ms: 10_000 }
    }
}

/// Why a call was stopped from outside the script's own logic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breach {
    Instructions(u64),
    Memory(u64),
    Time(u64),
    /// The attempt was dropped (cancelled, or abandoned by a step timeout).
    Cancelled,
}

impl Breach {
    pub fn message(self) -> String {
        match self {
            Breach::Instructions(n) => format!("instruction limit of {n} exceeded"),
            Breach::Memory(n) => format!("memory limit of {n} bytes exceeded"),
            Breach::Time(n) => format!("time limit of {n} ms exceeded"),
            Breach::Cancelled => "the attempt was cancelled".to_string(),
        }
    }

    /// `{limit, max}`: lets a catch or a retry policy tell the limits apart without parsing.
    pub fn value(self) -> Option<Value> {
        let (limit, max) = match self {
            Breach::Instructions(n) => ("max_instructions", n),
            Breach::Memory(n) => ("max_memory", n),
            Breach::Time(n) => ("timeout_ms", n),
            Breach::Cancelled => return None,
        };
        Some(Value::from_pairs([("limit", Value::string(limit)), ("max", Value::int(max as i64))]))
    }
}

const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
const TIMED_OUT: u8 = 2;

/// Shared by the host's attempt, the VM running the call and the watchdog: how the first two
/// are told to stop.
#[derive(Default)]
pub struct CallControl {
    state: AtomicU8,
}

impl CallControl {
    pub fn cancel(&self) {
        let _ = self.state.compare_exchange(RUNNING, CANCELLED, Ordering::SeqCst, Ordering::SeqCst);
    }

    fn time_out(&self) {
        let _ = self.state.compare_exchange(RUNNING, TIMED_OUT, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.state.load(Ordering::Relaxed) == CANCELLED
    }

    /// The breach the call was stopped for, if it was.
    fn stopped(&self, limits: Limits) -> Option<Breach> {
        match self.state.load(Ordering::Relaxed) {
            RUNNING => None,
            CANCELLED => Some(Breach::Cancelled),
            _ => Some(Breach::Time(limits.timeout_ms)),
        }
    }
}

/// Instructions between two hook calls; the instruction limit is exact to this many.
const GRAIN: u64 = 1_000;

/// The per-VM state the count hook reads: the current call's budget and whether it tripped.
/// Once tripped, a call stays tripped: every later hook, `pcall` and `coroutine.resume`
/// raises again, so a script cannot catch its way past a limit.
pub struct Meter {
    limits: Cell<Limits>,
    used: Cell<u64>,
    grain: Cell<u64>,
    deadline: Cell<Option<Instant>>,
    control: RefCell<Option<Arc<CallControl>>>,
    tripped: Cell<Option<Breach>>,
}

impl Meter {
    /// Installs the count hook on `lua` (every thread, coroutines included) and returns the
    /// meter it reads.
    pub fn install(lua: &Lua) -> mlua::Result<Rc<Meter>> {
        let meter = Rc::new(Meter {
            limits: Cell::new(Limits::default()),
            used: Cell::new(0),
            grain: Cell::new(GRAIN),
            deadline: Cell::new(None),
            control: RefCell::new(None),
            tripped: Cell::new(None),
        });
        meter.set_hook(lua, GRAIN)?;
        Ok(meter)
    }

    fn set_hook(self: &Rc<Meter>, lua: &Lua, grain: u64) -> mlua::Result<()> {
        let meter = self.clone();
        self.grain.set(grain);
        // A global hook, so coroutines a script creates inherit it.
        lua.set_global_hook(HookTriggers::new().every_nth_instruction(grain as u32), move |_, _| {
            meter.tick().map(|()| VmState::Continue)
        })
    }

    /// Arms the meter for a call.
    pub fn begin(self: &Rc<Meter>, lua: &Lua, limits: Limits, control: Arc<CallControl>) -> mlua::Result<()> {
        let grain = limits.max_instructions.clamp(1, GRAIN);
        if grain != self.grain.get() {
            self.set_hook(lua, grain)?;
        }
        self.limits.set(limits);
        self.used.set(0);
        self.deadline.set(Some(deadline_after(Instant::now(), limits.timeout_ms)));
        *self.control.borrow_mut() = Some(control);
        self.tripped.set(None);
        Ok(())
    }

    /// Disarms the meter; returns the breach, if the call tripped one.
    pub fn end(&self) -> Option<Breach> {
        self.control.borrow_mut().take();
        self.deadline.set(None);
        self.tripped.take()
    }

    fn tick(&self) -> mlua::Result<()> {
        self.check()?;
        let used = self.used.get() + self.grain.get();
        self.used.set(used);
        let limits = self.limits.get();
        if used > limits.max_instructions {
            return Err(self.trip(Breach::Instructions(limits.max_instructions)));
        }
        if let Some(breach) = self.control.borrow().as_ref().and_then(|c| c.stopped(limits)) {
            return Err(self.trip(breach));
        }
        if self.deadline.get().is_some_and(|d| Instant::now() >= d) {
            return Err(self.trip(Breach::Time(limits.timeout_ms)));
        }
        Ok(())
    }

    /// Raises the breach again if the call has tripped: what `pcall` and friends call after
    /// catching, so the breach always reaches the top.
    pub fn check(&self) -> mlua::Result<()> {
        match self.tripped.get() {
            Some(breach) => Err(mlua::Error::runtime(breach.message())),
            None => Ok(()),
        }
    }

    /// Records the breach (the first one wins) and returns the error that raises it.
    pub fn trip(&self, breach: Breach) -> mlua::Error {
        let first = *self.tripped.get().get_or_insert(breach);
        self.tripped.set(Some(first));
        mlua::Error::runtime(first.message())
    }

    /// Trips with the reason the host gave for stopping the call, or as cancelled.
    pub fn trip_stopped(&self) -> mlua::Error {
        let breach = self.control.borrow().as_ref().and_then(|c| c.stopped(self.limits.get()));
        self.trip(breach.unwrap_or(Breach::Cancelled))
    }
}

/// What the watchdog knows about the call a VM is running.
struct Active {
    control: Arc<CallControl>,
    reply: UnboundedSender<Reply>,
    deadline: Instant,
    timeout_ms: u64,
    timed_out_at: Option<Instant>,
}

/// One VM thread as the watchdog sees it.
#[derive(Default)]
pub struct Watch {
    active: Mutex<Option<Active>>,
    retired: AtomicBool,
    /// Set as the thread's last act, so shutdown knows it can join without waiting.
    pub exited: AtomicBool,
}

impl Watch {
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }
}

/// The watchdog: wakes at the earliest deadline of the calls in flight.
pub struct Watchdog {
    watched: Mutex<Vec<Arc<Watch>>>,
    wake: Condvar,
    /// The earliest deadline it sleeps towards, in ns since `epoch` (`u64::MAX`: none).
    next_wake: AtomicU64,
    epoch: Instant,
    closing: AtomicBool,
    /// How long a VM that overran its deadline may take to stop before it is replaced.
    retire_after: Duration,
}

impl Watchdog {
    pub fn new(retire_after: Duration) -> Watchdog {
        Watchdog {
            watched: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            next_wake: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            closing: AtomicBool::new(false),
            retire_after,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Watch>>> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching a new VM thread.
    pub fn watch(&self) -> Arc<Watch> {
        let watch = Arc::new(Watch::default());
        self.lock().push(watch.clone());
        watch
    }

    /// A VM starts a call: watch its deadline.
    pub fn begin(&self, watch: &Watch, control: Arc<CallControl>, reply: UnboundedSender<Reply>, timeout_ms: u64) {
        let deadline = deadline_after(Instant::now(), timeout_ms);
        *lock(&watch.active) = Some(Active { control, reply, deadline, timeout_ms, timed_out_at: None });
        let at = self.since_epoch(deadline);
        if at < self.next_wake.load(Ordering::SeqCst) {
            // Taking the lock orders this after the watchdog has gone to sleep, so the
            // notification is not lost.
            let _watched = self.lock();
            self.wake.notify_one();
        }
    }

    /// The call is over; true if the VM was retired meanwhile and its thread must stop.
    pub fn end(&self, watch: &Watch) -> bool {
        let mut active = lock(&watch.active);
        active.take();
        watch.is_retired()
    }

    /// Stops the calls in flight (their scripts trip at the next hook) and the watchdog.
    pub fn close(&self) {
        let watched = self.lock();
        self.closing.store(true, Ordering::SeqCst);
        for watch in watched.iter() {
            if let Some(active) = lock(&watch.active).as_ref() {
                active.control.cancel();
            }
        }
        self.wake.notify_all();
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos().min(u64::MAX as u128 - 1) as u64
    }

    /// The watchdog thread's loop. `replace` is called (without locks held) once per VM
    /// retired for not stopping after its deadline.
    pub fn run(&self, replace: impl Fn()) {
        let mut watched = self.lock();
        while !self.closing.load(Ordering::SeqCst) {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            let mut retired = 0;
            watched.retain(|watch| {
                let mut active = lock(&watch.active);
                let Some(call) = active.as_mut() else { return !watch.exited.load(Ordering::SeqCst) };
                if call.timed_out_at.is_none() && now >= call.deadline {
                    // Answer the attempt now, whatever the VM is doing; the hook stops a
                    // script in Lua code at its next count.
                    call.control.time_out();
                    let _ = call.reply.send(Reply::TimedOut(call.timeout_ms));
                    call.timed_out_at = Some(now);
                }
                let wake_at = match call.timed_out_at {
                    Some(at) if now >= at + self.retire_after => {
                        // Stuck in C: it stops when the C function returns; until then the
                        // pool runs without it.
                        watch.retired.store(true, Ordering::SeqCst);
                        retired += 1;
                        return false;
                    }
                    Some(at) => at + self.retire_after,
                    None => call.deadline,
                };
                next = Some(next.map_or(wake_at, |n| n.min(wake_at)));
                true
            });
            if retired > 0 {
                drop(watched);
                (0..retired).for_each(|_| replace());
                watched = self.lock();
                continue;
            }
            self.next_wake.store(next.map_or(u64::MAX, |n| self.since_epoch(n)), Ordering::SeqCst);
            watched = match next {
                Some(at) => match self.wake.wait_timeout(watched, at.saturating_duration_since(now)) {
                    Ok((guard, _)) => guard,
                    Err(poisoned) => poisoned.into_inner().0,
                },
                None => self.wake.wait(watched).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// `timeout_ms` after `now`; a timeout beyond a year is as good as none.
fn deadline_after(now: Instant, timeout_ms: u64) -> Instant {
    const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
    now + Duration::from_millis(timeout_ms.min(YEAR_MS))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_has_its_own_message_and_value() {
        assert_eq!(Breach::Instructions(1_000_000).message(), "instruction limit of 1000000 exceeded");
        assert_eq!(Breach::Memory(67_108_864).message(), "memory limit of 67108864 bytes exceeded");
        assert_eq!(Breach::Time(100).message(), "time limit of 100 ms exceeded");
        assert_eq!(Breach::Time(100).value().unwrap().to_json(), r#"{"limit":"timeout_ms","max":100}"#);
        assert!(Breach::Cancelled.value().is_none());
    }

    #[test]
    fn the_first_breach_sticks_and_pcall_checks_raise_it_again() {
        let lua = Lua::new();
        let meter = Meter::install(&lua).unwrap();
        let limits = Limits { max_instructions: 5_000, ..Limits::default() };
        meter.begin(&lua, limits, Arc::new(CallControl::default())).unwrap();
        let err = lua.load("while true do end").exec().unwrap_err();
        assert!(err.to_string().contains("instruction limit of 5000 exceeded"), "{err}");
        assert_eq!(meter.trip(Breach::Time(1)).to_string(), "runtime error: instruction limit of 5000 exceeded");
        assert!(meter.check().is_err());
        assert_eq!(meter.end(), Some(Breach::Instructions(5_000)));
        assert!(meter.check().is_ok());
    }

    #[test]
    fn a_cancelled_control_stops_the_script_at_the_next_count() {
        let lua = Lua::new();
        let meter = Meter::install(&lua).unwrap();
        let control = Arc::new(CallControl::default());
        meter.begin(&lua, Limits::default(), control.clone()).unwrap();
        control.cancel();
        let err = lua.load("while true do end").exec().unwrap_err();
        assert!(err.to_string().contains("the attempt was cancelled"), "{err}");
        assert_eq!(meter.end(), Some(Breach::Cancelled));
    }
}
