//! `host.<name>(...)` in a script: a call to a bridge registered with `swarm.bridge` in the
//! host VM. Bridges are host-VM functions, so they run on the host thread: the script's VM
//! sends the request back over the call's reply channel and blocks until the attempt's
//! future has run the bridge (with `call_async`, so a bridge may yield) and answered.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};

use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue, WeakLua};
use tokio::sync::mpsc::UnboundedReceiver;

use super::Reply;
use super::sandbox::CallSlot;
use crate::value::Value;
use crate::value::lua::lua_error_message;
use crate::value::lua::{from_lua, to_lua};

/// A script's call of one bridge, on its way to the host thread.
pub(super) struct BridgeRequest {
    name: Arc<str>,
    args: Vec<Value>,
    answer: SyncSender<Result<Value, String>>,
}

/// The host VM's bridges (the functions in its global `host` table).
pub struct HostBridges {
    lua: WeakLua,
    /// The names last offered, shared by the calls that offer the same ones.
    names: RefCell<Arc<[Arc<str>]>>,
}

/// How serving a bridge request ended.
pub(super) enum BridgeServe {
    /// The VM has its answer and runs on.
    Answered,
    /// Something else came from the call meanwhile (the watchdog's timeout, or the channel
    /// closing): the bridge call is abandoned and this is handled instead.
    Interrupted(Option<Reply>),
}

impl HostBridges {
    /// The bridges registered on `lua`, which is held weakly.
    pub fn new(lua: &Lua) -> HostBridges {
        HostBridges { lua: lua.weak(), names: RefCell::new(Arc::from([])) }
    }

    /// The names of the bridges registered now, sorted.
    pub(super) fn names(&self) -> Arc<[Arc<str>]> {
        let mut current = Vec::new();
        if let Some(table) = self.table() {
            let _ = table.for_each(|name: LuaValue, f: LuaValue| {
                if let (LuaValue::String(name), LuaValue::Function(_)) = (name, f)
                    && let Ok(name) = name.to_str()
                {
                    current.push(name.to_string());
                }
                Ok(())
            });
        }
        current.sort_unstable();
        let mut names = self.names.borrow_mut();
        if names.len() != current.len() || names.iter().zip(&current).any(|(a, b)| **a != **b) {
            *names = current.into_iter().map(Arc::from).collect();
        }
        names.clone()
    }

    fn table(&self) -> Option<Table> {
        self.lua.try_upgrade()?.globals().raw_get::<Option<Table>>("host").ok().flatten()
    }

    /// Runs a script's bridge request in the attempt's future and sends the VM its answer,
    /// unless the call reports something else first.
    pub(super) async fn serve(&self, request: BridgeRequest, replies: &mut UnboundedReceiver<Reply>) -> BridgeServe {
        let BridgeRequest { name, args, answer } = request;
        tokio::select! {
            biased;
            other = replies.recv() => BridgeServe::Interrupted(other),
            result = self.call(&name, args) => {
                // A VM that stopped waiting (its call tripped a limit) is not an error here.
                let _ = answer.send(result);
                BridgeServe::Answered
            }
        }
    }

    async fn call(&self, name: &str, args: Vec<Value>) -> Result<Value, String> {
        let lua = self.lua.try_upgrade().ok_or("the host VM is gone")?;
        let bridge: Option<Function> = self.table().and_then(|t| t.raw_get(name).ok());
        let bridge = bridge.ok_or_else(|| format!("no bridge named '{name}' is registered"))?;
        let args =
            args.iter().map(|a| to_lua(&lua, a)).collect::<mlua::Result<MultiValue>>().map_err(|e| e.to_string())?;
        let result: LuaValue =
            crate::interrupt::lua::call_async(&lua, &bridge, args).await.map_err(|e| lua_error_message(&e))?;
        from_lua(&lua, &result).map_err(|e| format!("its result: {e}"))
    }
}

/// The VM-side function behind `host.<name>`: answers `true, value` or `false, message`
/// (`sandbox.lua` raises the message at the script's line).
pub(super) fn raw_bridge(lua: &Lua, name: Arc<str>, slot: Rc<CallSlot>) -> mlua::Result<Function> {
    lua.create_function(move |lua, args: MultiValue| {
        let fail =
            |message: String| Ok((false, LuaValue::String(lua.create_string(format!("host.{name}: {message}"))?)));
        let reply = slot.reply().ok_or_else(|| mlua::Error::runtime("host bridges answer only while a script runs"))?;
        let mut values = Vec::with_capacity(args.len());
        for (i, arg) in args.iter().enumerate() {
            match from_lua(lua, arg) {
                Ok(value) => values.push(value),
                Err(e) => return fail(format!("argument {}: {e}", i + 1)),
            }
        }
        let (answer, answered) = sync_channel(1);
        if reply.send(Reply::Bridge(BridgeRequest { name: name.clone(), args: values, answer })).is_err() {
            return Err(slot.meter.trip_stopped());
        }
        match answered.recv() {
            Ok(Ok(value)) => Ok((true, to_lua(lua, &value)?)),
            Ok(Err(message)) => fail(message),
            // The attempt dropped the request: it was cancelled or timed out meanwhile.
            Err(_) => Err(slot.meter.trip_stopped()),
        }
    })
}
