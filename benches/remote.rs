//! Remote workers and event streams over the HTTP API of the release binary (`swarm serve`):
//!
//! - round trip: one worker, one run of N remote steps in a loop; the time from one claim's
//!   answer to the next (post the result, the engine settles the step, evaluates the loop and
//!   offers the next attempt, the waiting claim gets it): p50, p90, p99;
//! - throughput: 4 workers, 4 such runs at once: steps per second;
//! - both over loopback TCP and over a Unix socket, on keep-alive connections;
//! - SSE fan-out: 100 subscribers to one run of 1,000 inline steps: the time from the signal that
//!   starts it to the last subscriber having every event.
//!
//! `cargo bench --bench remote` prints the figures (a serve journaled in SQLite, as by default;
//! `REMOTE_STATE=memory` journals nothing). `REMOTE_STEPS=N` changes N (2,000).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SCRIPT: &str = r#"local swarm = require("swarm")
local F = swarm.flow
swarm.expose(swarm.blueprint({
  id = "steps",
  agents = { work = { kind = "remote", spec = { queue = "q" } } },
  flow = F.loop({
    counter = "$.i", max = 10000000, cond = F.p("$.i"):lt(F.p("$.n")),
    body = F.step({ agent = "work", input = F.p("$.i"), out = "$.last" }),
  }),
}))
swarm.expose(swarm.blueprint({
  id = "fan",
  agents = { tick = function(i) return i end },
  flow = F.seq({
    F.wait({ signal = "go" }),
    F.loop({
      counter = "$.i", max = 10000000, cond = F.p("$.i"):lt(F.p("$.n")),
      body = F.step({ agent = "tick", input = F.p("$.i"), out = "$.last" }),
    }),
  }),
}))
"#;

#[derive(Clone)]
enum Addr {
    Tcp(String),
    Unix(PathBuf),
}

trait Stream: Read + Write + Send {}
impl Stream for TcpStream {}
impl Stream for UnixStream {}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    io: BufReader<Box<dyn Stream>>,
    token: String,
}

impl Conn {
    fn open(addr: &Addr, token: &str) -> Conn {
        let stream: Box<dyn Stream> = match addr {
            Addr::Tcp(a) => {
                let s = TcpStream::connect(a).unwrap();
                s.set_nodelay(true).unwrap();
                Box::new(s)
            }
            Addr::Unix(p) => Box::new(UnixStream::connect(p).unwrap()),
        };
        Conn { io: BufReader::new(stream), token: token.to_string() }
    }

    /// Sends a request and reads its whole answer: (status, body).
    fn call(&mut self, method: &str, path: &str, body: Option<&Value>) -> (u16, Vec<u8>) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.token,
            body.len()
        );
        let out = self.io.get_mut();
        out.write_all(head.as_bytes()).unwrap();
        out.write_all(body.as_bytes()).unwrap();
        let mut line = String::new();
        self.io.read_line(&mut line).unwrap();
        let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            line.clear();
            self.io.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.io.read_exact(&mut body).unwrap();
        (status, body)
    }

    fn claim(&mut self, wait_ms: u64) -> Option<Value> {
        let (status, body) = self.call("POST", "/v1/work/claim", Some(&json!({"queues": ["q"], "wait_ms": wait_ms})));
        match status {
            200 => Some(serde_json::from_slice(&body).unwrap()),
            204 => None,
            other => panic!("claim: {other} {}", String::from_utf8_lossy(&body)),
        }
    }

    fn finish(&mut self, claim: &Value) {
        let path = format!("/v1/tasks/{}/result", claim["task_id"].as_str().unwrap());
        let mut conn_token = claim["token"].as_str().unwrap().to_string();
        std::mem::swap(&mut self.token, &mut conn_token);
        let (status, body) = self.call("POST", &path, Some(&json!({"value": claim["input"]})));
        std::mem::swap(&mut self.token, &mut conn_token);
        assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    }

    fn start(&mut self, blueprint: &str, input: Value) -> String {
        let (status, body) = self.call("POST", "/v1/runs", Some(&json!({"blueprint": blueprint, "input": input})));
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice::<Value>(&body).unwrap()["run_id"].as_str().unwrap().to_string()
    }
}

/// A `swarm serve` of the bench script, killed when dropped.
struct Served {
    child: Child,
    addr: Addr,
    token: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, listen: &str) -> Served {
    std::fs::write(dir.join("s.lua"), SCRIPT).unwrap();
    let state = std::env::var("REMOTE_STATE").unwrap_or_else(|_| "sqlite".into());
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarm"));
    command.current_dir(dir).args(["serve", "s.lua", "--listen", listen]).stderr(Stdio::piped()).stdout(Stdio::null());
    if state == "memory" {
        command.args(["--state", "memory"]);
    }
    let mut child = command.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on ") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "swarm serve ended before it listened");
    }
    // Keep draining stderr, so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let at = line.split("listening on ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let addr = match at.strip_prefix("http://") {
        Some(tcp) => Addr::Tcp(tcp.to_string()),
        None => Addr::Unix(dir.join(at.strip_prefix("unix:").unwrap())),
    };
    let token = std::fs::read_to_string(dir.join(".swarm/operator.token")).unwrap().trim().to_string();
    Served { child, addr, token }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// What a request costs with nothing behind it (`/healthz`, answered on the server's thread)
