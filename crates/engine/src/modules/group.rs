//! `group`: a local group exists with a given gid, or does not exist.
//!
//! The probe asks `getent group`, which answers through NSS exactly as `id` and `ls` will, and
//! whose exit code tells "no such group" (2) apart from "could not look" (anything else); the
//! latter fails the probe instead of planning a create that would collide.
//!
//! Changes go through `groupadd`/`groupmod`/`groupdel`, which edit `/etc/group` and
//! `/etc/gshadow` under their lock. `system` only matters when the group is created (it picks
//! the gid from the system range); an existing group is never re-created to honour it.

use super::support::probe_failed;
use super::{parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;

pub use super::support::Presence as State;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    name: String,
    #[serde(default)]
    state: State,
    gid: Option<u32>,
    #[serde(default)]
    system: bool,
}

#[derive(Debug)]
pub struct Group {
    name: String,
    state: State,
    gid: Option<u32>,
    system: bool,
}

/// What apply does.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    /// The group exists with another gid.
    SetGid(u32),
    Remove,
}

impl Group {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("group", args)?;
        check_account_name("group", &a.name)?;
        if a.state == State::Absent && (a.gid.is_some() || a.system) {
            return Err(ArgError::new(
                "group: `gid` and `system` only apply to state: present",
            ));
        }
        Ok(Group {
            name: a.name,
            state: a.state,
            gid: a.gid,
            system: a.system,
        })
    }
}

/// What the probe saw.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    gid: u32,
}

/// Reads the probe output: `None` when the group does not exist.
fn parse_seen(obs: &Observed) -> Result<Option<Seen>, ModuleError> {
    probe_failed(obs)?;
    let kv = obs.kv();
    match kv.get("exists").copied() {
        Some("no") => Ok(None),
        Some("yes") => {
            let gid = kv.get("gid").and_then(|g| g.parse().ok()).ok_or_else(|| {
                ModuleError::new(format!("probe printed no numeric gid: {:?}", obs.stdout))
            })?;
            Ok(Some(Seen { gid }))
        }
        _ => Err(ModuleError::new(format!(
            "unexpected probe output: {:?}",
            obs.stdout
        ))),
    }
}

impl Module for Group {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        // getent exits 2 for "not found"; 1 and 3 mean the database could not be asked.
        Some(format!(
            "n={}\n\
             if ent=$(getent group \"$n\"); then :; else\n\
             rc=$?\n\
             if [ \"$rc\" -eq 2 ]; then echo exists=no; exit 0; fi\n\
             echo \"getent group $n failed with exit code $rc\" >&2; exit 3\n\
             fi\n\
             echo exists=yes\n\
             gid=${{ent#*:*:}}; echo \"gid=${{gid%%:*}}\"\n",
            quote(&self.name)
        ))
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        let seen = parse_seen(observed)?;
        let n = &self.name;
        Ok(match (self.state, seen) {
            (State::Absent, None) => Plan::unchanged(format!("group {n} does not exist")),
            (State::Absent, Some(s)) => Plan::Change(
                Change::new(format!("remove group {n}"), Action::Remove)
                    .with_details(vec![format!("gid {}", s.gid)]),
            ),
            (State::Present, None) => {
                let mut details = Vec::new();
                if let Some(g) = self.gid {
                    details.push(format!("gid {g}"));
                }
                if self.system {
                    details.push("system group".into());
                }
                Plan::Change(
                    Change::new(format!("create group {n}"), Action::Create).with_details(details),
                )
            }
            (State::Present, Some(s)) => match self.gid {
                Some(want) if want != s.gid => Plan::Change(
                    Change::new(format!("change gid of group {n}"), Action::SetGid(want))
                        .with_details(vec![format!("gid {} → {want}", s.gid)]),
                ),
                _ => Plan::unchanged(format!("group {n} exists (gid {})", s.gid)),
            },
        })
    }

    fn apply(&self, action: &Action) -> String {
        let n = quote(&self.name);
        match action {
            Action::Create => {
                let mut s = String::from("groupadd");
                if self.system {
                    s.push_str(" -r");
                }
                if let Some(g) = self.gid {
                    s.push_str(&format!(" -g {g}"));
                }
                format!("{s} {n}\n")
            }
            Action::SetGid(g) => format!("groupmod -g {g} {n}\n"),
            Action::Remove => format!("groupdel {n}\n"),
        }
    }

    fn effects(&self) -> Effects {
        Effects::Host
    }
}

