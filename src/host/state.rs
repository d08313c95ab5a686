//! What the host keeps beside its Lua VM, in one place: the VM's one app-data entry, made when
//! the host is built. Each part is reached through a function of the module that uses it.

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use mlua::Lua;

use crate::blueprint::compile::Compiler;
use crate::engine::{Engine, RunHandle};
use crate::middleware::LayerRegistry;
use crate::worker::operator::ConsoleIo;
use crate::worker::rust_fn::RustFnRegistry;
use crate::worker::script::ScriptPool;

/// The host's state for one VM.
pub(super) struct HostState {
    /// Runs the `source`/`file` script agents of every blueprint compiled here.
    pub scripts: Rc<ScriptPool>,
    /// The Rust agents (`HostBuilder::rust_fn` and the built-ins).
    pub rust_fns: Rc<RustFnRegistry>,
    /// The layer registry `swarm.layer` adds to, made on first use with the built-in layers.
    pub layers: OnceCell<Rc<RefCell<LayerRegistry>>>,
    /// Where `console` operators ask: the terminal unless the REPL set its own.
    pub console: Rc<RefCell<Rc<dyn ConsoleIo>>>,
    /// The engine `swarm.run` uses when a script does not make its own, made on first use.
    pub engine: RefCell<Option<Engine>>,
    /// The runs the VM's scripts started, so a host that retires or stops the VM can cancel
    /// or wait for the ones still in flight (their inline agents need the VM alive).
    pub started: RefCell<Vec<RunHandle>>,
    /// The VM's two compilers, made at its first compile.
    pub compilers: OnceCell<Compilers>,
    /// The `swarm.http` client and its connection pool, made at the first request.
    pub http: OnceCell<reqwest::Client>,
}

/// A compiler whose `lua` agents resolve in the VM, and one for blueprints that did not come
/// from it (JSON files). Their factories read the VM's registries as they stand at each compile.
pub(super) struct Compilers {
    pub attached: Compiler,
    pub detached: Compiler,
}

impl HostState {
    pub fn new(scripts: Rc<ScriptPool>, rust_fns: Rc<RustFnRegistry>, console: Rc<dyn ConsoleIo>) -> HostState {
        HostState {
            scripts,
            rust_fns,
            layers: OnceCell::new(),
            console: Rc::new(RefCell::new(console)),
            engine: RefCell::new(None),
            started: RefCell::new(Vec::new()),
            compilers: OnceCell::new(),
            http: OnceCell::new(),
        }
    }
}

/// The VM's state; every VM with the `swarm` module has one.
pub(super) fn state(lua: &Lua) -> mlua::AppDataRef<'_, HostState> {
    lua.app_data_ref::<HostState>().expect("the host state is installed with the swarm module")
}
