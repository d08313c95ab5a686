//! `swarm.semaphore(n)`: a fair counting semaphore for coroutines on the host VM.
//!
//! Lua alone cannot park a coroutine until another one wakes it: layers and agents run inside
//! mlua's async calls, where a plain `coroutine.yield` is taken as "poll me again at once", so a
//! waiter written in Lua can only spin or sleep-poll. This is the one native waiting primitive
//! `std.layers.concurrency` needs. Waiters are served first come, first served
//! (`tokio::sync::Semaphore` is fair), and a waiter whose attempt is cancelled leaves the queue.

use std::cell::RefCell;
use std::sync::Arc;

use mlua::{Function, Lua, MultiValue, Table, UserData, UserDataMethods};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Installs `swarm.semaphore(n)`.
pub(super) fn install(lua: &Lua, swarm: &Table) -> mlua::Result<()> {
    swarm.set(
        "semaphore",
        lua.create_function(|_, limit: mlua::Value| {
            let limit = match limit {
                mlua::Value::Integer(n) if n >= 1 && (n as u64) <= Semaphore::MAX_PERMITS as u64 => n as usize,
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "swarm.semaphore: expected a positive integer limit, got {}",
                        describe(&other)
                    )));
                }
            };
            Ok(LuaSemaphore { permits: Arc::new(Semaphore::new(limit)), limit })
        })?,
    )
}

fn describe(value: &mlua::Value) -> String {
    match value {
        mlua::Value::Integer(n) => n.to_string(),
        mlua::Value::Number(n) => n.to_string(),
        other => other.type_name().to_string(),
    }
}

/// A semaphore as Lua sees it: `acquire()`, `with(fn, ...)`, `available()`, `limit()`.
struct LuaSemaphore {
    permits: Arc<Semaphore>,
    limit: usize,
}

/// One held permit; `release()` (or collecting it) gives it back.
struct LuaPermit(RefCell<Option<OwnedSemaphorePermit>>);

impl UserData for LuaSemaphore {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("acquire", |_, this, ()| {
            let permits = this.permits.clone();
            async move {
                let permit = permits.acquire_owned().await.map_err(mlua::Error::external)?;
                Ok(LuaPermit(RefCell::new(Some(permit))))
            }
        });
        // The permit lives in this future, so it goes back when `f` returns, raises, or the
        // calling attempt is cancelled and the future dropped.
        methods.add_async_method("with", |lua, this, (f, args): (Function, MultiValue)| {
            let permits = this.permits.clone();
            async move {
                let _permit = permits.acquire_owned().await.map_err(mlua::Error::external)?;
                crate::interrupt::lua::call_async::<MultiValue>(&lua, &f, args).await
            }
        });
        methods.add_method("available", |_, this, ()| Ok(this.permits.available_permits()));
        methods.add_method("limit", |_, this, ()| Ok(this.limit));
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("swarm.Semaphore({}/{} free)", this.permits.available_permits(), this.limit))
        });
    }
}

impl UserData for LuaPermit {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("release", |_, this, ()| {
            this.0.borrow_mut().take();
            Ok(())
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(if this.0.borrow().is_some() { "swarm.Permit(held)" } else { "swarm.Permit(released)" })
        });
    }
}
