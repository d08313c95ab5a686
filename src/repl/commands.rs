//! The REPL's own commands (`:help`, `:load`, ...): they act on the current blueprint and on
//! the runs of this session.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::Session;
use super::pretty::pretty;
use crate::blueprint::graph::{GraphFormat, render};
use crate::engine::{EventKind, RunStatus};
use crate::gate::{Grant, Role};
use crate::host::agent_api::LuaExterns;
use crate::value::lua::to_lua;
use crate::value::{Value, from_json};

/// Name, argument, what it does.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("help", "", "this list"),
    ("load", "FILE", "load a blueprint file; it becomes the current one, and the global `bp`"),
    ("reload", "", "load the current file again"),
    ("run", "[JSON]", "run the current blueprint over a ctx (default {}) and print the final ctx"),
    ("runs", "", "the runs of this session: id, blueprint, status, duration"),
    ("events", "[RUN_ID]", "the events of the last run, or of RUN_ID"),
    ("graph", "", "the current blueprint's flow as a Mermaid diagram"),
    ("pending", "", "the open waits and questions of the runs in flight"),
    ("answer", "SIGNAL [JSON]", "deliver signal SIGNAL (or RUN_ID/SIGNAL) with a value (default null)"),
    ("quit", "", "leave the REPL (also Ctrl-D, or Ctrl-C twice on an empty line)"),
];

/// Whether the session goes on after a command.
pub enum Next {
    Continue,
    Quit,
}

impl Session {
    pub(super) async fn command(&self, line: &str) -> Next {
        let line = line.trim().trim_start_matches(':');
        let (name, arg) = match line.split_once(char::is_whitespace) {
            Some((name, arg)) => (name, arg.trim()),
            None => (line, ""),
        };
        match name {
            "help" | "h" | "?" => self.help(),
            "load" if arg.is_empty() => self.fail("usage: :load FILE"),
            "load" => self.load(Path::new(arg)),
            "reload" => {
                // The borrow must end before `load` replaces the current blueprint.
                let file = self.current.borrow().as_ref().map(|c| c.file.clone());
                match file {
                    Some(file) => self.load(&file),
                    None => self.fail("nothing to reload: :load FILE first"),
                }
            }
            "run" => self.run_current(arg).await,
            "runs" => self.list_runs().await,
            "events" => self.events(arg).await,
            "graph" => {
                let compiled = self.current.borrow().as_ref().map(|c| c.compiled.clone());
                match compiled {
                    Some(compiled) => self.printer.out(render(&compiled.blueprint, GraphFormat::Mermaid).trim_end()),
                    None => self.fail("no blueprint loaded: :load FILE first"),
                }
            }
            "pending" => self.pending(),
            "answer" if arg.is_empty() => self.fail("usage: :answer SIGNAL [JSON] (:pending lists them)"),
            "answer" => self.answer(arg),
            "quit" | "q" | "exit" => return Next::Quit,
            other => self.fail(&format!("unknown command :{other} (:help lists them)")),
        }
        Next::Continue
    }

    fn help(&self) {
        let mut text = String::from("Lua at the prompt: an expression's value is printed; `swarm` is loaded.\n");
        for (name, arg, what) in COMMANDS {
            let usage = if arg.is_empty() { format!(":{name}") } else { format!(":{name} {arg}") };
            text.push_str(&format!("  {usage:<16} {what}\n"));
        }
        text.push_str("Ctrl-C cancels a running flow; Tab completes globals, fields and commands.");
        self.printer.out(&text);
    }

