//! The interactive REPL (`swarm repl [FILE]`, docs/cli.md) on the host VM and its engine.
//!
//! Threads: the line editor runs on a thread of its own (`editor`), and everything else — the
//! Lua VM, the engine, printing — on the host thread, inside the `LocalSet`. The host asks
//! the editor for a line and gets it back over a channel; while a line is edited the editor
//! asks the host for completions the same way. Chunks run as coroutines (`call_async`), so
//! `swarm.run` and `swarm.sleep` work at the prompt, and Ctrl-C while one runs cancels the
//! engine's runs and drops the chunk.

mod commands;
mod complete;
mod console;
mod editor;
mod eval;
pub mod pretty;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mlua::{Function, Variadic};
use tokio::sync::{Mutex, Notify};

use crate::engine::{Engine, EventKind, RunStatus};
use crate::gate::{Grant, Role};
use crate::host::Host;
use commands::{Current, Next};
use editor::{Editor, Input, Printer};
use eval::Chunk;

const PROMPT: &str = "> ";
const CONTINUATION_PROMPT: &str = ">> ";

/// One REPL session: the host VM, its engine, the editor, the current blueprint.
pub struct Session {
    host: Host,
    engine: Engine,
    editor: Rc<Mutex<Editor>>,
    printer: Rc<Printer>,
    /// Raised by a console question answered with Ctrl-C.
    interrupt: Rc<Notify>,
    current: RefCell<Option<Current>>,
    runs: Rc<RefCell<Vec<RunRecord>>>,
    /// How long `:load` lets a blueprint module run (`--load-timeout`).
    load_timeout: Duration,
    /// A chunk or a command failed: a piped session then exits 1, as a script would.
    failed: Cell<bool>,
}

/// A run of this session, as `:runs` lists it.
struct RunRecord {
    id: Arc<str>,
    blueprint: Arc<str>,
    started_ms: u64,
    finished: Option<(RunStatus, u64)>,
}

/// How a session ended; the command line turns it into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `:quit` or the end of input, with nothing failed (or on a terminal, where failures are
    /// the person's to see).
    Clean,
    /// Piped input with a chunk or command that failed (as a script would fail), or stdout
    /// that could not be written.
    Failed,
    /// The session never started: the Lua VM or the engine could not be set up.
    NotStarted,
}

/// Where the history lives: `SWARM_HISTORY`, else the user's state directory.
pub fn history_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SWARM_HISTORY") {
        return Some(PathBuf::from(path));
    }
    let state = match std::env::var_os("XDG_STATE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".local/state"),
    };
    Some(state.join("luaswarm/history"))
}

/// Runs a session until `:quit` or the end of input; `file` is loaded first, and every
/// blueprint module `:load` runs may take `load_timeout`. Must run inside a `LocalSet`.
/// Returns how it ended: on piped input, [`Ended::Failed`] if any chunk or command failed (as
/// a script would); on a terminal, [`Ended::Clean`].
pub async fn run(file: Option<&Path>, load_timeout: Duration) -> Ended {
    run_on(file.map(Path::to_path_buf), None, load_timeout).await
}

/// [`run`] on a given engine (`swarm serve --repl` shares its engine), or a new one.
pub async fn run_on(file: Option<PathBuf>, engine: Option<Engine>, load_timeout: Duration) -> Ended {
    let host = match Host::new() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("swarm repl: cannot start the Lua VM: {e}");
            return Ended::NotStarted;
        }
    };
    let engine = match engine.map_or_else(|| Engine::new(Default::default()), Ok) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("swarm repl: {e}");
            return Ended::NotStarted;
        }
    };
    crate::host::engine_api::set_default_engine(host.lua(), engine.clone());
    // Tokio's SIGINT handler goes in before the editor thread starts: rustyline swaps its own
    // in while it reads a line and puts back what it found, which must be tokio's, not the
    // default that ends the process.
    #[cfg(unix)]
    let _sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    // Lua that cannot yield (a loop inside a sort comparator) hears Ctrl-C through this.
    if let Err(e) = crate::interrupt::watch_signal(libc::SIGINT) {
        eprintln!("swarm repl: cannot handle Ctrl-C: {e}");
    }
    let (editor, printer) = editor::start(history_file());
    let interactive = editor.interactive;
    let session = Session {
        host,
        engine,
        editor: Rc::new(Mutex::new(editor)),
        printer: Rc::new(printer),
        interrupt: Rc::new(Notify::new()),
        current: RefCell::new(None),
        runs: Rc::new(RefCell::new(Vec::new())),
        load_timeout,
        failed: Cell::new(false),
    };
    if let Err(e) = session.prepare() {
        eprintln!("swarm repl: cannot set up the session: {e}");
        return Ended::NotStarted;
    }
    if interactive {
        session.printer.err("swarm repl: Lua 5.4 with `swarm` loaded; :help for commands, :quit to leave");
    }
    if let Some(file) = file {
        session.load(&file);
    }
    session.main_loop().await;
    session.editor.lock().await.finish();
    match session.printer.stdout_lost() {
        Some(e) => {
            crate::stdout::report("repl", &e);
            Ended::Failed
        }
        None if session.failed.get() && !interactive => Ended::Failed,
        None => Ended::Clean,
    }
}

