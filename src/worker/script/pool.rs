//! The pool: VM threads taking calls from one queue, the watchdog thread, and the host's
//! handle, which starts them on the first call and stops them when the host goes.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::limits::{CallControl, Limits};
use super::sandbox::Sandbox;
use super::watchdog::{Watch, Watchdog, current_tid};
use super::{Call, Reply, ScriptFailure};

/// How a host's script pool is set up.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// VM threads; by default one per core, at least two.
    pub vms: usize,
    /// The limits of a script whose spec does not set them.
    pub limits: Limits,
    /// How long a VM past its deadline may take to stop before it is retired and replaced
    /// (its attempt is answered at the deadline regardless).
    pub retire_after: Duration,
    /// How long an idle VM thread polls for the next call before it sleeps, and how long an
    /// attempt polls for its answer when it is the only call in flight. Waking a sleeping
    /// thread costs tens of microseconds; a small script runs in a few.
    pub spin: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            vms: thread::available_parallelism().map_or(2, |n| n.get()).max(2),
            limits: Limits::default(),
            retire_after: Duration::from_millis(100),
            spin: Duration::from_micros(50),
        }
    }
}

/// What a pool has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// VM threads started, replacements included.
    pub vms_created: u64,
    /// VMs retired for not stopping after their deadline.
    pub vms_retired: u64,
    /// Retired VMs whose threads are still inside the C function they were stuck in.
    pub vms_stuck: u64,
    /// VMs rebuilt in place after failing below the script (a panic, a broken state).
    pub vms_rebuilt: u64,
    /// Calls a VM picked up.
    pub calls: u64,
    /// Scripts compiled, summed over the VMs (each VM compiles a script once).
    pub compiles: u64,
}

/// A host's script pool. Nothing starts until the first call.
pub struct ScriptPool {
    config: PoolConfig,
    running: OnceCell<Running>,
    closed: Cell<bool>,
    in_flight: Rc<Cell<usize>>,
}

/// A call handed to the pool; dropping it (the attempt is over, or abandoned) cancels the
/// call if a VM is still on it.
pub(super) struct InFlight {
    in_flight: Rc<Cell<usize>>,
    control: Arc<CallControl>,
}

impl InFlight {
    /// Whether this is the host's only call in flight (nothing else wants the host thread).
    pub fn alone(&self) -> bool {
        self.in_flight.get() == 1
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.in_flight.set(self.in_flight.get() - 1);
        self.control.cancel();
    }
}

impl ScriptPool {
    /// A pool that starts its VM threads on first use.
    pub fn new(config: PoolConfig) -> ScriptPool {
        ScriptPool { config, running: OnceCell::new(), closed: Cell::new(false), in_flight: Rc::default() }
    }

    /// The configuration the pool was made with.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Counters of the VMs the pool has started and retired.
    pub fn stats(&self) -> PoolStats {
        self.running.get().map(|r| r.shared.stats()).unwrap_or_default()
    }

    pub(super) fn submit(&self, call: Call) -> Result<InFlight, String> {
        if self.closed.get() {
            return Err("the script pool has shut down (its host is gone)".to_string());
        }
        if self.running.get().is_none() {
            let running = Running::start(&self.config).map_err(|e| format!("cannot start the script VMs: {e}"))?;
            let _ = self.running.set(running);
        }
        let running = self.running.get().ok_or("the script pool did not start")?;
        if running.shared.live() == 0 && running.shared.stuck() > MAX_STUCK {
            return Err(format!(
                "every script VM is stuck inside a C function ({} of them); calls resume when they return",
                running.shared.stuck()
            ));
        }
        let control = call.control.clone();
        running.shared.queue.push(call);
        self.in_flight.set(self.in_flight.get() + 1);
        Ok(InFlight { in_flight: self.in_flight.clone(), control })
    }

    /// Stops the pool: queued calls are dropped, running ones cancelled, idle and stopping
    /// threads joined; a thread stuck inside a C function is left to exit when it returns.
    pub fn shutdown(&self) {
        if self.closed.replace(true) {
            return;
        }
        if let Some(running) = self.running.get() {
            running.stop();
        }
    }
}

impl Drop for ScriptPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How many retired VM threads may still be stuck in C before the pool stops replacing them:
/// each holds a thread and its VM's memory until its C function returns.
const MAX_STUCK: usize = 16;

/// How long shutdown waits for VM threads to finish the calls they are cancelling.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);

struct Running {
    shared: Arc<Shared>,
    watchdog: RefCell<Option<JoinHandle<()>>>,
}

