//! Reading the journal: `swarm runs list/show/events`, and what resume needs.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::JournalError;
use crate::engine::journal::{Recorded, SignalRecord};
use crate::engine::{Event, WaitKey, WaitReplay};
use crate::flow::FlowError;
use crate::value::from_json;

/// A run as `swarm runs list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    /// The run's id.
    pub id: String,
    /// The blueprint's id.
    pub blueprint: String,
    /// The blueprint file, when the run was started from one.
    pub file: Option<String>,
    /// `running`, `waiting` (every strand waits for a signal), `interrupted`, or how the run
    /// ended (`finished`, `failed`, `cancelled`).
    pub status: String,
    /// When the run started, in milliseconds since the Unix epoch.
    pub started_ms: i64,
    /// When the run ended, if it has.
    pub finished_ms: Option<i64>,
    /// How long the run took, if it has ended.
    pub duration_ms: Option<i64>,
    /// How many tasks the run created.
    pub steps: i64,
    /// The digest of the blueprint it ran on.
    pub digest: Option<String>,
    /// The run's starting ctx; read only for a single run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    /// The run's last ctx; read only for a single run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<serde_json::Value>,
    /// The run's error, if it failed; read only for a single run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

/// A step (task) as `swarm runs show` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct StepRow {
    /// The task's id.
    pub task_id: String,
    /// The agent the task went to.
    pub agent: String,
    /// The task's state, as [`crate::engine::TaskState::name`] spells it.
    pub status: String,
    /// Attempts started.
    pub attempts: i64,
    /// The step's node pointer in the flow, once the step settled; `None` for a sub-task.
    pub pointer: Option<String>,
    /// When the task started, in milliseconds since the Unix epoch.
    pub started_ms: i64,
    /// When the task settled, if it has.
    pub finished_ms: Option<i64>,
    /// The result was replayed from the journal, not dispatched.
    pub replayed: bool,
    /// The result written to the ctx (for a passed step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// The step's error, for a step that did not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

/// An open wait as `swarm runs show` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct WaitRow {
    /// The signal it waits for.
    pub signal: String,
    /// The `wait` node's pointer, for a wait in the flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// The waiting task, for a wait inside an agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// What the wait asks, when it is a question.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<serde_json::Value>,
    /// When the wait began, in milliseconds since the Unix epoch.
    pub started_ms: i64,
    /// When it times out, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
}

/// A signal no wait has taken yet, as `swarm runs show` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SignalRow {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: Option<serde_json::Value>,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub sent_ms: i64,
}

/// A read connection on a journal file.
pub struct Reader {
    conn: Connection,
    path: String,
}

