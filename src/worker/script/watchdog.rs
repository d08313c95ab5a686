//! The watchdog: a thread that wakes at the earliest deadline of the calls in flight. A
//! script looping in Lua is stopped by the count hook; one inside a C function (a pattern
//! that backtracks for minutes) never reaches it. So at the deadline the watchdog answers the
//! attempt itself, and a VM that has still not stopped a moment later is retired: the pool
//! replaces it, and its thread exits whenever the C function returns.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::Reply;
use super::limits::{CallControl, deadline_after};

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
    /// The VM thread's kernel id, so a retired thread can be moved out of the way.
    pub tid: AtomicI32,
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
                        // pool runs without it, and it runs only on a core nothing else wants.
                        watch.retired.store(true, Ordering::SeqCst);
                        make_idle(watch.tid.load(Ordering::SeqCst));
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

/// The calling thread's kernel id (what [`make_idle`] takes).
pub fn current_tid() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Moves a thread the pool gave up on to the idle scheduling class (`SCHED_IDLE`): it runs
/// only when no other thread wants the core, so a script stuck in C cannot take one from the
/// host or the VMs that replaced it. Elsewhere than on Linux, its nice value goes to the lowest.
fn make_idle(tid: i32) {
    if tid <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `tid` is a thread of this process (it may have exited: then this fails harmlessly).
        let set = unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) };
        if set != 0 {
            tracing::warn!("cannot lower the priority of a stuck script VM: {}", std::io::Error::last_os_error());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::script::limits::{Breach, Limits};

    #[test]
    fn an_overrunning_call_is_answered_at_its_deadline_then_its_vm_retired() {
        let watchdog = Arc::new(Watchdog::new(Duration::from_millis(50)));
        let (retired_tx, retired_rx) = std::sync::mpsc::channel();
        let thread = {
            let watchdog = watchdog.clone();
            std::thread::spawn(move || watchdog.run(move || retired_tx.send(()).unwrap()))
        };
        let watch = watchdog.watch();
        let control = Arc::new(CallControl::default());
        let (reply, mut replies) = tokio::sync::mpsc::unbounded_channel();
        let started = Instant::now();
        watchdog.begin(&watch, control.clone(), reply, 20);

        // The VM never comes back, as if stuck in C: the attempt hears at the deadline...
        assert!(matches!(replies.blocking_recv(), Some(Reply::TimedOut(20))));
        assert!(started.elapsed() >= Duration::from_millis(20));
        let limits = Limits { timeout_ms: 20, ..Limits::default() };
        assert_eq!(control.stopped(limits), Some(Breach::Time(20)), "the hook would stop a Lua loop");
        // ...and the VM is retired once the grace has passed.
        retired_rx.recv_timeout(Duration::from_secs(10)).expect("the stuck VM is retired");
        assert!(watch.is_retired());
        assert!(watchdog.end(&watch), "the thread learns it must stop when it returns");

        watchdog.close();
        thread.join().unwrap();
    }

    #[test]
    fn a_call_that_ends_in_time_is_left_alone() {
        let watchdog = Arc::new(Watchdog::new(Duration::from_millis(10)));
        let thread = {
            let watchdog = watchdog.clone();
            std::thread::spawn(move || watchdog.run(|| panic!("nothing is retired")))
        };
        let watch = watchdog.watch();
        let (reply, mut replies) = tokio::sync::mpsc::unbounded_channel();
        watchdog.begin(&watch, Arc::new(CallControl::default()), reply, 60_000);
        assert!(!watchdog.end(&watch));
        watchdog.close();
        thread.join().unwrap();
        assert!(replies.try_recv().is_err(), "no timeout was reported");
    }
}
