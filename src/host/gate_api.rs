//! `swarm.token` (encode and decode tokens, unverified) and `swarm.gate` (the role × verb table).

use mlua::{Lua, Table, Value as LuaValue};

use crate::gate::{CapToken, Gate, Role, Verb};

/// Installs `swarm.token` and `swarm.gate` (the table of `gate`).
pub(super) fn install(lua: &Lua, swarm: &Table, gate: &Gate) -> mlua::Result<()> {
    let token = lua.create_table()?;
    token.set(
        "decode",
        lua.create_function(|lua, text: String| {
            let token =
                CapToken::decode(&text).map_err(|e| mlua::Error::runtime(format!("swarm.token.decode: {e}")))?;
            token_to_lua(lua, &token)
        })?,
    )?;
    token.set(
        "encode",
        lua.create_function(|_, fields: Table| {
            let token =
                token_from_lua(&fields).map_err(|e| mlua::Error::runtime(format!("swarm.token.encode: {e}")))?;
            Ok(token.encode())
        })?,
    )?;
    swarm.set("token", token)?;

    let table = lua.create_table()?;
    let allowed_gate = *gate;
    table.set(
        "allowed",
        lua.create_function(move |_, (role, verb): (String, String)| {
            let role: Role = role.parse().map_err(|e| mlua::Error::runtime(format!("swarm.gate.allowed: {e}")))?;
            let verb: Verb = verb.parse().map_err(|e| mlua::Error::runtime(format!("swarm.gate.allowed: {e}")))?;
            Ok(allowed_gate.allows(role, verb))
        })?,
    )?;
    let array_mt = mlua::LuaSerdeExt::array_metatable(lua);
    let roles = lua.create_sequence_from(Role::ALL.iter().map(|r| r.name()))?;
    roles.set_metatable(Some(array_mt.clone()))?;
    let verbs = lua.create_sequence_from(Verb::ALL.iter().map(|v| v.name()))?;
    verbs.set_metatable(Some(array_mt.clone()))?;
    let by_role = lua.create_table()?;
    for role in Role::ALL {
        let allowed = lua.create_sequence_from(gate.verbs_of(role).iter().map(|v| v.name()))?;
        allowed.set_metatable(Some(array_mt.clone()))?;
        by_role.set(role.name(), allowed)?;
    }
    table.set("roles", roles)?;
    table.set("verbs", verbs)?;
    table.set("table", by_role)?;
    swarm.set("gate", table)
}

/// Times are integers; "never" (`u64::MAX`) is `math.huge`, which a Lua integer cannot hold.
fn time_to_lua(t: u64) -> LuaValue {
    match i64::try_from(t) {
        Ok(i) => LuaValue::Integer(i),
        Err(_) => LuaValue::Number(f64::INFINITY),
    }
}

fn time_from_lua(v: &LuaValue, field: &str) -> Result<u64, String> {
    match v {
        LuaValue::Integer(i) if *i >= 0 => Ok(*i as u64),
        LuaValue::Number(f) if *f == f64::INFINITY => Ok(u64::MAX),
        LuaValue::Number(f) if *f >= 0.0 && f.fract() == 0.0 && *f < 9.2e18 => Ok(*f as u64),
        other => Err(format!("`{field}` must be a non-negative integer or math.huge, got {}", other.type_name())),
    }
}

fn token_to_lua(lua: &Lua, token: &CapToken) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("agent_id", token.agent_id.as_str())?;
    t.set("role", token.role.name())?;
    let scopes = lua.create_sequence_from(token.scopes.iter().map(String::as_str))?;
    scopes.set_metatable(Some(mlua::LuaSerdeExt::array_metatable(lua)))?;
    t.set("scopes", scopes)?;
    t.set("issued_at", time_to_lua(token.issued_at))?;
    t.set("expire_at", time_to_lua(token.expire_at))?;
    match token.max_uses {
        Some(n) => t.set("max_uses", time_to_lua(n))?,
        None => t.set("max_uses", mlua::LuaSerdeExt::null(lua))?,
    }
    t.set("nonce", token.nonce.as_str())?;
    t.set("sig", token.sig.as_str())?;
    Ok(t)
}

fn token_from_lua(t: &Table) -> Result<CapToken, String> {
    let get = |k: &str| t.get::<LuaValue>(k).map_err(|e| e.to_string());
    let string = |k: &str| match get(k)? {
        LuaValue::String(s) => s.to_str().map(|s| s.to_string()).map_err(|e| e.to_string()),
        other => Err(format!("`{k}` must be a string, got {}", other.type_name())),
    };
    let role: Role = string("role")?.parse().map_err(|e| format!("{e}"))?;
    let scopes = match get("scopes")? {
        LuaValue::Nil => Vec::new(),
        LuaValue::Table(list) => {
            list.sequence_values::<String>().collect::<mlua::Result<_>>().map_err(|e| e.to_string())?
        }
        other => return Err(format!("`scopes` must be a list of strings, got {}", other.type_name())),
    };
    let max_uses = match get("max_uses")? {
        LuaValue::Nil => None,
        LuaValue::LightUserData(ud) if ud.0.is_null() => None,
        other => Some(time_from_lua(&other, "max_uses")?),
    };
    Ok(CapToken {
        agent_id: string("agent_id")?,
        role,
        scopes,
        issued_at: time_from_lua(&get("issued_at")?, "issued_at")?,
        expire_at: time_from_lua(&get("expire_at")?, "expire_at")?,
        max_uses,
        nonce: string("nonce")?,
        sig: string("sig")?,
    })
}