    /// Loads and compiles `file`; on success it becomes the current blueprint and `bp`.
    pub(super) fn load(&self, file: &Path) {
        let bp = match self.host.load_file_within(file, self.load_timeout) {
            Ok(bp) => bp,
            Err(e) => return self.fail(&format!("error: {e}")),
        };
        let json = file.extension().is_some_and(|e| e == "json");
        let compiler = if json { self.host.detached_compiler() } else { self.host.compiler() };
        let compiled = match compiler.compile(Rc::new(bp), file.parent()) {
            Ok(c) => c,
            Err(errors) => return self.fail(&format!("error: {errors}")),
        };
        for warning in &compiled.warnings {
            self.printer.err(&warning.to_string());
        }
        let bp = &compiled.blueprint;
        let as_lua = serde_json::to_value(&**bp)
            .map_err(mlua::Error::external)
            .and_then(|json| to_lua(self.host.lua(), &Value::from(json)))
            .and_then(|value| self.host.lua().globals().set("bp", value));
        if let Err(e) = as_lua {
            self.printer.err(&format!("warning: the global `bp` is not set: {e}"));
        }
        let mut steps = 0;
        bp.flow.for_each_step(&mut |_| steps += 1);
        self.printer.err(&format!(
            "loaded {} ({} agents, {steps} steps) from {}; it is `bp`",
            bp.id,
            bp.agents.len(),
            file.display()
        ));
        *self.current.borrow_mut() = Some(Current { file: file.to_path_buf(), compiled: Rc::new(compiled) });
    }

    async fn run_current(&self, arg: &str) {
        let Some(compiled) = self.current.borrow().as_ref().map(|c| c.compiled.clone()) else {
            return self.fail("no blueprint loaded: :load FILE first");
        };
        let init = if arg.is_empty() {
            Value::object()
        } else {
            match from_json(arg) {
                Ok(v @ Value::Object(_)) => v,
                Ok(other) => {
                    return self.fail(&format!("the ctx must be a JSON object, got {}", other.type_name()));
                }
                Err(e) => return self.fail(&format!("the ctx is not valid JSON: {e}")),
            }
        };
        let handle = self.engine.start(compiled, init, Rc::new(LuaExterns::new(self.host.lua())));
        self.printer.err(&format!("run {}", handle.id));
        let progress = self.engine.follow_run(&handle.id).ok().map(|mut events| {
            let printer = self.printer.clone();
            tokio::task::spawn_local(async move {
                while let Some(event) = events.recv().await {
                    if let EventKind::AttemptFinished { agent, attempt, status, elapsed_ms, error, .. } = &event.kind {
                        let note = error.as_deref().map(|e| format!("  {e}")).unwrap_or_default();
                        printer.err(&format!(
                            "  {agent:<20} {:<9} #{attempt:<3} {elapsed_ms:>9.1} ms{note}",
                            status.name()
                        ));
                    }
                }
            })
        });
        let outcome = tokio::select! {
            outcome = handle.wait() => outcome,
            _ = self.interrupted() => {
                self.cancel_runs();
                handle.wait().await
            }
        };
        if let Some(progress) = progress {
            let _ = progress.await;
        }
        match (outcome.status, &outcome.error) {
            (RunStatus::Finished, _) | (_, None) => {
                self.printer.out(&serde_json::to_string_pretty(&outcome.ctx).expect("a ctx always encodes"))
            }
            (_, Some(error)) => {
                let mut shown = error.to_value();
                if let Value::Object(map) = &mut shown {
                    std::sync::Arc::make_mut(map).insert("run_id".into(), Value::string(&*outcome.run_id));
                }
                let text = match to_lua(self.host.lua(), &shown) {
                    Ok(table) => pretty(&table),
                    Err(_) => shown.to_json(),
                };
                self.fail(&format!("error: {text}"))
            }
        }
    }

    /// `:pending`: every open wait of the runs in flight, with the question it asks.
    fn pending(&self) {
        let pending = self.engine.pending_waits();
        if pending.is_empty() {
            return self.printer.out("nothing waits");
        }
        let mut lines = Vec::new();
        for w in pending {
            let at = match (w.pointer.as_deref(), w.task_id.as_deref()) {
                (Some(""), _) => "/",
                (Some(pointer), _) => pointer,
                (None, Some(task)) => task,
                (None, None) => "-",
            };
            lines.push(format!("{}  {:<20} at {at}", w.run_id, w.signal));
            if let Some(question) = &w.question {
                let asks =
                    question.get("prompt").and_then(Value::as_str).map_or_else(|| question.to_json(), str::to_string);
                lines.push(format!("    asks: {}", asks.split_whitespace().collect::<Vec<_>>().join(" ")));
            }
        }
        lines.push("answer with :answer SIGNAL JSON".into());
        self.printer.out(&lines.join("\n"));
    }

