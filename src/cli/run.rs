//! `swarm run FILE [--input JSON|@file] [--events ndjson]`: runs a blueprint on a fresh engine.
//! stdout gets the final ctx as JSON; stderr gets `run <id>` first, then one line per attempt
//! on a terminal (or every event as NDJSON with `--events ndjson`), and the structured error
//! if the run fails. Ctrl-C cancels the run.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::rc::Rc;

use crate::engine::{Engine, EngineConfig, Event, EventKind, RunStatus};
use crate::host::agent_api::LuaExterns;
use crate::host::engine_api::set_default_engine;
use crate::value::{Value, from_json};

/// How `swarm run` reports progress on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EventsFormat {
    /// Every engine event, one JSON object per line.
    Ndjson,
}

pub fn run(file: &Path, input: Option<&str>, events: Option<EventsFormat>) -> u8 {
    let init = match parse_input(input) {
        Ok(v) => v,
        Err(message) => {
            eprintln!("swarm run: --input: {message}");
            return super::EXIT_USAGE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swarm run: cannot start the runtime: {e}");
            return super::EXIT_USAGE;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run_on_engine(file, init, events))
}

fn parse_input(input: Option<&str>) -> Result<Value, String> {
    let Some(input) = input else { return Ok(Value::object()) };
    let text = match input.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        None => input.to_string(),
    };
    match from_json(&text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(format!("the ctx must be a JSON object, got {}", other.type_name())),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

async fn run_on_engine(file: &Path, init: Value, events: Option<EventsFormat>) -> u8 {
    let host = match super::new_host() {
        Ok(h) => h,
        Err(code) => return code,
    };
    let compiled = match super::load_and_compile(&host, file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let engine = match Engine::new(EngineConfig::default()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("swarm run: {e}");
            return super::EXIT_USAGE;
        }
    };
    set_default_engine(host.lua(), engine.clone());
    let handle = engine.start(Rc::new(compiled), init, Rc::new(LuaExterns::new(host.lua())));
    eprintln!("run {}", handle.id);

    let reporter = match engine.follow_run(&handle.id) {
        Ok(mut rx) => {
            let terminal = std::io::stderr().is_terminal();
            Some(tokio::task::spawn_local(async move {
                while let Some(event) = rx.recv().await {
                    report(&event, events, terminal);
                }
            }))
        }
        Err(e) => {
            eprintln!("swarm run: cannot follow the run's events: {e}");
            None
        }
    };

    let outcome = tokio::select! {
        outcome = handle.wait() => outcome,
        _ = tokio::signal::ctrl_c() => {
            handle.cancel();
            handle.wait().await
        }
    };
    if let Some(reporter) = reporter {
        let _ = reporter.await;
    }
    match (outcome.status, &outcome.error) {
        (RunStatus::Finished, _) | (_, None) => {
            let text = serde_json::to_string_pretty(&outcome.ctx).expect("a ctx always encodes");
            println!("{text}");
            0
        }
        (_, Some(error)) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{}", serde_json::json!({ "error": error, "run_id": &*outcome.run_id }));
            super::EXIT_RUN_FAILED
        }
    }
}

fn report(event: &Event, format: Option<EventsFormat>, terminal: bool) {
    match format {
        Some(EventsFormat::Ndjson) => {
            if let Ok(line) = serde_json::to_string(event) {
                eprintln!("{line}");
            }
        }
        None if terminal => {
            if let EventKind::AttemptFinished { agent, attempt, status, elapsed_ms, error, .. } = &event.kind {
                let note = error.as_deref().map(|e| format!("  {e}")).unwrap_or_default();
                eprintln!("  {agent:<20} {:<9} #{attempt:<3} {elapsed_ms:>9.1} ms{note}", status.name());
            }
        }
        None => {}
    }
}
