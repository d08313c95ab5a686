//! `swarm.http` against servers the tests start on loopback: the `tests/lua/http_*.lua`
//! scripts (the server's URL in the global `HTTP`, a self-signed TLS server's in `TLS`), and
//! proxies taken from the environment of a real `swarm run`.

use crate::util::bin::{command, stderr, stdout_json, write};
use crate::util::http_server::{HttpServer, TlsServer};
use crate::util::lua::run_with;

/// The scripts these tests run (`every_script_has_a_test` counts them as tested).
pub const SCRIPTS: &[&str] = &["http_request", "http_stream", "http_cancel", "http_tls"];

fn served(name: &str) {
    let server = HttpServer::start();
    run_with(name, &[("HTTP", server.url())]);
}

#[test]
fn http_request() {
    served("http_request");
}

#[test]
fn http_stream() {
    served("http_stream");
}

#[test]
fn http_cancel() {
    served("http_cancel");
}

#[test]
fn http_tls() {
    let tls = TlsServer::start();
    run_with("http_tls", &[("TLS", tls.url())]);
}

/// `HTTP_PROXY` in the environment sends plain-HTTP requests through the proxy: here the test
/// server, which receives the request for a host that does not exist and answers it itself.
#[test]
fn proxies_come_from_the_environment() {
    let server = HttpServer::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let bp = write(
        dir.path(),
        "proxied.lua",
        r#"
local swarm = require("swarm")
return swarm.blueprint({
  id = "proxied",
  agents = { fetch = function() return swarm.http.get("http://swarm-proxy-test.invalid/echo").json end },
  flow = swarm.flow.step({ agent = "fetch", out = "$.echo" }),
})
"#,
    );
    let output = command(dir.path(), &["run", &bp, "--state", "memory"])
        .env("HTTP_PROXY", server.url())
        .env("http_proxy", server.url())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("swarm runs");
    assert!(output.status.success(), "{}", stderr(&output));
    let ctx = stdout_json(&output);
    assert_eq!(ctx["echo"]["headers"]["host"], "swarm-proxy-test.invalid", "{ctx}");
    assert_eq!(ctx["echo"]["path"], "/echo");
}
