//! `assert`: conditions over the host's variables that must hold, else the task fails.
//!
//! Evaluated on the controller when the task is built (the expressions are `when:`-style,
//! over facts, registered results and variables), so an assertion costs no round trip. The
//! engine counts the names the expressions read ([`Module::expressions`]), so an assertion
//! over facts or a registered result waits for them like a `when` does.

use super::{parse_args, ArgError, Controller, Effects, Module, ModuleError, Observed, Plan};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    /// One expression or a list; all must hold.
    that: That,
    /// The failure's message (default: the expression that failed).
    #[serde(alias = "msg")]
    fail_msg: Option<String>,
    success_msg: Option<String>,
    /// Show nothing when the assertions hold.
    #[serde(default)]
    quiet: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum That {
    One(String),
    Many(Vec<String>),
}

impl That {
    fn into_vec(self) -> Vec<String> {
        match self {
            That::One(s) => vec![s],
            That::Many(v) => v,
        }
    }
}

#[derive(Debug)]
pub struct Assert {
    /// `Err` with the message when an assertion failed.
    outcome: Result<String, String>,
    quiet: bool,
}

impl Assert {
    pub fn from_args(args: Value, ctl: &dyn Controller) -> Result<Self, ArgError> {
        let a: Args = parse_args("assert", args)?;
        let that = a.that.into_vec();
        if that.is_empty() {
            return Err(ArgError::new("assert: `that` lists no condition"));
        }
        let mut outcome = Ok(a
            .success_msg
            .unwrap_or_else(|| format!("all {} assertions hold", that.len())));
        for expr in &that {
            if !ctl.test(expr)? {
                outcome = Err(a
                    .fail_msg
                    .clone()
                    .unwrap_or_else(|| format!("assertion failed: {expr}")));
                break;
            }
        }
        Ok(Assert {
            outcome,
            quiet: a.quiet,
        })
    }
}

impl Module for Assert {
    type Action = ();

    fn probe(&self) -> Option<String> {
        None
    }

    fn plan(&self, _: &Observed) -> Result<Plan<()>, ModuleError> {
        match &self.outcome {
            Ok(m) => Ok(Plan::unchanged(m.clone())),
            Err(m) => Err(ModuleError::new(m.clone())),
        }
    }

    fn apply(&self, _: &()) -> String {
        String::new()
    }

    fn effects(&self) -> Effects {
        Effects::None
    }

    fn expressions(args: &Value) -> Vec<String> {
        match args.get("that") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn shows_result(&self) -> bool {
        !self.quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::FakeCtl;
    use serde_json::json;

    fn plan(v: Value) -> Result<Plan<()>, ModuleError> {
        Assert::from_args(v, &FakeCtl)
            .expect("args")
            .plan(&Observed::default())
    }

    #[test]
    fn holds_or_fails_with_the_message() {
        assert!(matches!(
            plan(json!({"that": ["yes", "1 == 1"]})),
            Ok(Plan::Unchanged { .. })
        ));
        let e = plan(json!({"that": ["yes", "no"]})).unwrap_err();
        assert_eq!(e.0, "assertion failed: no");
        let e = plan(json!({"that": "no", "fail_msg": "not ready"})).unwrap_err();
        assert_eq!(e.0, "not ready");
        match plan(json!({"that": "yes", "success_msg": "ready"})).unwrap() {
            Plan::Unchanged { reason } => assert_eq!(reason, "ready"),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn bad_input_is_an_argument_error() {
        assert!(Assert::from_args(json!({"that": []}), &FakeCtl).is_err());
        let e = Assert::from_args(json!({"that": "undefined_thing"}), &FakeCtl).unwrap_err();
        assert!(e.message.contains("undefined_thing"), "{e}");
        assert!(Assert::from_args(json!({"that": "yes", "bogus": 1}), &FakeCtl).is_err());
    }

    #[test]
    fn its_expressions_are_named_for_the_wait() {
        assert_eq!(
            Assert::expressions(&json!({"that": ["a > 1", "b"]})),
            ["a > 1", "b"]
        );
        assert_eq!(Assert::expressions(&json!({"that": "c"})), ["c"]);
    }
}
