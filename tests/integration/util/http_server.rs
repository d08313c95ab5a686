//! A local HTTP server for the `swarm.http` tests, on 127.0.0.1 and a thread of its own,
//! stopped when dropped. Its routes answer what each test needs to see:
//!
//! - `/echo` (any method): `{method, path, query, headers, body}` as JSON;
//! - `/status/{code}`: that status (`?retry_after=S` adds a `Retry-After`);
//! - `/bytes/{n}`: `n` bytes with a `Content-Length`; `/chunked/{n}`: `n` bytes without one;
//! - `/slow/{ms}`: answers after `ms`;
//! - `/gate/{n}`: answers no request until `n` wait at once (counting them, for `/stats`);
//! - `/redirect/{n}`: a chain of `n` redirects to `/echo`; `/loop` redirects to itself;
//!   `/see_other` is a 303 to `/echo`; `/offsite` is a 307 to the same server named `localhost`
//!   (another origin); `/relative` redirects to `echo` without a scheme or host;
//! - `/lines`: lines in several chunks (`\n` and `\r\n` endings, no final newline);
//!   `/sse`: Server-Sent Events with comments, multi-line data, ids and an event with no data;
//! - `/hold`: a line every 20 ms forever; the server counts holds it saw dropped (`/stats`);
//! - `/json_broken`: a JSON content type over a body that is not JSON;
//! - `/stats`: `{requests, max_in_flight, held, dropped}`.
//!
//! [`TlsServer`] is a TLS listener with a self-signed certificate, which clients must refuse.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

/// The counters `/stats` reports.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    max_in_flight: AtomicU64,
    held: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Clone)]
struct Shared {
    stats: Arc<Stats>,
    port: u16,
    /// How many `/gate` requests wait now.
    waiting: Arc<tokio::sync::watch::Sender<u64>>,
}

/// A running server; dropping it stops it.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Starts the server on a free loopback port.
    pub fn start() -> HttpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the bound address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the test server");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                let app = router(Shared {
                    stats: Arc::default(),
                    port: addr.port(),
                    waiting: Arc::new(tokio::sync::watch::channel(0).0),
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("the test server runs");
            });
            // Held streams never end by themselves: the runtime is dropped without waiting.
            runtime.shutdown_background();
        });
        HttpServer { addr, stop: Some(stop), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Graceful shutdown waits for open connections; a held stream would keep it waiting,
        // so the thread is not joined when a test left one open.
        if let Some(thread) = self.thread.take()
            && thread.is_finished()
        {
            let _ = thread.join();
        }
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/echo", any(echo))
        .route("/status/{code}", any(status))
        .route("/bytes/{n}", get(bytes))
        .route("/chunked/{n}", get(chunked))
        .route("/slow/{ms}", any(slow))
        .route("/gate/{n}", get(gate))
        .route("/redirect/{n}", any(redirect))
        .route("/loop", any(|| async { redirect_to("/loop", StatusCode::FOUND) }))
        .route("/see_other", any(|| async { redirect_to("/echo", StatusCode::SEE_OTHER) }))
        .route("/relative", any(|| async { redirect_to("echo", StatusCode::MOVED_PERMANENTLY) }))
        .route("/offsite", any(offsite))
        .route("/lines", get(lines))
        .route("/sse", get(sse))
        .route("/hold", any(hold))
        .route("/json_broken", get(|| async { ([(header::CONTENT_TYPE, "application/json")], "{not json") }))
        .route("/stats", get(stats))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), count))
        .with_state(shared)
}

async fn count(State(shared): State<Shared>, request: Request, next: axum::middleware::Next) -> Response {
    shared.stats.requests.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let reply = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query().unwrap_or(""),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    ([(header::CONTENT_TYPE, "application/json")], reply.to_string()).into_response()
}

async fn status(Path(code): Path<u16>, request: Request) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (code, format!("status {}", code.as_u16())).into_response();
    if let Some(seconds) = request.uri().query().and_then(|q| q.strip_prefix("retry_after=")) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_str(seconds).expect("a header value"));
    }
    response
}

async fn bytes(Path(n): Path<usize>) -> Vec<u8> {
    vec![b'x'; n]
}

