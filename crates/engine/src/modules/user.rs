//! `user`: a local account exists with the declared attributes, or does not exist.
//!
//! Only the attributes a task names are managed; the rest (a uid picked by `useradd`, the
//! default shell) are left as the host has them. The probe reads the account with `getent
//! passwd` and its groups with `id -Gn`, so plans compare against what logins actually see.
//!
//! Passwords are never managed here: new accounts are created locked (no password, as
//! `useradd` leaves them) and existing passwords are not read or touched. Use SSH keys for
//! logins, and a secret store plus a dedicated task if a password is truly needed.
//!
//! Some attributes are creation-time choices, as with `useradd` itself:
//! - `system` picks the uid from the system range and is ignored for an existing account;
//! - `create_home` makes the home directory (copied from `/etc/skel`) only when the account
//!   is created. Changing `home` of an existing account rewrites `/etc/passwd` and does not
//!   move or create any directory — creating a missing home later would turn Debian's
//!   `/nonexistent` convention for service accounts into a real directory.

use super::group::{check_account_name, State};
use super::support::probe_failed;
use super::{parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    name: String,
    #[serde(default)]
    state: State,
    uid: Option<u32>,
    /// Primary group: a name, or a numeric gid.
    group: Option<String>,
    /// Supplementary groups: a list, or one comma-separated string.
    #[serde(default, deserialize_with = "de_group_list")]
    groups: Option<Vec<String>>,
    /// Add to `groups` without leaving the others.
    #[serde(default)]
    append: bool,
    home: Option<String>,
    #[serde(default = "yes")]
    create_home: bool,
    shell: Option<String>,
    #[serde(default)]
    system: bool,
    comment: Option<String>,
    /// With state absent: also delete the home directory and mail spool (`userdel -r`).
    #[serde(default)]
    remove: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug)]
pub struct User {
    name: String,
    state: State,
    uid: Option<u32>,
    group: Option<String>,
    groups: Option<Vec<String>>,
    append: bool,
    home: Option<String>,
    create_home: bool,
    shell: Option<String>,
    system: bool,
    comment: Option<String>,
    remove: bool,
}

/// What apply does.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Modify(Usermod),
    Remove,
}

/// The `usermod` options for the attributes that differ; `None` leaves one alone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Usermod {
    pub uid: Option<u32>,
    pub group: Option<String>,
    /// Supplementary groups to set (`-G`), or to add with `append` (`-a -G`).
    pub groups: Option<Vec<String>>,
    pub append: bool,
    pub home: Option<String>,
    pub shell: Option<String>,
    pub comment: Option<String>,
}

/// What the probe saw of an existing account.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    uid: u32,
    gid: u32,
    /// Name of the primary group; `None` when the gid has no group entry.
    group: Option<String>,
    comment: String,
    home: String,
    shell: String,
    /// Every group `id -Gn` lists, primary included.
    groups: Vec<String>,
}

