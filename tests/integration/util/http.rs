//! A small HTTP/1.1 client for the API tests, over a real TCP or Unix socket: one request per
//! connection (`Connection: close`), chunked bodies decoded, and Server-Sent Events read as they
//! arrive. Written out here so a test sees exactly the bytes on the wire.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::DEADLINE;
use super::live::Swarm;

/// Where a server listens.
#[derive(Clone, Debug)]
pub enum Addr {
    Tcp(String),
    Unix(PathBuf),
}

/// A socket of either kind.
pub trait Stream: Read + Write + Send {}
impl Stream for TcpStream {}
impl Stream for UnixStream {}

impl Addr {
    pub fn connect(&self) -> Box<dyn Stream> {
        match self {
            Addr::Tcp(addr) => {
                let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
                s.set_read_timeout(Some(DEADLINE)).unwrap();
                Box::new(s)
            }
            Addr::Unix(path) => {
                let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
                s.set_read_timeout(Some(DEADLINE)).unwrap();
                Box::new(s)
            }
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The error kind of an `{"error": {kind, message}}` body.
    pub fn kind(&self) -> String {
        self.json()["error"]["kind"].as_str().unwrap_or_else(|| panic!("no error kind: {}", self.text())).to_string()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Writes a request; `body` is sent with a Content-Length.
pub fn send(stream: &mut dyn Stream, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream.flush().unwrap();
}

/// Reads a status line and headers.
fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap();
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    (status, headers)
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
}

/// One request on a fresh connection.
pub fn request(addr: &Addr, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Response {
    request_with(addr, method, path, token, &[], body)
}

/// [`request`] with more headers.
pub fn request_with(
    addr: &Addr,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = addr.connect();
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    send(&mut *stream, method, path, &headers, body);
    read_response(stream)
}

/// The response to the request written on `stream`, read whole.
pub fn read_response(stream: Box<dyn Stream>) -> Response {
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let mut body = Vec::new();
    if is_chunked(&headers) {
        Chunked { inner: reader, left: 0, done: false }.read_to_end(&mut body).unwrap();
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    Response { status, headers, body }
}

/// A chunked body, decoded as it is read.
struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                // The CRLF that ends the previous chunk.
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            if line.is_empty() {
                self.done = true;
                return Ok(0);
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap(), 16)
                .map_err(|e| std::io::Error::other(format!("bad chunk size {line:?}: {e}")))?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let n = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..n])?;
        self.left -= n;
        Ok(n)
    }
}

/// An open event stream.
pub struct Sse {
    pub status: u16,
    lines: Box<dyn BufRead + Send>,
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub data: serde_json::Value,
}

/// Opens `GET path` as an event stream, resuming after `last_event_id` if given.
pub fn sse(addr: &Addr, path: &str, token: &str, last_event_id: Option<u64>) -> Sse {
    let mut stream = addr.connect();
    let auth = format!("Bearer {token}");
    let last = last_event_id.map(|n| n.to_string());
    let mut headers = vec![("Authorization", auth.as_str()), ("Accept", "text/event-stream")];
    if let Some(last) = &last {
        headers.push(("Last-Event-ID", last));
    }
    send(&mut *stream, "GET", path, &headers, b"");
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let lines: Box<dyn BufRead + Send> = if is_chunked(&headers) {
        Box::new(BufReader::new(Chunked { inner: reader, left: 0, done: false }))
    } else {
        Box::new(reader)
    };
    Sse { status, lines }
}

impl Sse {
    /// The next event (comments and keep-alives skipped); `None` once the stream has ended.
    pub fn next(&mut self) -> Option<SseEvent> {
        let mut id = None;
        let mut data = String::new();
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !data.is_empty() {
                    let data =
                        serde_json::from_str(&data).unwrap_or_else(|e| panic!("event data not JSON ({e}): {data}"));
                    return Some(SseEvent { id, data });
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }
}

/// A `swarm serve --listen` in `dir`, with where it listens and its operator token.
pub struct Served {
    pub swarm: Swarm,
    pub addr: Addr,
    pub token: String,
}

impl Served {
    /// Starts `swarm` with `args` (a serve with --listen) and `env`, and waits until it listens.
    pub fn start_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut command = super::bin::command(dir, args);
        for (k, v) in env {
            command.env(k, v);
        }
        let swarm = Swarm::start_command(command, false);
        swarm.wait_stderr("listening on ", 1);
        let err = swarm.stderr();
        let at = err.split("listening on ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
        let addr = match at.strip_prefix("http://") {
            Some(tcp) => Addr::Tcp(tcp.to_string()),
            None => Addr::Unix(dir.join(at.strip_prefix("unix:").unwrap())),
        };
        let script_dir = args.get(1).map(|s| dir.join(s)).and_then(|p| p.parent().map(Path::to_path_buf)).unwrap();
        let token = std::fs::read_to_string(script_dir.join(".swarm/operator.token")).unwrap().trim().to_string();
        Served { swarm, addr, token }
    }

    pub fn get(&self, path: &str) -> Response {
        request(&self.addr, "GET", path, Some(&self.token), b"")
    }

    pub fn post(&self, path: &str, body: serde_json::Value) -> Response {
        request(&self.addr, "POST", path, Some(&self.token), body.to_string().as_bytes())
    }

    /// Starts a run of `blueprint` with `input`; its id.
    pub fn start_run(&self, blueprint: serde_json::Value, input: serde_json::Value) -> String {
        let r = self.post("/v1/runs", serde_json::json!({ "blueprint": blueprint, "input": input }));
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["run_id"].as_str().unwrap().to_string()
    }

    /// Polls `GET /v1/runs/{id}` until its status is `status`; the run.
    pub fn wait_status(&self, id: &str, status: &str) -> serde_json::Value {
        let start = std::time::Instant::now();
        loop {
            let r = self.get(&format!("/v1/runs/{id}"));
            if r.status == 200 && r.json()["status"] == status {
                return r.json();
            }
            assert!(start.elapsed() < DEADLINE, "run {id} never became {status}: {} {}", r.status, r.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
