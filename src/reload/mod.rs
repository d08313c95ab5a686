//! Hot reload, shared by `swarm run --watch` and `swarm serve`: a [`FileWatcher`] off the host
//! thread reports changed files; the host thread loads the script again in a fresh VM and, if
//! that works, swaps the new version in. A version is an `Rc` that runs hold while in flight,
//! so a swap never disturbs them: they finish on the version (and VM) they started with, and
//! the old VM goes away when the last of them lets go.

pub mod serve;
mod watcher;

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

pub use watcher::{FileWatcher, WatchError, WatchMode};

use crate::blueprint::compile::CompiledBlueprint;
use crate::engine::Engine;
use crate::host::Host;
use crate::host::engine_api::set_default_engine;

/// One loaded version of a blueprint file: the VM its inline agents live in, and what it
/// compiled to.
pub struct BlueprintVersion {
    /// The VM the version was loaded in; its inline agents live there.
    pub host: Host,
    /// What the file compiled to.
    pub compiled: Rc<CompiledBlueprint>,
}

/// What a load produced, and the files it read: the script and everything it `require`d
/// (relative as spelt, or absolute). A failed load still names the files, so fixing any of
/// them triggers the next attempt.
pub struct Loaded<T> {
    /// What was loaded, or the error to show.
    pub result: Result<T, String>,
    /// Every file the load read, to watch for the next change.
    pub files: Vec<PathBuf>,
}

/// Loads and compiles `file` in a fresh VM whose default engine is `engine`; its module may
/// run for `load_timeout`. The error is the text to show (with `file:line` where there is
/// one); warnings go to stderr.
pub fn load_blueprint(file: &Path, engine: &Engine, load_timeout: Duration) -> Loaded<BlueprintVersion> {
    let host = match Host::new() {
        Ok(host) => host,
        Err(e) => return Loaded { result: Err(format!("cannot start the Lua VM: {e}")), files: vec![file.into()] },
    };
    set_default_engine(host.lua(), engine.clone());
    let compiled = compile(&host, file, load_timeout);
    let files = files_of(&host, file);
    Loaded { result: compiled.map(|compiled| BlueprintVersion { host, compiled: Rc::new(compiled) }), files }
}

fn compile(host: &Host, file: &Path, load_timeout: Duration) -> Result<CompiledBlueprint, String> {
    let bp = host.load_file_within(file, load_timeout).map_err(|e| e.to_string())?;
    let compiler =
        if file.extension().is_some_and(|e| e == "json") { host.detached_compiler() } else { host.compiler() };
    let compiled = compiler.compile(Rc::new(bp), file.parent()).map_err(|errors| errors.to_string())?;
    for warning in &compiled.warnings {
        eprintln!("{warning}");
    }
    Ok(compiled)
}

/// The script itself, then what its VM `require`d from disk.
pub fn files_of(host: &Host, file: &Path) -> Vec<PathBuf> {
    let mut files = vec![file.to_path_buf()];
    files.extend(host.required_files());
    files
}

/// The files to watch after a load: on success exactly what the new version read; on failure
/// also what the live version read, since the load may have stopped before its `require`s.
pub fn files_to_watch(watcher: &FileWatcher, loaded_ok: bool, files: &[PathBuf]) -> Vec<PathBuf> {
    let mut all = files.to_vec();
    if !loaded_ok {
        all.extend(watcher.tracked());
    }
    all
}

/// SIGINT or SIGTERM (Ctrl-C elsewhere), as a stream: created once, so a signal that lands
/// between two waits is not lost.
pub struct Shutdown {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Installs the handlers. Must be called inside the runtime.
    pub fn new() -> std::io::Result<Shutdown> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let shutdown = Shutdown {
                interrupt: Some(signal(SignalKind::interrupt())?),
                terminate: signal(SignalKind::terminate())?,
            };
            crate::interrupt::watch_signal(libc::SIGINT)?;
            crate::interrupt::watch_signal(libc::SIGTERM)?;
            Ok(shutdown)
        }
        #[cfg(not(unix))]
        Ok(Shutdown {})
    }

    /// SIGTERM only: when a REPL shares the process, Ctrl-C is the REPL's (it cancels the
    /// running flow) and leaving the REPL is how a person stops.
    pub fn terminate_only() -> std::io::Result<Shutdown> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let shutdown = Shutdown { interrupt: None, terminate: signal(SignalKind::terminate())? };
            crate::interrupt::watch_signal(libc::SIGTERM)?;
            Ok(shutdown)
        }
        #[cfg(not(unix))]
        Ok(Shutdown {})
    }

    /// Waits for the next signal.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        match &mut self.interrupt {
            Some(interrupt) => tokio::select! {
                _ = interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            },
            None => {
                self.terminate.recv().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
