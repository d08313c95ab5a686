//! `swarm runs [--state PATH] [list [--json] | show ID [--json] | events ID | resume ID |
//! rerun ID --from STEP]`: the journaled runs (see `crate::store::journal`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use clap::Subcommand;

use super::run::{EventsFormat, run_on_engine, runtime};
use super::{EXIT_RUN_FAILED, EXIT_USAGE};
use crate::engine::RunOptions;
use crate::store::journal::{Reader, RunRow, SqliteJournal, prepare_restart, release_restart};

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Every run, newest first: id, blueprint, status, started, duration, steps.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One run: its steps with status, attempts and timing, then its final ctx or error.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// A run's journaled events, one JSON object per line.
    Events { id: String },
    /// Continue an interrupted run under its id; steps that finished are replayed, not re-run.
    Resume {
        id: String,
        /// Stream every engine event to stderr in this format.
        #[arg(long, value_enum)]
        events: Option<EventsFormat>,
    },
    /// Run an ended run again as a new run from STEP (an agent name or a node pointer such as
    /// /children/2): the steps it ran before STEP are replayed from the journal.
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
        None => Path::new(".swarm").join("state.db"),
    }
}

pub fn run(state: Option<&str>, command: Option<RunsCommand>) -> u8 {
    if state == Some("memory") {
        eprintln!("swarm runs: --state memory journals nothing; name a journal file");
        return EXIT_USAGE;
    }
    let path = state_path(state);
    match command.unwrap_or(RunsCommand::List { json: false }) {
        RunsCommand::Resume { id, events } => restart(&path, &id, events, None),
        RunsCommand::Rerun { id, from, events } => restart(&path, &id, events, Some(&from)),
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

fn read(reader: &Reader, command: RunsCommand) -> Result<u8, Box<dyn std::error::Error>> {
    match command {
        RunsCommand::List { json } => {
            let runs = reader.runs()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                println!(
                    "{:<16} {:<20} {:<12} {:<20} {:>10} {:>6}",
                    "ID", "BLUEPRINT", "STATUS", "STARTED", "DURATION", "STEPS"
                );
                for r in &runs {
                    println!(
                        "{:<16} {:<20} {:<12} {:<20} {:>10} {:>6}",
                        r.id,
                        r.blueprint,
                        r.status,
                        utc(r.started_ms),
                        r.duration_ms.map_or("-".into(), |d| format!("{d} ms")),
                        r.steps
                    );
                }
            }
            Ok(0)
        }
        RunsCommand::Show { id, json } => {
            let Some(run) = reader.run(&id)? else {
                eprintln!("swarm runs: no run {id}");
                return Ok(EXIT_USAGE);
            };
            let steps = reader.steps(&id)?;
            if json {
                let mut value = serde_json::to_value(&run)?;
                value["steps"] = serde_json::to_value(&steps)?;
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                show(&run);
                for s in &steps {
                    let took = s.finished_ms.map_or("-".into(), |f| format!("{} ms", f - s.started_ms));
                    let note = if s.replayed { "  (replayed)" } else { "" };
                    println!(
                        "  {:<20} {:<16} {:<10} #{:<3} {:>10}  {}{note}",
                        s.task_id,
                        s.agent,
                        s.status,
                        s.attempts,
                        took,
                        s.pointer.as_deref().unwrap_or("-")
                    );
                }
                if let Some(error) = &run.error {
                    println!("error: {error}");
                } else if let Some(ctx) = &run.ctx {
                    println!("{}", serde_json::to_string_pretty(ctx)?);
                }
            }
            Ok(0)
        }
        RunsCommand::Events { id } => {
            if reader.run(&id)?.is_none() {
                eprintln!("swarm runs: no run {id}");
                return Ok(EXIT_USAGE);
            }
            let mut out = std::io::stdout().lock();
            for event in reader.events(&id)? {
                // A closed pipe (`| head`) ends the listing quietly.
                if writeln!(out, "{}", serde_json::to_string(&event)?).is_err() {
                    break;
                }
            }
            Ok(0)
        }
        RunsCommand::Resume { .. } | RunsCommand::Rerun { .. } => {
            unreachable!("resume and rerun are handled before reading")
        }
    }
}

fn show(run: &RunRow) {
    println!("run {}  {}  {}", run.id, run.blueprint, run.status);
    println!("  started  {}", utc(run.started_ms));
    if let Some(d) = run.duration_ms {
        println!("  duration {d} ms");
    }
    if let Some(file) = &run.file {
        println!("  file     {file}");
    }
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
fn restart(path: &Path, id: &str, events: Option<EventsFormat>, cut: Option<&str>) -> u8 {
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
    let options = RunOptions { file: Some(file.clone()), resume: restart.resume, replay: restart.replay };
    let local = tokio::task::LocalSet::new();
    let run = run_on_engine(Path::new(&file), restart.init, events, Some(journal), options, restart.digest.as_deref());
    let code = local.block_on(&runtime, run);
    if code > EXIT_RUN_FAILED { EXIT_USAGE } else { code }
}
