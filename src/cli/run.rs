//! `swarm run FILE [--input JSON|@file] [--events ndjson] [--watch [--poll]]`: runs a blueprint
//! on a fresh engine, journaling to `.swarm/state.db` in the current directory (where
//! `swarm runs` looks) unless `--state` says otherwise.
//! stdout gets the final ctx as JSON; stderr gets `run <id>  journal <path>` first, then one
//! line per attempt (or every event as NDJSON with `--events ndjson`), and the structured error
//! if the run fails. Ctrl-C cancels the run. With `--watch` it runs again after every save
//! (see `crate::reload`), printing `reloaded in N ms` or `reload failed: file:line: ...` first.
//! With `--detach` it exits with code 3 once every strand of the run waits for a signal,
//! printing `run <id> waiting for <signal>`: the run stays in the journal, for `swarm runs
//! signal`.

use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::progress::{self, Progress};
use crate::blueprint::compile::CompiledBlueprint;
use crate::engine::{Engine, EngineConfig, Event, RunHandle, RunOptions, RunOutcome, RunStatus};
use crate::host::Host;
use crate::host::agent_api::LuaExterns;
use crate::host::engine_api::set_default_engine;
use crate::host::journaled_engine;
use crate::reload::{self, BlueprintVersion, FileWatcher, Shutdown, WatchMode};
use crate::server::PrivateApi;
use crate::store::journal::SqliteJournal;
use crate::value::{Value, from_json};

/// How `swarm run` reports progress on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EventsFormat {
    /// Every engine event, one JSON object per line.
    Ndjson,
}

/// Runs `file` once, or with `watch` again after every change until SIGINT or SIGTERM,
/// journaling to `state` (see [`super::open_state`]; by default in the current directory).
/// The blueprint module may run for `load_timeout` each time it is loaded.
pub fn run(
    file: &Path,
    input: Option<&str>,
    events: Option<EventsFormat>,
    watch_mode: Option<WatchMode>,
    detach: bool,
    state: Option<&str>,
    load_timeout: Duration,
) -> u8 {
    let init = match parse_input(input) {
        Ok(v) => v,
        Err(message) => {
            eprintln!("swarm run: --input: {message}");
            return super::EXIT_USAGE;
        }
    };
    // The current directory, not the script's: that is where `swarm runs` looks.
    let journal = match super::open_state(state, Path::new("")) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let Some(runtime) = runtime() else { return super::EXIT_USAGE };
    let local = tokio::task::LocalSet::new();
    match watch_mode {
        Some(mode) => local.block_on(&runtime, watch(file, init, events, mode, journal, load_timeout)),
        None => {
            if detach && journal.is_none() {
                eprintln!("swarm run: --detach leaves the run in the journal, and --state memory keeps none");
                return super::EXIT_USAGE;
            }
            let options = RunOptions { file: Some(absolute(file)), ..RunOptions::default() };
            let how = How { events, detach, load_timeout };
            local.block_on(&runtime, run_on_engine(file, init, how, journal, options, None))
        }
    }
}

pub(super) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("swarm: cannot start the runtime: {e}");
            None
        }
    }
}

/// `file` as an absolute path, so a journaled run can be resumed from anywhere.
fn absolute(file: &Path) -> String {
    std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()).display().to_string()
}

