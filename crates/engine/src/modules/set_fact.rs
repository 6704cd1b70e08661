//! `set_fact`: sets variables for the host's later tasks, like Ansible's.
//!
//! Done on the controller (no round trip): its values are templated with the task's other
//! arguments, and the engine stores them in the host's scope when the task finishes
//! ([`Module::sets_vars`]), as it stores a registered result. A later task that reads one
//! of them waits for this task first (see [`names`]). It changes nothing on the host, so it
//! runs the same in check mode.

use super::{ArgError, Controller, Effects, Module, ModuleError, Observed, Plan};
use serde_json::{Map, Value};

/// Ansible's `cacheable` (keep the facts in a fact cache) is accepted and has no effect:
/// there is no fact cache, and the variables live for the play like registered results.
const CACHEABLE: &str = "cacheable";

#[derive(Debug)]
pub struct SetFact {
    vars: Map<String, Value>,
}

/// The variables a `set_fact` task with `args` (templated or not: names are not
/// templates) sets, so later tasks that read them wait for it.
pub fn names(module: &str, args: &Value) -> Vec<String> {
    match (module, args) {
        ("set_fact", Value::Object(m)) => m.keys().filter(|k| *k != CACHEABLE).cloned().collect(),
        _ => Vec::new(),
    }
}

/// A variable name a template can read: a letter or `_`, then letters, digits or `_`.
fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl SetFact {
    pub fn from_args(args: Value, _: &dyn Controller) -> Result<Self, ArgError> {
        let Value::Object(mut vars) = args else {
            return Err(
                ArgError::new("set_fact: give a mapping of variable names to values")
                    .hint("set_fact: {app_port: 8080, app_url: \"http://{{ address }}:8080\"}"),
            );
        };
        vars.remove(CACHEABLE);
        if vars.is_empty() {
            return Err(ArgError::new("set_fact: sets no variable").hint("set_fact: {name: value}"));
        }
        if let Some(bad) = vars.keys().find(|k| !is_name(k)) {
            return Err(
                ArgError::new(format!("set_fact: `{bad}` is not a variable name"))
                    .hint("names are letters, digits and `_`, not starting with a digit"),
            );
        }
        Ok(SetFact { vars })
    }
}

impl Module for SetFact {
    type Action = ();

    fn probe(&self) -> Option<String> {
        None
    }

    fn plan(&self, _: &Observed) -> Result<Plan<()>, ModuleError> {
        let names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
        Ok(Plan::unchanged(format!("set {}", names.join(", "))))
    }

    fn apply(&self, _: &()) -> String {
        String::new()
    }

    fn effects(&self) -> Effects {
        Effects::None
    }

    fn registered(&self, _: &Observed) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("ansible_facts".into(), Value::Object(self.vars.clone()));
        m
    }

    fn sets_vars(&self) -> Map<String, Value> {
        self.vars.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::FakeCtl;
    use serde_json::json;

    #[test]
    fn sets_its_variables_and_changes_nothing() {
        let m = SetFact::from_args(json!({"a": 1, "b": "x", "cacheable": true}), &FakeCtl)
            .expect("args");
        assert_eq!(
            m.sets_vars(),
            *json!({"a": 1, "b": "x"}).as_object().unwrap()
        );
        assert!(m.probe().is_none());
        assert!(matches!(
            m.plan(&Observed::default()),
            Ok(Plan::Unchanged { reason }) if reason == "set a, b"
        ));
        assert_eq!(
            names("set_fact", &json!({"a": 1, "cacheable": true})),
            ["a"]
        );
        assert!(names("debug", &json!({"msg": 1})).is_empty());
    }

    #[test]
    fn bad_input_is_an_argument_error() {
        assert!(SetFact::from_args(json!("a=1"), &FakeCtl).is_err());
        assert!(SetFact::from_args(json!({}), &FakeCtl).is_err());
        let e = SetFact::from_args(json!({"9lives": 1}), &FakeCtl).unwrap_err();
        assert!(e.message.contains("9lives"), "{e}");
        assert!(SetFact::from_args(json!({"a-b": 1}), &FakeCtl).is_err());
    }
}
