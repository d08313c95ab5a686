//! `swarm.http`: HTTP requests from the host VM's Lua (inline agents, layers, bridges, timers,
//! the REPL), each a host call that yields, so a thousand fanout lanes can each hold a request
//! open. Sandboxed scripts have no `swarm.http`; they reach the network only through a bridge
//! their author writes.
//!
//! One `reqwest` client per VM (a `swarm` process has one VM) keeps one connection pool.
//! Redirects are followed here rather than by the client, so each request can set its own limit
//! and a cross-origin hop drops the credentials it carried.

mod error;
mod options;
mod response;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue};
use reqwest::header::{AUTHORIZATION, COOKIE, HeaderMap, LOCATION, PROXY_AUTHORIZATION};
use reqwest::{Method, StatusCode, Url};

use error::{HttpError, Reason};
use options::Options;
use tokio::time::Instant;

/// The most redirects a request follows, and its default.
pub const MAX_REDIRECTS: u64 = 10;
/// How much of an error response's body the raised table carries.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// Turns a native answering `ok, value_or_error` into a function that returns the value or
/// raises the error table (a table raised from Rust would reach `pcall` as opaque userdata).
const RAISING_LUA: &str = r#"
local raw = ...
local error = error
return function(...)
  local ok, result = raw(...)
  if not ok then
    error(result, 2)
  end
  return result
end
"#;

/// Installs `swarm.http` with `request`, `get`, `post` and `stream`.
pub(super) fn install(lua: &Lua, swarm: &Table) -> mlua::Result<()> {
    let http = lua.create_table()?;
    let raising: Function = lua.load(RAISING_LUA).set_name("@[swarm]/http.lua").into_function()?;
    let request = lua.create_async_function(|lua, args: MultiValue| async move {
        answer(&lua, run_request(&lua, "swarm.http.request", args, None).await)
    })?;
    http.set("request", raising.call::<Function>(request)?)?;
    for (name, method) in [("get", Method::GET), ("post", Method::POST)] {
        let what = format!("swarm.http.{name}");
        let f = lua.create_async_function(move |lua, args: MultiValue| {
            let (what, method) = (what.clone(), method.clone());
            async move { answer(&lua, run_request(&lua, &what, args, Some(method)).await) }
        })?;
        http.set(name, raising.call::<Function>(f)?)?;
    }
    let open = lua.create_async_function(|lua, args: MultiValue| async move {
        let opened = match Options::parse(&lua, "swarm.http.stream", args, None) {
            Ok(options) => stream::open(&lua, options).await,
            Err(e) => Err(e),
        };
        match opened {
            Ok(stream) => Ok((true, LuaValue::UserData(lua.create_userdata(stream)?))),
            Err(e) => Ok((false, LuaValue::Table(e.to_lua(&lua)?))),
        }
    })?;
    http.set("stream", raising.call::<Function>(open)?)?;
    stream::install(lua, &raising)?;
    swarm.set("http", http)?;
    Ok(())
}

/// `(true, value)` or `(false, error table)`, for the raising wrapper.
fn answer(lua: &Lua, result: Result<Table, HttpError>) -> mlua::Result<(bool, LuaValue)> {
    match result {
        Ok(t) => Ok((true, LuaValue::Table(t))),
        Err(e) => Ok((false, LuaValue::Table(e.to_lua(lua)?))),
    }
}

async fn run_request(lua: &Lua, what: &str, args: MultiValue, method: Option<Method>) -> Result<Table, HttpError> {
    let options = Options::parse(lua, what, args, method)?;
    let deadline = options.deadline();
    let response = send(lua, &options, deadline).await?;
    response::read(lua, &options, response, deadline).await
}

