//! `swarm serve FILE`: runs a script in a host that stays alive. The script registers timers
//! (`swarm.every`), layers and bridges, and starts runs on the engine; every save of it or of a
//! module it requires loads a new version in a fresh VM and swaps it in (`swarm.state` carried
//! over, the old version's timers stopped, `swarm.on_reload` hooks run). SIGINT and SIGTERM
//! cancel the runs in flight, wait for them, and exit 0; a run that only waits for signals is
//! left waiting in the journal instead, and the next `swarm serve` on the journal picks it up. The engine journals its runs to
//! `.swarm/state.db` beside FILE (`--state PATH`, `--state memory` for none), so a run the
//! process died in is `interrupted` there, for `engine:resume`.

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::cell::RefCell;

use crate::engine::Engine;
use crate::gate::{Grant, Role};
use crate::reload::serve::{ScriptVersion, load_script};
use crate::reload::{self, FileWatcher, Shutdown, WatchMode};
use crate::server::{Catalogue, CatalogueCell, Listen, PrivateApi, Server, serve_calls};
use crate::store::journal::SqliteJournal;
use crate::value::Value;

/// Where `swarm serve` takes requests (`--listen`), if anywhere.
pub struct Api {
    pub listen: Listen,
    pub allow_remote: bool,
}

/// The face a served host shows the world besides its children's socket.
pub enum Face {
    /// The HTTP API (`swarm serve --listen`).
    Http(Api),
    /// The MCP face on stdio (`swarm mcp`); the host stops when its client goes.
    Mcp,
}

pub fn run(
    file: &Path,
    mode: WatchMode,
    repl: bool,
    face: Option<Face>,
    state: Option<&str>,
    load_timeout: Duration,
) -> u8 {
    let journal = match super::open_state(state, file.parent().unwrap_or(Path::new("."))) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swarm serve: cannot start the runtime: {e}");
            return super::EXIT_USAGE;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(file, mode, repl, face, journal, load_timeout))
}

