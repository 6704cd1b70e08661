//! `file`: a path's type and attributes — directory, (empty) file, symlink, or absent.
//!
//! Contents are `copy`'s and `template`'s business; `file: state: file` only makes sure a
//! regular file exists (created empty) with the declared attributes.

use super::fileops::{self, apply_attrs, attr_changes, Attrs, Kind};
use super::writer::Writer;
use super::{de_mode, parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Directory,
    File,
    Link,
    Absent,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    path: String,
    state: State,
    #[serde(default, deserialize_with = "de_mode")]
    mode: Option<u32>,
    owner: Option<String>,
    group: Option<String>,
    /// Link target, for `state: link`.
    src: Option<String>,
    /// Replace an object of another type (a file where a link is declared, ...).
    #[serde(default)]
    force: bool,
}

#[derive(Debug)]
pub struct File {
    path: String,
    state: State,
    attrs: Attrs,
    src: Option<String>,
    force: bool,
}

/// What apply does, and who does it (see [`Writer`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Create (or replace, with force) the object, then set attributes.
    Create {
        replace: bool,
        writer: Writer,
    },
    /// Only attributes differ.
    Attrs {
        writer: Writer,
    },
    Remove {
        writer: Writer,
    },
}

impl File {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("file", args)?;
        if a.path.is_empty() || !a.path.starts_with('/') {
            return Err(ArgError::new(format!(
                "file: path `{}` must be absolute",
                a.path
            )));
        }
        if a.state == State::Link && a.src.is_none() {
            return Err(ArgError::new(
                "file: state link needs `src` (the link target)",
            ));
        }
        if a.state != State::Link && a.src.is_some() {
            return Err(ArgError::new("file: `src` only applies to state: link")
                .hint("use `copy` to copy a file"));
        }
        Ok(File {
            path: a.path,
            state: a.state,
            attrs: Attrs {
                mode: a.mode,
                owner: a.owner,
                group: a.group,
            },
            src: a.src,
            force: a.force,
        })
    }

    fn wanted_kind(&self) -> Kind {
        match self.state {
            State::Directory => Kind::Directory,
            State::File => Kind::File,
            State::Link => Kind::Link,
            State::Absent => Kind::Absent,
        }
    }
}

impl Module for File {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        Some(fileops::probe_path(&self.path, None))
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        let st = fileops::parse_path_state(observed)?;
        let want = self.wanted_kind();
        let p = &self.path;
        if want == Kind::Absent && st.kind == Kind::Absent {
            return Ok(Plan::unchanged(format!("{p} is absent")));
        }
        // Who makes the change (see `Writer`): decided only when there is one.
        let change = |summary: String,
                      action: &dyn Fn(Writer) -> Action,
                      mut details: Vec<String>|
         -> Result<Plan<Action>, ModuleError> {
            let writer = st.writer(p)?;
            details.extend(writer.note());
            Ok(Plan::Change(
                Change::new(summary, action(writer)).with_details(details),
            ))
        };
        if want == Kind::Absent {
            return change(
                format!("remove {} {p}", st.kind.as_str()),
                &|writer| Action::Remove { writer },
                Vec::new(),
            );
        }
        if st.kind == Kind::Absent {
            return change(
                format!("create {} {p}", want.as_str()),
                &|writer| Action::Create {
                    replace: false,
                    writer,
                },
                describe_new(&self.attrs, self.src.as_deref()),
            );
        }
        if st.kind != want {
            if !self.force {
                return Err(ModuleError::new(format!(
                    "{p} is a {} but a {} is declared; set `force: true` to replace it",
                    st.kind.as_str(),
                    want.as_str()
                )));
            }
            return change(
                format!("replace {} {p} with a {}", st.kind.as_str(), want.as_str()),
                &|writer| Action::Create {
                    replace: true,
                    writer,
                },
                describe_new(&self.attrs, self.src.as_deref()),
            );
        }
        if want == Kind::Link && st.link_target.as_deref() != self.src.as_deref() {
            return change(
                format!("repoint link {p}"),
                &|writer| Action::Create {
                    replace: true,
                    writer,
                },
                vec![format!(
                    "target {} → {}",
                    st.link_target.as_deref().unwrap_or("-"),
                    self.src.as_deref().unwrap_or("-")
                )],
            );
        }
        // Links: chmod would follow them, so only ownership is managed.
        let attrs = if want == Kind::Link {
            Attrs {
                mode: None,
                ..self.attrs.clone()
            }
        } else {
            self.attrs.clone()
        };
        let diffs = attr_changes(&st, &attrs);
        if diffs.is_empty() {
            Ok(Plan::unchanged(format!(
                "{p} is a {} with the declared attributes",
                want.as_str()
            )))
        } else {
            change(
                format!("set attributes of {p}"),
                &|writer| Action::Attrs { writer },
                diffs,
            )
        }
    }

    fn apply(&self, action: &Action) -> String {
        let p = quote(&self.path);
        let attrs = if self.state == State::Link {
            Attrs {
                mode: None,
                ..self.attrs.clone()
            }
        } else {
            self.attrs.clone()
        };
        let (Action::Remove { writer } | Action::Attrs { writer } | Action::Create { writer, .. }) =
            action;
        let mut s = writer.prelude(&self.path);
        match action {
            Action::Remove { .. } => s.push_str(&format!("__as rm -rf -- {p} || exit 1\n")),
            Action::Attrs { .. } => s.push_str(&apply_attrs(&p, &attrs, writer)),
            Action::Create { replace, .. } => {
                if *replace {
                    s.push_str(&format!("__as rm -rf -- {p} || exit 1\n"));
                }
                match self.state {
                    State::Directory => s.push_str(&writer.mkdirs(&self.path)),
                    // Noclobber: whatever appeared there meanwhile is not followed.
                    State::File => s.push_str(&match writer {
                        Writer::Root { .. } => format!("set -C; : > {p} || exit 1; set +C\n"),
                        Writer::Owner { .. } => {
                            format!("__as sh -c 'set -C && : > \"$1\"' sh {p} || exit 1\n")
                        }
                    }),
                    State::Link => s.push_str(&format!(
                        "__as ln -sT -- {} {p} || exit 1\n",
                        quote(self.src.as_deref().unwrap_or_default())
                    )),
                    State::Absent => {}
                }
                s.push_str(&apply_attrs(&p, &attrs, writer));
            }
        }
        s
    }

    fn effects(&self) -> Effects {
        Effects::Paths(vec![self.path.clone()])
    }

    fn path_probe(&self) -> Option<(&str, Option<&str>)> {
        Some((&self.path, None))
    }

    fn applied_effects(&self, action: &Action) -> Effects {
        match (action, &self.state) {
            // A new, empty directory: nothing under it appeared.
            (Action::Create { replace: false, .. }, State::Directory) => {
                Effects::Created(vec![self.path.clone()])
            }
            _ => self.effects(),
        }
    }
}

