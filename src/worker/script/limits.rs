//! What bounds one script call: its limits, the errors that name them, and the count hook
//! that enforces the instruction count and the clock inside the VM (time spent inside a C
//! function never reaches the hook: see `watchdog.rs`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, VmState};

use crate::value::Value;
use crate::value::lua::DEFAULT_MAX_RESULT_BYTES;

/// The limits of one call; a spec sets each, the host supplies the rest (docs/agents.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Lua VM instructions, counted in steps of at most 1,000.
    pub max_instructions: u64,
    /// Bytes the call may allocate on top of what the VM held when it started.
    pub max_memory: u64,
    /// Wall-clock time from the moment a VM picks the call up.
    pub timeout_ms: u64,
    /// How much what the script returns, raises or passes to a bridge may take in the host
    /// (see `crate::host::convert`).
    pub max_result_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_instructions: 100_000_000,
            max_memory: 64 * 1024 * 1024,
            timeout_ms: 10_000,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
        }
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

    pub(super) fn time_out(&self) {
        let _ = self.state.compare_exchange(RUNNING, TIMED_OUT, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.state.load(Ordering::Relaxed) == CANCELLED
    }

    /// The breach the call was stopped for, if it was.
    pub(super) fn stopped(&self, limits: Limits) -> Option<Breach> {
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

/// `timeout_ms` after `now`; a timeout beyond a year is as good as none.
pub(super) fn deadline_after(now: Instant, timeout_ms: u64) -> Instant {
    const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
    now + Duration::from_millis(timeout_ms.min(YEAR_MS))
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