impl User {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("user", args)?;
        check_account_name("user", &a.name)?;
        if a.state == State::Absent {
            let declared = a.uid.is_some()
                || a.group.is_some()
                || a.groups.is_some()
                || a.home.is_some()
                || a.shell.is_some()
                || a.comment.is_some()
                || a.system;
            if declared {
                return Err(ArgError::new(
                    "user: state absent takes only `name` and `remove`",
                ));
            }
        } else if a.remove {
            return Err(ArgError::new(
                "user: `remove` only applies to state: absent",
            ));
        }
        if let Some(g) = &a.group {
            if !g.bytes().all(|b| b.is_ascii_digit()) {
                check_account_name("user: group", g)?;
            }
        }
        for g in a.groups.iter().flatten() {
            if g.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ArgError::new(format!(
                    "user: `groups` takes group names, not the gid {g}"
                )));
            }
            check_account_name("user: groups", g)?;
        }
        if a.append && a.groups.is_none() {
            return Err(ArgError::new("user: `append` needs `groups`"));
        }
        for (what, v) in [("home", &a.home), ("shell", &a.shell)] {
            if let Some(p) = v {
                if !p.starts_with('/') || p.contains([':', '\n']) {
                    return Err(ArgError::new(format!(
                        "user: {what} `{p}` must be an absolute path without `:`"
                    )));
                }
            }
        }
        if let Some(c) = &a.comment {
            if c.contains([':', '\n']) {
                return Err(ArgError::new(
                    "user: `comment` may not contain `:` or a newline",
                ));
            }
        }
        Ok(User {
            name: a.name,
            state: a.state,
            uid: a.uid,
            group: a.group,
            groups: a.groups,
            append: a.append,
            home: a.home,
            create_home: a.create_home,
            shell: a.shell,
            system: a.system,
            comment: a.comment,
            remove: a.remove,
        })
    }

    /// Attribute differences as plan lines, and the `usermod` that fixes them.
    fn modifications(&self, seen: &Seen) -> Result<(Vec<String>, Usermod), ModuleError> {
        let mut lines = Vec::new();
        let mut m = Usermod::default();
        if let Some(u) = self.uid {
            if u != seen.uid {
                lines.push(format!("uid {} → {u}", seen.uid));
                m.uid = Some(u);
            }
        }
        let primary_now = seen.group.clone().unwrap_or_else(|| seen.gid.to_string());
        if let Some(g) = &self.group {
            let same = match g.parse::<u32>() {
                Ok(gid) => gid == seen.gid,
                Err(_) => seen.group.as_deref() == Some(g.as_str()),
            };
            if !same {
                lines.push(format!("group {primary_now} → {g}"));
                m.group = Some(g.clone());
            }
        }
        if let Some(want) = &self.groups {
            if seen.groups.is_empty() {
                return Err(ModuleError::new(format!(
                    "could not list the groups of user {}",
                    self.name
                )));
            }
            // The primary group shows up in `id -Gn` too; it is not a supplementary group.
            let primary_after = self.group.clone().unwrap_or(primary_now.clone());
            let skip = |g: &&String| **g != primary_after && **g != primary_now;
            let now: BTreeSet<&String> = seen.groups.iter().filter(skip).collect();
            let wanted: BTreeSet<&String> = want.iter().filter(skip).collect();
            if self.append {
                let missing: Vec<String> = wanted.difference(&now).map(|g| g.to_string()).collect();
                if !missing.is_empty() {
                    lines.push(format!("add to groups {}", missing.join(",")));
                    m.groups = Some(missing);
                    m.append = true;
                }
            } else if now != wanted {
                let show = |s: &BTreeSet<&String>| {
                    if s.is_empty() {
                        "(none)".to_string()
                    } else {
                        s.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(",")
                    }
                };
                lines.push(format!("groups {} → {}", show(&now), show(&wanted)));
                m.groups = Some(wanted.iter().map(|g| g.to_string()).collect());
            }
        }
        if let Some(h) = &self.home {
            if *h != seen.home {
                lines.push(format!("home {} → {h} (contents are not moved)", seen.home));
                m.home = Some(h.clone());
            }
        }
        if let Some(s) = &self.shell {
            if *s != seen.shell {
                lines.push(format!("shell {} → {s}", seen.shell));
                m.shell = Some(s.clone());
            }
        }
        if let Some(c) = &self.comment {
            if *c != seen.comment {
                lines.push(format!("comment {:?} → {c:?}", seen.comment));
                m.comment = Some(c.clone());
            }
        }
        Ok((lines, m))
    }

    /// What a new account gets, for the plan.
    fn describe_new(&self) -> Vec<String> {
        let mut d = Vec::new();
        if let Some(u) = self.uid {
            d.push(format!("uid {u}"));
        }
        if let Some(g) = &self.group {
            d.push(format!("group {g}"));
        }
        if let Some(gs) = &self.groups {
            if !gs.is_empty() {
                d.push(format!("groups {}", gs.join(",")));
            }
        }
        if let Some(h) = &self.home {
            d.push(format!("home {h}"));
        }
        if !self.create_home {
            d.push("no home directory is created".into());
        }
        if let Some(s) = &self.shell {
            d.push(format!("shell {s}"));
        }
        if let Some(c) = &self.comment {
            d.push(format!("comment {c:?}"));
        }
        if self.system {
            d.push("system account".into());
        }
        d
    }

    fn useradd(&self, extra: &str) -> String {
        let mut s = String::from("useradd");
        if self.system {
            s.push_str(" -r");
        }
        if let Some(u) = self.uid {
            s.push_str(&format!(" -u {u}"));
        }
        if let Some(g) = &self.group {
            s.push_str(&format!(" -g {}", quote(g)));
        }
        s.push_str(extra);
        if let Some(gs) = &self.groups {
            if !gs.is_empty() {
                s.push_str(&format!(" -G {}", quote(&gs.join(","))));
            }
        }
        if let Some(h) = &self.home {
            s.push_str(&format!(" -d {}", quote(h)));
        }
        s.push_str(if self.create_home { " -m" } else { " -M" });
        if let Some(sh) = &self.shell {
            s.push_str(&format!(" -s {}", quote(sh)));
        }
        if let Some(c) = &self.comment {
            s.push_str(&format!(" -c {}", quote(c)));
        }
        s.push(' ');
        s.push_str(&quote(&self.name));
        s
    }
}

