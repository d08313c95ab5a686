//! `swarm runs [list [--json] | show ID [--json] | events ID | resume ID | rerun ID --from
//! STEP | signal ID NAME [--value JSON]] [--state PATH]`: the journaled runs (see
//! `crate::store::journal`), by default those in `.swarm/state.db` of the current directory,
//! where `swarm run` journals.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use clap::Subcommand;

use super::run::{EventsFormat, How, run_on_engine, runtime};
use super::{EXIT_USAGE, EXIT_WAITING};
use crate::engine::RunOptions;
use crate::stdout::{self, StdoutError};
use crate::store::journal::signals::{self, SignalError};
use crate::store::journal::{Reader, RunRow, SqliteJournal, prepare_restart, release_restart};
use crate::value::{Value, from_json};

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Every run, newest first: id, blueprint, status, started, duration, steps.
    #[command(after_help = super::examples::RUNS_LIST)]
    List {
        #[arg(long)]
        json: bool,
    },
    /// One run: its steps with status, attempts and timing, then its final ctx or error.
    #[command(after_help = super::examples::RUNS_SHOW)]
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// A run's journaled events, one JSON object per line.
    #[command(after_help = super::examples::RUNS_EVENTS)]
    Events { id: String },
    /// Continue an interrupted or waiting run under its id; steps that finished are replayed,
    /// not re-run.
    #[command(after_help = super::examples::RUNS_RESUME)]
    Resume {
        id: String,
        /// Stream every engine event to stderr in this format.
        #[arg(long, value_enum)]
        events: Option<EventsFormat>,
        /// Exit with code 3 once every strand of the run waits for a signal again.
        #[arg(long)]
        detach: bool,
    },
    /// Send signal NAME to a run. A run its process still runs takes it there; a run left
    /// waiting (`swarm run --detach`) or interrupted goes on in this process, which prints its
    /// final ctx as `swarm run` does (exit code 3 if it waits again).
    #[command(after_help = super::examples::RUNS_SIGNAL)]
    Signal {
        id: String,
        /// The signal's name, as the run waits for it (`swarm runs show ID` lists them).
        name: String,
        /// The signal's value: JSON, or @path to a file holding it (default: null).
        #[arg(long, value_name = "JSON|@file")]
        value: Option<String>,
        /// Stream every engine event to stderr in this format.
        #[arg(long, value_enum)]
        events: Option<EventsFormat>,
    },
    /// Run an ended run again as a new run from STEP (an agent name or a node pointer such as
    /// /children/2): the steps it ran before STEP are replayed from the journal.
    #[command(after_help = super::examples::RUNS_RERUN)]
    Rerun {
        id: String,
        #[arg(long, value_name = "STEP")]
        from: String,
        /// Stream every engine event to stderr in this format.
        #[arg(long, value_enum)]
        events: Option<EventsFormat>,
    },
}

fn state_path(state: Option<&str>) -> PathBuf {
    match state {
        Some(path) => PathBuf::from(path),
        None => super::default_journal(Path::new("")),
    }
}

pub fn run(state: Option<&str>, command: Option<RunsCommand>, load_timeout: Duration) -> u8 {
    if state == Some("memory") {
        eprintln!("swarm runs: --state memory journals nothing; name a journal file");
        return EXIT_USAGE;
    }
    let path = state_path(state);
    if !path.exists() {
        eprintln!(
            "swarm runs: no journal at {} (`swarm run` journals in .swarm/state.db of the directory it \
             runs in, `swarm serve` beside its script; --state PATH reads another)",
            path.display()
        );
        return EXIT_USAGE;
    }
    match command.unwrap_or(RunsCommand::List { json: false }) {
        RunsCommand::Resume { id, events, detach } => restart(&path, &id, How { events, detach, load_timeout }, None),
        RunsCommand::Rerun { id, from, events } => {
            restart(&path, &id, How { events, detach: false, load_timeout }, Some(&from))
        }
        RunsCommand::Signal { id, name, value, events } => {
            signal(&path, &id, &name, value.as_deref(), How { events, detach: true, load_timeout })
        }
        command => {
            let reader = match Reader::open(&path) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("swarm runs: {e}");
                    return EXIT_USAGE;
                }
            };
            match read(&reader, command) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("swarm runs: {e}");
                    EXIT_USAGE
                }
            }
        }
    }
}