    /// `:answer SIGNAL [JSON]` or `:answer RUN_ID/SIGNAL [JSON]`: delivers the signal to the
    /// run waiting for it (the text, when it is not JSON).
    fn answer(&self, arg: &str) {
        let (target, value) = match arg.split_once(char::is_whitespace) {
            Some((target, value)) => (target, crate::worker::operator::parse_answer(value.trim())),
            None => (arg, Value::Null),
        };
        let (run, signal) = match target.split_once('/') {
            Some((run, signal)) => (Some(run), signal),
            None => (None, target),
        };
        let mut runs: Vec<std::sync::Arc<str>> = self
            .engine
            .pending_waits()
            .into_iter()
            .filter(|w| &*w.signal == signal && run.is_none_or(|r| &*w.run_id == r))
            .map(|w| w.run_id)
            .collect();
        runs.dedup();
        let run_id = match (runs.as_slice(), run) {
            ([one], _) => one.clone(),
            ([], Some(run)) => run.into(),
            ([], None) => return self.fail(&format!("nothing waits for '{signal}' (:pending lists what does)")),
            (_, _) => {
                let ids: Vec<&str> = runs.iter().map(|r| &**r).collect();
                return self.fail(&format!(
                    "runs {} wait for '{signal}': say which, :answer RUN_ID/{signal} JSON",
                    ids.join(", ")
                ));
            }
        };
        let owner = self.engine.mint_held(Grant::new(Role::Operator, "repl").with_max_uses(1), crate::engine::now_ms());
        let sent = self.engine.signal_run(crate::engine::Auth::Held(&owner), &run_id, signal, value);
        self.engine.forget_held(&owner);
        match sent {
            Ok(0) => self.printer.out(&format!("signal {signal} buffered for run {run_id} (nothing waits on it yet)")),
            Ok(n) => self.printer.out(&format!("signal {signal} delivered to run {run_id} ({n} wait(s))")),
            Err(e) => self.fail(&format!("{}: {e}", e.kind())),
        }
    }

    async fn list_runs(&self) {
        // The recorder is a task of its own: let it take in what was published just now.
        tokio::task::yield_now().await;
        let runs = self.runs.borrow();
        if runs.is_empty() {
            return self.printer.out("no runs yet");
        }
        let now = crate::engine::now_ms();
        let lines: Vec<String> = runs
            .iter()
            .map(|r| {
                let (status, end) = match r.finished {
                    Some((status, at)) => (status_name(status), at),
                    None if self.engine.is_waiting(&r.id) => ("waiting", now),
                    None => ("running", now),
                };
                format!("{}  {:<20} {:<9} {:>7} ms", r.id, r.blueprint, status, end.saturating_sub(r.started_ms))
            })
            .collect();
        self.printer.out(&lines.join("\n"));
    }

    async fn events(&self, arg: &str) {
        tokio::task::yield_now().await;
        let id = if arg.is_empty() {
            match self.runs.borrow().last() {
                Some(run) => run.id.to_string(),
                None => return self.printer.err("no runs yet"),
            }
        } else {
            arg.to_string()
        };
        let events = self.engine.trace(Some(&id));
        if events.is_empty() {
            return self.printer.err(&format!("no events recorded for run {id}"));
        }
        let lines: Vec<String> = events
            .iter()
            .map(|event| {
                let mut fields = serde_json::to_value(event).unwrap_or_default();
                if let Some(map) = fields.as_object_mut() {
                    for key in ["run_id", "seq", "at_ms", "kind"] {
                        map.remove(key);
                    }
                }
                format!("{:>4}  {:<16} {fields}", event.seq, event.kind.name())
            })
            .collect();
        self.printer.out(&lines.join("\n"));
    }
}

fn status_name(status: RunStatus) -> &'static str {
    status.name()
}

/// The blueprint `:load` made current.
pub struct Current {
    pub file: PathBuf,
    pub compiled: Rc<crate::blueprint::compile::CompiledBlueprint>,
}