fn parse_seen(obs: &Observed) -> Result<Option<Seen>, ModuleError> {
    probe_failed(obs)?;
    let kv = obs.kv();
    match kv.get("exists").copied() {
        Some("no") => return Ok(None),
        Some("yes") => {}
        _ => {
            return Err(ModuleError::new(format!(
                "unexpected probe output: {:?}",
                obs.stdout
            )))
        }
    }
    let num = |k: &str| -> Result<u32, ModuleError> {
        kv.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
            ModuleError::new(format!("probe printed no numeric {k}: {:?}", obs.stdout))
        })
    };
    let text = |k: &str| kv.get(k).map(|v| v.to_string()).unwrap_or_default();
    Ok(Some(Seen {
        uid: num("uid")?,
        gid: num("gid")?,
        group: kv
            .get("group")
            .filter(|g| !g.is_empty())
            .map(|g| g.to_string()),
        comment: text("comment"),
        home: text("home"),
        shell: text("shell"),
        groups: kv
            .get("groups")
            .map(|g| g.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
    }))
}

impl Module for User {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        // getent exits 2 for "not found"; other failures mean the answer is unknown.
        // `id -Gn` prints a number for a gid without a name and exits 1; the numbers are
        // still worth comparing, so its stdout is kept whatever its exit code.
        Some(format!(
            "n={}\n\
             if ent=$(getent passwd \"$n\"); then :; else\n\
             rc=$?\n\
             if [ \"$rc\" -eq 2 ]; then echo exists=no; exit 0; fi\n\
             echo \"getent passwd $n failed with exit code $rc\" >&2; exit 3\n\
             fi\n\
             echo exists=yes\n\
             IFS=: read -r _ _ uid gid comment home shell <<BOSUN_PASSWD\n\
             $ent\n\
             BOSUN_PASSWD\n\
             echo \"uid=$uid\"; echo \"gid=$gid\"; echo \"comment=$comment\"; echo \"home=$home\"; echo \"shell=$shell\"\n\
             if g=$(getent group \"$gid\"); then echo \"group=${{g%%:*}}\"; fi\n\
             echo \"groups=$(id -Gn \"$n\" 2>/dev/null)\"\n",
            quote(&self.name)
        ))
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        let seen = parse_seen(observed)?;
        let n = &self.name;
        Ok(match (self.state, seen) {
            (State::Absent, None) => Plan::unchanged(format!("user {n} does not exist")),
            (State::Absent, Some(s)) => {
                let mut details = vec![format!("uid {}", s.uid)];
                if self.remove {
                    details.push(format!("home {} and mail spool are deleted", s.home));
                }
                Plan::Change(
                    Change::new(format!("remove user {n}"), Action::Remove).with_details(details),
                )
            }
            (State::Present, None) => Plan::Change(
                Change::new(format!("create user {n}"), Action::Create)
                    .with_details(self.describe_new()),
            ),
            (State::Present, Some(s)) => {
                let (lines, m) = self.modifications(&s)?;
                if lines.is_empty() {
                    Plan::unchanged(format!(
                        "user {n} exists (uid {}) with the declared attributes",
                        s.uid
                    ))
                } else {
                    Plan::Change(
                        Change::new(format!("modify user {n}"), Action::Modify(m))
                            .with_details(lines),
                    )
                }
            }
        })
    }

    fn apply(&self, action: &Action) -> String {
        let n = quote(&self.name);
        match action {
            Action::Create if self.group.is_none() => {
                // Debian's useradd makes a group named after the user and refuses when one
                // exists already (e.g. created by an earlier `group` task): join it instead.
                // Decided here, not in plan, because that group may appear in this very run.
                format!(
                    "if getent group {n} >/dev/null 2>&1; then\n{}\nelse\n{}\nfi\n",
                    self.useradd(&format!(" -g {n}")),
                    self.useradd("")
                )
            }
            Action::Create => format!("{}\n", self.useradd("")),
            Action::Modify(m) => {
                let mut s = String::from("usermod");
                if let Some(u) = m.uid {
                    s.push_str(&format!(" -u {u}"));
                }
                if let Some(g) = &m.group {
                    s.push_str(&format!(" -g {}", quote(g)));
                }
                if let Some(gs) = &m.groups {
                    if m.append {
                        s.push_str(" -a");
                    }
                    s.push_str(&format!(" -G {}", quote(&gs.join(","))));
                }
                if let Some(h) = &m.home {
                    s.push_str(&format!(" -d {}", quote(h)));
                }
                if let Some(sh) = &m.shell {
                    s.push_str(&format!(" -s {}", quote(sh)));
                }
                if let Some(c) = &m.comment {
                    s.push_str(&format!(" -c {}", quote(c)));
                }
                format!("{s} {n}\n")
            }
            Action::Remove if self.remove => format!("userdel -r {n}\n"),
            Action::Remove => format!("userdel {n}\n"),
        }
    }

    fn effects(&self) -> Effects {
        Effects::Host
    }
}

