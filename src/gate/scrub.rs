//! Keeping tokens out of what the engine stores and prints. A child may echo its
//! `SWARM_TOKEN` (printing its environment is enough) into stderr, output events or its result;
//! everything the engine takes from a worker, publishes as an event or writes to the journal
//! passes through [`scrub`], which replaces every token in the text with its fingerprint.
//!
//! Finding them is cheap: a token is URL-safe base64 of its JSON, which always begins with
//! `{"agent_id":`, so its text always begins with [`TOKEN_START`]. Text without that string
//! (almost all of it) is returned as it is, borrowed, after one substring search.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::CapToken;
use crate::flow::FlowError;
use crate::value::Value;

/// How every encoded token begins: URL-safe base64 of `{"agent_id":` (12 bytes, so exactly 16
/// characters that do not depend on what follows).
pub const TOKEN_START: &str = "eyJhZ2VudF9pZCI6";

/// URL-safe base64 that decodes a token with whatever follows it: the bits past its last byte
/// belong to the next characters.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// `text` with every token in it replaced by `[token <fingerprint>]`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Some(first) = text.find(TOKEN_START) else { return Cow::Borrowed(text) };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut at = Some(first);
    while let Some(start) = at {
        let run_len =
            rest[start..].bytes().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')).count();
        let run = &rest[start..start + run_len];
        let (token, len) = match token_at(run) {
            Some(found) => found,
            None => {
                // Not a token after all: keep the text and look further on.
                out.push_str(&rest[..start + TOKEN_START.len()]);
                rest = &rest[start + TOKEN_START.len()..];
                at = rest.find(TOKEN_START);
                continue;
            }
        };
        out.push_str(&rest[..start]);
        out.push_str("[token ");
        out.push_str(&token.fingerprint());
        out.push(']');
        rest = &rest[start + len..];
        at = rest.find(TOKEN_START);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The token `run` (a run of base64 characters) begins with, and its length in characters.
/// A token may be followed by more base64 characters with no separator: its JSON tells where
/// it ends.
fn token_at(run: &str) -> Option<(CapToken, usize)> {
    if let Ok(token) = CapToken::decode(run) {
        return Some((token, run.len()));
    }
    // Decode it all (a lone last character holds no whole byte) and find where the JSON closes;
    // the token is the characters that encode those bytes.
    let usable = if run.len() % 4 == 1 { run.len() - 1 } else { run.len() };
    let bytes = LENIENT.decode(&run[..usable]).ok()?;
    let mut json = serde_json::Deserializer::from_slice(&bytes).into_iter::<serde::de::IgnoredAny>();
    json.next()?.ok()?;
    let len = (json.byte_offset() * 8).div_ceil(6);
    let token = CapToken::decode(run.get(..len)?).ok()?;
    Some((token, len))
}

/// [`scrub`] on a string value, and on every string (and object key) inside a container.
/// Returns whether anything changed; unchanged containers are not copied.
pub fn scrub_value(value: &mut Value) -> bool {
    match value {
        Value::String(text) => match scrub(text) {
            Cow::Borrowed(_) => false,
            Cow::Owned(clean) => {
                *text = Arc::from(clean);
                true
            }
        },
        Value::Array(items) => {
            if !items.iter().any(may_hold_token) {
                return false;
            }
            Arc::make_mut(items).iter_mut().fold(false, |changed, item| scrub_value(item) | changed)
        }
        Value::Object(map) => {
            if !map.iter().any(|(k, v)| k.contains(TOKEN_START) || may_hold_token(v)) {
                return false;
            }
            let map = Arc::make_mut(map);
            let keys: Vec<Arc<str>> = map.keys().filter(|k| k.contains(TOKEN_START)).cloned().collect();
            for key in keys {
                if let Some(v) = map.remove(&key) {
                    map.insert(Arc::from(scrub(&key).into_owned()), v);
                }
            }
            map.values_mut().fold(false, |changed, v| scrub_value(v) | changed)
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Whether a token could be anywhere in `value` (a cheap look before copying a container).
fn may_hold_token(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains(TOKEN_START),
        Value::Array(items) => items.iter().any(may_hold_token),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains(TOKEN_START) || may_hold_token(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// [`scrub`] on an owned string, reusing it when there is nothing to replace.
pub fn scrub_string(text: &mut String) {
    if let Cow::Owned(clean) = scrub(text) {
        *text = clean;
    }
}

/// Replaces every token in a flow error's message and value with its fingerprint.
pub fn scrub_flow_error(error: &mut FlowError) {
    scrub_string(&mut error.message);
    if let Some(value) = &mut error.value {
        scrub_value(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Gate, Grant, Role, SigningKey, TokenRegistry};

    fn token() -> CapToken {
        let mut registry =
            TokenRegistry::new(SigningKey::new(b"scrub-test-secret-0123456789abcd").unwrap(), Gate::default());
        registry.mint(Grant::new(Role::Worker, "agent-with-a-long-name").for_task("r-1.2", 0), 1)
    }

    #[test]
    fn every_token_starts_with_the_marker() {
        for _ in 0..20 {
            assert!(token().encode().starts_with(TOKEN_START));
        }
    }

    #[test]
    fn tokens_become_fingerprints_wherever_they_are() {
        let t = token();
        let (text, fp) = (t.encode(), format!("[token {}]", t.fingerprint()));
        assert!(matches!(scrub("PATH=/bin\nHOME=/root"), Cow::Borrowed(_)));
        assert_eq!(scrub(&format!("SWARM_TOKEN={text}\nX=1")), format!("SWARM_TOKEN={fp}\nX=1"));
        assert_eq!(scrub(&format!("{text}{text}")), format!("{fp}{fp}"), "back to back");
        // Followed by base64 characters with no separator, the token still ends where its JSON does.
        for tail in ["abc", "Z", "_-9", "eyJhZ2VudF9pZCI6"] {
            assert_eq!(scrub(&format!("a{text}{tail}")), format!("a{fp}{tail}"), "tail {tail}");
        }
        // The marker alone, or a cut token, is not a token: left as it is.
        let cut = &text[..text.len() / 2];
        assert_eq!(scrub(&format!("{TOKEN_START} {cut}")), format!("{TOKEN_START} {cut}"));
    }

    #[test]
    fn values_are_scrubbed_in_place_and_clean_ones_untouched() {
        let t = token();
        let fp = format!("[token {}]", t.fingerprint());
        let json = format!(r#"{{"raw":"env: SWARM_TOKEN={0}","list":[1,"{0}"],"clean":{{"a":"b"}}}}"#, t.encode());
        let mut value = crate::value::from_json(&json).unwrap();
        assert!(scrub_value(&mut value));
        assert_eq!(value.get("raw").unwrap().as_str().unwrap(), format!("env: SWARM_TOKEN={fp}"));
        assert!(!value.to_json().contains(&t.encode()));
        assert!(!scrub_value(&mut value), "nothing left to scrub");
    }
}
