//! `command` and `shell`: run something on the host, guarded so converges stay idempotent.
//!
//! Guards are probed like any other state: `creates` (skip when the path exists),
//! `removes` (skip when it does not), `unless` (skip when that command succeeds). A command
//! with no guard runs on every converge; plans say so ("always runs") instead of hiding it.
//!
//! `command` runs its words without a shell, so `$VAR`, globs and pipes are literal;
//! `shell` hands the text to `/bin/sh -c`.

use super::{parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use bosun_model::shell::{quote, quote_all};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    cmd: Option<String>,
    argv: Option<Vec<String>>,
    chdir: Option<String>,
    creates: Option<String>,
    removes: Option<String>,
    unless: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct Command {
    /// The final shell text that runs the command (already quoted as needed).
    run: String,
    /// What the operator wrote, for plans.
    display: String,
    chdir: Option<String>,
    creates: Option<String>,
    removes: Option<String>,
    unless: Option<String>,
    env: BTreeMap<String, String>,
}

/// Running is the only action.
#[derive(Debug, PartialEq, Eq)]
pub struct Run;

impl Command {
    /// `shell: true` for the `shell` module. Accepts the short form `command: "..."`.
    pub fn from_args(args: Value, shell: bool) -> Result<Self, ArgError> {
        let name = if shell { "shell" } else { "command" };
        let args = match args {
            Value::String(s) => serde_json::json!({ "cmd": s }),
            other => other,
        };
        let a: Args = parse_args(name, args)?;
        let (run, display) = match (a.cmd, a.argv) {
            (Some(_), Some(_)) => {
                return Err(ArgError::new(format!(
                    "{name}: give `cmd` or `argv`, not both"
                )))
            }
            (None, None) => return Err(ArgError::new(format!("{name}: `cmd` is required"))),
            (None, Some(argv)) if argv.is_empty() => {
                return Err(ArgError::new(format!("{name}: `argv` is empty")))
            }
            (None, Some(argv)) => {
                if shell {
                    return Err(ArgError::new("shell: takes `cmd` text, not `argv`")
                        .hint("use `command` with argv"));
                }
                (quote_all(&argv), argv.join(" "))
            }
            (Some(cmd), None) if shell => (format!("/bin/sh -c {}", quote(&cmd)), cmd),
            (Some(cmd), None) => {
                let words =
                    split_words(&cmd).map_err(|e| ArgError::new(format!("command: {e}")))?;
                if words.is_empty() {
                    return Err(ArgError::new("command: `cmd` is empty"));
                }
                (quote_all(&words), cmd)
            }
        };
        for k in a.env.keys() {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ArgError::new(format!(
                    "{name}: `{k}` is not a valid environment variable name"
                )));
            }
        }
        Ok(Command {
            run,
            display,
            chdir: a.chdir,
            creates: a.creates,
            removes: a.removes,
            unless: a.unless,
            env: a.env,
        })
    }

    fn guarded(&self) -> bool {
        self.creates.is_some() || self.removes.is_some() || self.unless.is_some()
    }
}

impl Module for Command {
    type Action = Run;

