//! Keep-alive agents: a pool of long-lived children, each answering one request at a time, so
//! an attempt costs a pipe round trip instead of a process start.
//!
//! An attempt waits for a free slot (at most `pool_size` requests are in flight), takes an idle
//! child or starts one, writes its request line and reads the answer up to the first `final`.
//! Every request carries an id, unique in the process, and every event of its answer must carry
//! it back: an event with another id (a late or extra answer to an earlier request) is never
//! taken as this request's, it fails the attempt. A child whose answer went wrong in any way —
//! it exited, timed out, was cancelled, wrote something that is not an output event, answered
//! out of turn, or wrote more than its answer — can no longer be
//! trusted to be in step with its requests, so it is killed (with its process group) and the
//! slot's next request starts a new one. Dropping the pool (the compiled blueprint going away)
//! kills the idle children; a busy one belongs to its attempt, which kills it if it is dropped.
//! `timeout_ms` bounds each request's round trip, not its wait for a free child.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::LocalBoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::StreamMode;
use super::launch::Launch;
use super::output::Collector;
use super::process::{GroupChild, describe_exit};
use super::stderr::{StderrTail, drain};
use super::stream::Decoder;
use crate::value::Value;
use crate::worker::{Job, Spawner, WorkerError, WorkerResult};

/// How long a child whose stdout ended mid-answer gets to exit, so the error can say how it
/// ended and show the last of its stderr.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// Serves an agent's attempts from a pool of long-lived children.
pub struct KeepAliveSpawner {
    pool: Rc<Pool>,
}

impl KeepAliveSpawner {
    /// Answers are framed by `mode`; plain mode means NDJSON. No child starts until the first
    /// attempt needs one.
    pub fn new(launch: Launch, agent: &str, mode: StreamMode, size: usize, timeout: Option<Duration>) -> Self {
        let mode = if mode == StreamMode::Plain { StreamMode::NdjsonLines } else { mode };
        let pool = Pool {
            launch,
            agent: agent.to_string(),
            mode,
            timeout,
            idle: RefCell::new(Vec::new()),
            slots: Semaphore::new(size.clamp(1, Semaphore::MAX_PERMITS)),
        };
        KeepAliveSpawner { pool: Rc::new(pool) }
    }
}

impl Spawner for KeepAliveSpawner {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        Box::pin(self.pool.clone().serve(job))
    }
}

struct Pool {
    launch: Launch,
    /// `SWARM_AGENT` for the children; the rest of a task's metadata travels per request.
    agent: String,
    mode: StreamMode,
    timeout: Option<Duration>,
    idle: RefCell<Vec<KeptChild>>,
    /// One permit per child the pool may run.
    slots: Semaphore,
}

impl Pool {
    async fn serve(self: Rc<Self>, job: Job) -> WorkerResult {
        let _slot = self.slots.acquire().await.expect("the pool never closes its semaphore");
        // Declared after the slot, so on every early return the child is dropped (killed)
        // before the slot is handed to the next request.
        let mut child = match self.idle_child() {
            Some(child) => child,
            None => self.start(job.host.api().as_deref())?,
        };
        let id = next_request_id();
        let mut collector = Collector::answer(job.host.clone(), id);
        let line = request_line(&job, id);
        let answer = child.answer(&line, &mut collector, &self.launch);
        let in_step = match self.timeout {
            None => answer.await,
            Some(limit) => match tokio::time::timeout(limit, answer).await {
                Ok(answered) => answered,
                Err(_) => {
                    // `child` is dropped on return, which kills its group.
                    let message = format!(
                        "timed out after {} ms; killed the keep-alive child {} (pid {}) and its process group",
                        limit.as_millis(),
                        self.launch.name(),
                        child.group.pid()
                    );
                    return Err(WorkerError::timed_out(child.tail().append_to(message)));
                }
            },
        }
        .map_err(WorkerError::new)?;
        let last = collector.take_final().expect("an answer ends at its final event");
        if in_step && !collector.more_than_answered() {
            self.idle.borrow_mut().push(child);
        } else {
            tracing::warn!(
                pid = child.group.pid(),
                "keep-alive child is out of step (it wrote past its final event, left part of its request unread, or ended); replacing it"
            );
        }
        last.into_result()
    }

    /// An idle child still fit to answer; those that died or wrote while idle are dropped.
    fn idle_child(&self) -> Option<KeptChild> {
        let mut idle = self.idle.borrow_mut();
        while let Some(mut child) = idle.pop() {
            if child.group.try_exited().is_some() {
                continue;
            }
            if child.wrote_while_idle() {
                tracing::warn!(
                    pid = child.group.pid(),
                    "keep-alive child wrote to stdout between requests; replacing it"
                );
                continue;
            }
            return Some(child);
        }
        None
    }

    /// A new child; `api` is where the host listens for children (`SWARM_API`), the same for
    /// every request the child will serve.
    fn start(&self, api: Option<&str>) -> Result<KeptChild, WorkerError> {
        let mut command = self.launch.command(true);
        command.env("SWARM_AGENT", &self.agent);
        if let Some(api) = api {
            command.env(super::API_ENV, api);
        }
        let mut group = GroupChild::spawn(&mut command, &self.launch).map_err(WorkerError::new)?;
        let (Some(stdin), Some(stdout), Some(stderr)) = group.pipes() else {
            unreachable!("keep-alive children have all three pipes")
        };
        let tail = Arc::new(Mutex::new(StderrTail::default()));
        let kept = tail.clone();
        // stderr is drained between requests too: a child logging while idle must not block.
        let drain = tokio::spawn(drain(stderr, move |bytes| lock(&kept).push(bytes)));
        let decoder = Decoder::for_mode(self.mode).expect("keep-alive answers are framed");
        Ok(KeptChild { group, stdin, stdout, decoder, chunk: vec![0; 64 * 1024], tail, drain: Some(drain) })
    }
}

