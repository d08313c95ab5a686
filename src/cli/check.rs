//! `swarm check FILE`: exit 0 when the blueprint compiles, 2 with every diagnostic otherwise.

use std::path::Path;
use std::time::Duration;

pub fn run(file: &Path, load_timeout: Duration) -> u8 {
    let result = super::new_host().and_then(|host| super::load_and_compile(&host, file, load_timeout));
    match result {
        Ok(compiled) => {
            let bp = &compiled.blueprint;
            let mut steps = 0;
            bp.flow.for_each_step(&mut |_| steps += 1);
            eprintln!("ok: {} ({} agents, {steps} steps)", bp.id, bp.agents.len());
            0
        }
        Err(code) => code,
    }
}
