//! `swarm compile FILE`: the blueprint as canonical JSON on stdout.

use std::path::Path;
use std::time::Duration;

pub fn run(file: &Path, load_timeout: Duration) -> u8 {
    let result = super::new_host().and_then(|host| super::load_and_compile(&host, file, load_timeout));
    match result {
        Ok(compiled) => {
            super::exit_after_output(crate::stdout::println(&compiled.blueprint.to_json_pretty()), "compile", 0)
        }
        Err(code) => code,
    }
}
