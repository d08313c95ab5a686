//! `check_blueprint`: a blueprint's Lua source loaded and compiled in a VM of its own, as
//! `swarm check` does for a file, with every diagnostic reported under the name the caller
//! gave (`review.lua:12: ...`), not the scratch file it was written to.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use serde_json::json;

use crate::host::Host;
use crate::server::ApiError;

/// The source's diagnostics: `{ok, blueprint?, errors, warnings}`.
pub fn check(source: &str, name: &str, load_timeout: Duration) -> Result<serde_json::Value, ApiError> {
    if name.contains('/') || !name.ends_with(".lua") {
        return Err(ApiError::bad_request(format!(
            "check_blueprint: `name` is a file name ending in .lua, not `{name}`"
        )));
    }
    let dir = Scratch::new()?;
    let path = dir.0.join(name);
    std::fs::write(&path, source).map_err(internal)?;
    let prefix = format!("{}/", dir.0.display());
    let local = |text: String| text.replace(&prefix, "");
    let host = Host::new().map_err(internal)?;
    let blueprint = match host.load_file_within(&path, load_timeout) {
        Ok(bp) => bp,
        Err(e) => {
            let message = local(e.to_string());
            return Ok(json!({ "ok": false, "errors": [{ "kind": "load", "message": message }], "warnings": [] }));
        }
    };
    let id = blueprint.id.clone();
    match host.compiler().compile(Rc::new(blueprint), Some(&dir.0)) {
        Ok(compiled) => {
            let warnings: Vec<String> = compiled.warnings.iter().map(|w| local(w.to_string())).collect();
            Ok(json!({ "ok": true, "blueprint": id, "errors": [], "warnings": warnings }))
        }
        Err(errors) => {
            let mut list = Vec::with_capacity(errors.0.len());
            for error in &errors.0 {
                let mut entry = serde_json::to_value(error).map_err(internal)?;
                // `file:line` where the agent or step was declared, and the line as `swarm check`
                // prints it.
                if let Some(at) = &error.location {
                    entry["at"] = local(at.to_string()).into();
                }
                entry["diagnostic"] = local(error.to_string()).into();
                list.push(entry);
            }
            Ok(json!({ "ok": false, "blueprint": id, "errors": list, "warnings": [] }))
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, ApiError> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(internal)?;
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("swarm-check-{}-{name}", std::process::id()));
        std::fs::create_dir(&dir).map_err(internal)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
