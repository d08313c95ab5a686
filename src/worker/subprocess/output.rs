//! Output events (docs/agents.md) read from a child's stream: each item is checked, progress,
//! partial and artifact events go to the engine as `worker_output`, and the `final` becomes the
//! attempt's result.

use std::rc::Rc;

use super::stream::{Position, preview};
use crate::value::{Number, Value};
use crate::worker::{TaskHost, Verdict, WorkerError, WorkerResult};

/// The result a `final` event carries: an inline content's value, or the `file_ref` content
/// object itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Final {
    /// The attempt's result.
    pub value: Value,
    /// `false` fails the attempt, with `value` as the failure's value.
    pub ok: bool,
}

impl Final {
    /// The attempt's result as the final event says it: `ok = false` fails it, with the content
    /// as the error's value.
    pub fn into_result(self) -> WorkerResult {
        if self.ok {
            Ok(Verdict::Pass(self.value))
        } else {
            let message = format!("the final event has ok = false: {}", self.value.preview(200));
            Err(WorkerError::with_value(message, self.value))
        }
    }
}

/// Parses one item as an output event: `Some(final)` for a `final`, `None` for the others.
pub fn parse_event(bytes: &[u8]) -> Result<(Value, Option<Final>), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not valid UTF-8 ({e})"))?;
    let event: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let Some(fields) = event.as_object() else {
        return Err(format!("an output event is a JSON object, not {}", event.type_name()));
    };
    let kind = match fields.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(other) => return Err(format!("`type` must be a string, got {}", other.type_name())),
        None => return Err("`type` is missing".into()),
    };
    let string = |key: &str, required: bool| match event.get(key) {
        Some(Value::String(_)) => Ok(()),
        None | Some(Value::Null) if !required => Ok(()),
        None => Err(format!("`{key}` is missing")),
        Some(other) => Err(format!("`{key}` must be a string, got {}", other.type_name())),
    };
    let found = match &*kind {
        "progress" => {
            string("stage", true)?;
            string("note", false)?;
            None
        }
        "partial" => {
            content(event.get("chunk"), "chunk")?;
            None
        }
        "artifact" => {
            string("name", true)?;
            content(event.get("content"), "content")?;
            None
        }
        "final" => {
            let value = content(event.get("content"), "content")?;
            let ok = match event.get("ok") {
                Some(Value::Bool(ok)) => *ok,
                Some(other) => return Err(format!("`ok` must be true or false, got {}", other.type_name())),
                None => return Err("`ok` is missing".into()),
            };
            Some(Final { value, ok })
        }
        other => {
            return Err(format!("unknown output event type {other:?} (expected progress, partial, artifact or final)"));
        }
    };
    Ok((event, found))
}

/// Checks a content reference; returns the value a result holds for it.
fn content(content: Option<&Value>, field: &str) -> Result<Value, String> {
    let shape = "{kind = \"inline\", value = ...} or {kind = \"file_ref\", path = ...}";
    let Some(fields) = content.and_then(Value::as_object) else {
        return Err(format!("`{field}` must be a content object, {shape}"));
    };
    match fields.get("kind").and_then(Value::as_str) {
        Some("inline") => fields.get("value").cloned().ok_or_else(|| format!("`{field}.value` is missing")),
        Some("file_ref") => {
            match fields.get("path") {
                Some(Value::String(p)) if !p.is_empty() => {}
                _ => return Err(format!("`{field}.path` must be a non-empty string")),
            }
            if !matches!(fields.get("mime"), None | Some(Value::Null | Value::String(_))) {
                return Err(format!("`{field}.mime` must be a string or null"));
            }
            match fields.get("size_hint") {
                None | Some(Value::Null) => {}
                Some(Value::Number(Number::Int(n))) if *n >= 0 => {}
                Some(Value::Number(Number::Float(f))) if *f >= 0.0 && f.fract() == 0.0 => {}
                Some(_) => return Err(format!("`{field}.size_hint` must be a whole number of bytes or null")),
            }
            Ok(content.cloned().expect("checked above"))
        }
        _ => Err(format!("`{field}.kind` must be \"inline\" or \"file_ref\" ({shape})")),
    }
}

/// Takes a child's output events in order: forwards progress, partial and artifact events to
/// the engine and keeps the `final`.
pub struct Collector {
    host: Rc<dyn TaskHost>,
    /// The last `final` of a one-shot attempt; the first of a keep-alive answer.
    last_final: Option<Final>,
    /// A keep-alive answer ends at its first `final`; one-shot streams run to the end.
    answer: bool,
    /// The request id every event of a keep-alive answer must carry back.
    request: Option<u64>,
    /// Items that arrived after the `final` that ended an answer.
    after_final: bool,
}

impl Collector {
    /// For a one-shot attempt: every event counts, and the last `final` wins.
    pub fn one_shot(host: Rc<dyn TaskHost>) -> Collector {
        Collector { host, last_final: None, answer: false, request: None, after_final: false }
    }

    /// For a keep-alive answer to request `id`: every event must carry `"id": id`, and the
    /// first `final` ends it; anything after it is noted, not used.
    pub fn answer(host: Rc<dyn TaskHost>, id: u64) -> Collector {
        Collector { host, last_final: None, answer: true, request: Some(id), after_final: false }
    }

