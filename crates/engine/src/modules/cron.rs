//! `cron`: one job in a user's crontab, found by its name.
//!
//! Each managed job is two lines: a marker comment `# bosun: NAME`, then the job itself.
//! The name is the identity (as Ansible's `#Ansible: NAME`): changing the schedule or the
//! command of a named job replaces its line instead of adding another. Lines bosun did not
//! write are never touched.
//!
//! The crontab is read with `crontab -u USER -l` and installed with `crontab -u USER -`,
//! which is how cron expects it to be edited (it validates and swaps the file in its spool
//! itself). Like `lineinfile`, the new crontab is computed in plan, shown as a diff, and
//! installed only if the crontab is still what was probed.

use super::lineinfile::{de_scalar, join_lines, split_lines, Line};
use super::support::probe_failed;
use super::{parse_args, ArgError, Change, Diff, Effects, Module, ModuleError, Observed, Plan};
use base64::Engine;
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;

pub use super::support::Presence as State;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    name: String,
    job: Option<String>,
    #[serde(default, deserialize_with = "de_scalar")]
    minute: Option<String>,
    #[serde(default, deserialize_with = "de_scalar")]
    hour: Option<String>,
    #[serde(default, deserialize_with = "de_scalar")]
    day: Option<String>,
    #[serde(default, deserialize_with = "de_scalar")]
    month: Option<String>,
    #[serde(default, deserialize_with = "de_scalar")]
    weekday: Option<String>,
    special_time: Option<String>,
    user: Option<String>,
    #[serde(default)]
    state: State,
}

#[derive(Debug)]
pub struct Cron {
    name: String,
    user: String,
    /// The job line as it goes into the crontab; `None` for `state: absent`.
    line: Option<String>,
}

/// What apply does: install `content` as the crontab, provided it is still `expect`.
#[derive(Debug, PartialEq, Eq)]
pub struct Action {
    content: String,
    /// The sha256 of the crontab as probed (`None`: the user had none).
    expect: Option<String>,
}

const SPECIAL: &[&str] = &[
    "reboot", "yearly", "annually", "monthly", "weekly", "daily", "hourly",
];

impl Cron {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("cron", args)?;
        if a.name.trim().is_empty() || a.name.contains('\n') {
            return Err(ArgError::new("cron: name must be one non-empty line"));
        }
        let user = a.user.unwrap_or_else(|| "root".into());
        if user.is_empty() || user.starts_with('-') || user.contains(char::is_whitespace) {
            return Err(ArgError::new(format!(
                "cron: user `{user}` is not a user name"
            )));
        }
        let line = match a.state {
            State::Absent => None,
            State::Present => {
                let job = a.job.as_deref().map(str::trim).unwrap_or("");
                if job.is_empty() || job.contains('\n') {
                    return Err(ArgError::new(format!(
                        "cron: job `{}` needs `job`: one line, the command to run",
                        a.name
                    )));
                }
                let fields = [
                    ("minute", a.minute),
                    ("hour", a.hour),
                    ("day", a.day),
                    ("month", a.month),
                    ("weekday", a.weekday),
                ];
                let when = match a.special_time {
                    Some(s) => {
                        if !SPECIAL.contains(&s.as_str()) {
                            return Err(ArgError::new(format!(
                                "cron: special_time `{s}` is not one of {}",
                                SPECIAL.join(", ")
                            )));
                        }
                        if let Some((f, _)) = fields.iter().find(|(_, v)| v.is_some()) {
                            return Err(ArgError::new(format!(
                                "cron: `{f}` and `special_time` exclude each other"
                            )));
                        }
                        format!("@{s}")
                    }
                    None => {
                        let mut w = Vec::new();
                        for (f, v) in fields {
                            let v = v.unwrap_or_else(|| "*".into());
                            if v.is_empty() || v.contains(char::is_whitespace) {
                                return Err(ArgError::new(format!(
                                    "cron: {f} `{v}` must be one cron field without spaces"
                                ))
                                .hint("e.g. minute: \"*/5\", hour: \"2,14\""));
                            }
                            w.push(v);
                        }
                        w.join(" ")
                    }
                };
                Some(format!("{when} {job}"))
            }
        };
        Ok(Cron {
            name: a.name.trim().to_string(),
            user,
            line,
        })
    }

    fn marker(&self) -> String {
        format!("# bosun: {}", self.name)
    }

    /// Pure: the crontab with this job as declared, and a summary when it changed.
    fn edit(&self, old: &str) -> (String, Option<String>) {
        let marker = self.marker();
        let mut lines = split_lines(old);
        let at = lines.iter().position(|l| l.text.trim_end() == marker);
        match (&self.line, at) {
            (None, None) => (old.to_string(), None),
            (None, Some(i)) => {
                let end = (i + 2).min(lines.len());
                lines.drain(i..end);
                (
                    join_lines(&lines),
                    Some(format!("remove cron job `{}` of {}", self.name, self.user)),
                )
            }
            (Some(want), Some(i)) => match lines.get(i + 1) {
                Some(l) if l.text == *want => (old.to_string(), None),
                Some(l) if !l.text.trim_start().starts_with('#') => {
                    lines[i + 1].text = want.clone();
                    (
                        join_lines(&lines),
                        Some(format!("change cron job `{}` of {}", self.name, self.user)),
                    )
                }
                // A marker without its job (edited by hand): the job goes back under it.
                _ => {
                    super::lineinfile::insert_line(&mut lines, i + 1, Line::new(want.clone()));
                    (
                        join_lines(&lines),
                        Some(format!("restore cron job `{}` of {}", self.name, self.user)),
                    )
                }
            },
            (Some(want), None) => {
                let n = lines.len();
                super::lineinfile::insert_line(&mut lines, n, Line::new(marker));
                lines.push(Line::new(want.clone()));
                (
                    join_lines(&lines),
                    Some(format!(
                        "add cron job `{}` to {}'s crontab",
                        self.name, self.user
                    )),
                )
            }
        }
    }
}

