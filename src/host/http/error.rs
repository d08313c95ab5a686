//! What `swarm.http` raises: `{kind = "http", reason, message, status?, headers?, body?, url?}`
//! (`kind = "invalid_argument"` for a call the script got wrong). A message names the method
//! and the URL without its query, fragment or userinfo, and never a header: those are where
//! credentials travel.

use mlua::{Lua, Table};
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};

/// What went wrong, for scripts that handle some failures and not others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reason {
    /// The server answered with a status of 400 or more.
    Status,
    /// No connection could be made (refused, unreachable, DNS).
    Connect,
    /// The TLS handshake failed (an untrusted or invalid certificate, most often).
    Tls,
    /// `timeout_ms` passed.
    Timeout,
    /// The body (or a stream) passed `max_bytes`.
    TooLarge,
    /// More redirects than `redirects` allows, or a redirect that cannot be followed.
    Redirect,
    /// The connection failed while the body was read.
    Body,
    /// The request could not be made (a bad URL, an unsupported scheme).
    Request,
    /// The script called `swarm.http` wrongly (kind `invalid_argument`).
    Argument,
}

impl Reason {
    /// The `reason` field's value.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Status => "status",
            Reason::Connect => "connect",
            Reason::Tls => "tls",
            Reason::Timeout => "timeout",
            Reason::TooLarge => "too_large",
            Reason::Redirect => "redirect",
            Reason::Body => "body",
            Reason::Request => "request",
            Reason::Argument => "argument",
        }
    }
}

/// A failed request, ready to raise.
#[derive(Debug)]
pub(super) struct HttpError {
    pub reason: Reason,
    pub message: String,
    pub status: Option<u16>,
    pub url: Option<String>,
    /// The refusing response's headers and the start of its body (boxed: most errors have none).
    pub response: Option<Box<(HeaderMap, Option<Vec<u8>>)>>,
}

impl HttpError {
    pub fn new(reason: Reason, message: String) -> HttpError {
        HttpError { reason, message, status: None, url: None, response: None }
    }

    /// A failure of `method url`, the message prefixed with them.
    pub fn at(reason: Reason, method: &Method, url: &Url, detail: impl std::fmt::Display) -> HttpError {
        let shown = shown_url(url);
        let mut e = HttpError::new(reason, format!("{method} {shown}: {detail}"));
        e.url = Some(shown);
        e
    }

    /// A call the script got wrong, named by `what`.
    pub fn argument(what: &str, message: String) -> HttpError {
        HttpError::new(Reason::Argument, format!("{what}: {message}"))
    }

    pub fn timeout(method: &Method, url: &Url, timeout_ms: u64) -> HttpError {
        HttpError::at(Reason::Timeout, method, url, format!("timed out after {timeout_ms} ms (`timeout_ms`)"))
    }

    pub fn too_large(method: &Method, url: &Url, max_bytes: u64) -> HttpError {
        HttpError::at(Reason::TooLarge, method, url, format!("the body is larger than `max_bytes` ({max_bytes} bytes)"))
    }

    pub fn with_status(mut self, status: u16) -> HttpError {
        self.status = Some(status);
        self
    }

    /// Classifies a client error. reqwest's own text is not used: it repeats the whole URL.
    pub fn from_reqwest(method: &Method, url: &Url, e: &reqwest::Error, timeout_ms: u64) -> HttpError {
        if e.is_timeout() {
            return HttpError::timeout(method, url, timeout_ms);
        }
        let mut root: &dyn std::error::Error = e;
        let mut tls = false;
        while let Some(source) = root.source() {
            tls |= source.is::<rustls::Error>();
            root = source;
        }
        let cause = root.to_string();
        tls |= cause.contains("certificate") || cause.contains("InvalidCertificate");
        let (reason, detail) = if tls {
            (Reason::Tls, format!("TLS: {cause}"))
        } else if e.is_connect() {
            (Reason::Connect, format!("cannot connect: {cause}"))
        } else if e.is_body() || e.is_decode() {
            (Reason::Body, format!("the body could not be read: {cause}"))
        } else if e.is_redirect() {
            (Reason::Redirect, cause)
        } else {
            (Reason::Request, cause)
        };
        let mut error = HttpError::at(reason, method, url, detail);
        error.status = e.status().map(|s| s.as_u16());
        error
    }

    /// The table Lua code catches, with the error metatable (so `tostring(e)` reads well).
    pub fn to_lua(&self, lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        let kind = if self.reason == Reason::Argument { "invalid_argument" } else { "http" };
        t.set("kind", kind)?;
        if self.reason != Reason::Argument {
            t.set("reason", self.reason.name())?;
        }
        t.set("message", self.message.as_str())?;
        // The script line that made the call, which `tostring(e)` leads with.
        if let Some((file, line)) = crate::host::caller_site(lua).as_deref().and_then(|s| s.rsplit_once(':'))
            && let Ok(line) = line.parse::<u32>()
        {
            t.set("file", file)?;
            t.set("line", line)?;
        }
        t.set("status", self.status)?;
        t.set("url", self.url.as_deref())?;
        if let Some(response) = &self.response {
            let (headers, body) = &**response;
            t.set("headers", super::response::headers_table(lua, headers)?)?;
            if let Some(body) = body {
                t.set("body", lua.create_string(body)?)?;
            }
        }
        t.set_metatable(Some(crate::worker::lua_fn::error_metatable(lua)?))?;
        Ok(t)
    }
}

/// A URL as messages show it: scheme, host, port and path.
pub fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_hide_what_may_be_secret() {
        let url: Url = "https://user:pw@api.example.com/v1/chat?key=sk-123#frag".parse().unwrap();
        let e = HttpError::at(Reason::Status, &Method::POST, &url, "401 Unauthorized");
        assert_eq!(e.message, "POST https://api.example.com/v1/chat: 401 Unauthorized");
        assert!(!e.url.unwrap().contains("sk-123"));
    }
}