    /// Takes one item; an error names its position and quotes its start.
    pub fn accept(&mut self, bytes: &[u8], at: Position) -> Result<(), String> {
        if self.answer && self.last_final.is_some() {
            self.after_final = true;
            return Ok(());
        }
        let parsed = parse_event(bytes);
        if let (Ok((event, _)), Some(id)) = (&parsed, self.request) {
            // An event for another request is never taken as this one's: the child answered
            // out of turn (a late or extra answer to an earlier request), so it is out of step.
            match event.get("id") {
                Some(Value::Number(Number::Int(n))) if u64::try_from(*n) == Ok(id) => {}
                Some(other) => {
                    return Err(format!(
                        "{at}: the keep-alive child answered out of turn: request id {}, expected {id}: {}",
                        other.to_json(),
                        preview(bytes)
                    ));
                }
                None => {
                    return Err(format!(
                        "{at}: `id` is missing: every event of a keep-alive answer carries its request's id ({id}): {}",
                        preview(bytes)
                    ));
                }
            }
        }
        match parsed {
            Ok((_, Some(found))) => self.last_final = Some(found),
            Ok((event, None)) => self.host.emit(event),
            Err(problem) => return Err(format!("{at}: {problem}: {}", preview(bytes))),
        }
        Ok(())
    }

    /// Whether a keep-alive answer has ended.
    pub fn answered(&self) -> bool {
        self.last_final.is_some()
    }

    /// Whether anything arrived after the `final` that ended an answer.
    pub fn more_than_answered(&self) -> bool {
        self.after_final
    }

    /// The last `final` event, taking it so the next answer starts clean.
    pub fn take_final(&mut self) -> Option<Final> {
        self.last_final.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::from_json;

    fn parsed(text: &str) -> Result<Option<Final>, String> {
        parse_event(text.as_bytes()).map(|(_, f)| f)
    }

    #[test]
    fn the_four_events_and_both_contents_parse() {
        assert_eq!(parsed(r#"{"type":"progress","stage":"load","note":null}"#), Ok(None));
        assert_eq!(parsed(r#"{"type":"progress","stage":"load","extra":1}"#), Ok(None));
        assert_eq!(parsed(r#"{"type":"partial","chunk":{"kind":"inline","value":"ab"}}"#), Ok(None));
        assert_eq!(parsed(r#"{"type":"artifact","name":"a.txt","content":{"kind":"file_ref","path":"/x"}}"#), Ok(None));
        let inline = parsed(r#"{"type":"final","content":{"kind":"inline","value":{"n":1}},"ok":true}"#);
        assert_eq!(inline, Ok(Some(Final { value: from_json(r#"{"n":1}"#).unwrap(), ok: true })));
        let file = r#"{"kind":"file_ref","path":"/tmp/out.md","mime":"text/markdown","size_hint":12}"#;
        let got = parsed(&format!(r#"{{"type":"final","content":{file},"ok":false}}"#));
        assert_eq!(got, Ok(Some(Final { value: from_json(file).unwrap(), ok: false })));
    }

    #[test]
    fn malformed_events_say_what_is_wrong() {
        for (text, problem) in [
            ("hello", "not JSON (expected value at line 1 column 1)"),
            ("[1]", "an output event is a JSON object, not array"),
            (r#"{"stage":"x"}"#, "`type` is missing"),
            (r#"{"type":"log"}"#, "unknown output event type \"log\" (expected progress, partial, artifact or final)"),
            (r#"{"type":"progress"}"#, "`stage` is missing"),
            (r#"{"type":"progress","stage":1}"#, "`stage` must be a string, got number"),
            (r#"{"type":"partial","chunk":"ab"}"#, "`chunk` must be a content object"),
            (r#"{"type":"partial","chunk":{"kind":"blob"}}"#, "`chunk.kind` must be \"inline\" or \"file_ref\""),
            (r#"{"type":"artifact","content":{"kind":"inline","value":1}}"#, "`name` is missing"),
            (r#"{"type":"final","content":{"kind":"inline"},"ok":true}"#, "`content.value` is missing"),
            (r#"{"type":"final","content":{"kind":"inline","value":1}}"#, "`ok` is missing"),
            (r#"{"type":"final","content":{"kind":"inline","value":1},"ok":"yes"}"#, "`ok` must be true or false"),
            (r#"{"type":"final","content":{"kind":"file_ref"},"ok":true}"#, "`content.path` must be a non-empty"),
            (
                r#"{"type":"final","content":{"kind":"file_ref","path":"p","size_hint":-1},"ok":true}"#,
                "`content.size_hint` must be a whole number",
            ),
        ] {
            let err = parsed(text).unwrap_err();
            assert!(err.starts_with(problem), "{text}: {err}");
        }
        let err = parse_event(b"{\"type\":\"final\xff\"}").unwrap_err();
        assert!(err.starts_with("not valid UTF-8 (invalid utf-8 sequence of 1 bytes from index 14)"), "{err}");
    }
}