impl Running {
    fn start(config: &PoolConfig) -> std::io::Result<Running> {
        let shared = Arc::new(Shared {
            config: config.clone(),
            queue: Queue::default(),
            watchdog: Watchdog::new(config.retire_after),
            threads: Mutex::new(Vec::new()),
            exits: (Mutex::new(()), Condvar::new()),
            created: AtomicU64::new(0),
            retired: AtomicU64::new(0),
            rebuilt: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            compiles: AtomicU64::new(0),
        });
        let running = Running { shared: shared.clone(), watchdog: RefCell::new(None) };
        for _ in 0..config.vms.max(1) {
            // On failure, `running` drops and stops the threads already started.
            spawn_vm(&shared)?;
        }
        let watching = shared.clone();
        let watchdog = thread::Builder::new().name("swarm-script-watchdog".into()).spawn(move || {
            watching.watchdog.run(|| {
                watching.retired.fetch_add(1, Ordering::SeqCst);
                watching.replace_retired();
            })
        })?;
        *running.watchdog.borrow_mut() = Some(watchdog);
        Ok(running)
    }

    fn stop(&self) {
        let shared = &self.shared;
        shared.queue.close();
        shared.watchdog.close();
        if let Some(watchdog) = self.watchdog.borrow_mut().take() {
            let _ = watchdog.join();
        }
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        let mut exits = lock(&shared.exits.0);
        loop {
            let all_exited = lock(&shared.threads).iter().all(|(watch, _)| watch.exited.load(Ordering::SeqCst));
            let now = Instant::now();
            if all_exited || now >= deadline {
                break;
            }
            exits = shared.exits.1.wait_timeout(exits, deadline - now).map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
        drop(exits);
        for (watch, handle) in std::mem::take(&mut *lock(&shared.threads)) {
            if watch.exited.load(Ordering::SeqCst) {
                let _ = handle.join();
            }
            // Otherwise the handle drops and the thread is detached.
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.shared.queue.closing.load(Ordering::SeqCst) {
            self.stop();
        }
    }
}

/// What the host, the VM threads and the watchdog share.
struct Shared {
    config: PoolConfig,
    queue: Queue,
    watchdog: Watchdog,
    threads: Mutex<Vec<(Arc<Watch>, JoinHandle<()>)>>,
    /// Signalled by each VM thread as it exits.
    exits: (Mutex<()>, Condvar),
    created: AtomicU64,
    retired: AtomicU64,
    rebuilt: AtomicU64,
    calls: AtomicU64,
    compiles: AtomicU64,
}

impl Shared {
    /// Retired VM threads that have not exited yet.
    fn stuck(&self) -> usize {
        lock(&self.threads).iter().filter(|(w, _)| w.is_retired() && !w.exited.load(Ordering::SeqCst)).count()
    }

    /// VM threads taking calls.
    fn live(&self) -> usize {
        lock(&self.threads).iter().filter(|(w, _)| !w.is_retired() && !w.exited.load(Ordering::SeqCst)).count()
    }

    /// Replaces a retired VM, unless [`MAX_STUCK`] retired threads are still running: then
    /// the pool waits with fewer VMs until one returns (see `vm_thread`).
    fn replace_retired(self: &Arc<Shared>) {
        if self.stuck() > MAX_STUCK {
            tracing::error!("{} script VMs are stuck in C functions; not replacing another", self.stuck());
            return;
        }
        if let Err(e) = spawn_vm(self) {
            tracing::error!("cannot replace a retired script VM: {e}");
        }
    }

    fn stats(&self) -> PoolStats {
        PoolStats {
            vms_created: self.created.load(Ordering::SeqCst),
            vms_retired: self.retired.load(Ordering::SeqCst),
            vms_stuck: self.stuck() as u64,
            vms_rebuilt: self.rebuilt.load(Ordering::SeqCst),
            calls: self.calls.load(Ordering::SeqCst),
            compiles: self.compiles.load(Ordering::SeqCst),
        }
    }
}

fn spawn_vm(shared: &Arc<Shared>) -> std::io::Result<()> {
    if shared.queue.closing.load(Ordering::SeqCst) {
        return Ok(());
    }
    let watch = shared.watchdog.watch();
    let (thread_shared, thread_watch) = (shared.clone(), watch.clone());
    let number = shared.created.fetch_add(1, Ordering::SeqCst) + 1;
    let handle = thread::Builder::new()
        .name(format!("swarm-script-{number}"))
        .spawn(move || vm_thread(&thread_shared, &thread_watch))
        .inspect_err(|_| watch.exited.store(true, Ordering::SeqCst))?;
    lock(&shared.threads).push((watch, handle));
    Ok(())
}

/// A VM thread: one sandbox, reused call after call, rebuilt if it cannot be made clean.
fn vm_thread(shared: &Arc<Shared>, watch: &Watch) {
    watch.tid.store(current_tid(), Ordering::SeqCst);
    let mut sandbox = Sandbox::new().map_err(|e| e.to_string());
    let spin = shared.config.spin;
    let mut spinning = false;
    while let Some(call) = shared.queue.take(spin, spinning) {
        spinning = false;
        if call.control.is_cancelled() || call.reply.is_closed() {
            continue;
        }
        shared.calls.fetch_add(1, Ordering::SeqCst);
        shared.watchdog.begin(watch, call.control.clone(), call.reply.clone(), call.limits.timeout_ms);
        let (result, clean) = match &mut sandbox {
            Ok(vm) => match catch_unwind(AssertUnwindSafe(|| vm.run(&call))) {
                Ok(result) => {
                    shared.compiles.fetch_add(vm.take_compiles(), Ordering::SeqCst);
                    (result, true)
                }
                Err(_) => (Err(ScriptFailure::new("the script VM failed (a panic); it has been replaced")), false),
            },
            Err(message) => (Err(ScriptFailure::new(format!("cannot start a script VM: {message}"))), true),
        };
        // Claim the spinning slot before answering: the host's next call, sent the moment
        // this answer lands, then finds a VM waiting for it instead of waking a sleeping one.
        // Not when a full collection comes first: another VM should take that call.
        // What the script printed: on a failure, the end of it follows the message (as a
        // child's stderr does); on success it goes to the attempt as a progress event.
        let printed = sandbox.as_ref().map(Sandbox::take_printed).unwrap_or_default();
        let (result, printed) = match result {
            Err(mut failure) => {
                failure.message = printed.append_as(failure.message, "print");
                (Err(failure), None)
            }
            Ok(value) => (Ok(value), Some(printed.text()).filter(|text| !text.is_empty())),
        };
        let quick_reset = clean && sandbox.as_ref().is_ok_and(|vm| !vm.needs_collection());
        spinning = quick_reset && shared.queue.claim_spin(spin);
        let _ = call.reply.send(Reply::Done(result, printed));
        drop(call);
        if shared.watchdog.end(watch) {
            shared.queue.release_spin(spinning);
            break;
        }
        if !clean || sandbox.as_mut().is_ok_and(|vm| !vm.reset()) {
            shared.rebuilt.fetch_add(1, Ordering::SeqCst);
            sandbox = Sandbox::new().map_err(|e| e.to_string());
        }
    }
    drop(sandbox);
    {
        let _exits = lock(&shared.exits.0);
        watch.exited.store(true, Ordering::SeqCst);
        shared.exits.1.notify_all();
    }
    // A retired thread that was not replaced (too many were stuck) hands its place back.
    if watch.is_retired() && shared.live() < shared.config.vms.max(1) {
        shared.replace_retired();
    }
}

/// The calls waiting for a VM. An idle VM polls `pending` for a moment before it sleeps,
/// yielding between polls, and only one polls at a time, so the host thread keeps a core.
#[derive(Default)]
struct Queue {
    calls: Mutex<VecDeque<Call>>,
    ready: Condvar,
    pending: AtomicUsize,
    /// Changed only with `calls` locked.
    sleepers: AtomicUsize,
    spinners: AtomicUsize,
    closing: AtomicBool,
}

impl Queue {
    fn push(&self, call: Call) {
        let queued = {
            let mut calls = lock(&self.calls);
            calls.push_back(call);
            self.pending.store(calls.len(), Ordering::SeqCst);
            calls.len()
        };
        // A spinning VM takes one call without being woken.
        if self.sleepers.load(Ordering::SeqCst) > 0 && queued > self.spinners.load(Ordering::SeqCst) {
            self.ready.notify_one();
        }
    }

    /// Becomes the one thread that spins, if spinning is on and no other thread does.
    fn claim_spin(&self, spin: Duration) -> bool {
        !spin.is_zero() && self.spinners.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    fn release_spin(&self, claimed: bool) {
        if claimed {
            self.spinners.store(0, Ordering::SeqCst);
        }
    }

    /// The next call, or `None` once the pool is closing. `spinning`: this thread already
    /// holds the spinning slot.
    fn take(&self, spin: Duration, spinning: bool) -> Option<Call> {
        if spinning || self.claim_spin(spin) {
            let started = Instant::now();
            let mut taken = None;
            while taken.is_none() && !self.closing.load(Ordering::SeqCst) && started.elapsed() < spin {
                if self.pending.load(Ordering::SeqCst) > 0 {
                    taken = self.pop(&mut lock(&self.calls));
                } else {
                    std::thread::yield_now();
                }
            }
            self.release_spin(true);
            if taken.is_some() {
                return taken;
            }
        }
        let mut calls = lock(&self.calls);
        loop {
            if self.closing.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(call) = self.pop(&mut calls) {
                return Some(call);
            }
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            calls = self.ready.wait(calls).unwrap_or_else(|e| e.into_inner());
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn pop(&self, calls: &mut VecDeque<Call>) -> Option<Call> {
        let call = calls.pop_front()?;
        self.pending.store(calls.len(), Ordering::SeqCst);
        // More waiting than this thread can take: pass the word on.
        if !calls.is_empty() && self.sleepers.load(Ordering::SeqCst) > 0 {
            self.ready.notify_one();
        }
        Some(call)
    }

    /// Wakes every VM to stop, and drops the calls no VM took (their attempts hear that the
    /// pool stopped).
    fn close(&self) {
        let dropped = {
            let mut calls = lock(&self.calls);
            self.closing.store(true, Ordering::SeqCst);
            self.pending.store(0, Ordering::SeqCst);
            std::mem::take(&mut *calls)
        };
        self.ready.notify_all();
        drop(dropped);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
