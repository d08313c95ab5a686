//! A request's options as Lua gives them: `request{...}`, or `get(url, {...})`.

use mlua::{Lua, MultiValue, Table, Value as LuaValue};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use tokio::time::Instant;

use super::MAX_REDIRECTS;
use super::error::{HttpError, Reason};
use crate::flow::ir::MAX_TIMEOUT_MS;
use crate::value::lua::from_lua;

/// The default `timeout_ms`.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The default `max_bytes`: 64 MiB.
const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

const FIELDS: &[&str] = &["method", "url", "headers", "query", "body", "json", "timeout_ms", "max_bytes", "redirects"];

/// One request, checked.
pub(super) struct Options {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
    pub max_bytes: u64,
    pub redirects: u64,
}

impl Options {
    /// Reads `(spec)` or, for `get`/`post` (`method` given), `(url [, spec])`.
    pub fn parse(lua: &Lua, what: &str, args: MultiValue, method: Option<Method>) -> Result<Options, HttpError> {
        let bad = |message: String| HttpError::argument(what, message);
        let mut args = args.into_iter();
        let (url, spec) = match method {
            Some(_) => {
                let url = match args.next() {
                    Some(LuaValue::String(s)) => Some(s.to_string_lossy()),
                    other => {
                        let got = other.as_ref().map_or("nothing", LuaValue::type_name);
                        return Err(bad(format!("expects a URL (a string) first, got {got}")));
                    }
                };
                (url, args.next())
            }
            None => (None, args.next()),
        };
        let spec = match spec {
            None | Some(LuaValue::Nil) if url.is_some() => None,
            Some(LuaValue::Table(t)) => Some(t),
            other => {
                let got = other.as_ref().map_or("nothing", LuaValue::type_name);
                let shape = if url.is_some() { "a table of options after the URL" } else { "a table of options" };
                return Err(bad(format!("expects {shape}, got {got}")));
            }
        };
        let empty = lua.create_table().map_err(|e| bad(e.to_string()))?;
        let spec = spec.unwrap_or(empty);
        Self::read(lua, &spec, url, method).map_err(|e| match e {
            Fault::Http(e) => e,
            Fault::Argument(m) => bad(m),
        })
    }