async fn serve(
    file: &Path,
    mode: WatchMode,
    repl: bool,
    face: Option<Face>,
    journal: Option<Rc<SqliteJournal>>,
    load_timeout: Duration,
) -> u8 {
    // Under MCP, standard output is the protocol's from the start: the first load may print.
    let protocol = match &face {
        Some(Face::Mcp) => match take_stdout() {
            Ok(out) => Some(out),
            Err(message) => {
                eprintln!("swarm mcp: {message}");
                return super::EXIT_USAGE;
            }
        },
        _ => None,
    };
    let engine = match super::run::new_engine(journal.clone()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let mut shutdown = match if repl { Shutdown::terminate_only() } else { Shutdown::new() } {
        Ok(s) => s,
        Err(e) => {
            eprintln!("swarm serve: cannot handle signals: {e}");
            return super::EXIT_USAGE;
        }
    };
    let (mut watcher, mut changes) = match FileWatcher::start(mode) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("swarm serve: {e}");
            return super::EXIT_USAGE;
        }
    };
    // Followed before the first load, so a save that lands while it runs is not missed.
    if let Err(e) = watcher.track(&[file.to_path_buf()]) {
        eprintln!("swarm serve: {e}");
        return super::EXIT_USAGE;
    }
    let first = load_script(file, &engine, &Value::object(), load_timeout);
    if let Err(e) = watcher.track(&first.files) {
        eprintln!("swarm serve: {e}");
        return super::EXIT_USAGE;
    }
    let catalogue: CatalogueCell = Rc::new(RefCell::new(None));
    // The served script's children reach the host through a private socket, --listen or not.
    let children_api = match PrivateApi::start(&engine, &catalogue) {
        Ok(api) => Some(api),
        Err(e) => {
            eprintln!("swarm serve: the API for child processes is off ({e}); children get no SWARM_API");
            None
        }
    };
    let (served_api, mut mcp) = match (face, protocol) {
        (Some(Face::Http(api)), _) => match start_api(file, api, &engine, &catalogue) {
            Ok(served) => (Some(served), None),
            Err(message) => {
                eprintln!("swarm serve: {message}");
                return super::EXIT_USAGE;
            }
        },
        (Some(Face::Mcp), Some(out)) => match start_mcp(&engine, &catalogue, out, load_timeout) {
            Ok(face) => (None, Some(face)),
            Err(message) => {
                eprintln!("swarm mcp: {message}");
                return super::EXIT_USAGE;
            }
        },
        _ => (None, None),
    };
    let mut live: Option<ScriptVersion> = match first.result {
        Ok(version) => {
            version.go_live(None);
            publish(&catalogue, &version);
            let journal = match &journal {
                Some(journal) => format!("journal {}", journal.path().display()),
                None => "(not journaled)".to_string(),
            };
            eprintln!("serving {} ({} timers)  {journal}", file.display(), version.timers());
            for line in version.pick_up_waiting() {
                eprintln!("{line}");
            }
            Some(version)
        }
        Err(message) => {
            eprintln!("{message}");
            None
        }
    };
    // Versions swapped out but still busy (a timer body or a run in flight): their VMs stay
    // open until they are idle.
    let mut retired: Vec<ScriptVersion> = Vec::new();
    // The REPL shares the engine (its own VM); when the person leaves it, the server stops.
    let mut session =
        repl.then(|| tokio::task::spawn_local(crate::repl::run_on(None, Some(engine.clone()), load_timeout)));
    let repl_done = async {
        match session.as_mut() {
            Some(task) => {
                let _ = task.await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(repl_done);
    // The MCP client closing its side of stdio ends the server, as leaving the REPL does.
    let mcp_done = async {
        match mcp.as_mut() {
            Some(face) => {
                let _ = (&mut face.ended).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(mcp_done);
    loop {
        tokio::select! {
            _ = &mut repl_done => break,
            _ = &mut mcp_done => break,
            Some(mut changed) = changes.recv() => {
                let started = Instant::now();
                while let Ok(more) = changes.try_recv() {
                    changed.extend(more);
                }
                let state = match &live {
                    Some(version) => version.state(),
                    None => Ok(Value::object()),
                };
                let loaded = match state {
                    Ok(state) => load_script(file, &engine, &state, load_timeout),
                    Err(message) => reload::Loaded { result: Err(message), files: Vec::new() },
                };
                let ok = loaded.result.is_ok();
                let files = reload::files_to_watch(&watcher, ok, &loaded.files);
                match loaded.result {
                    Ok(version) => {
                        if let Some(old) = live.replace(version) {
                            old.retire();
                            retired.push(old);
                        }
                        eprintln!("reloaded in {} ms", started.elapsed().as_millis());
                        if let Some(version) = &live {
                            version.go_live(Some(&changed));
                            publish(&catalogue, version);
                        }
                    }
                    Err(message) => eprintln!("reload failed: {message}"),
                }
                if let Err(e) = watcher.track(&files) {
                    eprintln!("swarm serve: {e}");
                }
                retired.retain(|v| !v.is_idle());
            }
            _ = shutdown.recv() => break,
        }
    }
    eprintln!("stopping");
    watcher.stop();
    // No run starts from the API any more; those in flight are cancelled below with the rest.
    catalogue.borrow_mut().take();
    for version in live.iter().chain(retired.iter()) {
        version.stop().await;
    }
    if let Some(served) = served_api {
        served.stop().await;
    }
    if let Some(face) = mcp {
        face.desk.abort();
        let _ = face.desk.await;
    }
    if let Some(api) = children_api {
        api.stop();
    }
    if let Some(journal) = journal
        && let Err(e) = journal.flush().wait().await
    {
        eprintln!("swarm serve: {}: the journal could not be written: {e}", journal.path().display());
        return super::EXIT_RUN_FAILED;
    }
    eprintln!("stopped");
    0
}

/// The API of a serving process: the HTTP server, the desk on this thread, the token file.
struct ServedApi {
    server: Server,
    desk: tokio::task::JoinHandle<()>,
}

impl ServedApi {
    /// Ends the desk first (a request still waiting on it, a claim's long-poll among them, is
    /// answered 503), then the server.
    async fn stop(self) {
        self.desk.abort();
        // The desk and the calls it was waiting on are dropped once this thread runs them again.
        let _ = self.desk.await;
        self.server.stop();
    }
}

/// The file the operator token is written to: `.swarm/operator.token` beside the script.
pub fn operator_token_path(file: &Path) -> std::path::PathBuf {
    file.parent().unwrap_or(Path::new(".")).join(".swarm").join("operator.token")
}

/// Binds the API, starts its desk, and writes a fresh operator token for the owner.
fn start_api(file: &Path, api: Api, engine: &Engine, catalogue: &CatalogueCell) -> Result<ServedApi, String> {
    let (calls, inbox) = tokio::sync::mpsc::unbounded_channel();
    let server = Server::start(api.listen, api.allow_remote, calls)?;
    let token = engine.mint(Grant::new(Role::Operator, "owner"), crate::engine::now_ms());
    let path = operator_token_path(file);
    write_secret_file(&path, &token.encode()).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("listening on {}  operator token in {} ({})", server.listen(), path.display(), token.fingerprint());
    let desk = tokio::task::spawn_local(serve_calls(engine.clone(), catalogue.clone(), inbox));
    Ok(ServedApi { server, desk })
}

/// Standard output for the protocol alone: a descriptor of its own for it, and fd 1 made a
/// copy of stderr, so whatever else writes to stdout (a script's `print`, C's stdio) lands in
/// stderr instead of between the protocol's messages.
fn take_stdout() -> Result<std::fs::File, String> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: plain descriptor calls on this process's own stdout and stderr.
    let protocol = unsafe { libc::dup(1) };
    if protocol < 0 || unsafe { libc::dup2(2, 1) } < 0 {
        return Err(format!("cannot take stdout for the protocol: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `protocol` is a descriptor this process just made, owned by nothing else.
    Ok(unsafe { std::fs::File::from_raw_fd(protocol) })
}

/// The MCP face of a serving process: its desk on this thread, and word of its client leaving.
struct ServedMcp {
    desk: tokio::task::JoinHandle<()>,
    ended: tokio::sync::oneshot::Receiver<()>,
}

/// Starts the MCP face on stdio, on a thread of its own, with an owner's token kept in memory.
/// Standard output becomes the protocol's alone: whatever else writes to it (a script's
/// `print`) goes to stderr from here on.
fn start_mcp(
    engine: &Engine,
    catalogue: &CatalogueCell,
    out: std::fs::File,
    load_timeout: Duration,
) -> Result<ServedMcp, String> {
    let (calls, inbox) = tokio::sync::mpsc::unbounded_channel();
    let token = engine.mint(Grant::new(Role::Operator, "mcp"), crate::engine::now_ms()).encode();
    let client = crate::server::Client::new(calls, token);
    let (done, ended) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("swarm-mcp".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("swarm mcp: cannot start the MCP runtime: {e}");
                    let _ = done.send(());
                    return;
                }
            };
            runtime.block_on(async move {
                use rmcp::ServiceExt as _;
                let face = crate::mcp::McpFace::new(client, load_timeout);
                let transport = (tokio::io::stdin(), tokio::fs::File::from_std(out));
                match face.serve(transport).await {
                    Ok(service) => {
                        let _ = service.waiting().await;
                    }
                    Err(e) => eprintln!("swarm mcp: the client did not start a session: {e}"),
                }
            });
            let _ = done.send(());
        })
        .map_err(|e| format!("cannot start the MCP thread: {e}"))?;
    let desk = tokio::task::spawn_local(serve_calls(engine.clone(), catalogue.clone(), inbox));
    eprintln!("serving MCP on stdio");
    Ok(ServedMcp { desk, ended })
}

/// Writes `text` to `path` readable by its owner only (0600), replacing what was there: the
/// file is made 0600 under another name and renamed over the old one, so the text is never in a
/// file others can read.
pub fn write_secret_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let fresh = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&fresh);
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&fresh)?;
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.sync_all()?;
    std::fs::rename(&fresh, path)
}

/// Shows the API what `version` exposes.
fn publish(catalogue: &CatalogueCell, version: &ScriptVersion) {
    *catalogue.borrow_mut() = Some(Catalogue {
        lua: version.host.lua().clone(),
        compiler: version.host.detached_compiler(),
        exposed: version.exposed(),
    });
}