/// Accepts `groups: [a, b]` or `groups: "a,b"`; blanks around names are dropped.
fn de_group_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let v = Option::<OneOrMany>::deserialize(d)?;
    Ok(v.map(|v| {
        let items = match v {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        items
            .iter()
            .flat_map(|s| s.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn module(v: Value) -> User {
        User::from_args(v).expect("valid args")
    }

    fn change(m: &User, probe: &str) -> Change<Action> {
        match m.plan(&Observed::stdout(probe)).unwrap() {
            Plan::Change(c) => c,
            p => panic!("expected a change, got {p:?}"),
        }
    }

    const SALEOR: &str =
        "exists=yes\nuid=1001\ngid=1001\ncomment=\nhome=/home/saleor\nshell=/bin/sh\n\
                          group=saleor\ngroups=saleor www-data\n";

    #[test]
    fn missing_user_is_created_with_declared_attributes() {
        let m = module(json!({
            "name": "saleor", "uid": 1001, "group": "saleor", "groups": ["www-data", "docker"],
            "home": "/srv/saleor", "shell": "/bin/bash", "comment": "Saleor app", "system": true
        }));
        let c = change(&m, "exists=no\n");
        assert_eq!(c.summary, "create user saleor");
        assert_eq!(
            c.details,
            vec![
                "uid 1001",
                "group saleor",
                "groups www-data,docker",
                "home /srv/saleor",
                "shell /bin/bash",
                "comment \"Saleor app\"",
                "system account"
            ]
        );
        assert_eq!(
            m.apply(&c.action),
            "useradd -r -u 1001 -g saleor -G www-data,docker -d /srv/saleor -m -s /bin/bash -c 'Saleor app' saleor\n"
        );
    }

    #[test]
    fn create_without_group_joins_a_same_named_group_if_one_exists() {
        let m = module(json!({"name": "saleor", "create_home": false}));
        let c = change(&m, "exists=no\n");
        assert_eq!(c.details, vec!["no home directory is created"]);
        assert_eq!(
            m.apply(&c.action),
            "if getent group saleor >/dev/null 2>&1; then\nuseradd -g saleor -M saleor\nelse\nuseradd -M saleor\nfi\n"
        );
    }

    #[test]
    fn matching_user_is_unchanged() {
        let m = module(
            json!({"name": "saleor", "uid": 1001, "group": "saleor", "groups": "www-data",
                              "home": "/home/saleor", "shell": "/bin/sh", "comment": ""}),
        );
        match m.plan(&Observed::stdout(SALEOR)).unwrap() {
            Plan::Unchanged { reason } => {
                assert_eq!(
                    reason,
                    "user saleor exists (uid 1001) with the declared attributes"
                )
            }
            p => panic!("{p:?}"),
        }
        // The primary group by gid, and listed among `groups`, is the same account.
        let m =
            module(json!({"name": "saleor", "group": "1001", "groups": ["saleor", "www-data"]}));
        assert!(matches!(
            m.plan(&Observed::stdout(SALEOR)).unwrap(),
            Plan::Unchanged { .. }
        ));
    }

    #[test]
    fn differing_attributes_become_one_usermod() {
        let m = module(
            json!({"name": "saleor", "uid": 1100, "shell": "/bin/bash", "home": "/srv/saleor",
                              "comment": "Saleor", "group": "www-data"}),
        );
        let c = change(&m, SALEOR);
        assert_eq!(c.summary, "modify user saleor");
        assert_eq!(
            c.details,
            vec![
                "uid 1001 → 1100",
                "group saleor → www-data",
                "home /home/saleor → /srv/saleor (contents are not moved)",
                "shell /bin/sh → /bin/bash",
                "comment \"\" → \"Saleor\"",
            ]
        );
        assert_eq!(
            m.apply(&c.action),
            "usermod -u 1100 -g www-data -d /srv/saleor -s /bin/bash -c Saleor saleor\n"
        );
    }

    #[test]
    fn groups_replace_unless_append() {
        let m = module(json!({"name": "saleor", "groups": ["docker"]}));
        let c = change(&m, SALEOR);
        assert_eq!(c.details, vec!["groups www-data → docker"]);
        assert_eq!(m.apply(&c.action), "usermod -G docker saleor\n");

        let m = module(json!({"name": "saleor", "groups": ["docker", "www-data"], "append": true}));
        let c = change(&m, SALEOR);
        assert_eq!(c.details, vec!["add to groups docker"]);
        assert_eq!(m.apply(&c.action), "usermod -a -G docker saleor\n");

        // Appending groups the user already has is a no-op, whatever else it belongs to.
        let m = module(json!({"name": "saleor", "groups": "www-data", "append": true}));
        assert!(matches!(
            m.plan(&Observed::stdout(SALEOR)).unwrap(),
            Plan::Unchanged { .. }
        ));

        // An empty list removes every supplementary group.
        let m = module(json!({"name": "saleor", "groups": []}));
        let c = change(&m, SALEOR);
        assert_eq!(c.details, vec!["groups www-data → (none)"]);
        assert_eq!(m.apply(&c.action), "usermod -G '' saleor\n");
    }

    #[test]
    fn absent_removes_the_account() {
        let m = module(json!({"name": "saleor", "state": "absent"}));
        assert!(matches!(
            m.plan(&Observed::stdout("exists=no\n")).unwrap(),
            Plan::Unchanged { .. }
        ));
        let c = change(&m, SALEOR);
        assert_eq!(c.summary, "remove user saleor");
        assert_eq!(m.apply(&c.action), "userdel saleor\n");
        let m = module(json!({"name": "saleor", "state": "absent", "remove": true}));
        let c = change(&m, SALEOR);
        assert_eq!(
            c.details,
            vec!["uid 1001", "home /home/saleor and mail spool are deleted"]
        );
        assert_eq!(m.apply(&c.action), "userdel -r saleor\n");
    }

    #[test]
    fn probe_failures_and_missing_groups_are_errors() {
        let m = module(json!({"name": "saleor", "groups": ["docker"]}));
        let failed = Observed {
            rc: 3,
            stdout: String::new(),
            stderr: "getent passwd saleor failed with exit code 1\n".into(),
        };
        assert!(m.plan(&failed).unwrap_err().0.contains("getent passwd"));
        let no_groups = SALEOR.replace("groups=saleor www-data", "groups=");
        assert!(m
            .plan(&Observed::stdout(&no_groups))
            .unwrap_err()
            .0
            .contains("could not list"));
        assert!(m.plan(&Observed::stdout("exists=yes\nuid=x\n")).is_err());
    }

    #[test]
    fn probe_runs_against_this_host() {
        let run = |script: String| crate::modules::test_support::run(&script);
        let root = module(json!({"name": "root"}));
        let obs = run(root.probe().unwrap());
        let seen = parse_seen(&obs).unwrap().expect("root exists");
        assert_eq!((seen.uid, seen.gid), (0, 0));
        assert_eq!(seen.group.as_deref(), Some("root"));
        assert_eq!(seen.home, "/root");
        assert!(
            seen.groups.contains(&"root".to_string()),
            "{:?}",
            seen.groups
        );
        let none = module(json!({"name": "bosun-no-such-user"}));
        assert_eq!(parse_seen(&run(none.probe().unwrap())).unwrap(), None);
    }

    #[test]
    fn scripts_are_valid_sh() {
        let m = module(
            json!({"name": "saleor", "comment": "It's $HOME", "groups": ["a", "b"], "shell": "/bin/sh"}),
        );
        let modify = Action::Modify(Usermod {
            groups: Some(vec!["a".into()]),
            append: true,
            comment: Some("x'y".into()),
            ..Usermod::default()
        });
        for script in [
            m.probe().unwrap(),
            m.apply(&Action::Create),
            m.apply(&modify),
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
        assert!(User::from_args(json!({"name": "1000"})).is_err());
        assert!(User::from_args(json!({"name": "x", "home": "rel"})).is_err());
        assert!(User::from_args(json!({"name": "x", "shell": "/bin/a:b"})).is_err());
        assert!(User::from_args(json!({"name": "x", "comment": "a:b"})).is_err());
        assert!(User::from_args(json!({"name": "x", "groups": ["1000"]})).is_err());
        assert!(User::from_args(json!({"name": "x", "append": true})).is_err());
        assert!(User::from_args(json!({"name": "x", "state": "absent", "uid": 5})).is_err());
        assert!(User::from_args(json!({"name": "x", "remove": true})).is_err());
        let e = User::from_args(json!({"name": "x", "password": "secret"})).unwrap_err();
        assert!(e.message.contains("password"), "{}", e.message);
    }
}