impl Module for Cron {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        let u = quote(&self.user);
        // `crontab -l` fails both for "no crontab" and for real errors: tell them apart by
        // its message, never guess. The trailing `x` keeps the content's final newlines.
        Some(format!(
            "command -v crontab >/dev/null 2>&1 || {{ echo 'cron: crontab is not installed on the host: install cron first (apt: {{name: cron}})' >&2; exit 1; }}\n\
             if __c=$(crontab -u {u} -l 2>/dev/null && echo x); then\n\
             echo exists=yes\nprintf 'content_b64='; printf '%s' \"${{__c%x}}\" | base64 -w0; echo\n\
             else\n\
             __e=$(crontab -u {u} -l 2>&1 >/dev/null)\n\
             case \"$__e\" in *'no crontab'*) echo exists=no ;; *) echo \"cron: cannot read the crontab of \"{u}\": $__e\" >&2; exit 1 ;; esac\n\
             fi\n"
        ))
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        probe_failed(observed)?;
        let kv = observed.kv();
        let old = match kv.get("exists").copied() {
            Some("no") => None,
            Some("yes") => {
                let b = kv.get("content_b64").copied().unwrap_or("");
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .map_err(|e| ModuleError::new(format!("probe sent bad base64: {e}")))?;
                Some(String::from_utf8(bytes).map_err(|_| {
                    ModuleError::new(format!("the crontab of {} is not UTF-8 text", self.user))
                })?)
            }
            _ => {
                return Err(ModuleError::new(format!(
                    "cron: cannot read the probe's output: {}",
                    observed.stdout.trim()
                )))
            }
        };
        let (new, summary) = self.edit(old.as_deref().unwrap_or(""));
        let Some(summary) = summary else {
            return Ok(Plan::unchanged(match self.line {
                Some(_) => format!("cron job `{}` of {} is as declared", self.name, self.user),
                None => format!("{} has no cron job `{}`", self.user, self.name),
            }));
        };
        let diff = Diff {
            path: format!("crontab of {}", self.user),
            before: old.clone(),
            after: Some(new.clone()),
        };
        Ok(Plan::Change(
            Change::new(
                summary,
                Action {
                    content: new,
                    expect: old.map(|o| super::fileops::sha256_hex(o.as_bytes())),
                },
            )
            .with_diff(diff),
        ))
    }

    fn apply(&self, action: &Action) -> String {
        let u = quote(&self.user);
        let changed = quote(&format!(
            "cron: the crontab of {} changed after it was probed; not overwriting it (run again to plan against it)",
            self.user
        ));
        let guard = match &action.expect {
            None => format!("if crontab -u {u} -l >/dev/null 2>&1; then echo {changed} >&2; exit 1; fi\n"),
            Some(h) => format!(
                "__c=$(crontab -u {u} -l 2>/dev/null && echo x) || {{ echo {changed} >&2; exit 1; }}\n\
                 h=$(printf '%s' \"${{__c%x}}\" | sha256sum); [ \"${{h%% *}}\" = {h} ] || {{ echo {changed} >&2; exit 1; }}\n"
            ),
        };
        format!(
            "{guard}printf '%s' {} | crontab -u {u} - || exit 1\n",
            quote(&action.content)
        )
    }

    fn effects(&self) -> Effects {
        Effects::Host
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::{self, run, temp_dir};
    use serde_json::json;
    use std::path::Path;

    /// A stand-in for the host's `crontab`: one file per user under `$FAKE_CRON`, the
    /// same messages and exit codes as cronie's and Debian's for what the module uses.
    const FAKE: &str = r#"#!/bin/sh
u=root; op=
while [ $# -gt 0 ]; do
  case "$1" in -u) u=$2; shift 2 ;; -l) op=l; shift ;; -) op=w; shift ;; *) echo "fake crontab: $1?" >&2; exit 2 ;; esac
