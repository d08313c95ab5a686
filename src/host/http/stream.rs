//! `swarm.http.stream{...}`: a response read as it arrives. `resp:lines()` and `resp:events()`
//! (Server-Sent Events) iterate, `resp:read()` gives the next chunk, `resp:close()` ends it.
//!
//! The response is moved into each read while the read waits, so an attempt cancelled in the
//! middle of a read drops the connection with the read; `timeout_ms` and `max_bytes` bound the
//! whole stream, not each chunk.

use std::cell::RefCell;
use std::rc::Rc;

use mlua::{AnyUserData, Function, Lua, Table, UserData, UserDataFields, UserDataMethods, Value as LuaValue};
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};
use tokio::time::Instant;

use super::error::{HttpError, shown_url};
use super::options::Options;

/// Registry keys of the raising iterator steps.
const NEXT_LINE: &str = "swarm.http.next_line";
const NEXT_EVENT: &str = "swarm.http.next_event";
const NEXT_CHUNK: &str = "swarm.http.next_chunk";

/// The iterators, over the raising steps.
const ITERATORS_LUA: &str = r#"
local next_line, next_event = ...
local function lines(self)
  return function() return next_line(self) end
end
local function events(self)
  return function() return next_event(self) end
end
return lines, events
"#;

/// An open streamed response.
pub(super) struct Stream {
    status: u16,
    headers: HeaderMap,
    url: String,
    reader: Rc<RefCell<Reader>>,
}

/// The reading side: the response (absent while a read holds it, or once it ended) and what
/// has arrived but not been handed out.
struct Reader {
    response: Option<reqwest::Response>,
    method: Method,
    url: Url,
    timeout_ms: u64,
    max_bytes: u64,
    deadline: Instant,
    read: u64,
    pending: Vec<u8>,
    ended: bool,
    /// The SSE `id` last seen: it stays with the events after it, as the spec says.
    last_event_id: Option<String>,
}

/// Sends the request and returns the stream once its head arrived (a status of 400 or more
/// is raised, as `request` does).
pub(super) async fn open(lua: &Lua, options: Options) -> Result<Stream, HttpError> {
    let deadline = options.deadline();
    let response = super::send(lua, &options, deadline).await?;
    let response = super::response::check_status(&options, response, deadline).await?;
    let stream = Stream {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        url: shown_url(response.url()),
        reader: Rc::new(RefCell::new(Reader {
            url: response.url().clone(),
            response: Some(response),
            method: options.method,
            timeout_ms: options.timeout_ms,
            max_bytes: options.max_bytes,
            deadline,
            read: 0,
            pending: Vec::new(),
            ended: false,
            last_event_id: None,
        })),
    };
    Ok(stream)
}

/// Makes the raising iterator steps the stream's methods use.
pub(super) fn install(lua: &Lua, raising: &Function) -> mlua::Result<()> {
    let step = |f: fn(Rc<RefCell<Reader>>) -> futures::future::LocalBoxFuture<'static, Step>| {
        lua.create_async_function(move |lua, ud: AnyUserData| async move {
            let reader = ud.borrow::<Stream>()?.reader.clone();
            match f(reader).await {
                Ok(Item::End) => Ok((true, LuaValue::Nil)),
                Ok(Item::Bytes(bytes)) => Ok((true, LuaValue::String(lua.create_string(bytes)?))),
                Ok(Item::Event(event)) => Ok((true, LuaValue::Table(event.to_lua(&lua)?))),
                Err(e) => Ok((false, LuaValue::Table(e.to_lua(&lua)?))),
            }
        })
    };
    let next_line = raising.call::<Function>(step(|r| Box::pin(next_line(r)))?)?;
    let next_event = raising.call::<Function>(step(|r| Box::pin(next_event(r)))?)?;
    let next_chunk = raising.call::<Function>(step(|r| Box::pin(next_chunk(r)))?)?;
    let (lines, events): (Function, Function) =
        lua.load(ITERATORS_LUA).set_name("@[swarm]/http_stream.lua").call((&next_line, &next_event))?;
    lua.set_named_registry_value(NEXT_LINE, lines)?;
    lua.set_named_registry_value(NEXT_EVENT, events)?;
    lua.set_named_registry_value(NEXT_CHUNK, next_chunk)?;
    Ok(())
}

impl UserData for Stream {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("status", |_, this| Ok(this.status));
        fields.add_field_method_get("url", |_, this| Ok(this.url.clone()));
        fields.add_field_method_get("headers", |lua, this| super::response::headers_table(lua, &this.headers));
        fields.add_field_function_get("lines", |lua, _| lua.named_registry_value::<Function>(NEXT_LINE));
        fields.add_field_function_get("events", |lua, _| lua.named_registry_value::<Function>(NEXT_EVENT));
        fields.add_field_function_get("read", |lua, _| lua.named_registry_value::<Function>(NEXT_CHUNK));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("close", |_, this, ()| {
            let mut reader = this.reader.borrow_mut();
            reader.response = None;
            reader.ended = true;
            reader.pending.clear();
            Ok(())
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("swarm.http.Stream({} {})", this.status, this.url))
        });
    }
}