async fn chunked(Path(n): Path<usize>) -> Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        (0..n.div_ceil(1024)).map(|i| Ok(Bytes::from(vec![b'x'; (n - i * 1024).min(1024)]))).collect();
    Body::from_stream(futures::stream::iter(chunks))
}

async fn slow(Path(ms): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "done"
}

async fn gate(State(shared): State<Shared>, Path(n): Path<u64>) -> &'static str {
    let mut now = 0;
    shared.waiting.send_modify(|w| {
        *w += 1;
        now = *w;
    });
    shared.stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let mut seen = shared.waiting.subscribe();
    let _ = seen.wait_for(|w| *w >= n).await;
    // The gate stays open for the rest of its batch: the count only grows until all are in.
    "open together"
}

async fn redirect(Path(n): Path<u32>) -> Response {
    match n {
        0 => redirect_to("/echo", StatusCode::FOUND),
        n => redirect_to(&format!("/redirect/{}", n - 1), StatusCode::FOUND),
    }
}

fn redirect_to(location: &str, code: StatusCode) -> Response {
    (code, [(header::LOCATION, location.to_string())]).into_response()
}

async fn offsite(State(shared): State<Shared>) -> Response {
    redirect_to(&format!("http://localhost:{}/echo", shared.port), StatusCode::TEMPORARY_REDIRECT)
}

/// A body sent in the pieces given, a short pause between them.
fn paced(pieces: Vec<&'static str>, content_type: &'static str) -> Response {
    let stream = futures::stream::unfold(pieces.into_iter(), |mut pieces| async move {
        let piece = pieces.next()?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(piece.as_bytes())), pieces))
    });
    ([(header::CONTENT_TYPE, content_type)], Body::from_stream(stream)).into_response()
}

async fn lines() -> Response {
    paced(vec!["one\ntw", "o\r\n", "\nthree\nfo", "ur"], "text/plain")
}

async fn sse() -> Response {
    paced(
        vec![
            ": a comment\n",
            "event: greet\ndata: hello\n\n",
            "data: line 1\nda",
            "ta: line 2\nid: 7\n\n",
            "event: empty\n\n",
            "data:no space\r\n\r\n",
            "data: unfinished",
        ],
        "text/event-stream",
    )
}

/// Counts a hold as dropped when its body stream is dropped before it ended (it never ends).
struct DropCount(Arc<Stats>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

async fn hold(State(shared): State<Shared>) -> Response {
    shared.stats.held.fetch_add(1, Ordering::SeqCst);
    let guard = DropCount(shared.stats.clone());
    let stream = futures::stream::unfold(guard, |guard| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b"tick\n")), guard))
    });
    ([(header::CONTENT_TYPE, "text/plain")], Body::from_stream(stream)).into_response()
}

async fn stats(State(shared): State<Shared>) -> Response {
    let s = &shared.stats;
    let reply = serde_json::json!({
        "requests": s.requests.load(Ordering::SeqCst),
        "max_in_flight": s.max_in_flight.load(Ordering::SeqCst),
        "held": s.held.load(Ordering::SeqCst),
        "dropped": s.dropped.load(Ordering::SeqCst),
    });
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (headers, reply.to_string()).into_response()
}

/// A TLS listener on loopback whose certificate is self-signed: every handshake a client
/// with real trust roots makes must fail. It runs until the process ends (each accept is
/// a short-lived thread), which costs nothing once the tests stop connecting.
pub struct TlsServer {
    addr: SocketAddr,
}

impl TlsServer {
    /// Starts the listener with `tests/fixtures/self_signed.{crt,key}`.
    pub fn start() -> TlsServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let certs = CertificateDer::pem_file_iter(dir.join("self_signed.crt"))
            .expect("the fixture certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("a PEM certificate");
        let key = PrivateKeyDer::from_pem_file(dir.join("self_signed.key")).expect("the fixture key");
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a server config");
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let config = config.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(connection) = rustls::ServerConnection::new(config) else { return };
                    let mut tls = rustls::StreamOwned::new(connection, stream);
                    let mut buf = [0u8; 1024];
                    // The client aborts the handshake; whatever comes back ends the thread.
                    let _ = std::io::Read::read(&mut tls, &mut buf);
                });
            }
        });
        TlsServer { addr }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}