impl Session {
    /// The global `swarm`, a `print` that writes above the prompt, the REPL as the console
    /// operators ask, and the recorder of this session's runs.
    fn prepare(&self) -> mlua::Result<()> {
        let lua = self.host.lua();
        lua.globals().set("swarm", self.host.swarm()?)?;
        let printer = self.printer.clone();
        let tostring: Function = lua.globals().get("tostring")?;
        let print = lua.create_function(move |_, args: Variadic<mlua::Value>| {
            let parts: Vec<String> = args.iter().map(|v| tostring.call::<String>(v)).collect::<mlua::Result<_>>()?;
            printer.out(&parts.join("\t"));
            Ok(())
        })?;
        lua.globals().set("print", print)?;
        self.host.set_console(Rc::new(console::ReplConsole {
            editor: self.editor.clone(),
            printer: self.printer.clone(),
            interrupt: self.interrupt.clone(),
        }));
        self.record_runs().map_err(mlua::Error::external)
    }

    /// Keeps `runs` up to date from the engine's events.
    fn record_runs(&self) -> Result<(), crate::engine::EngineError> {
        let observer = self.engine.mint_held(Grant::new(Role::Observer, "repl"), crate::engine::now_ms());
        let mut events = self.engine.subscribe_events(crate::engine::Auth::Held(&observer))?;
        self.engine.forget_held(&observer);
        let runs = self.runs.clone();
        tokio::task::spawn_local(async move {
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let mut runs = runs.borrow_mut();
                match &event.kind {
                    EventKind::RunStarted { blueprint } => runs.push(RunRecord {
                        id: event.run_id.clone(),
                        blueprint: blueprint.clone(),
                        started_ms: event.at_ms,
                        finished: None,
                    }),
                    EventKind::RunFinished { status, .. } => {
                        if let Some(run) = runs.iter_mut().rev().find(|r| r.id == event.run_id) {
                            run.finished = Some((*status, event.at_ms));
                        }
                    }
                    _ => {}
                }
            }
        });
        Ok(())
    }

    async fn read(&self, prompt: &str) -> Input {
        let lua = self.host.lua();
        let complete = |line: &str, pos: usize| complete::complete(lua, line, pos);
        let mut editor = self.editor.lock().await;
        tokio::select! {
            input = editor.read(prompt, &complete) => input,
            // Piped input has no line editor to turn Ctrl-C into a key.
            _ = ctrl_c() => Input::Interrupted { empty: true },
        }
    }

    async fn main_loop(&self) {
        let mut block = String::new();
        let mut interrupted_once = false;
        loop {
            if self.printer.stdout_gone() {
                // Nobody reads the results any more (`| head`), or they cannot be written.
                break;
            }
            let prompt = if block.is_empty() { PROMPT } else { CONTINUATION_PROMPT };
            let line = match self.read(prompt).await {
                Input::Eof => break,
                Input::Interrupted { empty } => {
                    if !block.is_empty() || !empty {
                        block.clear();
                        interrupted_once = false;
                        continue;
                    }
                    if interrupted_once {
                        break;
                    }
                    interrupted_once = true;
                    self.printer.err("(Ctrl-C again, Ctrl-D or :quit to leave)");
                    continue;
                }
                Input::Line(line) => line,
            };
            interrupted_once = false;
            if block.is_empty() {
                if line.trim().is_empty() {
                    continue;
                }
                if line.trim_start().starts_with(':') {
                    self.remember(&line).await;
                    match self.command(&line).await {
                        Next::Continue => continue,
                        Next::Quit => break,
                    }
                }
            } else {
                block.push('\n');
            }
            block.push_str(&line);
            match eval::compile(self.host.lua(), &block) {
                Chunk::Incomplete => continue,
                Chunk::Ready(chunk) => {
                    self.remember(&block).await;
                    block.clear();
                    self.eval(chunk).await;
                }
                Chunk::Error(message) => {
                    self.remember(&block).await;
                    block.clear();
                    self.fail(&format!("error: {message}"));
                }
            }
        }
    }

    async fn remember(&self, block: &str) {
        self.editor.lock().await.remember(block);
    }

    /// Runs a chunk as a coroutine and prints what it returns, or its error.
    async fn eval(&self, chunk: Function) {
        // A Ctrl-C at the prompt was the prompt's; this chunk starts with a clean slate.
        crate::interrupt::acknowledge_signals();
        tokio::select! {
            result = eval::run(self.host.lua(), chunk) => match result {
                Ok(values) if values.is_empty() => {}
                Ok(values) => self.printer.out(&pretty::pretty_all(values.iter())),
                Err(shown) => self.fail(&format!("error: {shown}")),
            },
            _ = self.interrupted() => {
                let cancelled = self.cancel_runs();
                crate::interrupt::acknowledge_signals();
                self.printer.err(&format!("interrupted; cancelled {cancelled} run(s)"));
            }
        }
    }

    /// Reports a failed chunk or command; a piped session will exit 1.
    fn fail(&self, message: &str) {
        self.failed.set(true);
        self.printer.err(message);
    }

    /// Ctrl-C, as a signal (no line is being edited) or at a console question.
    async fn interrupted(&self) {
        tokio::select! {
            _ = ctrl_c() => {}
            _ = self.interrupt.notified() => {}
        }
    }

    /// Cancels every run in flight on the session's engine (they were all started from here).
    fn cancel_runs(&self) -> usize {
        self.engine.running().iter().filter(|id| self.engine.cancel_run(id)).count()
    }
}

/// SIGINT; never, where signals cannot be caught.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
