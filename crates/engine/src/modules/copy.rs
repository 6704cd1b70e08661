//! `copy`: a file with exactly the declared contents and attributes.
//!
//! Contents come inline (`content:`) or from a controller file (`src:`). The probe compares
//! checksums on the host and ships the current contents back only when they differ, so a
//! no-op converge moves checksums, not files; a real change shows a diff.
//!
//! Writes are atomic (temp file → attributes → `validate` → rename, see
//! [`fileops::write_file`]). `backup: true` keeps the replaced file as
//! `DEST.YYYYMMDD-HHMMSS.bak` beside it; the backup is dropped again when validation or the
//! write fails, so a failed task leaves the directory as it found it. Mind that a backup in a
//! `*.d` directory whose every file is read (sudoers.d, some `conf.d`s) is read too.
//!
//! `template` renders a file and then behaves exactly like `copy`, and modules that own a file
//! of their own (`systemd` units, `apt` sources and keys, `sysctl` files) embed a `Copy` with
//! [`Copy::from_content`] plus [`super::support::embed_probe`] /
//! [`super::support::embedded`], so there is one implementation of "make this file hold
//! these bytes".

use super::fileops::{self, apply_attrs, attr_changes, Attrs, Kind};
use super::support::in_module;
use super::writer::Writer;
use super::{
    de_mode, parse_args, ArgError, Change, Controller, Effects, Module, ModuleError, Observed, Plan,
};
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    dest: String,
    /// Inline contents.
    content: Option<String>,
    /// A controller file, found in the role's `files/` directories.
    src: Option<String>,
    #[serde(default, deserialize_with = "de_mode")]
    mode: Option<u32>,
    owner: Option<String>,
    group: Option<String>,
    /// Command run on the temp file before it replaces `dest`; `%s` is the temp path.
    validate: Option<String>,
    #[serde(default)]
    backup: bool,
}

#[derive(Debug)]
pub struct Copy {
    dest: String,
    data: Vec<u8>,
    /// Checksum of `data`, computed once: the probe compares against it on the host.
    sha: String,
    attrs: Attrs,
    validate: Option<String>,
    backup: bool,
}

/// What apply does, and who does it (see [`Writer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write the contents atomically. `backup` keeps the old file first (only when a regular
    /// file is replaced); `replaces_link` means a symlink sits at dest and is replaced by the
    /// file (its own mode is 0777, so an undeclared mode defaults to 0644 instead).
    Write {
        backup: bool,
        replaces_link: bool,
        writer: Writer,
    },
    /// Contents match; only mode/owner/group differ.
    Attrs { writer: Writer },
}

impl Copy {
    pub fn from_args(args: Value, ctl: &dyn Controller) -> Result<Self, ArgError> {
        let a: Args = parse_args("copy", args)?;
        let data = match (a.content, a.src) {
            (Some(c), None) => c.into_bytes(),
            (None, Some(src)) => ctl.read_file(&src)?,
            (Some(_), Some(_)) => {
                return Err(ArgError::new("copy: give `content` or `src`, not both"))
            }
            (None, None) => {
                return Err(ArgError::new("copy: `content` or `src` is required")
                    .hint("use `file: state: file` for an empty file"))
            }
        };
        let attrs = Attrs {
            mode: a.mode,
            owner: a.owner,
            group: a.group,
        };
        Copy::from_content(a.dest, data, attrs, a.validate, a.backup)
            .map_err(|e| in_module("copy", e))
    }

    /// A copy of `data` to `dest`, for modules that produce file contents themselves.
    ///
    /// Errors name the offending parameter but not the module; callers prefix it with
    /// [`in_module`].
    pub fn from_content(
        dest: impl Into<String>,
        data: Vec<u8>,
        attrs: Attrs,
        validate: Option<String>,
        backup: bool,
    ) -> Result<Self, ArgError> {
        let dest = dest.into();
        if !dest.starts_with('/') || dest.ends_with('/') {
            return Err(ArgError::new(format!(
                "dest `{dest}` must be an absolute file path"
            )));
        }
        if let Some(v) = &validate {
            if !v.contains("%s") {
                return Err(ArgError::new(format!("validate `{v}` must contain %s"))
                    .hint("%s stands for the new file, e.g. validate: \"visudo -cf %s\""));
            }
        }
        Ok(Copy {
            sha: fileops::sha256_hex(&data),
            dest,
            data,
            attrs,
            validate,
            backup,
        })
    }

