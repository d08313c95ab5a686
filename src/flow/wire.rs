//! How the IR's numbers and lists are read off the wire: a number must be whole and in range
//! (a Lua script hands over floats for integers), and a list may arrive as an empty object (a
//! Lua `{}` cannot say which it is), and a path position holds a path expression or a bare path
//! string. The errors name the node and field.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ir::PathExpr;
use super::path::Path;

/// The longest time a step, a subprocess or a script may be given: a year, in ms.
pub const MAX_TIMEOUT_MS: u64 = 365 * 24 * 3600 * 1000;

/// A number as the wire gives it, before its range is checked.
#[derive(Clone, Copy)]
enum WireNumber {
    Int(i128),
    Float(f64),
}

impl<'de> Deserialize<'de> for WireNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<WireNumber, D::Error> {
        struct NumberVisitor;

        impl serde::de::Visitor<'_> for NumberVisitor {
            type Value = WireNumber;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number")
            }

            fn visit_i64<E>(self, n: i64) -> Result<WireNumber, E> {
                Ok(WireNumber::Int(n.into()))
            }

            fn visit_u64<E>(self, n: u64) -> Result<WireNumber, E> {
                Ok(WireNumber::Int(n.into()))
            }

            fn visit_f64<E>(self, n: f64) -> Result<WireNumber, E> {
                Ok(WireNumber::Float(n))
            }
        }

        d.deserialize_any(NumberVisitor)
    }
}

/// `n` as a whole number from `min` to `max`; `what` names the node and field in the error.
fn whole<E: serde::de::Error>(n: WireNumber, min: u64, max: u64, what: &str) -> Result<u64, E> {
    let whole = match n {
        WireNumber::Int(i) => u64::try_from(i).ok(),
        // Below 2^53 every whole float is exact.
        WireNumber::Float(f) if f.fract() == 0.0 && (0.0..9.0e15).contains(&f) => Some(f as u64),
        WireNumber::Float(_) => None,
    };
    match whole {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => {
            let got = match n {
                WireNumber::Int(i) => i.to_string(),
                WireNumber::Float(f) => f.to_string(),
            };
            Err(E::custom(format!("{what} must be a whole number from {min} to {max}, got {got}")))
        }
    }
}

pub(super) fn loop_max<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = whole(WireNumber::deserialize(d)?, 0, u32::MAX.into(), "loop `max`")?;
    Ok(u32::try_from(n).expect("checked against u32::MAX"))
}

pub(super) fn retry_max_attempts<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = whole(WireNumber::deserialize(d)?, 1, u32::MAX.into(), "step `retry.max_attempts`")?;
    Ok(u32::try_from(n).expect("checked against u32::MAX"))
}

pub(super) fn retry_backoff_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole(WireNumber::deserialize(d)?, 0, MAX_TIMEOUT_MS, "step `retry.backoff_ms`")
}

pub(super) fn retry_backoff_factor<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match WireNumber::deserialize(d)? {
        WireNumber::Int(i) if (0..=1_000_000).contains(&i) => Ok(i as f64),
        WireNumber::Float(f) if (0.0..=1.0e6).contains(&f) => Ok(f),
        _ => Err(serde::de::Error::custom("step `retry.backoff_factor` must be a number from 0 to 1000000")),
    }
}

pub(super) fn step_timeout_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<WireNumber>::deserialize(d)?.map(|n| whole(n, 1, MAX_TIMEOUT_MS, "step `timeout_ms`")).transpose()
}

pub(super) fn wait_timeout_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<WireNumber>::deserialize(d)?.map(|n| whole(n, 1, MAX_TIMEOUT_MS, "wait `timeout_ms`")).transpose()
}

/// A wait's `signal`: a string is the name itself, an object is an expression giving it.
pub(super) fn signal_name<'de, D: Deserializer<'de>>(d: D) -> Result<super::ir::SignalName, D::Error> {
    use super::ir::{Expr, SignalName};
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(name) if !name.is_empty() => Ok(SignalName::Name(name)),
        serde_json::Value::String(_) => Err(serde::de::Error::custom("wait `signal` must not be empty")),
        object @ serde_json::Value::Object(_) => Expr::deserialize(object)
            .map(SignalName::Expr)
            .map_err(|e| serde::de::Error::custom(format!("wait `signal`: {e}"))),
        other => Err(serde::de::Error::custom(format!(
            "wait `signal` must be a name (a string) or an expression, got {other}"
        ))),
    }
}

pub(super) fn fanout_max_concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = Option::<WireNumber>::deserialize(d)?;
    let n = n.map(|n| whole(n, 0, u32::MAX.into(), "fanout `max_concurrency`")).transpose()?;
    Ok(n.map(|n| u32::try_from(n).expect("checked against u32::MAX")))
}

/// Reads a list, also accepting an empty object: a Lua table `{}` has no way to say which it
/// is, and in a list position an empty list is the only sensible reading.
pub(crate) fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    struct ListVisitor<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ListVisitor<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(items)
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
            match map.next_key::<serde::de::IgnoredAny>()? {
                None => Ok(Vec::new()),
                Some(_) => Err(serde::de::Error::invalid_type(serde::de::Unexpected::Map, &self)),
            }
        }
    }

    d.deserialize_any(ListVisitor(std::marker::PhantomData))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathExprWire {
    op: PathOp,
    at: Path,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PathOp {
    Path,
}

impl Serialize for PathExpr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PathExprWire { op: PathOp::Path, at: self.0.clone() }.serialize(s)
    }
}

/// Reads the wire form, and also a bare path string, which is what a hand-written Lua table
/// naturally holds; either way it prints back as the wire form.
impl<'de> Deserialize<'de> for PathExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PathExpr, D::Error> {
        struct PathExprVisitor;

        impl<'de> serde::de::Visitor<'de> for PathExprVisitor {
            type Value = PathExpr;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"a path expression {"op":"path","at":"$..."}"#)
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<PathExpr, E> {
                text.parse().map(PathExpr).map_err(E::custom)
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<PathExpr, A::Error> {
                let wire =
                    PathExprWire::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map_err(|e| {
                        serde::de::Error::custom(format!(
                            r#"expected a path expression {{"op":"path","at":"$..."}}: {e}"#
                        ))
                    })?;
                Ok(PathExpr(wire.at))
            }
        }

        d.deserialize_any(PathExprVisitor)
    }
}
