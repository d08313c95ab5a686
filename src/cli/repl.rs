//! `swarm repl [FILE]`: the interactive REPL (see `crate::repl`), with FILE loaded first.

use std::path::Path;
use std::time::Duration;

pub fn run(file: Option<&Path>, load_timeout: Duration) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swarm repl: cannot start the runtime: {e}");
            return super::EXIT_USAGE;
        }
    };
    let local = tokio::task::LocalSet::new();
    super::repl_exit_code(local.block_on(&runtime, crate::repl::run(file, load_timeout)))
}
