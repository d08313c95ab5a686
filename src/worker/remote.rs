//! Remote agents: each attempt is offered on the agent's queue and run by a worker outside the
//! process, which claims it over the API (`POST /v1/work/claim`), fetches what it needs with the
//! attempt's token and posts its result (docs/api.md, "Remote workers"). The board, the claims
//! and the leases are the engine's (`crate::engine::work`); this kind only reads its spec.

use std::rc::Rc;

use futures::future::LocalBoxFuture;

use super::spec::SpecReader;
use super::{BuildContext, Job, Spawner, SpawnerFactory, WorkerResult};
use crate::schema::AgentDef;
use crate::value::Value;

/// How long a claimed attempt's lease lasts after each call of its worker, unless the spec says.
pub const DEFAULT_LEASE_MS: u64 = 30_000;

/// Builds `remote` spawners from `{queue = "<name>", lease_ms = 30000}`.
pub struct RemoteFactory;

impl SpawnerFactory for RemoteFactory {
    fn build(
        &self,
        agent: &AgentDef,
        _hint: Option<&Value>,
        _cx: &mut BuildContext,
    ) -> Result<Rc<dyn Spawner>, String> {
        Ok(Rc::new(RemoteSpawner::parse(&agent.spec)?))
    }
}

/// Offers each attempt on one queue.
pub struct RemoteSpawner {
    queue: String,
    lease_ms: u64,
}

impl RemoteSpawner {
    fn parse(spec: &Value) -> Result<RemoteSpawner, String> {
        let mut spec = SpecReader::new(spec, "{queue = \"<name>\", lease_ms = 30000}")?;
        let queue = spec.required_string("queue")?;
        if queue.trim().is_empty() {
            return Err("`queue` must name a queue (a non-empty string)".into());
        }
        let lease_ms = spec.positive("lease_ms")?.unwrap_or(DEFAULT_LEASE_MS);
        spec.finish()?;
        Ok(RemoteSpawner { queue: queue.to_string(), lease_ms })
    }
}

impl Spawner for RemoteSpawner {
    fn spawn(&self, job: Job) -> LocalBoxFuture<'static, WorkerResult> {
        job.host.offer(&job, &self.queue, self.lease_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::from_json;

    fn parse(spec: &str) -> Result<RemoteSpawner, String> {
        RemoteSpawner::parse(&from_json(spec).unwrap())
    }

    #[test]
    fn a_spec_names_its_queue_and_may_set_its_lease() {
        let plain = parse(r#"{"queue":"gpu"}"#).unwrap();
        assert_eq!((plain.queue.as_str(), plain.lease_ms), ("gpu", DEFAULT_LEASE_MS));
        assert_eq!(parse(r#"{"queue":"gpu","lease_ms":500}"#).unwrap().lease_ms, 500);
        for (spec, needle) in [
            (r#"{}"#, "`queue` is required"),
            (r#"{"queue":" "}"#, "non-empty"),
            (r#"{"queue":"q","lease_ms":0}"#, "`lease_ms`"),
            (r#"{"queue":"q","lease":1}"#, "unknown field `lease`"),
        ] {
            let err = parse(spec).err().unwrap_or_else(|| panic!("{spec} was taken"));
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }
}