    fn read(lua: &Lua, spec: &Table, url: Option<String>, method: Option<Method>) -> Result<Options, Fault> {
        for pair in spec.pairs::<LuaValue, LuaValue>() {
            let (key, _) = pair.map_err(Fault::lua)?;
            let known = matches!(&key, LuaValue::String(k) if FIELDS.contains(&&*k.to_string_lossy()));
            let fixed = method.is_some() && matches!(&key, LuaValue::String(k) if k == "method" || k == "url");
            if !known || fixed {
                let name = key.to_string().unwrap_or_else(|_| key.type_name().to_string());
                let fields: Vec<&str> =
                    FIELDS.iter().copied().filter(|f| method.is_none() || !matches!(*f, "method" | "url")).collect();
                return Err(Fault::Argument(format!("unknown option `{name}` (options: {})", fields.join(", "))));
            }
        }
        let method = match method {
            Some(m) => m,
            None => match spec.get::<LuaValue>("method").map_err(Fault::lua)? {
                LuaValue::Nil => Method::GET,
                LuaValue::String(s) => Method::from_bytes(s.to_string_lossy().to_ascii_uppercase().as_bytes())
                    .map_err(|_| Fault::Argument(format!("`method` is not an HTTP method: '{}'", s.display())))?,
                other => return Err(Fault::Argument(format!("`method` must be a string, got {}", other.type_name()))),
            },
        };
        let url = match url {
            Some(url) => url,
            None => match spec.get::<LuaValue>("url").map_err(Fault::lua)? {
                LuaValue::String(s) => s.to_string_lossy(),
                LuaValue::Nil => return Err(Fault::Argument("`url` is required".into())),
                other => return Err(Fault::Argument(format!("`url` must be a string, got {}", other.type_name()))),
            },
        };
        let mut url = parse_url(&method, &url)?;
        if let Some(query) = table_field(spec, "query")? {
            let mut pairs = Vec::new();
            for pair in query.pairs::<LuaValue, LuaValue>() {
                let (k, v) = pair.map_err(Fault::lua)?;
                pairs.push((scalar("query", &k)?, scalar("query", &v)?));
            }
            pairs.sort();
            url.query_pairs_mut().extend_pairs(pairs);
        }
        let mut headers = HeaderMap::new();
        if let Some(table) = table_field(spec, "headers")? {
            for pair in table.pairs::<LuaValue, LuaValue>() {
                let (k, v) = pair.map_err(Fault::lua)?;
                let name = scalar("headers", &k)?;
                let value = scalar("headers", &v)?;
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| Fault::Argument(format!("`headers`: '{name}' is not a header name")))?;
                // The value is not repeated: it may be a credential.
                let value = HeaderValue::from_str(&value)
                    .map_err(|_| Fault::Argument(format!("`headers`: the value of '{name}' is not a header value")))?;
                headers.append(header, value);
            }
        }
        let body = match (
            spec.get::<LuaValue>("body").map_err(Fault::lua)?,
            spec.get::<LuaValue>("json").map_err(Fault::lua)?,
        ) {
            (LuaValue::Nil, LuaValue::Nil) => None,
            (LuaValue::String(s), LuaValue::Nil) => Some(s.as_bytes().to_vec()),
            (other, LuaValue::Nil) => {
                return Err(Fault::Argument(format!(
                    "`body` must be a string, got {} (use `json` for a table)",
                    other.type_name()
                )));
            }
            (LuaValue::Nil, value) => {
                let value = from_lua(lua, &value).map_err(|e| Fault::Argument(format!("`json`: {e}")))?;
                if !headers.contains_key(CONTENT_TYPE) {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                Some(value.to_json().into_bytes())
            }
            _ => return Err(Fault::Argument("give `body` or `json`, not both".into())),
        };
        let number = |field: &str, min: u64, max: u64, default: u64| -> Result<u64, Fault> {
            let value = spec.get::<LuaValue>(field).map_err(Fault::lua)?;
            let n = match &value {
                LuaValue::Nil => return Ok(default),
                LuaValue::Integer(i) => u64::try_from(*i).ok(),
                LuaValue::Number(f) if f.fract() == 0.0 && (0.0..9.0e15).contains(f) => Some(*f as u64),
                _ => None,
            };
            match n {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => {
                    let got = match &value {
                        LuaValue::Integer(i) => i.to_string(),
                        LuaValue::Number(f) => f.to_string(),
                        other => format!("a {}", other.type_name()),
                    };
                    Err(Fault::Argument(format!("`{field}` must be a whole number from {min} to {max}, got {got}")))
                }
            }
        };
        Ok(Options {
            method,
            url,
            headers,
            body,
            timeout_ms: number("timeout_ms", 1, MAX_TIMEOUT_MS, DEFAULT_TIMEOUT_MS)?,
            max_bytes: number("max_bytes", 1, u32::MAX as u64, DEFAULT_MAX_BYTES)?,
            redirects: number("redirects", 0, MAX_REDIRECTS, MAX_REDIRECTS)?,
        })
    }

    /// When the whole exchange (connecting, redirects, reading the body or stream) must be done.
    pub fn deadline(&self) -> Instant {
        Instant::now() + std::time::Duration::from_millis(self.timeout_ms)
    }
}

/// Why options were refused: the caller's mistake, or a URL no request can be made to.
enum Fault {
    Argument(String),
    Http(HttpError),
}

impl Fault {
    fn lua(e: mlua::Error) -> Fault {
        Fault::Argument(crate::value::lua::lua_error_message(&e))
    }
}

fn table_field(spec: &Table, field: &str) -> Result<Option<Table>, Fault> {
    match spec.get::<LuaValue>(field).map_err(Fault::lua)? {
        LuaValue::Nil => Ok(None),
        LuaValue::Table(t) => Ok(Some(t)),
        other => Err(Fault::Argument(format!("`{field}` must be a table, got {}", other.type_name()))),
    }
}

/// A header or query name or value: a string or a number.
fn scalar(field: &str, value: &LuaValue) -> Result<String, Fault> {
    match value {
        LuaValue::String(s) => Ok(s.to_string_lossy()),
        LuaValue::Integer(n) => Ok(n.to_string()),
        LuaValue::Number(n) => Ok(n.to_string()),
        LuaValue::Boolean(b) => Ok(b.to_string()),
        other => Err(Fault::Argument(format!("`{field}` holds a {}; names and values are strings", other.type_name()))),
    }
}

fn parse_url(method: &Method, text: &str) -> Result<Url, Fault> {
    let url: Url = text.parse().map_err(|e| {
        // An unparsable URL is shown without what could be a query's secret.
        let shown = text.split(['?', '#']).next().unwrap_or_default();
        Fault::Http(HttpError::new(Reason::Request, format!("{method} {shown}: not a URL ({e})")))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        let message = format!("`{}:` URLs are not supported (http and https are)", url.scheme());
        return Err(Fault::Http(HttpError::at(Reason::Request, method, &url, message)));
    }
    Ok(url)
}
