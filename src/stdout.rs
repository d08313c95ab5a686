//! Everything the commands and the REPL print on stdout goes through here, never `println!`,
//! which panics when stdout is a pipe whose reader left (`swarm compile FILE | head -1`) and
//! hides a disk that filled up (`> /dev/full`) until the process exits with 0. Part of the
//! binary's front end (the `cli` feature), below both the command line and the REPL.
//!
//! Rust ignores SIGPIPE, so a reader that left shows up as an `EPIPE` write error. That one
//! is not a failure: the reader had what it wanted, and the command ends quietly with 0, as
//! `head` expects. Any other write error is: the output is lost, and the command says so on
//! stderr and exits 1.

use std::io::{self, Write};

/// Why stdout took no more output.
#[derive(Debug)]
pub enum StdoutError {
    /// The reader closed the pipe: stop writing, exit 0, say nothing.
    Closed,
    /// The write failed (disk full, I/O error): the output is lost.
    Failed(io::Error),
}

impl From<io::Error> for StdoutError {
    fn from(e: io::Error) -> StdoutError {
        if e.kind() == io::ErrorKind::BrokenPipe { StdoutError::Closed } else { StdoutError::Failed(e) }
    }
}

/// Writes `text` and a newline to stdout and flushes it, so a failure shows up here rather
/// than at exit, where it would be ignored.
pub fn println(text: &str) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Writes `text` as it is (no newline added) and flushes it.
pub fn print(text: &str) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Says on stderr that `command`'s output was lost.
pub fn report(command: &str, e: &io::Error) {
    let _ = writeln!(io::stderr(), "swarm {command}: cannot write to stdout: {e}");
}
