//! Waiting runs in a journaled engine, as `swarm serve` holds them: N runs each stopped at a
//! `wait` node, the memory they hold (resident size before and after, per run), and the time
//! to deliver a signal to each and have every run finish (journaled, as the CLI and serve
//! journal). `cargo bench --bench waits` prints the figures; `WAITS=N` changes N (10,000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use luaswarm::blueprint::Blueprint;
use luaswarm::engine::journal::Journal;
use luaswarm::engine::{Auth, EngineConfig, EventKind, RunStatus};
use luaswarm::flow::NoExterns;
use luaswarm::gate::{Grant, Role};
use luaswarm::host::{Host, journaled_engine};
use luaswarm::store::journal::SqliteJournal;
use luaswarm::value::Value;

const BLUEPRINT: &str = r#"{"id":"waits","agents":[],"flow":{"kind":"seq","children":[
  {"kind":"assign","at":{"op":"path","at":"$.seen"},"value":{"op":"lit","value":true}},
  {"kind":"wait","signal":"go","out":{"op":"path","at":"$.go"},"timeout_ms":86400000}]}}"#;

/// The system allocator, counting the bytes live on the heap: what the runs hold, apart from
/// what the allocator and SQLite keep around.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes straight to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let n: usize = std::env::var("WAITS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let journal = Rc::new(SqliteJournal::open(&dir.path().join("state.db")).unwrap());
    let config = EngineConfig { token_secret: Some("bench".into()), ..EngineConfig::default() };
    let engine = if std::env::var_os("WAITS_UNJOURNALED").is_some() {
        luaswarm::engine::Engine::new(config).unwrap()
    } else {
        journaled_engine(config, journal.clone()).unwrap()
    };
    let host = Host::new().unwrap();
    let bp = Blueprint::from_json(&std::env::var("WAITS_BLUEPRINT").unwrap_or(BLUEPRINT.into())).unwrap();
    let compiled = Rc::new(host.detached_compiler().compile(Rc::new(bp), None).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut events =
            engine.subscribe_events(Auth::Held(&engine.mint_held(Grant::new(Role::Operator, "bench"), 0))).unwrap();
        let mut waiting = 0;
        let mut wait_until = async |want: usize| {
            while waiting < want {
                if let Ok(event) = events.recv().await
                    && let EventKind::RunWaiting { .. } = event.kind
                {
                    waiting += 1;
                }
            }
        };
        // A first run warms up the journal, the engine and the allocator.
        let warm = engine.start(compiled.clone(), Value::object(), Rc::new(NoExterns));
        wait_until(1).await;
        let before = rss_kib();
        let heap_before = LIVE.load(Ordering::Relaxed);
        let started = Instant::now();
        let mut runs = Vec::with_capacity(n);
        for i in 0..n {
            let init = Value::from_pairs([("i", Value::int(i as i64))]);
            runs.push(engine.start(compiled.clone(), init, Rc::new(NoExterns)));
        }
        wait_until(n + 1).await;
        let parked = started.elapsed();
        journal.sync().unwrap();
        let after = rss_kib();
        let heap = LIVE.load(Ordering::Relaxed).saturating_sub(heap_before) as f64 / n as f64;
        let per_run = (after.saturating_sub(before) as f64 * 1024.0) / n as f64;
        println!("{n} runs waiting: started and parked in {:.0} ms", parked.as_secs_f64() * 1000.0);
        println!("  heap held: {heap:.0} bytes per waiting run");
        println!("  resident memory {before} KiB -> {after} KiB: {per_run:.0} bytes per waiting run");

        let owner = engine.mint_held(Grant::new(Role::Operator, "bench"), luaswarm::engine::now_ms());
        let delivering = Instant::now();
        for run in &runs {
            engine.signal_run(Auth::Held(&owner), &run.id, "go", Value::Bool(true)).unwrap();
        }
        let delivered = delivering.elapsed();
        for run in &runs {
            assert_eq!(run.wait().await.status, RunStatus::Finished);
        }
        let finished = delivering.elapsed();
        journal.sync().unwrap();
        let durable = delivering.elapsed();
        println!(
            "  {n} signals delivered in {:.1} ms ({:.0} signals/s); every run finished after {:.1} ms \
             ({:.0} runs/s), all in SQLite after {:.1} ms",
            delivered.as_secs_f64() * 1000.0,
            n as f64 / delivered.as_secs_f64(),
            finished.as_secs_f64() * 1000.0,
            n as f64 / finished.as_secs_f64(),
            durable.as_secs_f64() * 1000.0,
        );
        engine.signal_run(Auth::Held(&owner), &warm.id, "go", Value::Null).unwrap();
        warm.wait().await;
    });
}
