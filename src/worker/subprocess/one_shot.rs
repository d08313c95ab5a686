//! One attempt in a fresh process: start the program, feed it the input while reading stdout
//! and draining stderr (all three at once, so neither side can block the other on a full pipe),
//! and turn what it wrote and how it exited into a verdict.

use std::cell::RefCell;
use std::process::ExitStatus;
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;

use super::launch::Launch;
use super::output::Collector;
use super::process::{GroupChild, describe_exit};
use super::stderr::{StderrTail, drain};
use super::stream::Decoder;
use super::{API_ENV, StreamMode};
use crate::value::Value;
use crate::worker::{Job, Spawner, Verdict, WorkerError, WorkerResult};

/// The most stdout plain mode keeps; stream modes have no overall limit.
pub const MAX_PLAIN_STDOUT: u64 = 64 * 1024 * 1024;

/// Runs every attempt of an agent in a new process.
pub struct ProcessSpawner {
    launch: Rc<Launch>,
    mode: StreamMode,
    use_stdin: bool,
    timeout: Option<Duration>,
}

impl ProcessSpawner {
    /// A spawner that starts `launch` once per attempt.
    pub fn new(launch: Launch, mode: StreamMode, use_stdin: bool, timeout: Option<Duration>) -> ProcessSpawner {
        ProcessSpawner { launch: Rc::new(launch), mode, use_stdin, timeout }
    }
}

impl Spawner for ProcessSpawner {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        let attempt = Attempt { launch: self.launch.clone(), mode: self.mode, use_stdin: self.use_stdin };
        let timeout = self.timeout;
        Box::pin(async move { attempt.run(job, timeout).await })
    }
}

struct Attempt {
    launch: Rc<Launch>,
    mode: StreamMode,
    use_stdin: bool,
}

/// What the child wrote on stdout.
enum Written {
    Plain(Vec<u8>),
    Stream(Collector),
}

impl Attempt {
    async fn run(self, job: Job, timeout: Option<Duration>) -> WorkerResult {
        let input = job.input.to_json();
        let mut command = self.launch.command(self.use_stdin);
        if !self.use_stdin {
            command.arg(&input);
        }
        command
            .env("SWARM_TASK_ID", &*job.task_id)
            .env("SWARM_ATTEMPT", job.attempt.to_string())
            .env("SWARM_AGENT", &*job.agent)
            .env("SWARM_TOKEN", job.host.token());
        if let Some(api) = job.host.api() {
            command.env(API_ENV, &*api);
        }
        let mut child = GroupChild::spawn(&mut command, &self.launch).map_err(WorkerError::new)?;
        let tail = RefCell::new(StderrTail::default());
        let stdin_bytes = self.use_stdin.then_some(input);
        let talk = self.talk(&mut child, stdin_bytes, &job, &tail);
        let talked = match timeout {
            None => talk.await,
            Some(limit) => match tokio::time::timeout(limit, talk).await {
                Ok(talked) => talked,
                Err(_) => {
                    // `child` is dropped on return, which kills its group.
                    let message = format!(
                        "timed out after {} ms; killed {} (pid {}) and its process group",
                        limit.as_millis(),
                        self.launch.name(),
                        child.pid()
                    );
                    return Err(WorkerError::timed_out(tail.borrow().append_to(message)));
                }
            },
        };
        // On an error `child` is dropped here, which kills its group.
        let (written, status) = talked.map_err(|message| WorkerError::new(tail.borrow().append_to(message)))?;
        self.verdict(written, status, &tail.borrow())
    }

    /// Feeds stdin, reads stdout and drains stderr until stdout ends and the child has exited.
    /// A stream item that is not a valid output event ends it early with the error.
    async fn talk(
        &self,
        child: &mut GroupChild,
        stdin_bytes: Option<String>,
        job: &Job,
        tail: &RefCell<StderrTail>,
    ) -> Result<(Written, ExitStatus), String> {
        let (stdin, stdout, stderr) = child.pipes();
        let (stdout, stderr) = stdout.zip(stderr).expect("stdout and stderr are piped");
        let feed = async {
            feed(stdin, stdin_bytes).await;
            Ok::<(), String>(())
        };
        let drain = async {
            drain(stderr, |bytes| tail.borrow_mut().push(bytes)).await;
            Ok::<(), String>(())
        };
        let read = async {
            match Decoder::for_mode(self.mode) {
                None => read_plain(stdout).await.map(Written::Plain),
                Some(decoder) => {
                    let collector = Collector::one_shot(job.host.clone());
                    read_stream(stdout, decoder, collector).await.map(Written::Stream)
                }
            }
        };
        let name = self.launch.name();
        let exit = async { child.wait().await.map_err(|e| format!("cannot wait for {name}: {e}")) };
        let ((), (), written, status) = tokio::try_join!(feed, drain, read, exit)?;
        Ok((written, status))
    }

    fn verdict(&self, written: Written, status: ExitStatus, tail: &StderrTail) -> WorkerResult {
        let exit = || format!("{} {}", self.launch.name(), describe_exit(status));
        match written {
            Written::Plain(stdout) => {
                let value = plain_value(&stdout, tail);
                if status.success() {
                    Ok(Verdict::Pass(value))
                } else {
                    Err(WorkerError::with_value(tail.append_to(exit()), value))
                }
            }
            Written::Stream(mut collector) => match collector.take_final() {
                None => {
                    let message = format!("no final event: {} without writing one", exit());
                    Err(WorkerError::new(tail.append_to(message)))
                }
                Some(last) if !status.success() => {
                    let message = format!("{} after its final event", exit());
                    Err(WorkerError::with_value(tail.append_to(message), last.value))
                }
                Some(last) => last.into_result(),
            },
        }
    }
}

/// Writes the input and closes stdin. A child that exits or closes stdin without reading all
/// of it is its own business: how it exits tells what happened.
async fn feed(stdin: Option<ChildStdin>, bytes: Option<String>) {
    if let (Some(mut stdin), Some(bytes)) = (stdin, bytes)
        && let Err(e) = stdin.write_all(bytes.as_bytes()).await
    {
        tracing::debug!("subprocess stdin closed early: {e}");
    }
}

async fn read_plain(stdout: impl AsyncRead + Unpin) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    stdout.take(MAX_PLAIN_STDOUT + 1).read_to_end(&mut bytes).await.map_err(|e| format!("cannot read stdout: {e}"))?;
    if bytes.len() as u64 > MAX_PLAIN_STDOUT {
        return Err("stdout passed the 64 MiB limit of plain mode (a stream_mode has no overall limit)".into());
    }
    Ok(bytes)
}

async fn read_stream(
    mut stdout: impl AsyncRead + Unpin,
    mut decoder: Decoder,
    mut collector: Collector,
) -> Result<Collector, String> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sink = |bytes: &[u8], at| collector.accept(bytes, at);
    loop {
        let n = stdout.read(&mut chunk).await.map_err(|e| format!("cannot read stdout: {e}"))?;
        if n == 0 {
            decoder.finish(&mut sink)?;
            break;
        }
        decoder.feed(&chunk[..n], &mut sink)?;
    }
    Ok(collector)
}

/// Plain mode's value: stdout as JSON, else `{raw, stderr}`.
fn plain_value(stdout: &[u8], tail: &StderrTail) -> Value {
    if let Ok(value) = serde_json::from_slice::<Value>(stdout.trim_ascii()) {
        return value;
    }
    let raw = String::from_utf8_lossy(stdout);
    Value::from_pairs([("raw", Value::from(raw.trim_end())), ("stderr", Value::from(tail.text()))])
}