fn describe_new(attrs: &Attrs, src: Option<&str>) -> Vec<String> {
    let mut d = Vec::new();
    if let Some(s) = src {
        d.push(format!("→ {s}"));
    }
    if let Some(m) = attrs.mode {
        d.push(format!("mode {m:04o}"));
    }
    if let Some(o) = &attrs.owner {
        d.push(format!("owner {o}"));
    }
    if let Some(g) = &attrs.group {
        d.push(format!("group {g}"));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn module(v: Value) -> File {
        File::from_args(v).expect("valid args")
    }

    #[test]
    fn absent_directory_is_created() {
        let m = module(json!({"path": "/srv/app", "state": "directory", "mode": "0755"}));
        match m.plan(&Observed::stdout("type=absent\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "create directory /srv/app");
                assert!(matches!(c.action, Action::Create { replace: false, .. }));
                assert!(m.apply(&c.action).contains("mkdir -- \"$__c\""));
                assert!(m.apply(&c.action).contains("chmod 0755 -- /srv/app"));
            }
            p => panic!("expected a change, got {p:?}"),
        }
    }

    #[test]
    fn matching_directory_is_unchanged() {
        let m = module(
            json!({"path": "/srv/app", "state": "directory", "mode": "0755", "owner": "root"}),
        );
        let obs = Observed::stdout("type=directory\nmode=755\nowner=root\ngroup=root\nsize=4096\n");
        assert!(matches!(m.plan(&obs).unwrap(), Plan::Unchanged { .. }));
    }

    #[test]
    fn wrong_mode_changes_only_attributes() {
        let m = module(json!({"path": "/srv/app", "state": "directory", "mode": "0700"}));
        let obs = Observed::stdout("type=directory\nmode=755\nowner=root\ngroup=root\n");
        match m.plan(&obs).unwrap() {
            Plan::Change(c) => {
                assert!(matches!(c.action, Action::Attrs { .. }));
                assert_eq!(c.details, vec!["mode 0755 → 0700"]);
                assert!(m
                    .apply(&c.action)
                    .ends_with("fi\n__as chmod 0700 -- /srv/app || exit 1\n"));
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn type_conflict_needs_force() {
        let m = module(json!({"path": "/srv/app", "state": "directory"}));
        let err = m
            .plan(&Observed::stdout("type=file\nmode=644\n"))
            .unwrap_err();
        assert!(err.0.contains("force"));
        let m = module(json!({"path": "/srv/app", "state": "directory", "force": true}));
        assert!(matches!(
            m.plan(&Observed::stdout("type=file\n")).unwrap(),
            Plan::Change(_)
        ));
    }

    #[test]
    fn link_target_change_is_planned() {
        let m = module(json!({"path": "/etc/x", "state": "link", "src": "/opt/x"}));
        let p = m
            .plan(&Observed::stdout("type=link\ntarget=/opt/old\n"))
            .unwrap();
        match p {
            Plan::Change(c) => assert_eq!(c.details, vec!["target /opt/old → /opt/x"]),
            p => panic!("{p:?}"),
        }
        let same = m
            .plan(&Observed::stdout("type=link\ntarget=/opt/x\n"))
            .unwrap();
        assert!(matches!(same, Plan::Unchanged { .. }));
    }

    #[test]
    fn absent_removes_what_exists() {
        let m = module(json!({"path": "/tmp/x", "state": "absent"}));
        assert!(matches!(
            m.plan(&Observed::stdout("type=absent\n")).unwrap(),
            Plan::Unchanged { .. }
        ));
        match m.plan(&Observed::stdout("type=file\n")).unwrap() {
            Plan::Change(c) => assert!(m
                .apply(&c.action)
                .ends_with("__as rm -rf -- /tmp/x || exit 1\n")),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn bad_args_are_rejected() {
        assert!(File::from_args(json!({"path": "rel", "state": "file"})).is_err());
        assert!(File::from_args(json!({"path": "/x", "state": "link"})).is_err());
        let e =
            File::from_args(json!({"path": "/x", "state": "file", "mdoe": "0644"})).unwrap_err();
        assert!(e.message.contains("mdoe"), "{}", e.message);
    }
}