/// What one step of an iterator gives.
enum Item {
    End,
    Bytes(Vec<u8>),
    Event(Event),
}

type Step = Result<Item, HttpError>;

/// One Server-Sent Event.
#[derive(Debug, Default, PartialEq)]
struct Event {
    event: Option<String>,
    data: String,
    id: Option<String>,
    retry: Option<u64>,
}

impl Event {
    fn to_lua(&self, lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.set("event", self.event.as_deref().unwrap_or("message"))?;
        t.set("data", self.data.as_str())?;
        t.set("id", self.id.as_deref())?;
        t.set("retry", self.retry)?;
        Ok(t)
    }
}

/// Reads the next chunk into `pending`; false at the end of the body.
async fn fill(reader: &Rc<RefCell<Reader>>) -> Result<bool, HttpError> {
    let (mut response, deadline) = {
        let mut r = reader.borrow_mut();
        if r.ended {
            return Ok(false);
        }
        let Some(response) = r.response.take() else {
            let message = "the stream is being read by another coroutine".to_string();
            return Err(HttpError::at(super::Reason::Request, &r.method, &r.url, message));
        };
        (response, r.deadline)
    };
    let chunk = tokio::time::timeout_at(deadline, response.chunk()).await;
    let mut r = reader.borrow_mut();
    let fail = |r: &mut Reader, e: HttpError| {
        r.ended = true;
        r.pending.clear();
        Err(e)
    };
    match chunk {
        Err(_) => {
            let e = HttpError::timeout(&r.method, &r.url, r.timeout_ms);
            fail(&mut r, e)
        }
        Ok(Err(e)) => {
            let e = HttpError::from_reqwest(&r.method, &r.url, &e, r.timeout_ms);
            fail(&mut r, e)
        }
        Ok(Ok(None)) => {
            r.ended = true;
            Ok(false)
        }
        Ok(Ok(Some(_))) if r.ended => Ok(false),
        Ok(Ok(Some(bytes))) => {
            r.read += bytes.len() as u64;
            if r.read > r.max_bytes {
                let e = HttpError::too_large(&r.method, &r.url, r.max_bytes);
                return fail(&mut r, e);
            }
            r.pending.extend_from_slice(&bytes);
            r.response = Some(response);
            Ok(true)
        }
    }
}

async fn next_chunk(reader: Rc<RefCell<Reader>>) -> Step {
    loop {
        {
            let mut r = reader.borrow_mut();
            if !r.pending.is_empty() {
                return Ok(Item::Bytes(std::mem::take(&mut r.pending)));
            }
        }
        if !fill(&reader).await? {
            return Ok(Item::End);
        }
    }
}

/// The next line without its `\n` or `\r\n`; the last line may lack one.
async fn read_line(reader: &Rc<RefCell<Reader>>) -> Result<Option<Vec<u8>>, HttpError> {
    let mut searched = 0;
    loop {
        {
            let mut r = reader.borrow_mut();
            if let Some(at) = r.pending[searched..].iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = r.pending.drain(..=searched + at).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            searched = r.pending.len();
        }
        if !fill(reader).await? {
            let mut r = reader.borrow_mut();
            if r.pending.is_empty() {
                return Ok(None);
            }
            return Ok(Some(std::mem::take(&mut r.pending)));
        }
    }
}

async fn next_line(reader: Rc<RefCell<Reader>>) -> Step {
    Ok(match read_line(&reader).await? {
        Some(line) => Item::Bytes(line),
        None => Item::End,
    })
}

/// The next event with data, by the Server-Sent Events rules: fields up to a blank line,
/// comments (`:`) skipped, an event without data not dispatched, an unfinished one at the end
/// of the stream dropped.
async fn next_event(reader: Rc<RefCell<Reader>>) -> Step {
    let mut event = Event::default();
    let mut data: Option<String> = None;
    loop {
        let Some(line) = read_line(&reader).await? else { return Ok(Item::End) };
        let line = String::from_utf8_lossy(&line);
        if line.is_empty() {
            if let Some(data) = data.take() {
                event.data = data;
                event.id = reader.borrow().last_event_id.clone();
                return Ok(Item::Event(event));
            }
            event = Event::default();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            "event" => event.event = Some(value.to_string()),
            "id" if !value.contains('\0') => reader.borrow_mut().last_event_id = Some(value.to_string()),
            "retry" => event.retry = value.parse().ok(),
            _ => {}
        }
    }
}