    fn probe(&self) -> Option<String> {
        if !self.guarded() {
            return None;
        }
        let mut s = String::new();
        if let Some(c) = &self.creates {
            s.push_str(&format!("[ -e {} ] && echo creates=exists\n", quote(c)));
        }
        if let Some(r) = &self.removes {
            s.push_str(&format!("[ -e {} ] || echo removes=missing\n", quote(r)));
        }
        if let Some(u) = &self.unless {
            s.push_str(&format!(
                "if ( {u} ) >/dev/null 2>&1 </dev/null; then echo unless=ok; fi\n"
            ));
        }
        s.push_str("exit 0\n");
        Some(s)
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Run>, ModuleError> {
        let kv = observed.kv();
        if let Some(c) = &self.creates {
            if kv.get("creates") == Some(&"exists") {
                return Ok(Plan::unchanged(format!("{c} exists")));
            }
        }
        if let Some(r) = &self.removes {
            if kv.get("removes") == Some(&"missing") {
                return Ok(Plan::unchanged(format!("{r} does not exist")));
            }
        }
        if let Some(u) = &self.unless {
            if kv.get("unless") == Some(&"ok") {
                return Ok(Plan::unchanged(format!("`{u}` succeeded")));
            }
        }
        let mut c = Change::new(format!("run `{}`", self.display), Run);
        if !self.guarded() {
            c.always = true;
            c.details
                .push("always runs: no creates/removes/unless guard".into());
        }
        Ok(Plan::Change(c))
    }

    fn apply(&self, _: &Run) -> String {
        let mut s = String::new();
        if let Some(d) = &self.chdir {
            s.push_str(&format!("cd {} || exit 1\n", quote(d)));
        }
        for (k, v) in &self.env {
            s.push_str(&format!("{k}={}; export {k}\n", quote(v)));
        }
        s.push_str(&self.run);
        s.push('\n');
        s
    }

    fn effects(&self) -> Effects {
        Effects::Host
    }

    /// An `unless` guard runs an arbitrary command.
    fn slow_probe(&self) -> bool {
        self.unless.is_some()
    }

    /// The guards again, as one condition: true when the command must not run.
    fn apply_guard(&self) -> Option<String> {
        let mut conds = Vec::new();
        if let Some(c) = &self.creates {
            conds.push(format!("[ -e {} ]", quote(c)));
        }
        if let Some(r) = &self.removes {
            conds.push(format!("[ ! -e {} ]", quote(r)));
        }
        if let Some(u) = &self.unless {
            conds.push(format!("( {u} ) >/dev/null 2>&1 </dev/null"));
        }
        (!conds.is_empty()).then(|| conds.join(" || "))
    }
}

/// Splits a command line into words the way a shell would for quoting only.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    bosun_model::text::split_words(s, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unguarded_command_always_runs() {
        let m = Command::from_args(json!("echo hi"), false).unwrap();
        assert!(m.probe().is_none());
        match m.plan(&Observed::default()).unwrap() {
            Plan::Change(c) => {
                assert!(c.always);
                assert_eq!(c.summary, "run `echo hi`");
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn creates_guard_skips_when_path_exists() {
        let m =
            Command::from_args(json!({"cmd": "touch /tmp/x", "creates": "/tmp/x"}), false).unwrap();
        assert!(m.probe().unwrap().contains("[ -e /tmp/x ]"));
        assert!(matches!(
            m.plan(&Observed::stdout("creates=exists\n")).unwrap(),
            Plan::Unchanged { .. }
        ));
        match m.plan(&Observed::stdout("")).unwrap() {
            Plan::Change(c) => assert!(!c.always),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn removes_and_unless_guards() {
        let m =
            Command::from_args(json!({"cmd": "rm /tmp/x", "removes": "/tmp/x"}), false).unwrap();
        assert!(matches!(
            m.plan(&Observed::stdout("removes=missing\n")).unwrap(),
            Plan::Unchanged { .. }
        ));
        let m = Command::from_args(json!({"cmd": "x", "unless": "test -f /y"}), true).unwrap();
        assert!(matches!(
            m.plan(&Observed::stdout("unless=ok\n")).unwrap(),
            Plan::Unchanged { .. }
        ));
        assert!(matches!(
            m.plan(&Observed::stdout("")).unwrap(),
            Plan::Change(_)
        ));
    }

    #[test]
    fn command_words_are_not_expanded() {
        let m = Command::from_args(json!({"cmd": "echo '$HOME' \"a b\""}), false).unwrap();
        assert_eq!(m.apply(&Run), "echo '$HOME' 'a b'\n");
        let s = Command::from_args(
            json!({"cmd": "echo $HOME | wc -c", "chdir": "/tmp", "env": {"A": "1 2"}}),
            true,
        )
        .unwrap();
        assert_eq!(
            s.apply(&Run),
            "cd /tmp || exit 1\nA='1 2'; export A\n/bin/sh -c 'echo $HOME | wc -c'\n"
        );
    }

    #[test]
    fn split_words_handles_quotes() {
        assert_eq!(
            split_words(r#"a 'b c' "d\"e" f\ g"#).unwrap(),
            vec!["a", "b c", "d\"e", "f g"]
        );
        assert!(split_words("a 'b").is_err());
    }

    #[test]
    fn bad_args() {
        assert!(Command::from_args(json!({}), false).is_err());
        assert!(Command::from_args(json!({"cmd": "x", "argv": ["x"]}), false).is_err());
        assert!(Command::from_args(json!({"cmd": "x", "env": {"A-B": "1"}}), false).is_err());
    }
}
