//! An agent's `profile.system_prompt`: a Jinja template (minijinja) rendered with the input's
//! fields. A name the input does not have is an error that names it; a template that does not
//! parse is caught when the blueprint compiles.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};

use crate::value::Value;

/// A checked system-prompt template.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptTemplate {
    source: String,
    /// The top-level names the template reads, sorted.
    names: Vec<String>,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

impl PromptTemplate {
    /// Parses `source`; `Err` says where it does not parse.
    pub fn compile(source: &str) -> Result<PromptTemplate, String> {
        let env = environment();
        let template = env.template_from_str(source).map_err(|e| format!("system_prompt does not parse: {e}"))?;
        let mut names: Vec<String> = template.undeclared_variables(false).into_iter().collect();
        names.sort();
        Ok(PromptTemplate { source: source.to_string(), names })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders with the input's fields as variables (and the whole input as `input`, unless
    /// the input has a field of that name).
    pub fn render(&self, input: &Value) -> Result<String, String> {
        let mut context: BTreeMap<String, Value> = BTreeMap::new();
        if let Value::Object(fields) = input {
            for (k, v) in fields.iter() {
                context.insert(k.to_string(), v.clone());
            }
        }
        context.entry("input".to_string()).or_insert_with(|| input.clone());
        if let Some(missing) = self.names.iter().find(|n| !context.contains_key(n.as_str())) {
            let mut known: Vec<&str> = context.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(format!(
                "system_prompt uses undefined variable `{missing}` (the input has: {})",
                known.join(", ")
            ));
        }
        let env = environment();
        let template = env.template_from_str(&self.source).map_err(|e| format!("system_prompt does not parse: {e}"))?;
        template
            .render(minijinja::Value::from(minijinja::value::Serde(&context)))
            .map_err(|e| format!("system_prompt: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::from_json;

    #[test]
    fn renders_the_input_fields() {
        let t = PromptTemplate::compile("Review {{ title }} ({{ tags | join(', ') }}) for {{ input.who }}.").unwrap();
        let input = from_json(r#"{"title":"the plan","tags":["a","b"],"who":"Ada"}"#).unwrap();
        assert_eq!(t.render(&input).unwrap(), "Review the plan (a, b) for Ada.");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let t = PromptTemplate::compile("Hello {{ name }}, about {{ topic }}").unwrap();
        let err = t.render(&from_json(r#"{"name":"x"}"#).unwrap()).unwrap_err();
        assert_eq!(err, "system_prompt uses undefined variable `topic` (the input has: input, name)");
        let err =
            PromptTemplate::compile("{{ a.b.c }}").unwrap().render(&from_json(r#"{"a":{}}"#).unwrap()).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
    }

    #[test]
    fn a_template_that_does_not_parse_is_refused_up_front() {
        let err = PromptTemplate::compile("Hello {{ name ").unwrap_err();
        assert!(err.starts_with("system_prompt does not parse"), "{err}");
    }

    #[test]
    fn a_non_object_input_is_available_as_input() {
        let t = PromptTemplate::compile("Say: {{ input }}").unwrap();
        assert_eq!(t.render(&Value::from("hi")).unwrap(), "Say: hi");
    }
}
