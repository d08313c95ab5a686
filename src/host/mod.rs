//! The host VM: a Lua 5.4 state with the `swarm` module preloaded, and what it needs to turn
//! the modules scripts write into blueprints.

pub mod agent_api;
pub mod engine_api;
mod gate_api;
mod http;
mod layer_api;
pub mod load;
mod module;
pub use module::caller_site;
pub mod numbers;
mod operator_api;
pub mod requires;
mod semaphore;
mod state;
mod stdlib;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use mlua::{Function, Lua, Table};

use crate::engine::{Engine, EngineConfig, EngineError};
use crate::value::Value;
use crate::worker::WorkerResult;

use crate::blueprint::compile::Compiler;
use crate::worker::Spawner;
use crate::worker::lua_agent::{FunctionLookup, LuaAgentFactory};
use crate::worker::lua_fn::LuaFnSpawner;
use crate::worker::operator::{ConsoleIo, LuaOperatorLookup, OperatorFactory, StdConsole};
use crate::worker::rust_fn::{RustFnFactory, RustFnRegistry};
use crate::worker::script::{HostBridges, PoolConfig, ScriptPool, ScriptRuntime};
use crate::worker::subprocess::SubprocessFactory;

/// The conversion between Lua values and [`Value`]s (it lives with the value type).
pub use crate::value::lua as convert;
pub use crate::value::lua::lua_error_message;
pub use load::{DEFAULT_LOAD_TIMEOUT, LoadError};

/// Registry key of the table holding inline agent functions by id.
const FUNCTIONS_KEY: &str = "swarm.functions";
/// Registry key of the Lua function that reports a built blueprint's source sites.
const SOURCES_KEY: &str = "swarm.sources_of";
/// Registry key of the table of the last blueprint built under each id (see `lua/blueprint.lua`).
const BLUEPRINTS_KEY: &str = "swarm.blueprints_by_id";

/// A Lua VM with the `swarm` module, and the registries its blueprints compile against.
pub struct Host {
    lua: Lua,
    /// Runs the `source`/`file` script agents of every blueprint compiled here.
    scripts: Rc<ScriptPool>,
}

/// Sets up a [`Host`]: the Rust agents it offers and its engine.
#[derive(Default)]
pub struct HostBuilder {
    rust_fns: RustFnRegistry,
    engine: Option<EngineConfig>,
    scripts: PoolConfig,
    max_result_bytes: Option<u64>,
}

impl HostBuilder {
    /// Offers a `rust_fn` agent under `id` (next to the built-ins echo, sleep, fail, block).
    pub fn rust_fn(
        mut self,
        id: &str,
        f: impl Fn(Value) -> LocalBoxFuture<'static, WorkerResult> + 'static,
    ) -> HostBuilder {
        self.rust_fns.register(id, f);
        self
    }

    /// The configuration of the VM's default engine (its gate, secret, limits).
    pub fn engine(mut self, config: EngineConfig) -> HostBuilder {
        self.engine = Some(config);
        self
    }

    /// How the pool of sandboxed VMs for script agents is sized and bounded (it starts on
    /// the first script call).
    pub fn script_pool(mut self, config: PoolConfig) -> HostBuilder {
        self.scripts = config;
        self
    }

    /// How much a value crossing from Lua into the host may take (what an inline agent
    /// returns or raises, bridge results, events, ...): 1 byte to 4 GiB, by default 64 MiB.
    /// Also the default `max_result_bytes` of script agents.
    pub fn max_result_bytes(mut self, bytes: u64) -> HostBuilder {
        self.max_result_bytes = Some(bytes);
        self
    }

    /// Makes the VM, installs the `swarm` module, and starts the default engine when one was configured.
    pub fn build(mut self) -> Result<Host, HostError> {
        let lua = Lua::new();
        crate::interrupt::lua::install(&lua)?;
        if let Some(bytes) = self.max_result_bytes {
            let bytes = convert::check_max_result_bytes(bytes).map_err(HostError::Config)?;
            convert::ResultLimit::install(&lua, bytes);
            self.scripts.limits.max_result_bytes = bytes;
        }
        let scripts = Rc::new(ScriptPool::new(self.scripts));
        let terminal: Rc<dyn ConsoleIo> = Rc::new(StdConsole::default());
        lua.set_app_data(state::HostState::new(scripts.clone(), Rc::new(self.rust_fns), terminal));
        let host = Host { lua, scripts };
        module::install(&host.lua)?;
        requires::install(&host.lua)?;
        if let Some(config) = self.engine {
            engine_api::set_default_engine(&host.lua, Engine::new(config)?);
        }
        Ok(host)
    }
}

