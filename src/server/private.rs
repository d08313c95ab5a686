//! The private socket every `swarm run` and `swarm serve` listens on for its own children: the
//! same API on a Unix socket in a directory only this user can enter (0700), named in each
//! subprocess agent's `SWARM_API`. A child presents its attempt's `SWARM_TOKEN`, so it can use
//! the routes of its own task and nothing its worker token is not allowed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CatalogueCell, Listen, Server, serve_calls};
use crate::engine::Engine;

/// The private API of a process, for its children. Dropping it (or [`PrivateApi::stop`]) stops
/// the server, tells the engine its children have no API any more, and removes the directory.
pub struct PrivateApi {
    engine: Engine,
    server: Option<Server>,
    desk: tokio::task::JoinHandle<()>,
    dir: PathBuf,
}

impl PrivateApi {
    /// Listens on `DIR/api.sock` in a fresh directory under `$XDG_RUNTIME_DIR` (else the system's
    /// temporary directory), serves calls on this thread's `LocalSet` and tells `engine`, whose
    /// subprocess agents then get `SWARM_API=unix:DIR/api.sock`.
    pub fn start(engine: &Engine, catalogue: &CatalogueCell) -> Result<PrivateApi, String> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let dir = make_private_dir(&base)?;
        let socket = dir.join("api.sock");
        let (calls, inbox) = tokio::sync::mpsc::unbounded_channel();
        // One worker thread: the children of one process are few, and `swarm run` starts fast.
        let server = match Server::start_with_threads(Listen::Unix(socket.clone()), false, calls, 1) {
            Ok(server) => server,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let desk = tokio::task::spawn_local(serve_calls(engine.clone(), catalogue.clone(), inbox));
        engine.set_api(Some(Arc::from(format!("unix:{}", socket.display()))));
        Ok(PrivateApi { engine: engine.clone(), server: Some(server), desk, dir })
    }

    /// The socket's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops serving (blocks until the server thread has ended).
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(server) = self.server.take() {
            self.engine.set_api(None);
            self.desk.abort();
            server.stop();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for PrivateApi {
    fn drop(&mut self) {
        self.shut();
    }
}

/// A new directory `swarm-PID-RANDOM` in `base` that only this user may enter.
fn make_private_dir(base: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt as _;
    for _ in 0..16 {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| format!("the private API's directory: {e}"))?;
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let dir = base.join(format!("swarm-{}-{name}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("the private API's directory {}: {e}", dir.display())),
        }
    }
    Err(format!("the private API's directory: no fresh name in {}", base.display()))
}