/// What a reading subcommand printed, or why it stopped.
enum Read {
    /// The text for stdout, and the exit code once it is out.
    Text(String, u8),
    /// Already written (`events` streams); how that went.
    Written(Result<(), StdoutError>),
}

fn read(reader: &Reader, command: RunsCommand) -> Result<u8, Box<dyn std::error::Error>> {
    let read = match command {
        RunsCommand::List { json } => Read::Text(list(reader, json)?, 0),
        RunsCommand::Show { id, json } => {
            let Some(run) = reader.run(&id)? else {
                eprintln!("swarm runs: no run {id}");
                return Ok(EXIT_USAGE);
            };
            Read::Text(show(reader, &run, json)?, 0)
        }
        RunsCommand::Events { id } => {
            if reader.run(&id)?.is_none() {
                eprintln!("swarm runs: no run {id}");
                return Ok(EXIT_USAGE);
            }
            let mut out = std::io::stdout().lock();
            let mut written = Ok(());
            for event in reader.events(&id)? {
                if let Err(e) = writeln!(out, "{}", serde_json::to_string(&event)?) {
                    written = Err(e);
                    break;
                }
            }
            Read::Written(written.and_then(|()| out.flush()).map_err(StdoutError::from))
        }
        RunsCommand::Resume { .. } | RunsCommand::Rerun { .. } | RunsCommand::Signal { .. } => {
            unreachable!("resume, rerun and signal are handled before reading")
        }
    };
    Ok(match read {
        Read::Text(text, code) => super::exit_after_output(stdout::print(&text), "runs", code),
        Read::Written(written) => super::exit_after_output(written, "runs", 0),
    })
}

/// `runs list`: a table, or JSON.
fn list(reader: &Reader, json: bool) -> Result<String, Box<dyn std::error::Error>> {
    let runs = reader.runs()?;
    if json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(&runs)?));
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<16} {:<20} {:<12} {:<20} {:>10} {:>6}",
        "ID", "BLUEPRINT", "STATUS", "STARTED", "DURATION", "STEPS"
    );
    for r in &runs {
        let _ = writeln!(
            text,
            "{:<16} {:<20} {:<12} {:<20} {:>10} {:>6}",
            r.id,
            r.blueprint,
            r.status,
            utc(r.started_ms),
            r.duration_ms.map_or("-".into(), |d| format!("{d} ms")),
            r.steps
        );
    }
    Ok(text)
}

