//! `subprocess` agents: the spec, checked at compile time. Running them comes with the
//! process worker; until then an attempt fails saying so.

use std::rc::Rc;

use super::spec::SpecReader;
use super::{BuildContext, Spawner, SpawnerFactory, UnavailableSpawner};
use crate::blueprint::AgentDef;
use crate::value::Value;

/// How a child's stdout carries output events (DESIGN §5, §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamMode {
    /// stdout is one JSON document (or raw text).
    Plain,
    NdjsonLines,
    SseEvents,
    LengthPrefixed,
}

/// A checked `subprocess` spec.
#[derive(Clone, Debug, PartialEq)]
pub struct SubprocessSpec {
    pub program: String,
    pub args: Vec<String>,
    pub use_stdin: bool,
    pub stream_mode: StreamMode,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub timeout_ms: Option<u64>,
    pub keep_alive: bool,
    pub pool_size: u64,
}

impl SubprocessSpec {
    pub fn parse(spec: &Value) -> Result<SubprocessSpec, String> {
        let mut r = SpecReader::new(spec, "{program = \"...\", args = {...}}")?;
        let program = r.required_string("program")?.to_string();
        let args = r.strings("args")?;
        let use_stdin = r.boolean("use_stdin")?.unwrap_or(true);
        let stream_mode = match r.string("stream_mode")? {
            None => StreamMode::Plain,
            Some("ndjson_lines") => StreamMode::NdjsonLines,
            Some("sse_events") => StreamMode::SseEvents,
            Some("length_prefixed") => StreamMode::LengthPrefixed,
            Some(other) => {
                return Err(format!(
                    "`stream_mode` must be ndjson_lines, sse_events or length_prefixed, got '{other}'"
                ));
            }
        };
        let env = r.string_map("env")?;
        let cwd = r.string("cwd")?.map(str::to_string);
        let timeout_ms = r.positive("timeout_ms")?;
        let keep_alive = r.boolean("keep_alive")?.unwrap_or(false);
        let pool_size = r.positive("pool_size")?;
        r.finish()?;
        if pool_size.is_some() && !keep_alive {
            return Err("`pool_size` only applies with `keep_alive = true`".into());
        }
        Ok(SubprocessSpec {
            program,
            args,
            use_stdin,
            stream_mode,
            env,
            cwd,
            timeout_ms,
            keep_alive,
            pool_size: pool_size.unwrap_or(1),
        })
    }
}

/// Checks `subprocess` specs.
pub struct SubprocessFactory;

impl SpawnerFactory for SubprocessFactory {
    fn build(
        &self,
        agent: &AgentDef,
        _hint: Option<&Value>,
        _cx: &mut BuildContext,
    ) -> Result<Rc<dyn Spawner>, String> {
        SubprocessSpec::parse(&agent.spec)?;
        Ok(Rc::new(UnavailableSpawner { what: "subprocess" }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::from_json;

    #[test]
    fn parses_a_full_spec_and_defaults() {
        let spec = SubprocessSpec::parse(&from_json(r#"{"program":"cat"}"#).unwrap()).unwrap();
        assert!(spec.use_stdin && spec.stream_mode == StreamMode::Plain && spec.pool_size == 1);
        let full = r#"{"program":"/bin/sh","args":["-c","x"],"use_stdin":false,"stream_mode":"sse_events",
            "env":{"A":"1"},"cwd":"/tmp","timeout_ms":50,"keep_alive":true,"pool_size":2}"#;
        let spec = SubprocessSpec::parse(&from_json(full).unwrap()).unwrap();
        assert_eq!(spec.stream_mode, StreamMode::SseEvents);
        assert_eq!(spec.env, [("A".to_string(), "1".to_string())]);
    }

    #[test]
    fn rejects_bad_specs_with_the_field_named() {
        for (spec, needle) in [
            (r#"{}"#, "`program` is required"),
            (r#"{"program":"x","stream_mode":"lines"}"#, "stream_mode"),
            (r#"{"program":"x","args":[1]}"#, "`args`"),
            (r#"{"program":"x","timeout_ms":0}"#, "`timeout_ms`"),
            (r#"{"program":"x","pool_size":2}"#, "keep_alive"),
            (r#"{"program":"x","porgram":"y"}"#, "unknown field `porgram`"),
            (r#""cat""#, "must be an object"),
        ] {
            let err = SubprocessSpec::parse(&from_json(spec).unwrap()).unwrap_err();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }
}