fn parse_input(input: Option<&str>) -> Result<Value, String> {
    let Some(input) = input else { return Ok(Value::object()) };
    let text = match input.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        None => input.to_string(),
    };
    match from_json(&text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(format!("the ctx must be a JSON object, got {}", other.type_name())),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// How a run is carried out on the command line.
#[derive(Clone, Copy)]
pub(super) struct How {
    /// Every event on stderr in this format, instead of progress lines.
    pub events: Option<EventsFormat>,
    /// Leave the run once every strand of it waits for a signal (exit code 3).
    pub detach: bool,
    /// How long the blueprint module may load.
    pub load_timeout: Duration,
}

/// Runs `file` once on a fresh engine that journals to `journal` (when given), started with
/// `options` (a resumed run's id, its recorded results and waits).
pub(super) async fn run_on_engine(
    file: &Path,
    init: Value,
    how: How,
    journal: Option<Rc<SqliteJournal>>,
    options: RunOptions,
    expect_digest: Option<&str>,
) -> u8 {
    let How { events, detach, load_timeout } = how;
    let host = match super::new_host() {
        Ok(h) => h,
        Err(code) => return code,
    };
    if detach {
        // The process leaves the run at its first question: nobody answers here.
        host.set_console(Rc::new(crate::worker::operator::UnattendedConsole));
    }
    let compiled = match super::load_and_compile(&host, file, load_timeout) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(expected) = expect_digest
        && *compiled.blueprint.digest() != *expected
    {
        eprintln!(
            "swarm: {} changed since the run started; steps whose pointer or input no longer match run again",
            file.display()
        );
    }
    let engine = match new_engine(journal.clone()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    set_default_engine(host.lua(), engine.clone());
    let _children_api = children_api(&engine, &compiled);
    for agent in compiled.blueprint.agents.iter().filter(|a| a.kind == "remote") {
        eprintln!(
            "swarm: agent '{}' is remote: its attempts wait for a worker to claim them, and workers reach a host \
             served with `swarm serve {} --listen ADDR` (docs/api.md)",
            agent.name,
            file.display()
        );
    }
    let replaying = !options.replay.is_empty();
    let mut shutdown = match Shutdown::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("swarm run: cannot handle signals: {e}");
            return super::EXIT_USAGE;
        }
    };
    let running = Running::start(&engine, &host, Rc::new(compiled), init, events, options, journal.as_deref());

    let mut waiting = running.handle.waiting();
    let mut left_waiting = None;
    let outcome = loop {
        tokio::select! {
            outcome = running.handle.wait() => break outcome,
            _ = shutdown.recv() => {
                running.handle.cancel();
                break running.handle.wait().await;
            }
            Ok(()) = waiting.changed(), if detach => {
                let signals = waiting.borrow_and_update().clone();
                if let Some(signals) = signals
                    && running.handle.detach()
                {
                    left_waiting = Some(signals);
                }
            }
        }
    };
    let unused = running.handle.unreplayed();
    if replaying && unused > 0 {
        eprintln!(
            "swarm: {unused} recorded step result(s) no longer match the blueprint or their input; those steps ran again"
        );
    }
    let code = match (outcome.status, left_waiting) {
        (RunStatus::Waiting, Some(signals)) => {
            if let Some(reporter) = running.reporter {
                let _ = reporter.await;
            }
            eprintln!("run {} waiting for {}", outcome.run_id, signals.join(", "));
            super::EXIT_WAITING
        }
        _ => running.finish(outcome).await,
    };
    if let Some(journal) = journal
        && let Err(e) = journal.flush().wait().await
    {
        eprintln!("swarm: {}: the journal could not be written: {e}", journal.path().display());
        return super::EXIT_RUN_FAILED;
    }
    code
}

/// The private API for the children of `compiled`'s subprocess agents (`SWARM_API`), if it has
/// any: a run of Lua agents alone starts no server.
fn children_api(engine: &Engine, compiled: &CompiledBlueprint) -> Option<PrivateApi> {
    compiled.blueprint.agents.iter().any(|a| a.kind == "subprocess").then(|| start_children_api(engine)).flatten()
}

/// Starts the private API for the children of `engine`'s attempts; a failure is reported and the
/// run goes on without it (its children then have no `SWARM_API`).
pub(super) fn start_children_api(engine: &Engine) -> Option<PrivateApi> {
    match PrivateApi::start(engine, &Rc::new(RefCell::new(None))) {
        Ok(api) => Some(api),
        Err(e) => {
            eprintln!("swarm: the API for child processes is off ({e}); children get no SWARM_API");
            None
        }
    }
}

/// An engine journaling to `journal`, with its large outputs in the same file; or with neither.
pub(super) fn new_engine(journal: Option<Rc<SqliteJournal>>) -> Result<Engine, u8> {
    let engine = match journal {
        Some(journal) => journaled_engine(EngineConfig::default(), journal),
        None => Engine::new(EngineConfig::default()).map_err(|e| e.to_string()),
    };
    engine.map_err(|e| {
        eprintln!("swarm: {e}");
        super::EXIT_USAGE
    })
}

/// A run in flight and the task that reports its events.
struct Running {
    handle: RunHandle,
    reporter: Option<JoinHandle<()>>,
}

impl Running {
    /// Starts `compiled` (whose inline agents live in `host`) and announces it on stderr:
    /// `run <id>  journal <path>` (or `(not journaled)`), so the run can be found again.
    fn start(
        engine: &Engine,
        host: &Host,
        compiled: Rc<CompiledBlueprint>,
        init: Value,
        events: Option<EventsFormat>,
        options: RunOptions,
        journal: Option<&SqliteJournal>,
    ) -> Running {
        let progress = match events {
            Some(EventsFormat::Ndjson) => None,
            None => Some(Progress::new(&compiled.blueprint.flow, std::io::stderr().is_terminal())),
        };
        let handle = engine.start_with(compiled, init, Rc::new(LuaExterns::new(host.lua())), options);
        match journal {
            Some(journal) => eprintln!("run {}  journal {}", handle.id, journal.path().display()),
            None => eprintln!("run {}  (not journaled)", handle.id),
        }
        let reporter = match engine.follow_run(&handle.id) {
            Ok(rx) => Some(tokio::task::spawn_local(report(rx, progress))),
            Err(e) => {
                eprintln!("swarm run: cannot follow the run's events: {e}");
                None
            }
        };
        Running { handle, reporter }
    }

    /// Lets the reporter drain, prints the ctx (stdout) or the error (stderr); the exit code.
    async fn finish(self, outcome: RunOutcome) -> u8 {
        if let Some(reporter) = self.reporter {
            let _ = reporter.await;
        }
        match (outcome.status, &outcome.error) {
            (RunStatus::Finished, _) | (_, None) => {
                let text = serde_json::to_string_pretty(&outcome.ctx).expect("a ctx always encodes");
                super::exit_after_output(crate::stdout::println(&text), "run", 0)
            }
            (_, Some(error)) => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{}", serde_json::json!({ "error": error, "run_id": &*outcome.run_id }));
                super::EXIT_RUN_FAILED
            }
        }
    }
}

