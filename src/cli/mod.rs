//! The `swarm` command line: one file per subcommand; this file parses arguments and maps
//! outcomes to exit codes (0 ok, 1 run failed, 2 usage or compile error, 3 left waiting).

mod check;
mod compile;
mod examples;
mod graph;
mod init;
mod progress;
mod repl;
mod run;
mod runs;
mod serve;
mod token;
pub mod types;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::blueprint::Blueprint;
use crate::blueprint::compile::CompiledBlueprint;
use crate::host::Host;
use crate::reload::WatchMode;
use crate::repl::Ended;
use crate::stdout::{self, StdoutError};
use crate::store::journal::SqliteJournal;

/// luaswarm: write agent swarms as Lua modules; check, compile, draw and run them.
#[derive(Parser)]
#[command(name = "swarm", version, about, long_about = None, after_help = examples::SWARM)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes, before or after its name (`swarm runs list --state PATH`
/// and `swarm --state PATH runs list` are the same).
#[derive(clap::Args)]
struct Global {
    /// The journal: a SQLite file, or `memory` for none. Default: .swarm/state.db in the
    /// current directory (run, runs), or beside FILE (serve).
    #[arg(long, global = true, value_name = "PATH|memory")]
    state: Option<String>,
    /// How long loading a blueprint module or served script may run, in milliseconds; a load
    /// that runs longer (a loop at the top level) is stopped with an error naming the file.
    #[arg(long, global = true, value_name = "MS", default_value_t = crate::host::DEFAULT_LOAD_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    load_timeout: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Check a blueprint: load it, compile it, and report every problem with file:line.
    #[command(after_help = examples::CHECK)]
    Check {
        /// A Lua module returning a blueprint, or a JSON blueprint.
        file: PathBuf,
    },
    /// Print a blueprint as canonical JSON (which `swarm check` accepts back).
    #[command(after_help = examples::COMPILE)]
    Compile {
        /// A Lua module returning a blueprint, or a JSON blueprint.
        file: PathBuf,
    },
    /// Run a blueprint: the final ctx as JSON on stdout, progress on stderr.
    #[command(after_help = examples::RUN)]
    Run {
        /// A Lua module returning a blueprint, or a JSON blueprint.
        file: PathBuf,
        /// The initial ctx: a JSON object, or @path to a file holding one.
        #[arg(long)]
        input: Option<String>,
        /// Stream every engine event to stderr in this format.
        #[arg(long, value_enum)]
        events: Option<run::EventsFormat>,
        /// Run again after every save of the file or a module it requires (until Ctrl-C).
        #[arg(long)]
        watch: bool,
        /// With --watch: scan for changes every 100 ms instead of using the OS's file events.
        #[arg(long, requires = "watch")]
        poll: bool,
        /// Exit with code 3 once every strand of the run waits for a signal, leaving the run
        /// in the journal; `swarm runs signal` then carries it on.
        #[arg(long, conflicts_with = "watch")]
        detach: bool,
    },
    /// Journaled runs: list them, show one, print its events, resume an interrupted one, rerun
    /// one from a step, send a signal to one that waits.
    #[command(after_help = examples::RUNS)]
    Runs {
        #[command(subcommand)]
        command: Option<runs::RunsCommand>,
    },
    /// Serve a script: its timers (`swarm.every`) start runs on a long-lived engine, and every
    /// save reloads it with `swarm.state` kept. SIGINT/SIGTERM cancel runs in flight and exit.
    #[command(after_help = examples::SERVE)]
    Serve {
        /// A Lua script that registers timers, layers and bridges.
        file: PathBuf,
        /// Scan for changes every 100 ms instead of using the OS's file events.
        #[arg(long)]
        poll: bool,
        /// Open the REPL on the same engine; leaving it stops the server.
        #[arg(long)]
        repl: bool,
        /// Serve the HTTP API (docs/api.md) on 127.0.0.1:PORT or unix:PATH; the operator
        /// token is written to .swarm/operator.token beside FILE.
        #[arg(long, value_name = "ADDR")]
        listen: Option<crate::server::Listen>,
        /// Allow --listen on an address other machines can reach.
        #[arg(long, requires = "listen")]
        allow_remote: bool,
    },
    /// Serve FILE's host to a model's client over the Model Context Protocol on stdio
    /// (docs/mcp.md): the same script, engine and journal as `swarm serve`.
    #[command(after_help = examples::MCP)]
    Mcp {
        /// A Lua script that exposes blueprints with swarm.expose.
        file: PathBuf,
        /// Scan for changes every 100 ms instead of using the OS's file events.
        #[arg(long)]
        poll: bool,
    },
    /// Tokens for the API of `swarm serve`: mint one for a role, or revoke one.
    #[command(after_help = examples::TOKEN)]
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Draw a blueprint's flow as a Mermaid or Graphviz diagram.
    #[command(after_help = examples::GRAPH)]
    Graph {
        /// A Lua module returning a blueprint, or a JSON blueprint.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = graph::Format::Mermaid)]
        format: graph::Format,
    },
    /// Start a project: DIR/main.lua, DIR/.luarc.json and the editor definitions in DIR/types.
    #[command(after_help = examples::INIT)]
    Init {
        /// Where (default: the current directory).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Write the LuaLS definitions of `swarm` and `std.*` to DIR, for editor completion.
    #[command(after_help = examples::TYPES)]
    Types { dir: PathBuf },
    /// An interactive Lua prompt with `swarm` loaded, on a live engine (:help lists commands).
    #[command(after_help = examples::REPL)]
    Repl {
        /// A blueprint to load first (it becomes the current one, and the global `bp`).
        file: Option<PathBuf>,
    },
}

/// Exit code for a run that failed.
pub const EXIT_RUN_FAILED: u8 = 1;
/// Exit code for bad usage, a file that does not load, or a blueprint that does not compile.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a run left waiting for a signal (`--detach`).
pub const EXIT_WAITING: u8 = 3;

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("SWARM_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let state = cli.global.state.as_deref();
    let load_timeout = Duration::from_millis(cli.global.load_timeout);
    let code = match cli.command {
        Command::Check { file } => check::run(&file, load_timeout),
        Command::Compile { file } => compile::run(&file, load_timeout),
        Command::Serve { file, poll, repl, listen, allow_remote } => {
            let mode = if poll { WatchMode::Poll } else { WatchMode::Events };
            let api = listen.map(|listen| serve::Api { listen, allow_remote });
            serve::run(&file, mode, repl, api.map(serve::Face::Http), state, load_timeout)
        }
        Command::Mcp { file, poll } => {
            let mode = if poll { WatchMode::Poll } else { WatchMode::Events };
            serve::run(&file, mode, false, Some(serve::Face::Mcp), state, load_timeout)
        }
        Command::Graph { file, format } => graph::run(&file, format, load_timeout),
        Command::Runs { command } => runs::run(state, command, load_timeout),
        Command::Token { command } => token::run(state, command),
        Command::Run { file, input, events, watch, poll, detach } => {
            let mode = match (watch, poll) {
                (false, _) => None,
                (true, false) => Some(WatchMode::Events),
                (true, true) => Some(WatchMode::Poll),
            };
            run::run(&file, input.as_deref(), events, mode, detach, state, load_timeout)
        }
        Command::Repl { file } => repl::run(file.as_deref(), load_timeout),
        Command::Init { dir } => init::run(&dir),
        Command::Types { dir } => types::run(&dir),
    };
    ExitCode::from(code)
}

/// The exit code once a command has written its output: `ok` if it all got out or the reader
/// left, [`EXIT_RUN_FAILED`] (with a note on stderr naming `command`) if it was lost.
fn exit_after_output(written: Result<(), StdoutError>, command: &str, ok: u8) -> u8 {
    match written {
        Ok(()) | Err(StdoutError::Closed) => ok,
        Err(StdoutError::Failed(e)) => {
            stdout::report(command, &e);
            EXIT_RUN_FAILED
        }
    }
}

/// The exit code of a REPL session that `ended` so.
fn repl_exit_code(ended: Ended) -> u8 {
    match ended {
        Ended::Clean => 0,
        Ended::Failed => EXIT_RUN_FAILED,
        Ended::NotStarted => EXIT_USAGE,
    }
}

/// Loads `file` in `host` (its module may run for `load_timeout`), printing the error and
/// returning the usage exit code on failure.
fn load(host: &Host, file: &Path, load_timeout: Duration) -> Result<Blueprint, u8> {
    host.load_file_within(file, load_timeout).map_err(|e| {
        eprintln!("{e}");
        EXIT_USAGE
    })
}

/// Loads and compiles `file`, printing warnings, and every error on failure.
fn load_and_compile(host: &Host, file: &Path, load_timeout: Duration) -> Result<CompiledBlueprint, u8> {
    let bp = load(host, file, load_timeout)?;
    let base_dir = file.parent();
    let compiler = if is_json(file) { host.detached_compiler() } else { host.compiler() };
    let compiled = compiler.compile(Rc::new(bp), base_dir).map_err(|errors| {
        eprintln!("{errors}");
        EXIT_USAGE
    })?;
    for warning in &compiled.warnings {
        eprintln!("{warning}");
    }
    Ok(compiled)
}

/// The journal in `dir` when no `--state` names one: `.swarm/state.db` (with an empty `dir`,
/// relative to the current directory).
fn default_journal(dir: &Path) -> PathBuf {
    dir.join(".swarm").join("state.db")
}

/// The journal `state` names: `memory` for none, a path, or by default `.swarm/state.db` in
/// `default_dir`. A file that cannot be opened as a journal is reported and left untouched.
fn open_state(state: Option<&str>, default_dir: &Path) -> Result<Option<Rc<SqliteJournal>>, u8> {
    let path = match state {
        Some("memory") => return Ok(None),
        Some(path) => PathBuf::from(path),
        None => default_journal(default_dir),
    };
    match SqliteJournal::open(&path) {
        Ok(journal) => Ok(Some(Rc::new(journal))),
        Err(e) => {
            eprintln!(
                "swarm: cannot open the journal {e}\n  (--state PATH journals elsewhere, --state memory not at all)"
            );
            Err(EXIT_USAGE)
        }
    }
}

fn is_json(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "json")
}

/// A fresh host VM, or the usage exit code if Lua cannot start.
fn new_host() -> Result<Host, u8> {
    Host::new().map_err(|e| {
        eprintln!("swarm: cannot start the Lua VM: {e}");
        EXIT_USAGE
    })
}