/// and with one trip to the engine's desk (`/v1/blueprints`): the floor under a round trip.
fn floor(api: &Served, n: usize) {
    let mut conn = Conn::open(&api.addr, &api.token);
    for path in ["/healthz", "/v1/blueprints"] {
        let mut times: Vec<Duration> = (0..n)
            .map(|_| {
                let start = Instant::now();
                assert_eq!(conn.call("GET", path, None).0, 200);
                start.elapsed()
            })
            .collect();
        times.sort();
        println!("  GET {path}: p50 {:.0} µs", micros(percentile(&times, 0.5)));
    }
}

/// One worker through one run of `steps` remote steps: the gaps between successive claims.
fn round_trip(api: &Served, steps: u64) {
    let mut control = Conn::open(&api.addr, &api.token);
    control.start("steps", json!({"n": steps}));
    let mut worker = Conn::open(&api.addr, &api.token);
    let mut gaps = Vec::with_capacity(steps as usize);
    let mut last = None;
    for _ in 0..steps {
        let claim = worker.claim(10_000).expect("an attempt within 10 s");
        let now = Instant::now();
        if let Some(before) = last.replace(now) {
            gaps.push(now - before);
        }
        worker.finish(&claim);
    }
    gaps.sort();
    println!(
        "  round trip, 1 worker, {steps} steps: p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs",
        micros(percentile(&gaps, 0.5)),
        micros(percentile(&gaps, 0.9)),
        micros(percentile(&gaps, 0.99))
    );
}

/// Four workers through four runs of `steps` remote steps each: steps per second.
fn throughput(api: &Served, steps: u64) {
    const WORKERS: usize = 4;
    let mut control = Conn::open(&api.addr, &api.token);
    let started = Instant::now();
    for _ in 0..WORKERS {
        control.start("steps", json!({"n": steps}));
    }
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (addr, token) = (api.addr.clone(), api.token.clone());
            std::thread::spawn(move || {
                let mut worker = Conn::open(&addr, &token);
                let mut done = 0u64;
                while let Some(claim) = worker.claim(300) {
                    worker.finish(&claim);
                    done += 1;
                }
                done
            })
        })
        .collect();
    let done: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    // The last claims waited 300 ms for nothing: that wait is not work.
    let elapsed = started.elapsed().saturating_sub(Duration::from_millis(300));
    assert_eq!(done, steps * WORKERS as u64, "every step was claimed once");
    println!(
        "  throughput, {WORKERS} workers, {done} steps: {:.0} steps/s ({:.0} ms)",
        done as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e3
    );
}

/// 100 subscribers to one run: from the signal that starts it to the last one having it all.
fn fan_out(api: &Served, steps: u64) {
    const SUBSCRIBERS: usize = 100;
    let mut control = Conn::open(&api.addr, &api.token);
    let run = control.start("fan", json!({"n": steps}));
    let attached = Arc::new(Barrier::new(SUBSCRIBERS + 1));
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let (addr, token, run, attached) = (api.addr.clone(), api.token.clone(), run.clone(), attached.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::open(&addr, &token);
                let head = format!(
                    "GET /v1/runs/{run}/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
                );
                conn.io.get_mut().write_all(head.as_bytes()).unwrap();
                let (mut events, mut waiting) = (0u64, false);
                let mut line = String::new();
                loop {
                    line.clear();
                    assert!(conn.io.read_line(&mut line).unwrap() > 0, "the stream ended early");
                    if !line.contains("data:") {
                        continue;
                    }
                    events += 1;
                    if !waiting && line.contains("\"run_waiting\"") {
                        waiting = true;
                        attached.wait();
                    }
                    if line.contains("\"run_finished\"") {
                        return (Instant::now(), events);
                    }
                }
            })
        })
        .collect();
    attached.wait();
    let signalled = Instant::now();
    let (status, body) = control.call("POST", &format!("/v1/runs/{run}/signals/go"), Some(&json!({"value": true})));
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let ends: Vec<(Instant, u64)> = subscribers.into_iter().map(|s| s.join().unwrap()).collect();
    let last = ends.iter().map(|(at, _)| *at).max().unwrap() - signalled;
    let events = ends[0].1;
    assert!(ends.iter().all(|(_, n)| *n == events), "every subscriber got every event");
    println!(
        "  SSE fan-out, {SUBSCRIBERS} subscribers × {events} events: the last had all {:.0} ms after the signal ({:.0} events/s delivered)",
        last.as_secs_f64() * 1e3,
        (events * SUBSCRIBERS as u64) as f64 / last.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let steps: u64 = std::env::var("REMOTE_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let state = std::env::var("REMOTE_STATE").unwrap_or_else(|_| "sqlite".into());
    for (what, listen) in [("loopback TCP", "127.0.0.1:0"), ("Unix socket", "unix:api.sock")] {
        let dir = tempfile::tempdir().unwrap();
        let api = serve(dir.path(), listen);
        println!("remote workers over {what} (journal: {state}):");
        floor(&api, steps as usize);
        round_trip(&api, steps);
        throughput(&api, steps);
        if matches!(api.addr, Addr::Tcp(_)) {
            fan_out(&api, 1000);
        }
    }
}