/// A request id no other request of this process had, so an answer can never be mistaken for
/// another's, even across pools.
fn next_request_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// `{"agent":..,"attempt":..,"id":..,"input":..,"task_id":..,"token":..}` and a newline.
fn request_line(job: &Job, id: u64) -> Vec<u8> {
    let request = Value::from_pairs([
        ("agent", Value::String(job.agent.clone())),
        ("attempt", Value::int(i64::from(job.attempt))),
        ("id", Value::int(id as i64)),
        ("input", job.input.clone()),
        ("task_id", Value::String(job.task_id.clone())),
        ("token", Value::from(job.host.token())),
    ]);
    let mut line = request.to_json().into_bytes();
    line.push(b'\n');
    line
}

fn lock(tail: &Mutex<StderrTail>) -> MutexGuard<'_, StderrTail> {
    tail.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How reading an answer stopped short of its final event.
enum Cut {
    /// stdout ended.
    Closed,
    /// An item was not an output event, or stdout could not be read.
    Failed(String),
}

/// A child of the pool with its pipes and its stream decoder.
struct KeptChild {
    group: GroupChild,
    stdin: ChildStdin,
    stdout: ChildStdout,
    decoder: Decoder,
    chunk: Vec<u8>,
    tail: Arc<Mutex<StderrTail>>,
    drain: Option<JoinHandle<()>>,
}

impl KeptChild {
    fn tail(&self) -> MutexGuard<'_, StderrTail> {
        lock(&self.tail)
    }

    /// Whether stdout holds anything (or has ended) before a request is sent. A child says
    /// nothing between answers; output there would be read as part of the next answer. The
    /// kernel is asked directly: tokio's readiness may not have caught up with the pipe yet.
    /// Output arriving after this check cannot be told apart from the answer.
    fn wrote_while_idle(&self) -> bool {
        let mut probe = libc::pollfd { fd: self.stdout.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, a count of one, and no waiting.
        let ready = unsafe { libc::poll(&mut probe, 1, 0) };
        ready > 0
    }

    /// Sends `line` and reads the answer to its first `final`, writing and reading at once (a
    /// child may start answering before it has read a long request). `Ok(true)` if the child
    /// is still in step: it took the whole request and wrote nothing past its answer.
    async fn answer(&mut self, line: &[u8], collector: &mut Collector, launch: &Launch) -> Result<bool, String> {
        self.tail().clear();
        let (read, wrote) = {
            let write = self.stdin.write_all(line);
            let read = read_answer(&mut self.stdout, &mut self.decoder, &mut self.chunk, collector);
            tokio::pin!(write, read);
            let mut wrote = None;
            loop {
                tokio::select! {
                    done = &mut write, if wrote.is_none() => wrote = Some(done.is_ok()),
                    read = &mut read => break (read, wrote),
                }
            }
        };
        match read {
            Ok(()) => Ok(wrote == Some(true) && !self.decoder.has_pending()),
            Err(Cut::Failed(message)) => Err(self.tail().append_to(message)),
            Err(Cut::Closed) => {
                // A last line without its newline counts once stdout has ended; the child is
                // gone or going, so it is not in step for another request either way.
                let last = self.decoder.finish(&mut |bytes, at| collector.accept(bytes, at));
                if last.is_ok() && collector.answered() {
                    return Ok(false);
                }
                Err(self.why_closed(launch).await)
            }
        }
    }

    /// stdout ended before the final event: say how the child ended, with its last stderr.
    async fn why_closed(&mut self, launch: &Launch) -> String {
        let pid = self.group.pid();
        let (group, drain) = (&mut self.group, &mut self.drain);
        let ended = tokio::time::timeout(EXIT_GRACE, async {
            let status = group.wait().await;
            // Its stderr ends with it; wait for the last of it to be kept.
            if let Some(handle) = drain.take() {
                let _ = handle.await;
            }
            status
        })
        .await;
        let how = match ended {
            Ok(Ok(status)) => describe_exit(status),
            _ => "closed its stdout".to_string(),
        };
        let message = format!("keep-alive child {} (pid {pid}) {how} before its final event", launch.name());
        self.tail().append_to(message)
    }
}

async fn read_answer(
    stdout: &mut ChildStdout,
    decoder: &mut Decoder,
    chunk: &mut [u8],
    collector: &mut Collector,
) -> Result<(), Cut> {
    loop {
        let n = stdout.read(chunk).await.map_err(|e| Cut::Failed(format!("cannot read stdout: {e}")))?;
        if n == 0 {
            return Err(Cut::Closed);
        }
        decoder.feed(&chunk[..n], &mut |bytes, at| collector.accept(bytes, at)).map_err(Cut::Failed)?;
        if collector.answered() {
            return Ok(());
        }
    }
}

impl Drop for KeptChild {
    fn drop(&mut self) {
        // The group is killed when `group` drops, right after this; the drain would end at
        // stderr's end anyway, but need not outlive its child.
        if let Some(drain) = self.drain.take() {
            drain.abort();
        }
    }
}
