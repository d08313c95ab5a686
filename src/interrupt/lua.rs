//! The host VM's side of [`crate::interrupt`]: the instruction-count hook that lets the
//! runtime preempt or stop Lua, and [`call_async`], which runs a function as a coroutine the
//! hook may preempt.

use mlua::{FromLuaMulti, Function, HookTriggers, IntoLuaMulti, Lua, VmState};

use super::{self as interrupt, Decision, Stopped};

/// The hook runs every this many VM instructions: often enough to stop a tight loop within a
/// fraction of a millisecond, rarely enough to cost little (see `benches/engine.rs`).
const HOOK_EVERY: u32 = 4096;

/// Installs the hook on `lua` and every coroutine created in it from now on.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    lua.set_global_hook(HookTriggers::new().every_nth_instruction(HOOK_EVERY), |lua, _debug| {
        match interrupt::decide(|| lua.current_thread().to_pointer()) {
            Decision::Continue => Ok(VmState::Continue),
            Decision::Yield => Ok(VmState::Yield),
            Decision::Stop(reason) => Err(mlua::Error::external(Stopped(reason))),
        }
    })
}

/// Calls `func` as a coroutine, like [`Function::call_async`], but one the hook may preempt:
/// a loop that never yields still gives the runtime its turn every [`interrupt::SLICE`], so
/// timeouts, cancels and signals reach it.
pub async fn call_async<R: FromLuaMulti>(lua: &Lua, func: &Function, args: impl IntoLuaMulti) -> mlua::Result<R> {
    // mlua's coroutines for async calls report, as the current thread, the thread that made
    // them (the main one, mostly), which is what `current_thread` says here. The hook compares
    // against it, so it yields only these coroutines, never one the script made itself
    // (whose `coroutine.resume` would take the forced yield for its own).
    let identity = lua.current_thread().to_pointer();
    interrupt::preemptible(identity, func.call_async::<R>(args)).await
}

/// Why a Lua call was stopped by the hook, if it was.
pub fn stopped(err: &mlua::Error) -> Option<interrupt::StopReason> {
    match err {
        mlua::Error::ExternalError(e) => e.downcast_ref::<Stopped>().map(|s| s.0),
        mlua::Error::CallbackError { cause, .. } => stopped(cause),
        mlua::Error::WithContext { cause, .. } => stopped(cause),
        _ => None,
    }
}