done
f="$FAKE_CRON/$u"
case $op in
  l) [ -f "$f" ] || { echo "no crontab for $u" >&2; exit 1; }; cat "$f" ;;
  w) cat > "$f.new" && mv "$f.new" "$f" ;;
esac
"#;

    fn with_fake(dir: &Path, script: &str) -> String {
        format!(
            "PATH={}:$PATH; FAKE_CRON={}; export FAKE_CRON\n{script}",
            quote(dir.join("bin").to_str().unwrap()),
            quote(dir.join("spool").to_str().unwrap())
        )
    }

    fn setup(name: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let t = temp_dir(name);
        std::fs::create_dir_all(t.join("bin")).unwrap();
        std::fs::create_dir_all(t.join("spool")).unwrap();
        let f = t.join("bin/crontab");
        std::fs::write(&f, FAKE).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        t
    }

    fn converge(t: &Path, m: &Cron) -> Plan<Action> {
        test_support::converge_with(m, |s| with_fake(t, s)).expect("converges")
    }

    fn cron(args: Value) -> Cron {
        Cron::from_args(args).unwrap()
    }

    #[test]
    fn adds_changes_and_removes_a_named_job_through_crontab() {
        let t = setup("cron");
        let spool = t.join("spool/app");
        let m = cron(
            json!({"name": "backup", "user": "app", "minute": 5, "hour": "2", "job": "/usr/local/bin/backup"}),
        );
        match converge(&t, &m) {
            Plan::Change(c) => {
                let d = c.diff.unwrap();
                assert_eq!(d.path, "crontab of app");
                assert_eq!(d.before, None);
            }
            p => panic!("{p:?}"),
        }
        assert_eq!(
            std::fs::read_to_string(&spool).unwrap(),
            "# bosun: backup\n5 2 * * * /usr/local/bin/backup\n"
        );
        assert!(
            matches!(converge(&t, &m), Plan::Unchanged { .. }),
            "idempotent"
        );

        // Someone else's line stays; the named job's line is replaced, not duplicated.
        let mine = "MAILTO=ops\n0 * * * * date\n";
        let theirs = std::fs::read_to_string(&spool).unwrap();
        std::fs::write(&spool, format!("{mine}{theirs}")).unwrap();
        let m = cron(
            json!({"name": "backup", "user": "app", "special_time": "daily", "job": "/usr/local/bin/backup"}),
        );
        converge(&t, &m);
        assert_eq!(
            std::fs::read_to_string(&spool).unwrap(),
            format!("{mine}# bosun: backup\n@daily /usr/local/bin/backup\n")
        );

        let gone = cron(json!({"name": "backup", "user": "app", "state": "absent"}));
        converge(&t, &gone);
        assert_eq!(std::fs::read_to_string(&spool).unwrap(), mine);
        assert!(matches!(converge(&t, &gone), Plan::Unchanged { .. }));
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_crontab_changed_after_the_probe_is_not_overwritten() {
        let t = setup("cron-race");
        let m = cron(json!({"name": "x", "job": "true"}));
        let Plan::Change(c) = m.plan(&run(&with_fake(&t, &m.probe().unwrap()))).unwrap() else {
            panic!("expected a change")
        };
        std::fs::write(t.join("spool/root"), "@hourly other\n").unwrap();
        let out = run(&with_fake(&t, &m.apply(&c.action)));
        assert_ne!(out.rc, 0);
        assert!(
            out.stderr.contains("changed after it was probed"),
            "{}",
            out.stderr
        );
        assert_eq!(
            std::fs::read_to_string(t.join("spool/root")).unwrap(),
            "@hourly other\n"
        );
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_host_without_crontab_is_an_error_by_name() {
        let m = cron(json!({"name": "x", "job": "true"}));
        let out = run(&format!("PATH=/nonexistent\n{}", m.probe().unwrap()));
        let e = m.plan(&out).unwrap_err();
        assert!(e.0.contains("crontab is not installed"), "{e}");
    }

    #[test]
    fn bad_arguments_are_refused() {
        for (args, says) in [
            (json!({"name": "x"}), "needs `job`"),
            (json!({"name": "x", "job": "a\nb"}), "needs `job`"),
            (
                json!({"name": "x", "job": "j", "minute": "1 2"}),
                "one cron field",
            ),
            (
                json!({"name": "x", "job": "j", "special_time": "often"}),
                "not one of",
            ),
            (
                json!({"name": "x", "job": "j", "special_time": "daily", "hour": 1}),
                "exclude each other",
            ),
            (json!({"name": "", "job": "j"}), "non-empty"),
        ] {
            let e = Cron::from_args(args).unwrap_err();
            assert!(e.message.contains(says), "{e}");
        }
        assert!(Cron::from_args(json!({"name": "x", "state": "absent"})).is_ok());
    }
}