    pub fn dest(&self) -> &str {
        &self.dest
    }
}

impl Module for Copy {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        Some(fileops::probe_path(&self.dest, Some(&self.sha)))
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        let st = fileops::parse_path_state(observed)?;
        let p = &self.dest;
        match st.kind {
            Kind::Directory => Err(ModuleError::new(format!(
                "{p} is a directory; dest must name the file to write, e.g. {}/NAME",
                p.trim_end_matches('/')
            ))),
            Kind::Other => Err(ModuleError::new(format!(
                "{p} is a special file (socket, fifo or device); copy only replaces regular files"
            ))),
            Kind::Absent => {
                let writer = st.writer(p)?;
                let mut details = attr_changes(&st, &self.attrs);
                details.extend(writer.note());
                Ok(Plan::Change(
                    Change::new(
                        format!("create {p}"),
                        Action::Write {
                            backup: false,
                            replaces_link: false,
                            writer,
                        },
                    )
                    .with_details(details)
                    .with_diff(fileops::content_diff(p, &st, &self.data)),
                ))
            }
            Kind::Link => {
                let writer = st.writer(p)?;
                let details = writer.note().into_iter().collect();
                Ok(Plan::Change(
                    Change::new(
                        format!(
                            "replace symlink {p} (→ {}) with a file",
                            st.link_target.as_deref().unwrap_or("?")
                        ),
                        Action::Write {
                            backup: false,
                            replaces_link: true,
                            writer,
                        },
                    )
                    .with_details(details)
                    .with_diff(fileops::content_diff(p, &st, &self.data)),
                ))
            }
            Kind::File => {
                let sha = st.sha256.as_deref().ok_or_else(|| {
                    ModuleError::new(format!("probe reported no checksum for {p}"))
                })?;
                let mut details = attr_changes(&st, &self.attrs);
                if sha != self.sha {
                    if self.backup {
                        details.push(format!("backup of the old file: {p}.<timestamp>.bak"));
                    }
                    let writer = st.writer(p)?;
                    details.extend(writer.note());
                    Ok(Plan::Change(
                        Change::new(
                            format!("update {p}"),
                            Action::Write {
                                backup: self.backup,
                                replaces_link: false,
                                writer,
                            },
                        )
                        .with_details(details)
                        .with_diff(fileops::content_diff(p, &st, &self.data)),
                    ))
                } else if !details.is_empty() {
                    let writer = st.writer(p)?;
                    details.extend(writer.note());
                    Ok(Plan::Change(
                        Change::new(format!("set attributes of {p}"), Action::Attrs { writer })
                            .with_details(details),
                    ))
                } else {
                    Ok(Plan::unchanged(format!(
                        "{p} has the declared contents and attributes"
                    )))
                }
            }
        }
    }

    fn apply(&self, action: &Action) -> String {
        let p = quote(&self.dest);
        match action {
            Action::Attrs { writer } => format!(
                "{}{}",
                writer.prelude(&self.dest),
                apply_attrs(&p, &self.attrs, writer)
            ),
            Action::Write {
                backup,
                replaces_link,
                writer,
            } => {
                let attrs = if *replaces_link && self.attrs.mode.is_none() {
                    Attrs {
                        mode: Some(0o644),
                        ..self.attrs.clone()
                    }
                } else {
                    self.attrs.clone()
                };
                let write = fileops::write_file(
                    &self.dest,
                    &self.data,
                    &attrs,
                    self.validate.as_deref(),
                    writer,
                );
                if !backup {
                    return write;
                }
                // The backup is a hard link to the old file, which the rename then leaves
                // behind: `ln` never follows a symlink someone put at the backup's name (a
                // copy would write through it). The write runs in a subshell so that its
                // `exit` on a failed validation comes back here and the backup, now
                // pointless, is removed.
                format!(
                    "{}b={p}.$(date +%Y%m%d-%H%M%S).bak\n\
                     __as ln -T -- {p} \"$b\" || exit 1\n\
                     (\n{write}) || {{ __as rm -f -- \"$b\"; exit 1; }}\n\
                     echo \"backup: $b\"\n",
                    writer.prelude(&self.dest)
                )
            }
        }
    }

    fn effects(&self) -> Effects {
        Effects::Paths(vec![self.dest.clone()])
    }

    fn path_probe(&self) -> Option<(&str, Option<&str>)> {
        Some((&self.dest, Some(&self.sha)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::{run, temp_dir, FakeCtl};
    use serde_json::json;

    fn module(v: Value) -> Copy {
        Copy::from_args(v, &FakeCtl).expect("valid args")
    }

    fn change(p: Plan<Action>) -> Change<Action> {
        match p {
            Plan::Change(c) => c,
            p => panic!("expected a change, got {p:?}"),
        }
    }

    #[test]
    fn absent_file_is_created_with_diff() {
        let m =
            module(json!({"dest": "/etc/motd", "src": "motd", "mode": "0644", "owner": "root"}));
        let c = change(m.plan(&Observed::stdout("type=absent\n")).unwrap());
        assert_eq!(c.summary, "create /etc/motd");
        assert_eq!(c.details, vec!["mode - → 0644", "owner - → root"]);
        let d = c.diff.unwrap();
        assert_eq!((d.before, d.after.as_deref()), (None, Some("welcome\n")));
        assert_eq!(
            c.action,
            Action::Write {
                backup: false,
                replaces_link: false,
                writer: Writer::root_for("/etc/motd"),
            }
        );
        let script = m.apply(&c.action);
        assert!(script.contains("p=/etc/motd\n"), "{script}");
        assert!(script.contains("__chown -- root \"$t\""), "{script}");
        assert!(!script.contains(".bak"), "{script}");
    }

    #[test]
    fn changed_contents_show_a_diff_and_keep_a_backup() {
        let m = module(json!({"dest": "/etc/app.conf", "content": "new\n", "backup": true}));
        let obs = Observed::stdout(
            "type=file\nmode=644\nowner=root\ngroup=root\nsize=4\nsha256=abc\ncontent_b64=b2xkCg==\n",
        );
        let c = change(m.plan(&obs).unwrap());
        assert_eq!(c.summary, "update /etc/app.conf");
        assert_eq!(
            c.details,
            vec!["backup of the old file: /etc/app.conf.<timestamp>.bak"]
        );
        let d = c.diff.unwrap();
        assert_eq!(
            (d.before.as_deref(), d.after.as_deref()),
            (Some("old\n"), Some("new\n"))
        );
        assert_eq!(
            c.action,
            Action::Write {
                backup: true,
                replaces_link: false,
                writer: Writer::root_for("/etc/app.conf"),
            }
        );
        let script = m.apply(&c.action);
        assert!(
            script.contains(
                "b=/etc/app.conf.$(date +%Y%m%d-%H%M%S).bak\n__as ln -T -- /etc/app.conf \"$b\""
            ),
            "{script}"
        );
    }

    #[test]
    fn same_contents_with_other_mode_changes_attributes_only() {
        let m = module(json!({"dest": "/etc/app.conf", "content": "x\n", "mode": "0600"}));
        let sha = fileops::sha256_hex(b"x\n");
        let obs = Observed::stdout(&format!(
            "type=file\nmode=644\nowner=root\ngroup=root\nsha256={sha}\n"
        ));
        let c = change(m.plan(&obs).unwrap());
        assert_eq!(c.summary, "set attributes of /etc/app.conf");
        assert_eq!(c.details, vec!["mode 0644 → 0600"]);
        assert!(c.diff.is_none());
        assert!(m
            .apply(&c.action)
            .ends_with("fi\n__as chmod 0600 -- /etc/app.conf || exit 1\n"));
        let obs = Observed::stdout(&format!(
            "type=file\nmode=600\nowner=root\ngroup=root\nsha256={sha}\n"
        ));
        assert!(matches!(m.plan(&obs).unwrap(), Plan::Unchanged { .. }));
    }

    #[test]
    fn directory_at_dest_is_an_error() {
        let m = module(json!({"dest": "/etc/app", "content": "x"}));
        let err = m
            .plan(&Observed::stdout("type=directory\nmode=755\n"))
            .unwrap_err();
        assert!(err.0.contains("is a directory"), "{err}");
        assert!(m.plan(&Observed::stdout("type=other\n")).is_err());
    }

    #[test]
    fn symlink_at_dest_is_replaced_with_mode_0644() {
        let m = module(json!({"dest": "/etc/resolv.conf", "content": "nameserver 10.0.0.1\n"}));
        let c = change(
            m.plan(&Observed::stdout(
                "type=link\ntarget=../run/resolv.conf\nmode=777\n",
            ))
            .unwrap(),
        );
        assert_eq!(
            c.summary,
            "replace symlink /etc/resolv.conf (→ ../run/resolv.conf) with a file"
        );
        assert!(m.apply(&c.action).contains("chmod 0644 -- \"$t\""));
    }

    #[test]
    fn failed_probe_is_an_error_not_a_guess() {
        let m = module(json!({"dest": "/etc/x", "content": "x"}));
        let obs = Observed {
            rc: 3,
            stdout: "type=file\n".into(),
            stderr: "cannot read /etc/x\n".into(),
        };
        assert_eq!(m.plan(&obs).unwrap_err().0, "cannot read /etc/x");
    }

    #[test]
    fn bad_args_are_rejected() {
        let e = Copy::from_args(
            json!({"dest": "/x", "content": "a", "src": "motd"}),
            &FakeCtl,
        )
        .unwrap_err();
        assert!(e.message.contains("not both"), "{}", e.message);
        assert!(Copy::from_args(json!({"dest": "/x"}), &FakeCtl).is_err());
        let e = Copy::from_args(json!({"dest": "etc/x", "content": "a"}), &FakeCtl).unwrap_err();
        assert_eq!(
            e.message,
            "copy: dest `etc/x` must be an absolute file path"
        );
        let e = Copy::from_args(
            json!({"dest": "/x", "content": "a", "validate": "visudo -c"}),
            &FakeCtl,
        )
        .unwrap_err();
        assert!(e.message.contains("%s"), "{}", e.message);
        let e = Copy::from_args(json!({"dest": "/x", "src": "nope"}), &FakeCtl).unwrap_err();
        assert!(e.message.contains("not found"), "{}", e.message);
        let e = Copy::from_args(
            json!({"dest": "/x", "content": "a", "bakup": true}),
            &FakeCtl,
        )
        .unwrap_err();
        assert!(e.message.contains("bakup"), "{}", e.message);
    }

    /// The whole cycle against a real directory: probe, plan, apply, probe again.
    #[test]
    fn converges_on_a_real_directory_with_backup_and_validation() {
        let dir = temp_dir("copy");
        let dest = dir.join("app.conf");
        let dest_s = dest.to_str().unwrap().to_string();
        let m = module(
            json!({"dest": dest_s, "content": "port = 1\n", "mode": "0600", "backup": true}),
        );

        let c = change(m.plan(&run(&m.probe().unwrap())).unwrap());
        assert_eq!(c.summary, format!("create {dest_s}"));
        let r = run(&m.apply(&c.action));
        assert_eq!(r.rc, 0, "{}", r.stderr);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "port = 1\n");
        assert!(matches!(
            m.plan(&run(&m.probe().unwrap())).unwrap(),
            Plan::Unchanged { .. }
        ));

        // A changed file with a failing validator: old file stays, no backup, no temp file.
        let bad = module(
            json!({"dest": dest_s, "content": "port = 2\n", "backup": true, "validate": "grep -q nope %s"}),
        );
        let c = change(bad.plan(&run(&bad.probe().unwrap())).unwrap());
        assert_eq!(
            c.diff.as_ref().unwrap().before.as_deref(),
            Some("port = 1\n")
        );
        let r = run(&bad.apply(&c.action));
        assert_ne!(r.rc, 0);
        assert!(r.stderr.contains("validation failed"), "{}", r.stderr);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        // The same change, validated: the old contents survive in the backup.
        let good = module(
            json!({"dest": dest_s, "content": "port = 2\n", "backup": true, "validate": "grep -q port %s"}),
        );
        let c = change(good.plan(&run(&good.probe().unwrap())).unwrap());
        let r = run(&good.apply(&c.action));
        assert_eq!(r.rc, 0, "{}", r.stderr);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "port = 2\n");
        let backups: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_str().unwrap().ends_with(".bak"))
            .collect();
        assert_eq!(backups.len(), 1, "{backups:?}");
        assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), "port = 1\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
