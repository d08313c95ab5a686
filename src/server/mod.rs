//! The HTTP API of `swarm serve` (docs/api.md): JSON over HTTP/1 on TCP or a Unix socket, every
//! route but `GET /healthz` behind a bearer token checked by the engine's gate.
//!
//! Threads: axum runs on a runtime of its own thread ([`Server::start`]); the engine stays on
//! the host thread, where [`desk::serve_calls`] answers the handlers' [`desk::Call`]s. A route
//! is a handler in `routes/` plus one line in [`router`].

mod client;
mod desk;
mod error;
mod private;
mod routes;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::sync::{mpsc, watch};
use tower_http::timeout::TimeoutLayer;

pub use client::{Client, Events};
pub use desk::{Call, Catalogue, CatalogueCell, serve_calls};
pub use error::ApiError;
pub use private::PrivateApi;

/// The largest request body a route accepts (a blueprint, an input ctx); larger is 413, read no
/// further than the limit.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// How long a request may take to be answered (not counting an SSE stream once it has begun).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the API listens: `127.0.0.1:PORT` (any TCP address) or `unix:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket's path.
    Unix(PathBuf),
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(text: &str) -> Result<Listen, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path (unix:/run/swarm.sock)".into());
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        text.parse::<SocketAddr>().map(Listen::Tcp).map_err(|_| {
            format!("`{text}` is neither HOST:PORT with a numeric host (127.0.0.1:8080, [::1]:8080) nor unix:PATH")
        })
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(addr) => write!(f, "http://{addr}"),
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Listen {
    /// Whether only this machine can reach the address (loopback TCP, or a Unix socket).
    pub fn is_local(&self) -> bool {
        match self {
            Listen::Tcp(addr) => addr.ip().is_loopback(),
            Listen::Unix(_) => true,
        }
    }
}

/// What the handlers share: the way to the desk on the host thread.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub calls: mpsc::UnboundedSender<desk::Call>,
}

/// Every route, with the bounds every request is held to.
fn router(state: ApiState) -> Router {
    use routes::*;
    Router::new()
        .route("/", get(web::index))
        .route("/healthz", get(health::healthz))
        .route("/v1/blueprints", get(blueprints::list))
        .route("/v1/runs", post(runs::start).get(runs::list))
        .route("/v1/runs/{id}", get(runs::show))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/runs/{id}/resume", post(runs::resume))
        .route("/v1/runs/{id}/events", get(events::stream))
        .route("/v1/runs/{id}/signals/{name}", post(runs::signal))
        .route("/v1/operators/{name}/questions", get(operators::questions))
        .route("/v1/operators/{name}/answers/{question_id}", post(operators::answer))
        .route("/v1/work/claim", post(work::claim))
        .route("/v1/tasks/{id}/prompt", get(work::prompt))
        .route("/v1/outputs/{ref}", get(work::output))
        .route("/v1/tasks/{id}/events", post(work::events))
        .route("/v1/tasks/{id}/result", post(work::result))
        .route("/v1/tasks/{id}/dispatch", post(work::dispatch))
        .fallback(routes::no_route)
        .with_state(state)
        .layer(axum::middleware::from_fn(routes::refuse_oversize))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
}

