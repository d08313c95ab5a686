//! `swarm compile FILE`: the blueprint as canonical JSON on stdout.

use std::path::Path;

pub fn run(file: &Path) -> u8 {
    let result = super::new_host().and_then(|host| super::load_and_compile(&host, file));
    match result {
        Ok(compiled) => {
            println!("{}", compiled.blueprint.to_json_pretty());
            0
        }
        Err(code) => code,
    }
}
