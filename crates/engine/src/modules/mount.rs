//! `mount`: a filesystem's line in fstab, and whether it is mounted.
//!
//! The fstab line is edited like `lineinfile` edits a file (read whole in the probe, the new
//! contents computed in plan and shown as a diff, written atomically and only if the file
//! is still as probed): the line whose mount point is `path` is replaced, later duplicates
//! of it are dropped, and other lines are never touched. Then, by `state`:
//!
//! - `present`: the fstab line only; nothing is mounted or unmounted.
//! - `mounted`: the line, and the filesystem mounted (the mount point is created); when
//!   it is already mounted and its line changed, it is remounted with the new options
//!   (`mount -o remount` applies options only: a changed `src` or `fstype` of a mounted
//!   filesystem takes effect when it is next mounted).
//! - `unmounted`: unmounted if mounted; fstab is left alone.
//! - `absent`: unmounted if mounted, and the line removed.
//!
//! `fstab` names another file than `/etc/fstab` (as in Ansible); mounting then still uses
//! the declared `src`, `fstype` and `opts` directly, so it does not depend on which file
//! `mount` reads.

use super::fileops::Attrs;
use super::lineinfile::{self, join_lines, split_lines, Edit, Line};
use super::{parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Mounted,
    Present,
    Unmounted,
    Absent,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    path: String,
    src: Option<String>,
    fstype: Option<String>,
    opts: Option<String>,
    #[serde(default)]
    dump: u32,
    #[serde(default)]
    passno: u32,
    state: State,
    fstab: Option<String>,
}

#[derive(Debug)]
pub struct Mount {
    path: String,
    state: State,
    /// The fstab fields: src, fstype, opts, dump, passno (present/mounted only).
    entry: Option<[String; 5]>,
    fstab: String,
}

/// What to do with the mount itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOp {
    None,
    Mount,
    Remount,
    Unmount,
}

/// What apply does: an fstab write (when the line changes), then the mount operation.
#[derive(Debug, PartialEq, Eq)]
pub struct Action {
    fstab: Option<lineinfile::Action>,
    op: MountOp,
}

/// fstab fields cannot hold spaces or tabs; they are written as octal escapes.
fn escape(field: &str) -> String {
    field
        .replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
}

impl Mount {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("mount", args)?;
        let path = a.path.trim_end_matches('/').to_string();
        if !a.path.starts_with('/') || path.is_empty() || path.contains('\n') {
            return Err(ArgError::new(format!(
                "mount: path `{}` must be an absolute mount point below /",
                a.path
            )));
        }
        let fstab = a.fstab.unwrap_or_else(|| "/etc/fstab".into());
        lineinfile::check_path("mount", &fstab)?;
        let entry = match a.state {
            State::Mounted | State::Present => {
                let (Some(src), Some(fstype)) = (a.src, a.fstype) else {
                    return Err(ArgError::new(format!(
                        "mount: state {} needs `src` and `fstype`",
                        if a.state == State::Mounted {
                            "mounted"
                        } else {
                            "present"
                        }
                    ))
                    .hint("src: /dev/vdb1 (or UUID=...), fstype: ext4"));
                };
                let opts = a.opts.unwrap_or_else(|| "defaults".into());
                for (name, v) in [("src", &src), ("fstype", &fstype), ("opts", &opts)] {
                    if v.is_empty()
                        || v.contains('\n')
                        || (name != "src" && v.contains(char::is_whitespace))
                    {
                        return Err(ArgError::new(format!(
                            "mount: {name} `{v}` is not valid in fstab"
                        )));
                    }
                }
                Some([src, fstype, opts, a.dump.to_string(), a.passno.to_string()])
            }
            State::Unmounted | State::Absent => None,
        };
        Ok(Mount {
            path,
            state: a.state,
            entry,
            fstab,
        })
    }

    /// Pure: the fstab with `path`'s line as declared.
    fn edit(&self, old: Option<&str>) -> Edit {
        let mp = escape(&self.path);
        let mut lines = split_lines(old.unwrap_or(""));
        let is_ours = |l: &Line| {
            let t = l.text.trim_start();
            !t.starts_with('#') && t.split_whitespace().nth(1) == Some(mp.as_str())
        };
        let found: Vec<usize> = (0..lines.len()).filter(|&i| is_ours(&lines[i])).collect();
        let Some(fields) = &self.entry else {
            if self.state != State::Absent {
                return Edit::none(format!("{} is left as it is", self.fstab));
            }
            if found.is_empty() {
                return Edit::none(format!("{} has no line for {}", self.fstab, self.path));
            }
            let n = found.len();
            lines.retain(|l| !is_ours(l));
            return Edit::change(
                join_lines(&lines),
                format!(
                    "remove {} from {} ({})",
                    self.path,
                    self.fstab,
                    lineinfile::plural(n, "line", "lines")
                ),
            );
        };
        let want = format!(
            "{} {mp} {} {} {} {}",
            escape(&fields[0]),
            fields[1],
            fields[2],
            fields[3],
            fields[4]
        );
        let same = |l: &Line| l.text.split_whitespace().eq(want.split_whitespace());
        match found.first() {
            Some(&i) if same(&lines[i]) && found.len() == 1 => Edit::none(format!(
                "{} has the declared line for {}",
                self.fstab, self.path
            )),
            Some(&i) => {
                lines[i].text = want;
                let dups: Vec<usize> = found[1..].to_vec();
                for j in dups.into_iter().rev() {
                    lines.remove(j);
                }
                Edit::change(
                    join_lines(&lines),
                    format!("update {} in {}", self.path, self.fstab),
                )
            }
            None => {
                let n = lines.len();
                lineinfile::insert_line(&mut lines, n, Line::new(want));
                Edit::change(
                    join_lines(&lines),
                    format!("add {} to {}", self.path, self.fstab),
                )
            }
        }
    }
}

