//! Numbers scripts hand the host: checked against the range the host keeps them in, never
//! truncated or wrapped (`max_spawn_depth = 4294967296` is an error, not 0).

use mlua::{Lua, Value as LuaValue};

/// `value` as a whole number from `min` to `max`; an error names the script line that called,
/// `field` of `what` and the range. A float counts when it is whole (`1e3`), as Lua prints such
/// numbers.
pub fn whole(lua: &Lua, what: &str, field: &str, value: &LuaValue, min: u64, max: u64) -> mlua::Result<u64> {
    let n = match value {
        LuaValue::Integer(i) => u64::try_from(*i).ok(),
        // Below 2^53 every whole float is exact.
        LuaValue::Number(f) if f.fract() == 0.0 && (0.0..9.0e15).contains(f) => Some(*f as u64),
        _ => None,
    };
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => {
            let got = shown(value);
            Err(mlua::Error::runtime(format!(
                "{}{what}: `{field}` must be a whole number from {min} to {max}, got {got}",
                site(lua)
            )))
        }
    }
}

/// `value` as an amount of `unit` (milliseconds, seconds) from 0 to `max`, fractions allowed;
/// an error names the script line that called.
pub fn amount(lua: &Lua, what: &str, field: &str, value: &LuaValue, max: u64, unit: &str) -> mlua::Result<f64> {
    let n = match value {
        LuaValue::Integer(i) => Some(*i as f64),
        LuaValue::Number(f) => Some(*f),
        _ => None,
    };
    match n {
        Some(n) if (0.0..=max as f64).contains(&n) => Ok(n),
        _ => {
            let got = shown(value);
            Err(mlua::Error::runtime(format!(
                "{}{what}: `{field}` must be {unit} from 0 to {max}, got {got}",
                site(lua)
            )))
        }
    }
}

/// The script line that called into the host, as `file:line: `, or nothing.
fn site(lua: &Lua) -> String {
    super::module::caller_site(lua).map(|s| format!("{s}: ")).unwrap_or_default()
}

/// A number as Lua's `%.14g` would show it (`1e+300`, not three hundred digits).
fn shown(value: &LuaValue) -> String {
    match value {
        LuaValue::Integer(i) => i.to_string(),
        LuaValue::Number(f) if f.is_finite() && (f.abs() >= 1e15 || (*f != 0.0 && f.abs() < 1e-4)) => format!("{f:e}"),
        LuaValue::Number(f) => f.to_string(),
        other => other.type_name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_are_range_checked_never_wrapped() {
        let lua = Lua::new();
        assert_eq!(whole(&lua, "x", "n", &LuaValue::Integer(4), 1, 10).unwrap(), 4);
        assert_eq!(whole(&lua, "x", "n", &LuaValue::Number(1e3), 1, 1000).unwrap(), 1000);
        let err = whole(&lua, "swarm.engine", "max_spawn_depth", &LuaValue::Integer(1 << 32), 1, u32::MAX.into());
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("`max_spawn_depth` must be a whole number from 1 to 4294967295, got 4294967296")
        );
        assert!(whole(&lua, "x", "n", &LuaValue::Number(1.5), 0, 10).is_err());
        assert!(whole(&lua, "x", "n", &LuaValue::Integer(-1), 0, 10).is_err());
        assert!(amount(&lua, "swarm.sleep", "ms", &LuaValue::Number(f64::NAN), 10, "milliseconds").is_err());
        assert!(amount(&lua, "swarm.sleep", "ms", &LuaValue::Number(1e300), 10, "milliseconds").is_err());
        assert_eq!(amount(&lua, "swarm.sleep", "ms", &LuaValue::Number(2.5), 10, "milliseconds").unwrap(), 2.5);
    }
}