/// Why a host could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The Lua VM could not be set up.
    #[error("cannot set up the Lua VM: {0}")]
    Lua(#[from] mlua::Error),
    /// The configured engine could not be made.
    #[error("cannot set up the engine: {0}")]
    Engine(#[from] EngineError),
    /// A builder setting is out of range.
    #[error("host configuration: {0}")]
    Config(String),
}

impl Host {
    /// A fresh VM with `require("swarm")` available.
    pub fn new() -> mlua::Result<Host> {
        Host::builder().build().map_err(|e| match e {
            HostError::Lua(e) => e,
            other => mlua::Error::external(other),
        })
    }

    /// Sets up a host with its own Rust agents or engine configuration.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// Where `console` operators ask their questions from now on (the REPL sets its own).
    pub fn set_console(&self, io: Rc<dyn ConsoleIo>) {
        *state::state(&self.lua).console.borrow_mut() = io;
    }

    /// The VM's default engine (what `swarm.run` uses).
    pub fn engine(&self) -> mlua::Result<Engine> {
        engine_api::default_engine(&self.lua)
    }

    /// The VM itself.
    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// The `swarm` module table.
    pub fn swarm(&self) -> mlua::Result<Table> {
        self.lua.globals().get::<Table>("package")?.get::<Table>("loaded")?.get("swarm")
    }

    /// A compiler whose factories know this VM's inline functions and Rust agents.
    pub fn compiler(&self) -> Compiler {
        compiler_for(&self.lua)
    }

    /// A compiler for blueprints that did not come from this VM (JSON files): an inline
    /// function reference cannot be resolved there, so it is a warning, not an error.
    pub fn detached_compiler(&self) -> Compiler {
        detached_compiler_for(&self.lua)
    }

    /// The pool that runs script agents (its stats, its configuration).
    pub fn script_pool(&self) -> &ScriptPool {
        &self.scripts
    }

    /// Every file `require` loaded from disk in this VM so far (what hot reload watches).
    pub fn required_files(&self) -> Vec<std::path::PathBuf> {
        requires::required_files(&self.lua)
    }

    /// Loads a blueprint file (a Lua module or JSON), its module given
    /// [`load::DEFAULT_LOAD_TIMEOUT`] to run.
    pub fn load_file(&self, path: &Path) -> Result<crate::blueprint::Blueprint, LoadError> {
        load::load_file(&self.lua, path, load::DEFAULT_LOAD_TIMEOUT)
    }

    /// [`Host::load_file`] with the module given `load_timeout` to run (`--load-timeout`).
    pub fn load_file_within(
        &self,
        path: &Path,
        load_timeout: std::time::Duration,
    ) -> Result<crate::blueprint::Blueprint, LoadError> {
        load::load_file(&self.lua, path, load_timeout)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Compiled blueprints may outlive the host; their script attempts then fail saying
        // the pool is gone, rather than keeping threads alive.
        self.scripts.shutdown();
    }
}

/// An engine journaling to `journal`, with its large outputs stored in the same file: what
/// `swarm run`, `swarm serve` and `swarm.engine{state = PATH}` make. The error is ready to show.
pub fn journaled_engine(
    mut config: EngineConfig,
    journal: Rc<crate::store::journal::SqliteJournal>,
) -> Result<Engine, String> {
    // The children the engine's workers start are journaled while they run.
    let ledger: Rc<dyn crate::worker::subprocess::process::ChildLedger> = journal.clone();
    crate::worker::subprocess::process::add_ledger(&ledger);
    let outputs = crate::store::journal::SqliteOutputStore::new(journal.clone())
        .map_err(|e| format!("cannot open the journal {e}"))?;
    config.journal = Some(crate::engine::JournalRef(journal));
    Engine::with_output_store(config, Rc::new(outputs)).map_err(|e| e.to_string())
}

/// The compiler for a VM: every built-in agent kind, with `lua` agents resolved in `lua`.
pub(crate) fn compiler_for(lua: &Lua) -> Compiler {
    let state = state::state(lua);
    state.compilers.get_or_init(|| make_compilers(lua)).attached.clone()
}

/// [`Host::detached_compiler`] for the VM `lua`.
pub(crate) fn detached_compiler_for(lua: &Lua) -> Compiler {
    let state = state::state(lua);
    state.compilers.get_or_init(|| make_compilers(lua)).detached.clone()
}

fn make_compilers(lua: &Lua) -> state::Compilers {
    let rust_fns = state::state(lua).rust_fns.clone();
    let functions: Option<Table> = lua.named_registry_value(FUNCTIONS_KEY).ok();
    let weak = lua.weak();
    let lookup = functions.map(|t| {
        let lookup: FunctionLookup = Rc::new(move |id: &str| {
            let func = t.raw_get::<Option<Function>>(id).ok().flatten()?;
            let spawner: Rc<dyn Spawner> = Rc::new(LuaFnSpawner { lua: weak.clone(), func });
            Some(spawner)
        });
        lookup
    });
    let layers = layer_api::registry(lua);
    let mut attached =
        compiler_with(lookup, operator_api::lookup(lua), console(lua), rust_fns.clone(), script_runtime(lua));
    attached.share_layers(layers.clone());
    let mut detached = compiler_with(None, None, console(lua), rust_fns, script_runtime(lua));
    detached.share_layers(layers).set_detached(true);
    state::Compilers { attached, detached }
}

/// The console as the VM's operators see it: whichever the slot holds when they ask.
struct SlotConsole(Rc<RefCell<Rc<dyn ConsoleIo>>>);

impl ConsoleIo for SlotConsole {
    fn ask(&self, question: String) -> LocalBoxFuture<'static, Option<String>> {
        let current = self.0.borrow().clone();
        current.ask(question)
    }
}

pub(crate) fn console(lua: &Lua) -> Rc<dyn ConsoleIo> {
    Rc::new(SlotConsole(state::state(lua).console.clone()))
}

/// The host's script pool, with the VM's bridges.
fn script_runtime(lua: &Lua) -> Option<ScriptRuntime> {
    let pool = state::state(lua).scripts.clone();
    Some(ScriptRuntime { pool, bridges: Rc::new(HostBridges::new(lua)) })
}

fn compiler_with(
    lookup: Option<FunctionLookup>,
    operators: Option<LuaOperatorLookup>,
    console: Rc<dyn ConsoleIo>,
    rust_fns: Rc<RustFnRegistry>,
    scripts: Option<ScriptRuntime>,
) -> Compiler {
    let mut compiler = Compiler::new();
    compiler
        .register("lua", LuaAgentFactory { functions: lookup, scripts })
        .register("rust_fn", RustFnFactory { registry: rust_fns })
        .register("subprocess", SubprocessFactory)
        .register("remote", crate::worker::remote::RemoteFactory)
        .register("operator", OperatorFactory { lua: operators, console });
    compiler
}