/// Rejects names that `useradd`/`groupadd` refuse or that `getent` would read as something
/// else: an all-digit name is looked up as a numeric id, a leading `-` reads as an option,
/// `:` and `,` are field separators in `/etc/passwd` and `/etc/group`.
pub(crate) fn check_account_name(module: &str, name: &str) -> Result<(), ArgError> {
    let bad = |why: &str| Err(ArgError::new(format!("{module}: name `{name}` {why}")));
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > 32 {
        return bad("is longer than 32 characters");
    }
    if name.starts_with('-') {
        return bad("starts with `-`");
    }
    if name == "." || name == ".." {
        return bad("is not a valid name");
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return bad("is all digits, which tools read as a numeric id");
    }
    let body = name.strip_suffix('$').unwrap_or(name);
    if !body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return bad("may only contain letters, digits, `_`, `-`, `.` (and a final `$`)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::run;
    use serde_json::json;

    fn module(v: Value) -> Group {
        Group::from_args(v).expect("valid args")
    }

    #[test]
    fn missing_group_is_created() {
        let m = module(json!({"name": "saleor", "gid": 1500, "system": true}));
        match m.plan(&Observed::stdout("exists=no\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "create group saleor");
                assert_eq!(c.details, vec!["gid 1500", "system group"]);
                assert_eq!(c.action, Action::Create);
                assert_eq!(m.apply(&c.action), "groupadd -r -g 1500 saleor\n");
            }
            p => panic!("expected a change, got {p:?}"),
        }
    }

    #[test]
    fn existing_group_without_gid_is_unchanged() {
        let m = module(json!({"name": "saleor"}));
        match m.plan(&Observed::stdout("exists=yes\ngid=1001\n")).unwrap() {
            Plan::Unchanged { reason } => assert_eq!(reason, "group saleor exists (gid 1001)"),
            p => panic!("{p:?}"),
        }
        // `system` is a creation-time choice: an existing group is left as it is.
        let m = module(json!({"name": "saleor", "system": true, "gid": 1001}));
        assert!(matches!(
            m.plan(&Observed::stdout("exists=yes\ngid=1001\n")).unwrap(),
            Plan::Unchanged { .. }
        ));
    }

    #[test]
    fn wrong_gid_is_changed() {
        let m = module(json!({"name": "saleor", "gid": 1500}));
        match m.plan(&Observed::stdout("exists=yes\ngid=1001\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "change gid of group saleor");
                assert_eq!(c.details, vec!["gid 1001 → 1500"]);
                assert_eq!(m.apply(&c.action), "groupmod -g 1500 saleor\n");
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn absent_removes_existing_group() {
        let m = module(json!({"name": "old", "state": "absent"}));
        assert!(matches!(
            m.plan(&Observed::stdout("exists=no\n")).unwrap(),
            Plan::Unchanged { .. }
        ));
        match m.plan(&Observed::stdout("exists=yes\ngid=1002\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "remove group old");
                assert_eq!(m.apply(&c.action), "groupdel old\n");
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn failed_or_odd_probe_is_an_error() {
        let m = module(json!({"name": "saleor"}));
        let failed = Observed {
            rc: 3,
            stdout: String::new(),
            stderr: "getent group saleor failed with exit code 1\n".into(),
        };
        assert_eq!(
            m.plan(&failed).unwrap_err().0,
            "getent group saleor failed with exit code 1"
        );
        assert!(m.plan(&Observed::stdout("")).is_err());
        assert!(m.plan(&Observed::stdout("exists=yes\ngid=x\n")).is_err());
    }

    #[test]
    fn probe_runs_against_this_host() {
        let root = module(json!({"name": "root"}));
        let obs = run(&root.probe().unwrap());
        assert_eq!(obs.rc, 0, "{}", obs.stderr);
        assert_eq!(parse_seen(&obs).unwrap(), Some(Seen { gid: 0 }));
        let none = module(json!({"name": "bosun-no-such-group"}));
        let obs = run(&none.probe().unwrap());
        assert_eq!(parse_seen(&obs).unwrap(), None);
    }

    #[test]
    fn scripts_are_valid_sh() {
        let m = module(json!({"name": "machine$", "gid": 5, "system": true}));
        for script in [
            m.probe().unwrap(),
            m.apply(&Action::Create),
            m.apply(&Action::SetGid(6)),
            m.apply(&Action::Remove),
        ] {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn bad_args_are_rejected() {
        for name in ["", "-x", "1000", "a:b", "a b", "a,b", ".."] {
            assert!(
                Group::from_args(json!({"name": name})).is_err(),
                "{name:?} accepted"
            );
        }
        assert!(Group::from_args(json!({"name": "machine$"})).is_ok());
        assert!(Group::from_args(json!({"name": "x", "state": "absent", "gid": 5})).is_err());
        let e = Group::from_args(json!({"name": "x", "gdi": 5})).unwrap_err();
        assert!(e.message.contains("gdi"), "{}", e.message);
    }
}