impl Module for Mount {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        // Whether it is mounted first: the fstab probe ends early when the file is absent.
        let p = quote(&self.path);
        let mut s = format!(
            "if command -v mountpoint >/dev/null 2>&1; then\n\
             if mountpoint -q -- {p}; then echo mounted=yes; else echo mounted=no; fi\n\
             else echo 'mount: mountpoint (util-linux) is not installed on the host' >&2; exit 1; fi\n"
        );
        s.push_str(&lineinfile::probe_text(&self.fstab));
        Some(s)
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        super::support::probe_failed(observed)?;
        let mounted = match observed.kv().get("mounted").copied() {
            Some("yes") => true,
            Some("no") => false,
            _ => {
                return Err(ModuleError::new(format!(
                    "mount: the probe did not say whether {} is mounted",
                    self.path
                )))
            }
        };
        let (st, text) = lineinfile::read_text(&self.fstab, observed)?;
        let edit = self.edit(text.as_deref());
        let fstab_changes = edit.content.is_some();
        let fstab_plan =
            lineinfile::plan_edit(&self.fstab, &st, text.as_deref(), edit, &Attrs::default())?;
        let op = match (self.state, mounted) {
            (State::Mounted, false) => MountOp::Mount,
            (State::Mounted, true) if fstab_changes => MountOp::Remount,
            (State::Unmounted | State::Absent, true) => MountOp::Unmount,
            _ => MountOp::None,
        };
        let what = match op {
            MountOp::None => None,
            MountOp::Mount => Some(format!("mount {}", self.path)),
            MountOp::Remount => Some(format!("remount {} with the new options", self.path)),
            MountOp::Unmount => Some(format!("unmount {}", self.path)),
        };
        match (fstab_plan, what) {
            (Plan::Unchanged { reason }, None) => Ok(Plan::unchanged(match self.state {
                State::Mounted => format!("{reason}; mounted"),
                State::Unmounted | State::Absent => format!("{reason}; not mounted"),
                State::Present => reason,
            })),
            (Plan::Unchanged { .. }, Some(what)) => {
                Ok(Plan::Change(Change::new(what, Action { fstab: None, op })))
            }
            (Plan::Change(c), what) => {
                let summary = match what {
                    Some(w) => format!("{}, {w}", c.summary),
                    None => c.summary,
                };
                let mut out = Change::new(
                    summary,
                    Action {
                        fstab: Some(c.action),
                        op,
                    },
                )
                .with_details(c.details);
                out.diff = c.diff;
                Ok(Plan::Change(out))
            }
        }
    }

    fn apply(&self, action: &Action) -> String {
        let mut s = match &action.fstab {
            Some(a) => super::support::as_step(&lineinfile::apply_edit(
                &self.fstab,
                a,
                &Attrs::default(),
                None,
            )),
            None => String::new(),
        };
        let p = quote(&self.path);
        match (action.op, &self.entry) {
            (MountOp::Mount, Some([src, fstype, opts, ..])) => s.push_str(&format!(
                "[ -d {p} ] || mkdir -p -- {p} || exit 1\n\
                 mount -t {} -o {} -- {} {p} || exit 1\n",
                quote(fstype),
                quote(opts),
                quote(src)
            )),
            (MountOp::Remount, Some([_, _, opts, ..])) => s.push_str(&format!(
                "mount -o {} -- {p} || exit 1\n",
                quote(&format!("remount,{opts}"))
            )),
            (MountOp::Unmount, _) => s.push_str(&format!("umount -- {p} || exit 1\n")),
            _ => {}
        }
        s
    }

    fn effects(&self) -> Effects {
        Effects::Paths(vec![self.fstab.clone(), self.path.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::{run, temp_dir};
    use serde_json::json;

    fn mount(args: Value) -> Mount {
        Mount::from_args(args).unwrap()
    }

    fn converge(m: &Mount) -> Plan<Action> {
        let plan = m.plan(&run(&m.probe().unwrap())).unwrap();
        if let Plan::Change(c) = &plan {
            assert_eq!(c.action.op, MountOp::None, "tests never mount");
            let out = run(&m.apply(&c.action));
            assert_eq!(out.rc, 0, "{}", out.stderr);
        }
        plan
    }

    #[test]
    fn present_edits_only_the_fstab_line_of_its_mount_point() {
        let t = temp_dir("mount");
        let fstab = t.join("fstab");
        let others = "# static file system information\nUUID=1 / ext4 errors=remount-ro 0 1\n";
        std::fs::write(&fstab, others).unwrap();
        let mp = t.join("data dir");
        let args = json!({"path": mp, "src": "/dev/vdb1", "fstype": "ext4", "state": "present", "fstab": fstab});
        let m = mount(args.clone());
        match converge(&m) {
            Plan::Change(c) => {
                assert!(c.summary.starts_with("add "), "{}", c.summary);
                let d = c.diff.unwrap();
                assert_eq!(d.before.as_deref(), Some(others));
            }
            p => panic!("{p:?}"),
        }
        let line = format!(
            "/dev/vdb1 {} ext4 defaults 0 0\n",
            escape(mp.to_str().unwrap())
        );
        assert_eq!(
            std::fs::read_to_string(&fstab).unwrap(),
            format!("{others}{line}")
        );
        assert!(matches!(converge(&m), Plan::Unchanged { .. }), "idempotent");
        assert!(!mp.exists(), "present never creates or mounts");

        // New options replace the line in place; a duplicate is dropped.
        std::fs::write(&fstab, format!("{line}{others}{line}")).unwrap();
        let mut a = args.clone();
        a["opts"] = json!("noatime");
        converge(&mount(a));
        let now = std::fs::read_to_string(&fstab).unwrap();
        assert_eq!(
            now,
            format!("{}{others}", line.replace("defaults", "noatime"))
        );

        // Absent removes it; unmounted leaves fstab alone.
        let gone = json!({"path": mp, "state": "unmounted", "fstab": fstab});
        assert!(matches!(converge(&mount(gone)), Plan::Unchanged { .. }));
        let gone = json!({"path": mp, "state": "absent", "fstab": fstab});
        converge(&mount(gone.clone()));
        assert_eq!(std::fs::read_to_string(&fstab).unwrap(), others);
        assert!(matches!(converge(&mount(gone)), Plan::Unchanged { .. }));
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn mount_state_decides_the_mount_operation() {
        let line = "/dev/vdb1 /srv ext4 defaults 0 0\n";
        let obs = |mounted: &str, content: &str| {
            use base64::Engine;
            Observed::stdout(&format!(
                "mounted={mounted}\ntype=file\nmode=644\nowner=root\ngroup=root\ncontent_b64={}\n",
                base64::engine::general_purpose::STANDARD.encode(content)
            ))
        };
        let m = mount(
            json!({"path": "/srv", "src": "/dev/vdb1", "fstype": "ext4", "state": "mounted"}),
        );
        let op = |p: Plan<Action>| match p {
            Plan::Change(c) => Some((c.action.op, c.action.fstab.is_some(), c.summary)),
            Plan::Unchanged { .. } => None,
        };
        assert!(op(m.plan(&obs("yes", line)).unwrap()).is_none());
        let (o, fs, summary) = op(m.plan(&obs("no", line)).unwrap()).unwrap();
        assert_eq!((o, fs), (MountOp::Mount, false));
        assert_eq!(summary, "mount /srv");
        let (o, fs, _) = op(m.plan(&obs("yes", "")).unwrap()).unwrap();
        assert_eq!((o, fs), (MountOp::Remount, true));
        let script = m.apply(&Action {
            fstab: None,
            op: MountOp::Mount,
        });
        assert!(
            script.contains("mount -t ext4 -o defaults -- /dev/vdb1 /srv"),
            "{script}"
        );
        let u = mount(json!({"path": "/srv", "state": "absent"}));
        let (o, fs, _) = op(u.plan(&obs("yes", line)).unwrap()).unwrap();
        assert_eq!((o, fs), (MountOp::Unmount, true));
        let e = m.plan(&Observed::stdout("type=absent\n")).unwrap_err();
        assert!(e.0.contains("did not say"), "{e}");
    }

    #[test]
    fn bad_arguments_are_refused() {
        for (args, says) in [
            (json!({"path": "srv", "state": "absent"}), "absolute"),
            (
                json!({"path": "/srv", "state": "mounted", "src": "/dev/x"}),
                "needs `src` and `fstype`",
            ),
            (
                json!({"path": "/srv", "state": "present", "src": "/dev/x", "fstype": "ext4", "opts": "a b"}),
                "not valid",
            ),
            (
                json!({"path": "/srv", "state": "absent", "fstab": "fstab"}),
                "absolute",
            ),
        ] {
            let e = Mount::from_args(args).unwrap_err();
            assert!(e.message.contains(says), "{e}");
        }
    }
}