/// `runs show ID`: the run, its steps, then its final ctx or error; or all that as JSON.
fn show(reader: &Reader, run: &RunRow, json: bool) -> Result<String, Box<dyn std::error::Error>> {
    let steps = reader.steps(&run.id)?;
    let waits = reader.open_waits(&run.id)?;
    let buffered = reader.buffered_signals(&run.id)?;
    if json {
        let value = reader.run_detail(&run.id)?.unwrap_or_default();
        return Ok(format!("{}\n", serde_json::to_string_pretty(&value)?));
    }
    let mut text = String::new();
    let _ = writeln!(text, "run {}  {}  {}", run.id, run.blueprint, run.status);
    let _ = writeln!(text, "  started  {}", utc(run.started_ms));
    if let Some(d) = run.duration_ms {
        let _ = writeln!(text, "  duration {d} ms");
    }
    if let Some(file) = &run.file {
        let _ = writeln!(text, "  file     {file}");
    }
    for s in &steps {
        let took = s.finished_ms.map_or("-".into(), |f| format!("{} ms", f - s.started_ms));
        let note = if s.replayed { "  (replayed)" } else { "" };
        let _ = writeln!(
            text,
            "  {:<20} {:<16} {:<10} #{:<3} {:>10}  {}{note}",
            s.task_id,
            s.agent,
            s.status,
            s.attempts,
            took,
            s.pointer.as_deref().unwrap_or("-")
        );
    }
    for w in &waits {
        let at = match (w.pointer.as_deref(), w.task_id.as_deref()) {
            (Some(""), _) => "/",
            (Some(pointer), _) => pointer,
            (None, Some(task)) => task,
            (None, None) => "-",
        };
        let deadline = w.deadline_ms.map(|d| format!("  until {}", utc(d))).unwrap_or_default();
        let _ = writeln!(text, "  waiting for {:<20} at {at}{deadline}", w.signal);
        if let Some(question) = &w.question {
            let _ = writeln!(text, "    asks: {}", question_text(question));
        }
    }
    if !waits.is_empty() && matches!(run.status.as_str(), "waiting" | "interrupted") {
        let _ = writeln!(text, "  (answer with: swarm runs signal {} NAME --value JSON)", run.id);
    }
    for signal in &buffered {
        let value = signal.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
        let _ = writeln!(text, "  signal {:<20} buffered  {value}", signal.name);
    }
    if let Some(error) = &run.error {
        let _ = writeln!(text, "error: {error}");
    } else if let Some(ctx) = &run.ctx {
        let _ = writeln!(text, "{}", serde_json::to_string_pretty(ctx)?);
    }
    Ok(text)
}