/// The VM's client, made at its first request. Redirects are followed by [`send`].
fn client(lua: &Lua) -> Result<reqwest::Client, HttpError> {
    let state = super::state::state(lua);
    if let Some(client) = state.http.get() {
        return Ok(client.clone());
    }
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config())
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("swarm/", env!("CARGO_PKG_VERSION")))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| HttpError::new(Reason::Request, format!("cannot set up the HTTP client: {e}")))?;
    Ok(state.http.get_or_init(|| client).clone())
}

/// TLS as `swarm.http` does it: rustls on ring, trusting the Mozilla roots (webpki-roots), so
/// a certificate is accepted alike on every machine and a self-signed one is refused.
// rustls deprecates its ring provider for lacking post-quantum key exchange; aws-lc-rs, which
// has it, is a C library built with cmake, which this crate's builds do not otherwise need.
#[allow(deprecated)]
fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Sends the request, following up to `options.redirects` redirects, and returns the final
/// response (any status: [`response::read`] and [`stream::open`] decide what a status means).
async fn send(lua: &Lua, options: &Options, deadline: Instant) -> Result<reqwest::Response, HttpError> {
    let client = client(lua)?;
    let mut url = options.url.clone();
    let mut method = options.method.clone();
    let mut body = options.body.clone();
    let mut headers = options.headers.clone();
    for hop in 0.. {
        let mut request = reqwest::Request::new(method.clone(), url.clone());
        *request.headers_mut() = headers.clone();
        if let Some(bytes) = &body {
            *request.body_mut() = Some(bytes.clone().into());
        }
        let sent = tokio::time::timeout_at(deadline, client.execute(request)).await;
        let response = match sent {
            Err(_) => return Err(HttpError::timeout(&method, &url, options.timeout_ms)),
            Ok(Err(e)) => return Err(HttpError::from_reqwest(&method, &url, &e, options.timeout_ms)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let location = response.headers().get(LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string);
        let Some(location) = location.filter(|_| is_redirect(status)) else { return Ok(response) };
        if options.redirects == 0 {
            return Ok(response);
        }
        if hop >= options.redirects {
            let message = format!("stopped after {} redirects (the limit is `redirects`)", options.redirects);
            return Err(HttpError::at(Reason::Redirect, &method, &url, message).with_status(status.as_u16()));
        }
        let next = url.join(&location).map_err(|e| {
            HttpError::at(Reason::Redirect, &method, &url, format!("a redirect to an invalid location: {e}"))
        })?;
        if !matches!(next.scheme(), "http" | "https") {
            let message = format!("a redirect to a `{}:` URL, which is not followed", next.scheme());
            return Err(HttpError::at(Reason::Redirect, &method, &url, message));
        }
        // 303, and 301/302 after a POST, turn into a GET without a body, as browsers do.
        if status == StatusCode::SEE_OTHER
            || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND) && method == Method::POST)
        {
            if method != Method::HEAD {
                method = Method::GET;
            }
            body = None;
            headers.remove(reqwest::header::CONTENT_TYPE);
            headers.remove(reqwest::header::CONTENT_LENGTH);
        }
        if !same_origin(&url, &next) {
            strip_credentials(&mut headers);
        }
        url = next;
    }
    unreachable!("the loop returns")
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// A redirect to another origin does not carry the caller's credentials there.
fn strip_credentials(headers: &mut HeaderMap) {
    for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION] {
        headers.remove(name);
    }
    headers.remove("x-api-key");
    headers.remove("api-key");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_stay_with_their_origin() {
        let a: Url = "https://api.example.com/v1/x".parse().unwrap();
        assert!(same_origin(&a, &"https://api.example.com:443/y".parse().unwrap()));
        assert!(!same_origin(&a, &"http://api.example.com/v1/x".parse().unwrap()));
        assert!(!same_origin(&a, &"https://evil.example.com/".parse().unwrap()));
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer k".parse().unwrap());
        headers.insert("x-api-key", "k".parse().unwrap());
        headers.insert("accept", "*/*".parse().unwrap());
        strip_credentials(&mut headers);
        assert_eq!(headers.len(), 1);
    }
}
