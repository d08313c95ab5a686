//! `operator` agents: spec `{operator_ref = "<name in operators>"}`. The compiler checks the
//! reference; running operators comes with the operator worker.

use std::rc::Rc;

use super::spec::SpecReader;
use super::{BuildContext, Spawner, SpawnerFactory, UnavailableSpawner};
use crate::blueprint::AgentDef;
use crate::value::Value;

/// The operator kinds a blueprint may declare.
pub const OPERATOR_KINDS: [&str; 2] = ["lua", "console"];

/// Checks `operator` specs.
pub struct OperatorFactory;

impl SpawnerFactory for OperatorFactory {
    fn build(
        &self,
        agent: &AgentDef,
        _hint: Option<&Value>,
        _cx: &mut BuildContext,
    ) -> Result<Rc<dyn Spawner>, String> {
        let mut spec = SpecReader::new(&agent.spec, "{operator_ref = \"<operator name>\"}")?;
        // Whether the operator exists is the compiler's `unresolved_operator_ref` check.
        spec.required_string("operator_ref")?;
        spec.finish()?;
        Ok(Rc::new(UnavailableSpawner { what: "operator" }))
    }
}