/// A question as one line: its text when it is a string, else its JSON.
fn question_text(question: &serde_json::Value) -> String {
    let text = match question {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `ms` since the epoch as `YYYY-MM-DD HH:MM:SS` UTC.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `swarm runs resume ID` (no `cut`): the run must be `interrupted` (left `running` by a
/// process that is gone), and goes on under its id with its passed steps replayed; of two
/// processes resuming it at once, one wins and the other is refused with the winner's pid.
/// `swarm runs rerun ID --from STEP` (`cut` = STEP): the run must have ended; a new run starts
/// on the same input, replaying the steps that started before STEP's first occurrence.
/// Either way the blueprint file is loaded again.
fn restart(path: &Path, id: &str, how: How, cut: Option<&str>) -> u8 {
    let verb = if cut.is_some() { "rerun" } else { "resume" };
    let journal = match SqliteJournal::open(path) {
        Ok(j) => Rc::new(j),
        Err(e) => {
            eprintln!("swarm runs {verb}: {e}");
            return EXIT_USAGE;
        }
    };
    let restart = match prepare_restart(path, id, cut) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("swarm runs {verb}: {e}");
            return EXIT_USAGE;
        }
    };
    let Some(file) = restart.file else {
        if cut.is_none() {
            let _ = release_restart(path, id);
        }
        eprintln!(
            "swarm runs {verb}: run {id} has no blueprint file (it was started from a script; resume it there with engine:resume)"
        );
        return EXIT_USAGE;
    };
    let Some(runtime) = runtime() else { return EXIT_USAGE };
    let options =
        RunOptions { file: Some(file.clone()), resume: restart.resume, replay: restart.replay, waits: restart.waits };
    let local = tokio::task::LocalSet::new();
    let digest = restart.digest.as_deref();
    let run = run_on_engine(Path::new(&file), restart.init, how, Some(journal), options, digest);
    let code = local.block_on(&runtime, run);
    if code > EXIT_WAITING { EXIT_USAGE } else { code }
}

/// How long `swarm runs signal` waits for the live process that has a waiting run to take
/// the signal before it says so and leaves it in the journal.
const TAKEN_WITHIN: Duration = Duration::from_secs(10);

/// `swarm runs signal ID NAME [--value JSON|@file]`: writes the signal to the journal. A live
/// process that has the run takes it from there; a run nobody has (left waiting by `swarm run
/// --detach`, or interrupted) goes on here, with the signal among those it finds buffered.
fn signal(path: &Path, id: &str, name: &str, value: Option<&str>, how: How) -> u8 {
    let value = match value.map(parse_value).transpose() {
        Ok(v) => v.unwrap_or(Value::Null),
        Err(message) => {
            eprintln!("swarm runs signal: --value: {message}");
            return EXIT_USAGE;
        }
    };
    if name.is_empty() {
        eprintln!("swarm runs signal: the signal needs a name");
        return EXIT_USAGE;
    }
    let sent = match signals::send(path, id, name, &value) {
        Ok(sent) => sent,
        Err(e @ SignalError::NotWaiting { .. }) => {
            eprintln!("swarm runs signal: {e} ({})", e.kind());
            return EXIT_USAGE;
        }
        Err(e) => {
            eprintln!("swarm runs signal: {e}");
            return EXIT_USAGE;
        }
    };
    if sent.owner_alive {
        if sent.status != "waiting" {
            eprintln!(
                "signal {name} sent to run {id} (running in process {}, which takes it when it waits for it)",
                sent.pid
            );
            return 0;
        }
        // The process may be leaving the run (--detach) as the signal lands: wait until it has
        // taken it, or is gone and the run is this process's to carry on.
        let deadline = std::time::Instant::now() + TAKEN_WITHIN;
        loop {
            match signals::delivered(path, &sent.uid) {
                Ok(true) => {
                    eprintln!("signal {name} delivered to run {id} (process {} carries it on)", sent.pid);
                    return 0;
                }
                Ok(false) => {}
                Err(e) => {
                    eprintln!("swarm runs signal: {e}");
                    return EXIT_USAGE;
                }
            }
            match signals::owner(path, id) {
                Ok(Some((_, true))) => {}
                Ok(_) => break,
                Err(e) => {
                    eprintln!("swarm runs signal: {e}");
                    return EXIT_USAGE;
                }
            }
            if std::time::Instant::now() >= deadline {
                eprintln!(
                    "signal {name} is in the journal for run {id}; process {} has the run and has not taken it yet",
                    sent.pid
                );
                return 0;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    match carry_on(path, id, how) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("signal {name} is in the journal for run {id}; {message}");
            0
        }
    }
}

/// Resumes run `id` here after a signal (as `swarm runs resume` does), unless it has no file to
/// load its blueprint from: then why, for the caller to report (the signal waits in the
/// journal for whoever resumes the run).
fn carry_on(path: &Path, id: &str, how: How) -> Result<u8, String> {
    let reader = Reader::open(path).map_err(|e| e.to_string())?;
    let Some(run) = reader.run(id).map_err(|e| e.to_string())? else { return Err(format!("no run {id}")) };
    if run.file.is_none() {
        return Err("it was started from a script, so it goes on where that script resumes it (engine:resume, \
                    or the swarm serve that runs it)"
            .into());
    }
    drop(reader);
    Ok(restart(path, id, how, None))
}

/// The largest signal value taken, in bytes of JSON: what the host takes from an agent.
const MAX_SIGNAL_BYTES: u64 = 64 << 20;

/// A signal's value: JSON, or `@path` to a file holding it (at most 64 MiB).
fn parse_value(text: &str) -> Result<Value, String> {
    let text = match text.strip_prefix('@') {
        Some(file) => {
            let size = std::fs::metadata(file).map_err(|e| format!("{file}: {e}"))?.len();
            if size > MAX_SIGNAL_BYTES {
                return Err(format!("{file}: {size} bytes, more than a signal may carry ({MAX_SIGNAL_BYTES})"));
            }
            std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?
        }
        None => text.to_string(),
    };
    from_json(text.trim()).map_err(|e| format!("not valid JSON: {e}"))
}