/// Serves connections from `listener` until `shutdown`, then lets those open finish.
///
/// Not `axum::serve`: its HTTP/1 connections close as soon as the client half-closes its side,
/// dropping a request the server has whole but not yet answered. Here a request read in full is
/// carried out even if its client went away before the answer (its answer then goes nowhere).
async fn accept<L: axum::serve::Listener>(
    mut listener: L,
    app: Router,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::TokioIo;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection =
            hyper::server::conn::http1::Builder::new().half_close(true).serve_connection(TokioIo::new(io), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("an API connection ended: {e}");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// How many connections may wait to be accepted: enough for a thousand workers that connect at
/// once (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 1024;

/// A non-blocking socket listening on `at`.
fn listen_on(domain: socket2::Domain, at: &socket2::SockAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    if domain != socket2::Domain::UNIX {
        // As the standard library's bind does: a restarted server may bind while old
        // connections linger in TIME_WAIT.
        socket.set_reuse_address(true)?;
    }
    socket.bind(at)?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// How long the requests in progress at a stop may take to finish.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The HTTP server, on its own thread; [`Server::stop`] ends it.
pub struct Server {
    listen: Listen,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `listen` (now, so an address in use is an error here) and serves on a thread of
    /// its own, sending engine calls to `calls`. A non-local address needs `allow_remote`.
    /// A Unix socket file left by a dead server is replaced; one a live server answers on is
    /// an error.
    pub fn start(listen: Listen, allow_remote: bool, calls: mpsc::UnboundedSender<Call>) -> Result<Server, String> {
        Self::start_with_threads(listen, allow_remote, calls, 2)
    }

    /// [`Server::start`] on a runtime of `threads` worker threads.
    pub fn start_with_threads(
        listen: Listen,
        allow_remote: bool,
        calls: mpsc::UnboundedSender<Call>,
        threads: usize,
    ) -> Result<Server, String> {
        if !listen.is_local() && !allow_remote {
            return Err(format!(
                "--listen {listen}: not a loopback address; pass --allow-remote to serve other machines"
            ));
        }
        enum Bound {
            Tcp(std::net::TcpListener),
            Unix(std::os::unix::net::UnixListener),
        }
        let bound = match &listen {
            Listen::Tcp(addr) => {
                let l = listen_on(socket2::Domain::for_address(*addr), &(*addr).into())
                    .map_err(|e| format!("--listen {addr}: {e}"))?;
                Bound::Tcp(l.into())
            }
            Listen::Unix(path) => {
                if path.exists() {
                    if std::os::unix::net::UnixStream::connect(path).is_ok() {
                        return Err(format!("--listen unix:{}: a server is listening there already", path.display()));
                    }
                    std::fs::remove_file(path).map_err(|e| format!("--listen unix:{}: {e}", path.display()))?;
                }
                let l = socket2::SockAddr::unix(path)
                    .and_then(|at| listen_on(socket2::Domain::UNIX, &at))
                    .map_err(|e| format!("--listen unix:{}: {e}", path.display()))?;
                Bound::Unix(l.into())
            }
        };
        let listen = match (&listen, &bound) {
            (Listen::Tcp(_), Bound::Tcp(l)) => Listen::Tcp(l.local_addr().map_err(|e| e.to_string())?),
            _ => listen,
        };
        let (stop, mut stopped) = watch::channel(false);
        let app = router(ApiState { calls });
        let thread = std::thread::Builder::new()
            .name("swarm-http".into())
            .spawn(move || {
                let mut builder = if threads <= 1 {
                    tokio::runtime::Builder::new_current_thread()
                } else {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(threads);
                    b
                };
                let runtime = match builder.enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("swarm serve: cannot start the HTTP runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut cut = stopped.clone();
                    let shutdown = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    let served = async move {
                        match bound {
                            Bound::Tcp(l) => match tokio::net::TcpListener::from_std(l) {
                                Ok(l) => accept(l, app, shutdown).await,
                                Err(e) => Err(e),
                            },
                            Bound::Unix(l) => match tokio::net::UnixListener::from_std(l) {
                                Ok(l) => accept(l, app, shutdown).await,
                                Err(e) => Err(e),
                            },
                        }
                    };
                    // A stream that outlives the stop (a client holding an SSE of a run that
                    // is not ending) is cut after a grace period.
                    let grace = async move {
                        let _ = cut.wait_for(|s| *s).await;
                        tokio::time::sleep(STOP_GRACE).await;
                    };
                    let served = async move {
                        tokio::select! {
                            result = served => result,
                            _ = grace => Ok(()),
                        }
                    };
                    if let Err(e) = served.await {
                        eprintln!("swarm serve: the HTTP server stopped: {e}");
                    }
                });
                // Streams still open (an SSE client that stays) end with the runtime.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
        Ok(Server { listen, stop, thread: Some(thread) })
    }

    /// Where it listens (with the port the system chose for `:0`).
    pub fn listen(&self) -> &Listen {
        &self.listen
    }

    /// Stops accepting, lets the requests in progress finish (SSE streams end when their runs
    /// do, or are cut after a second), joins the thread and removes a Unix socket file. Blocks.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Listen::Unix(path) = &self.listen {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shut();
    }
}
