//! `debug`: shows a message or a variable's value in the run's output.
//!
//! Done on the controller (no round trip). What it shows goes through the run's redactor
//! like every event, so a secret, or anything made from one, prints as `<redacted>`.

use super::{parse_args, ArgError, Controller, Effects, Module, ModuleError, Observed, Plan};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    /// What to show (templated like every argument).
    msg: Option<Value>,
    /// A variable to show, by name.
    var: Option<String>,
}

#[derive(Debug)]
pub struct DebugMessage {
    text: String,
}

/// A value as the operator reads it: strings as they are, anything else as JSON.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
    }
}

impl DebugMessage {
    pub fn from_args(args: Value, ctl: &dyn Controller) -> Result<Self, ArgError> {
        let a: Args = parse_args("debug", args)?;
        let text = match (a.msg, a.var) {
            (Some(m), None) => shown(&m),
            (None, Some(name)) => match ctl.var(&name) {
                Some(v) => format!("{name} = {}", shown(&v)),
                None => format!("{name} is not defined"),
            },
            (None, None) => "Hello world!".to_string(),
            (Some(_), Some(_)) => {
                return Err(ArgError::new("debug: give `msg` or `var`, not both"))
            }
        };
        Ok(DebugMessage { text })
    }
}

impl Module for DebugMessage {
    type Action = ();

    fn probe(&self) -> Option<String> {
        None
    }

    fn plan(&self, _: &Observed) -> Result<Plan<()>, ModuleError> {
        Ok(Plan::unchanged(self.text.clone()))
    }

    fn apply(&self, _: &()) -> String {
        String::new()
    }

    fn effects(&self) -> Effects {
        Effects::None
    }

    fn shows_result(&self) -> bool {
        true
    }

    /// `var` names a variable the task waits for, like a template's: a `register` of an
    /// earlier task in the same round is known by then.
    fn expressions(args: &Value) -> Vec<String> {
        match args.get("var") {
            Some(Value::String(name)) => vec![name.clone()],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::FakeCtl;
    use serde_json::json;

    fn text(v: Value) -> String {
        match DebugMessage::from_args(v, &FakeCtl)
            .expect("args")
            .plan(&Observed::default())
        {
            Ok(Plan::Unchanged { reason }) => reason,
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn shows_messages_and_variables() {
        assert_eq!(text(json!({"msg": "hi"})), "hi");
        assert_eq!(text(json!({"msg": {"a": 1}})), "{\n  \"a\": 1\n}");
        assert_eq!(text(json!({"var": "port"})), "port = 8080");
        assert_eq!(text(json!({"var": "nope"})), "nope is not defined");
        assert!(DebugMessage::from_args(json!({"msg": "a", "var": "b"}), &FakeCtl).is_err());
    }
}