fn parse(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

impl Reader {
    /// Opens an existing journal for reading. The connection is read-write all the same: opening
    /// migrates an older schema and marks the runs of dead processes `interrupted`, so what is
    /// read is current; nothing else is written through it.
    pub fn open(path: &Path) -> Result<Reader, JournalError> {
        if !path.exists() {
            return Err(JournalError::new(path, "no journal here (runs journal to .swarm/state.db beside the script)"));
        }
        // Opened read-write: that migrates an older schema and marks dead runs interrupted.
        let conn = super::open::open_retrying(path)?;
        Ok(Reader { conn, path: path.display().to_string() })
    }

    fn err(&self, e: impl std::fmt::Display) -> JournalError {
        JournalError { path: self.path.clone(), message: e.to_string(), locked: false }
    }

    const RUN_COLUMNS: &str = "id, blueprint, file, status, started_ms, finished_ms, \
        (SELECT COUNT(*) FROM tasks t WHERE t.run_id = runs.id), input, ctx, error, digest";

    fn run_row(r: &rusqlite::Row<'_>, full: bool) -> rusqlite::Result<RunRow> {
        let started_ms: i64 = r.get(4)?;
        let finished_ms: Option<i64> = r.get(5)?;
        Ok(RunRow {
            id: r.get(0)?,
            blueprint: r.get(1)?,
            file: r.get(2)?,
            status: r.get(3)?,
            started_ms,
            finished_ms,
            duration_ms: finished_ms.map(|f| f - started_ms),
            steps: r.get(6)?,
            digest: r.get(10)?,
            input: if full { parse(r.get(7)?) } else { None },
            ctx: if full { parse(r.get(8)?) } else { None },
            error: if full { parse(r.get(9)?) } else { None },
        })
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunRow>, JournalError> {
        let sql = format!("SELECT {} FROM runs ORDER BY started_ms DESC, rowid DESC", Self::RUN_COLUMNS);
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| Self::run_row(r, false)).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// Claims run `id` for this process, when it is interrupted or left waiting by a process
    /// that is gone, or says which process owns it: `Ok(Err(pid))` otherwise (`pid` is its last
    /// owner, the live one if it is running or waiting). One conditional update does the check
    /// and the claim, so two processes cannot both win.
    pub fn claim(&self, id: &str) -> Result<Result<(), i64>, JournalError> {
        let me = i64::from(std::process::id());
        let claimed = self
            .conn
            .execute(
                "UPDATE runs SET status = 'running', pid = ?2 WHERE id = ?1 AND status = 'interrupted'",
                params![id, me],
            )
            .map_err(|e| self.err(e))?;
        if claimed == 1 {
            return Ok(Ok(()));
        }
        let (status, pid): (String, i64) = self
            .conn
            .query_row("SELECT status, pid FROM runs WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        if status == "waiting" && pid != me && !super::recovery::alive(pid) {
            let claimed = self
                .conn
                .execute(
                    "UPDATE runs SET status = 'running', pid = ?2 WHERE id = ?1 AND status = 'waiting' AND pid = ?3",
                    params![id, me, pid],
                )
                .map_err(|e| self.err(e))?;
            if claimed == 1 {
                // Its tasks in flight (agents waiting) went with that process; they run again.
                self.conn
                    .execute(
                        "UPDATE tasks SET status = 'interrupted' WHERE run_id = ?1 \
                         AND status IN ('pending', 'running', 'suspended')",
                        [id],
                    )
                    .map_err(|e| self.err(e))?;
                return Ok(Ok(()));
            }
        }
        Ok(Err(pid))
    }

    /// What run `run_id`'s waits did: the ends of those that ended, the deadlines of those that
    /// began, and the signals no wait took, oldest first.
    pub fn wait_replay(&self, run_id: &str) -> Result<WaitReplay, JournalError> {
        let mut replay = WaitReplay::default();
        let mut stmt = self
            .conn
            .prepare("SELECT scope, signal, occurrence, status, value, error, deadline_ms FROM waits WHERE run_id = ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (scope, signal, occurrence, status, value, error, deadline) = row.map_err(|e| self.err(e))?;
            let key = WaitKey { scope: scope.into(), signal: signal.into(), occurrence };
            let undecodable = || self.err(format!("run {run_id}: a wait for '{}' does not decode", key.signal));
            match (status.as_str(), value, error) {
                ("waiting", ..) => {
                    replay.begun.insert(key, deadline.map(|d| d.max(0) as u64));
                }
                (_, Some(value), _) => {
                    let value = from_json(&value).map_err(|_| undecodable())?;
                    replay.ended.insert(key, Ok(value));
                }
                (_, None, Some(error)) => {
                    let error: FlowError = serde_json::from_str(&error).map_err(|_| undecodable())?;
                    replay.ended.insert(key, Err(error));
                }
                _ => return Err(undecodable()),
            }
        }
        replay.buffered = self.untaken_signals(run_id)?;
        Ok(replay)
    }

    fn untaken_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT uid, name, value, sent_ms FROM signals WHERE run_id = ?1 AND taken = 0 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
            })
            .map_err(|e| self.err(e))?;
        let mut signals = Vec::new();
        for row in rows {
            let (uid, name, value, sent_ms) = row.map_err(|e| self.err(e))?;
            let Ok(value) = from_json(&value) else {
                tracing::warn!(run = run_id, "skipping signal '{name}': its value does not decode");
                continue;
            };
            signals.push(SignalRecord {
                run_id: run_id.into(),
                uid: uid.into(),
                name: name.into(),
                value,
                sent_ms: sent_ms as u64,
            });
        }
        Ok(signals)
    }

    /// The waits of run `run_id` that began and have not ended, in the order they began.
    pub fn open_waits(&self, run_id: &str) -> Result<Vec<WaitRow>, JournalError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT signal, pointer, task_id, question, started_ms, deadline_ms FROM waits \
                 WHERE run_id = ?1 AND status = 'waiting' ORDER BY started_ms, rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(WaitRow {
                    signal: r.get(0)?,
                    pointer: r.get(1)?,
                    task_id: r.get(2)?,
                    question: parse(r.get(3)?),
                    started_ms: r.get(4)?,
                    deadline_ms: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// The signals delivered to run `run_id` that no wait took yet, oldest first.
    pub fn buffered_signals(&self, run_id: &str) -> Result<Vec<SignalRow>, JournalError> {
        Ok(self
            .untaken_signals(run_id)?
            .into_iter()
            .map(|s| SignalRow {
                name: s.name.to_string(),
                value: serde_json::from_str(&s.value.to_json()).ok(),
                sent_ms: s.sent_ms as i64,
            })
            .collect())
    }

    /// The runs left waiting by a process that is gone, oldest first: those `waiting`, and
    /// those `interrupted` with a wait open (killed before it could say it waited).
    pub fn left_waiting(&self) -> Result<Vec<RunRow>, JournalError> {
        let sql = format!(
            "SELECT {}, pid FROM runs WHERE status = 'waiting' OR (status = 'interrupted' AND EXISTS \
             (SELECT 1 FROM waits w WHERE w.run_id = runs.id AND w.status = 'waiting')) ORDER BY started_ms, rowid",
            Self::RUN_COLUMNS
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows =
            stmt.query_map([], |r| Ok((Self::run_row(r, false)?, r.get::<_, i64>(11)?))).map_err(|e| self.err(e))?;
        let me = i64::from(std::process::id());
        let mut left = Vec::new();
        for row in rows {
            let (run, pid) = row.map_err(|e| self.err(e))?;
            if pid != me && !super::recovery::alive(pid) {
                left.push(run);
            }
        }
        Ok(left)
    }

    /// Undoes this process's [`Reader::claim`] of run `id`.
    pub fn release(&self, id: &str) -> Result<(), JournalError> {
        let me = i64::from(std::process::id());
        self.conn
            .execute(
                "UPDATE runs SET status = 'interrupted' WHERE id = ?1 AND status = 'running' AND pid = ?2",
                params![id, me],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// One run with its input, ctx and error.
    pub fn run(&self, id: &str) -> Result<Option<RunRow>, JournalError> {
        let sql = format!("SELECT {} FROM runs WHERE id = ?1", Self::RUN_COLUMNS);
        self.conn.query_row(&sql, [id], |r| Self::run_row(r, true)).optional().map_err(|e| self.err(e))
    }

    /// A run as `swarm runs show --json` prints it and `GET /v1/runs/{id}` answers: its row,
    /// with its `steps`, open `waits` and buffered `signals`; `None` for a run not journaled.
    pub fn run_detail(&self, id: &str) -> Result<Option<serde_json::Value>, JournalError> {
        let Some(run) = self.run(id)? else { return Ok(None) };
        let json = |e: serde_json::Error| self.err(format!("run {id}: {e}"));
        let mut value = serde_json::to_value(&run).map_err(json)?;
        value["steps"] = serde_json::to_value(self.steps(id)?).map_err(json)?;
        value["waits"] = serde_json::to_value(self.open_waits(id)?).map_err(json)?;
        value["signals"] = serde_json::to_value(self.buffered_signals(id)?).map_err(json)?;
        Ok(Some(value))
    }

    /// A run's steps, in the order they started.
    pub fn steps(&self, run_id: &str) -> Result<Vec<StepRow>, JournalError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, agent, status, attempts, pointer, started_ms, finished_ms, replayed, error, output \
                 FROM tasks WHERE run_id = ?1 ORDER BY rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(StepRow {
                    task_id: r.get(0)?,
                    agent: r.get(1)?,
                    status: r.get(2)?,
                    attempts: r.get(3)?,
                    pointer: r.get(4)?,
                    started_ms: r.get(5)?,
                    finished_ms: r.get(6)?,
                    replayed: r.get(7)?,
                    error: parse(r.get(8)?),
                    output: parse(r.get(9)?),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// A run's events, in sequence; rows that no longer decode are skipped with a warning.
    pub fn events(&self, run_id: &str) -> Result<Vec<Event>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, body FROM events WHERE run_id = ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows =
            stmt.query_map([run_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).map_err(|e| self.err(e))?;
        let mut events = Vec::new();
        for row in rows {
            let (seq, body) = row.map_err(|e| self.err(e))?;
            match serde_json::from_str(&body) {
                Ok(event) => events.push(event),
                Err(e) => tracing::warn!(run = run_id, seq, "skipping an event that does not decode: {e}"),
            }
        }
        Ok(events)
    }

    /// The highest event seq and task number of a run, so a resumed run continues after them.
    pub fn counters(&self, run_id: &str) -> Result<(u64, u64), JournalError> {
        let seq: i64 = self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?1", [run_id], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let prefix = format!("{run_id}.");
        let mut stmt = self.conn.prepare("SELECT id FROM tasks WHERE run_id = ?1").map_err(|e| self.err(e))?;
        let ids = stmt.query_map([run_id], |r| r.get::<_, String>(0)).map_err(|e| self.err(e))?;
        let mut tasks = 0u64;
        for id in ids {
            let id = id.map_err(|e| self.err(e))?;
            if let Some(n) = id.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok()) {
                tasks = tasks.max(n);
            }
        }
        Ok((seq as u64, tasks))
    }

    /// The passed steps of a run: their results keyed by pointer and input hash, in occurrence
    /// order (loop iterations and fanout lanes repeat keys).
    pub fn recorded(&self, run_id: &str) -> Result<Recorded, JournalError> {
        self.recorded_before(run_id, None)
    }

    /// [`Reader::recorded`] for the steps started before the first step of `run_id` whose
    /// pointer or agent is `cut`; `None` when the run has no such step.
    pub fn recorded_until(&self, run_id: &str, cut: &str) -> Result<Option<Recorded>, JournalError> {
        let first: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(rowid) FROM tasks WHERE run_id = ?1 AND (pointer = ?2 OR agent = ?2)",
                params![run_id, cut],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        match first {
            Some(rowid) => self.recorded_before(run_id, Some(rowid)).map(Some),
            None => Ok(None),
        }
    }

    fn recorded_before(&self, run_id: &str, before: Option<i64>) -> Result<Recorded, JournalError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT pointer, input_hash, output FROM tasks \
                 WHERE run_id = ?1 AND status = 'pass' AND pointer IS NOT NULL AND rowid < ?2 \
                 ORDER BY pointer, input_hash, occurrence",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run_id, before.unwrap_or(i64::MAX)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?))
            })
            .map_err(|e| self.err(e))?;
        let mut recorded = Recorded::new();
        for row in rows {
            let (pointer, hash, output) = row.map_err(|e| self.err(e))?;
            let value = match output.as_deref().map(from_json) {
                Some(Ok(v)) => v,
                _ => {
                    return Err(
                        self.err(format!("run {run_id}: the recorded output of step {pointer} does not decode"))
                    );
                }
            };
            recorded.entry((pointer.into(), hash.into())).or_default().push_back(value);
        }
        Ok(recorded)
    }
}