/// `swarm run FILE --watch`: runs, then runs again on the new version after every save that
/// changes the script or a module it requires, until SIGINT or SIGTERM.
async fn watch(
    file: &Path,
    init: Value,
    events: Option<EventsFormat>,
    mode: WatchMode,
    journal: Option<Rc<SqliteJournal>>,
    load_timeout: Duration,
) -> u8 {
    let engine = match new_engine(journal.clone()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    // Any version of the file may start children, so their API is up throughout.
    let _children_api = start_children_api(&engine);
    let mut shutdown = match Shutdown::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("swarm run: cannot handle signals: {e}");
            return super::EXIT_USAGE;
        }
    };
    let (mut watcher, mut changes) = match FileWatcher::start(mode) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("swarm run: {e}");
            return super::EXIT_USAGE;
        }
    };
    // Followed before the first load, so a save that lands while it runs is not missed.
    if let Err(e) = watcher.track(&[file.to_path_buf()]) {
        eprintln!("swarm run: {e}");
        return super::EXIT_USAGE;
    }
    let first = reload::load_blueprint(file, &engine, load_timeout);
    if let Err(e) = watcher.track(&first.files) {
        eprintln!("swarm run: {e}");
        return super::EXIT_USAGE;
    }
    let mut live: Option<Rc<BlueprintVersion>> = match first.result {
        Ok(version) => Some(Rc::new(version)),
        Err(message) => {
            eprintln!("{message}");
            None
        }
    };
    // The run in flight holds its version, so a swap cannot pull the VM from under it.
    let mut running: Option<(Running, Rc<BlueprintVersion>)> = None;
    let mut due = live.is_some();
    loop {
        if running.is_none()
            && due
            && let Some(version) = &live
        {
            let options = RunOptions { file: Some(absolute(file)), ..RunOptions::default() };
            let run = Running::start(
                &engine,
                &version.host,
                version.compiled.clone(),
                init.clone(),
                events,
                options,
                journal.as_deref(),
            );
            running = Some((run, version.clone()));
            due = false;
        }
        let in_flight = running.as_ref().map(|(run, _)| run.handle.clone());
        tokio::select! {
            outcome = wait_for(in_flight) => {
                if let Some((run, _version)) = running.take() {
                    run.finish(outcome).await;
                }
            }
            Some(mut changed) = changes.recv() => {
                let started = Instant::now();
                // Saves that landed meanwhile are in this reload too.
                while let Ok(more) = changes.try_recv() {
                    changed.extend(more);
                }
                let loaded = reload::load_blueprint(file, &engine, load_timeout);
                let ok = loaded.result.is_ok();
                let files = reload::files_to_watch(&watcher, ok, &loaded.files);
                match loaded.result {
                    Ok(version) => {
                        live = Some(Rc::new(version));
                        due = true;
                        eprintln!("reloaded in {} ms", started.elapsed().as_millis());
                    }
                    Err(message) => eprintln!("reload failed: {message}"),
                }
                if let Err(e) = watcher.track(&files) {
                    eprintln!("swarm run: {e}");
                }
            }
            _ = shutdown.recv() => {
                if let Some((run, _version)) = running.take() {
                    run.handle.cancel();
                    let outcome = run.handle.wait().await;
                    run.finish(outcome).await;
                }
                break;
            }
        }
    }
    watcher.stop();
    if let Some(journal) = journal
        && let Err(e) = journal.flush().wait().await
    {
        eprintln!("swarm: {}: the journal could not be written: {e}", journal.path().display());
    }
    0
}

/// The run's outcome, or never when nothing is in flight.
async fn wait_for(handle: Option<RunHandle>) -> RunOutcome {
    match handle {
        Some(handle) => handle.wait().await,
        None => std::future::pending().await,
    }
}

/// One event on stderr: through `progress`, or (without one) as a line of NDJSON.
fn show(progress: &mut Option<Progress>, event: &Event) {
    match progress {
        Some(progress) => progress.event(event),
        None => {
            if let Ok(line) = serde_json::to_string(event) {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }
}

/// Reports a run's events on stderr until it ends: as `progress` says, or (without one) every
/// event as a line of NDJSON.
async fn report(mut events: mpsc::UnboundedReceiver<Event>, mut progress: Option<Progress>) {
    let live = progress.as_ref().is_some_and(Progress::is_live);
    let mut clock = tokio::time::interval(progress::TICK);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                show(&mut progress, &event);
                // Everything already queued too: `recv` alone takes only what tokio's
                // cooperative budget allows per turn, fewer than a fast run publishes in
                // one, and the queue would grow with the run.
                while let Ok(event) = events.try_recv() {
                    show(&mut progress, &event);
                }
            }
            _ = clock.tick(), if live => {
                if let Some(progress) = &mut progress {
                    progress.tick();
                }
            }
        }
    }
    if let Some(progress) = &mut progress {
        progress.clear();
    }
}
