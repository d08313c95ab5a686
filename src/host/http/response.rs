//! Reading a whole response into the table `swarm.http.request` returns:
//! `{status, headers, body, json, url}`.

use mlua::{Lua, Table};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use tokio::time::Instant;

use super::ERROR_BODY_BYTES;
use super::error::{HttpError, Reason, shown_url};
use super::options::Options;
use crate::value::from_json;
use crate::value::lua::to_lua;

/// Reads `response` to its end (within `max_bytes` and the deadline); a status of 400 or more
/// is raised with its headers and the start of its body.
pub(super) async fn read(
    lua: &Lua,
    options: &Options,
    response: reqwest::Response,
    deadline: Instant,
) -> Result<Table, HttpError> {
    let response = check_status(options, response, deadline).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let url = shown_url(response.url());
    let body = read_body(options, response, deadline, options.max_bytes, true).await?;
    let table = || -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.set("status", status)?;
        t.set("headers", headers_table(lua, &headers)?)?;
        if is_json(&headers)
            && let Ok(text) = std::str::from_utf8(&body)
            && let Ok(value) = from_json(text)
        {
            t.set("json", to_lua(lua, &value)?)?;
        }
        t.set("body", lua.create_string(&body)?)?;
        t.set("url", url)?;
        Ok(t)
    };
    table().map_err(|e| HttpError::new(Reason::Body, format!("the response cannot be given to Lua: {e}")))
}

/// `response` when its status is under 400; otherwise the error to raise.
pub(super) async fn check_status(
    options: &Options,
    response: reqwest::Response,
    deadline: Instant,
) -> Result<reqwest::Response, HttpError> {
    let status = response.status();
    if status.as_u16() < 400 {
        return Ok(response);
    }
    let headers = response.headers().clone();
    let url = response.url().clone();
    let text = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")).trim_end().to_string();
    let mut error = HttpError::at(Reason::Status, &options.method, &url, text).with_status(status.as_u16());
    // The start of the body explains most refusals; a body that cannot be read is left out.
    let body = read_body(options, response, deadline, ERROR_BODY_BYTES as u64, false).await.ok();
    error.response = Some(Box::new((headers, body)));
    Err(error)
}

/// The body, at most `limit` bytes: past it, an error when `strict`, else the first `limit`.
async fn read_body(
    options: &Options,
    mut response: reqwest::Response,
    deadline: Instant,
    limit: u64,
    strict: bool,
) -> Result<Vec<u8>, HttpError> {
    let url = response.url().clone();
    if strict && response.content_length().is_some_and(|n| n > limit) {
        return Err(HttpError::too_large(&options.method, &url, limit));
    }
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(0).min(limit) as usize);
    loop {
        let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => return Err(HttpError::timeout(&options.method, &url, options.timeout_ms)),
            Ok(Err(e)) => return Err(HttpError::from_reqwest(&options.method, &url, &e, options.timeout_ms)),
            Ok(Ok(None)) => return Ok(body),
            Ok(Ok(Some(chunk))) => chunk,
        };
        if body.len() as u64 + chunk.len() as u64 > limit {
            if strict {
                return Err(HttpError::too_large(&options.method, &url, limit));
            }
            body.extend_from_slice(&chunk[..(limit as usize - body.len())]);
            return Ok(body);
        }
        body.extend_from_slice(&chunk);
    }
}

/// Headers as a table of lower-case names; a repeated header's values joined with ", ".
pub(super) fn headers_table(lua: &Lua, headers: &HeaderMap) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, headers.keys_len())?;
    for name in headers.keys() {
        let values: Vec<String> =
            headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
        t.set(name.as_str(), values.join(", "))?;
    }
    Ok(t)
}

/// Whether the body is declared JSON (`application/json`, `application/*+json`).
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let mime = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}
