//! `swarm graph FILE [--format mermaid|dot]`: the flow as a diagram on stdout.

use std::path::Path;
use std::time::Duration;

use crate::blueprint::graph::{GraphFormat, render};

/// The diagram languages `swarm graph` writes.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Mermaid,
    Dot,
}

pub fn run(file: &Path, format: Format, load_timeout: Duration) -> u8 {
    let result = super::new_host().and_then(|host| super::load(&host, file, load_timeout));
    match result {
        Ok(bp) => {
            let format = match format {
                Format::Mermaid => GraphFormat::Mermaid,
                Format::Dot => GraphFormat::Dot,
            };
            super::exit_after_output(crate::stdout::print(&render(&bp, format)), "graph", 0)
        }
        Err(code) => code,
    }
}
