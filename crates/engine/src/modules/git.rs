//! `git`: a checkout of a repository at a ref: a commit id, a tag or a branch.
//!
//! Idempotent by commit: the probe asks the remote (`git ls-remote`) which commit the ref
//! names now, unless the ref is a full commit id, and compares it with the checkout's
//! `HEAD`. A first clone is made beside `dest` and renamed into place, so an interrupted
//! clone never leaves a half-filled `dest`; an update fetches the ref and checks out what
//! it names. Local modifications are refused unless `force` says to discard them, and a
//! checkout of another repository is never silently replaced.

use super::support::probe_failed;
use super::{parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan};
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    /// The repository's URL (https://, ssh://, git@host:path, file:// or a path).
    repo: String,
    /// Where the checkout lives (absolute).
    dest: String,
    /// A full commit id, a tag or a branch. Default: the remote's HEAD.
    #[serde(default)]
    version: Option<String>,
    /// Shallow clone/fetch depth (`--depth`); default: 1. `0` fetches the full history.
    #[serde(default)]
    depth: Option<u32>,
    /// Discard local modifications of tracked files on update.
    #[serde(default)]
    force: bool,
}

#[derive(Debug)]
pub struct Git {
    repo: String,
    dest: String,
    version: Option<String>,
    depth: u32,
    force: bool,
}

/// What apply does.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Clone beside `dest`, check the commit out, rename into place.
    Clone { want: Option<String> },
    /// Fetch the ref into the existing checkout and check it out.
    Update { want: Option<String> },
}

/// A full (SHA-1 or SHA-256) commit id: 40 or 64 lowercase hex digits.
fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

impl Git {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("git", args)?;
        if !a.dest.starts_with('/') || a.dest.trim_end_matches('/').is_empty() {
            return Err(ArgError::new(format!(
                "git: dest `{}` must be an absolute path below /",
                a.dest
            )));
        }
        if a.repo.trim().is_empty() {
            return Err(ArgError::new("git: repo is empty")
                .hint("repo: https://github.com/saleor/saleor.git"));
        }
        if let Some(v) = &a.version {
            if v.is_empty() || v.starts_with('-') || v.chars().any(char::is_whitespace) {
                return Err(ArgError::new(format!(
                    "git: version `{v}` is not a commit id, tag or branch name"
                )));
            }
        }
        Ok(Git {
            repo: a.repo,
            dest: a.dest.trim_end_matches('/').to_string(),
            version: a.version,
            depth: a.depth.unwrap_or(1),
            force: a.force,
        })
    }

    /// The ref as `git fetch` takes it.
    fn fetch_ref(&self) -> &str {
        self.version.as_deref().unwrap_or("HEAD")
    }

    fn depth_flag(&self) -> String {
        if self.depth == 0 {
            String::new()
        } else {
            format!(" --depth {}", self.depth)
        }
    }

    /// Shell that fetches the ref into the repository at `$__g` and checks out what it
    /// names, verifying it is `want` when that is known.
    fn fetch_and_checkout(&self, want: Option<&str>) -> String {
        let verify = match want {
            Some(w) => format!(
                "__h=$(git -C \"$__g\" rev-parse HEAD) || exit 1\n\
                 [ \"$__h\" = {w} ] || {{ echo \"git: {r} names $__h now, not {w}: the remote moved during the run; converge again\" >&2; exit 1; }}\n",
                w = quote(w),
                r = quote(self.fetch_ref()),
            ),
            None => String::new(),
        };
        format!(
            "git -C \"$__g\" fetch --quiet{depth} origin {r} || exit 1\n\
             git -C \"$__g\" checkout --quiet --force --detach FETCH_HEAD || exit 1\n{verify}",
            depth = self.depth_flag(),
            r = quote(self.fetch_ref()),
        )
    }
}

impl Module for Git {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        let d = quote(&self.dest);
        let repo = quote(&self.repo);
        // The wanted commit: known when the version is a commit id; else the remote says.
        // A tag is listed twice when annotated (`ref` and `ref^{}`): the peeled one is the
        // commit, and it is listed last.
        let want = match &self.version {
            Some(v) if is_commit_id(v) => format!("echo want={v}\n"),
            v => {
                let r = v.as_deref().unwrap_or("HEAD");
                let pats = if r == "HEAD" {
                    "HEAD".to_string()
                } else {
                    format!("{} {}", quote(r), quote(&format!("{r}^{{}}")))
                };
                format!(
                    "__l=$(git ls-remote {repo} {pats}) || {{ echo \"git: cannot list {r} in the repository (network, credentials or URL?)\" >&2; exit 1; }}\n\
                     __w=$(printf '%s\\n' \"$__l\" | awk -v r={rq} '$2 == r || $2 == \"refs/tags/\" r \"^{{}}\" || $2 == r \"^{{}}\" {{ w = $1 }} $2 == \"refs/heads/\" r || $2 == \"refs/tags/\" r {{ if (w == \"\") w = $1 }} END {{ print w }}')\n\
                     [ -n \"$__w\" ] || {{ echo \"git: the repository has no branch or tag {r}\" >&2; exit 1; }}\n\
                     echo want=$__w\n",
                    rq = quote(r),
                )
            }
        };
        Some(format!(
            "command -v git >/dev/null 2>&1 || {{ echo 'git is not installed on the host: add `apt: {{name: git}}` before this task' >&2; exit 1; }}\n\
             if [ -e {d}/.git ]; then\n\
             echo exists=yes\n\
             echo head=$(git -C {d} rev-parse --verify -q HEAD)\n\
             echo url=$(git -C {d} config --get remote.origin.url)\n\
             if [ -n \"$(git -C {d} status --porcelain --untracked-files=no 2>/dev/null)\" ]; then echo dirty=yes; else echo dirty=no; fi\n\
             elif [ -e {d} ] && [ -n \"$(ls -A {d} 2>/dev/null)\" ]; then echo exists=other\n\
             else echo exists=no\n\
             fi\n{want}"
        ))
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        probe_failed(observed)?;
        let kv = observed.kv();
        let want = kv
            .get("want")
            .map(|w| w.to_string())
            .filter(|w| !w.is_empty());
        let at = self.version.as_deref().unwrap_or("the remote's HEAD");
        let want_text = want.as_deref().map(short).unwrap_or("?");
        match kv.get("exists").copied() {
            Some("no") => Ok(Plan::Change(Change::new(
                format!(
                    "clone {} at {at} ({want_text}) into {}",
                    self.repo, self.dest
                ),
                Action::Clone { want },
            ))),
            Some("other") => Err(ModuleError::new(format!(
                "git: {} exists and is not a git checkout; remove it or choose another dest",
                self.dest
            ))),
            Some("yes") => {
                let url = kv.get("url").copied().unwrap_or("");
                if url != self.repo {
                    return Err(ModuleError::new(format!(
                        "git: {} is a checkout of `{url}`, not `{}`; remove it to clone the declared repository",
                        self.dest, self.repo
                    )));
                }
                let head = kv.get("head").copied().unwrap_or("");
                if want.as_deref() == Some(head) {
                    return Ok(Plan::unchanged(format!(
                        "{} is at {} ({at})",
                        self.dest,
                        short(head)
                    )));
                }
                if kv.get("dirty").copied() == Some("yes") && !self.force {
                    return Err(ModuleError::new(format!(
                        "git: {} has local modifications; set `force: true` to discard them",
                        self.dest
                    )));
                }
                let from = if head.is_empty() {
                    "nothing"
                } else {
                    short(head)
                };
                Ok(Plan::Change(Change::new(
                    format!("update {} from {from} to {at} ({want_text})", self.dest),
                    Action::Update { want },
                )))
            }
            _ => Err(ModuleError::new(format!(
                "git: cannot read the state of {}: {}",
                self.dest,
                observed.stdout.trim()
            ))),
        }
    }

    fn apply(&self, action: &Action) -> String {
        let d = quote(&self.dest);
        match action {
            Action::Clone { want } => {
                let tmp = quote(&format!("{}.bosun-clone", self.dest));
                format!(
                    "rm -rf {tmp} || exit 1\n\
                     trap 'rm -rf {tmp}' EXIT\n\
                     git init --quiet {tmp} || exit 1\n\
                     __g={tmp}\n\
                     git -C \"$__g\" remote add origin {repo} || exit 1\n\
                     {fetch}\
                     if [ -d {d} ]; then rmdir {d} || exit 1; fi\n\
                     mv -T {tmp} {d} || exit 1\n\
                     trap - EXIT\n",
                    repo = quote(&self.repo),
                    fetch = self.fetch_and_checkout(want.as_deref()),
                )
            }
            Action::Update { want } => {
                format!("__g={d}\n{}", self.fetch_and_checkout(want.as_deref()))
            }
        }
    }

    fn effects(&self) -> Effects {
        Effects::Paths(vec![self.dest.clone()])
    }

    fn slow_probe(&self) -> bool {
        // ls-remote is a network round trip: run it beside the round's other probes.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::{self, run, temp_dir};
    use serde_json::json;
    use std::path::Path;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A repository with two commits on `main`, tag `v1` (annotated) on the first.
    fn upstream(dir: &Path) -> (String, String) {
        std::fs::create_dir_all(dir).unwrap();
        git(dir, &["init", "--quiet", "-b", "main"]);
        std::fs::write(dir.join("f"), "one\n").unwrap();
        git(dir, &["add", "f"]);
        git(dir, &["commit", "--quiet", "-m", "one"]);
        let first = git(dir, &["rev-parse", "HEAD"]);
        git(dir, &["tag", "-a", "v1", "-m", "v1"]);
        std::fs::write(dir.join("f"), "two\n").unwrap();
        git(dir, &["commit", "--quiet", "-am", "two"]);
        let second = git(dir, &["rev-parse", "HEAD"]);
        // Fetching a commit id needs the server's consent.
        git(dir, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
        (first, second)
    }

    fn module(repo: &Path, dest: &Path, version: Option<&str>) -> Git {
        let mut a =
            json!({"repo": format!("file://{}", repo.display()), "dest": dest.to_str().unwrap()});
        if let Some(v) = version {
            a["version"] = json!(v);
        }
        Git::from_args(a).unwrap()
    }

    /// Probe, plan, apply, and probe again: what a converge does, on this machine.
    fn converge(m: &Git) -> Plan<Action> {
        test_support::converge(m).expect("converges")
    }

    fn has_git() -> bool {
        Command::new("git")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[test]
    fn clones_updates_and_stays_put_by_commit() {
        if !has_git() {
            eprintln!("git is not installed here; the module's shell is not exercised");
            return;
        }
        let t = temp_dir("git");
        let (first, second) = upstream(&t.join("up"));
        let dest = t.join("srv/app");

        // A tag: cloned at the commit it names (annotated: the peeled commit).
        let m = module(&t.join("up"), &dest, Some("v1"));
        assert!(matches!(converge(&m), Plan::Change(_)));
        assert_eq!(git(&dest, &["rev-parse", "HEAD"]), first);
        assert!(matches!(converge(&m), Plan::Unchanged { .. }), "idempotent");
        assert!(
            !t.join("srv/app.bosun-clone").exists(),
            "no clone left beside it"
        );

        // A branch: updated to its tip.
        let m = module(&t.join("up"), &dest, Some("main"));
        match converge(&m) {
            Plan::Change(c) => assert!(c.summary.contains(short(&second)), "{}", c.summary),
            p => panic!("{p:?}"),
        }
        assert_eq!(git(&dest, &["rev-parse", "HEAD"]), second);
        assert!(matches!(converge(&m), Plan::Unchanged { .. }));

        // A commit id, back to the first commit.
        let m = module(&t.join("up"), &dest, Some(&first));
        assert!(matches!(converge(&m), Plan::Change(_)));
        assert_eq!(git(&dest, &["rev-parse", "HEAD"]), first);
        assert!(matches!(converge(&m), Plan::Unchanged { .. }));

        // The remote's HEAD when no version is given.
        let m = module(&t.join("up"), &dest, None);
        assert!(matches!(converge(&m), Plan::Change(_)));
        assert_eq!(git(&dest, &["rev-parse", "HEAD"]), second);

        // Local modifications are refused unless force.
        std::fs::write(dest.join("f"), "edited\n").unwrap();
        let m = module(&t.join("up"), &dest, Some("v1"));
        let e = m.plan(&run(&m.probe().unwrap())).unwrap_err();
        assert!(e.0.contains("local modifications"), "{e}");
        let mut forced = module(&t.join("up"), &dest, Some("v1"));
        forced.force = true;
        converge(&forced);
        assert_eq!(std::fs::read_to_string(dest.join("f")).unwrap(), "one\n");
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn refuses_what_it_would_have_to_destroy_or_cannot_find() {
        if !has_git() {
            return;
        }
        let t = temp_dir("git-refuse");
        upstream(&t.join("up"));
        upstream(&t.join("other"));
        // A directory with something else in it.
        std::fs::create_dir_all(t.join("full")).unwrap();
        std::fs::write(t.join("full/x"), "x").unwrap();
        let m = module(&t.join("up"), &t.join("full"), Some("main"));
        let e = m.plan(&run(&m.probe().unwrap())).unwrap_err();
        assert!(e.0.contains("not a git checkout"), "{e}");
        // A checkout of another repository.
        let m = module(&t.join("other"), &t.join("co"), Some("main"));
        converge(&m);
        let m = module(&t.join("up"), &t.join("co"), Some("main"));
        let e = m.plan(&run(&m.probe().unwrap())).unwrap_err();
        assert!(e.0.contains("is a checkout of"), "{e}");
        // A ref the remote does not have: the probe fails and says so.
        let m = module(&t.join("up"), &t.join("new"), Some("v9"));
        let obs = run(&m.probe().unwrap());
        assert_ne!(obs.rc, 0);
        assert!(obs.stderr.contains("no branch or tag v9"), "{}", obs.stderr);
        assert!(m.plan(&obs).is_err());
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn bad_arguments_are_refused_before_any_host() {
        let e = Git::from_args(json!({"repo": "r", "dest": "rel/path"})).unwrap_err();
        assert!(e.message.contains("absolute"), "{e}");
        let e =
            Git::from_args(json!({"repo": "r", "dest": "/srv/x", "version": "--upload-pack=x"}))
                .unwrap_err();
        assert!(e.message.contains("not a commit id"), "{e}");
        let e = Git::from_args(json!({"repo": " ", "dest": "/srv/x"})).unwrap_err();
        assert!(e.message.contains("repo is empty"), "{e}");
        assert!(Git::from_args(json!({"repo": "r", "dest": "/srv/x", "branch": "main"})).is_err());
    }

    #[test]
    fn plans_from_what_was_observed() {
        let m = Git::from_args(
            json!({"repo": "https://example.invalid/r.git", "dest": "/srv/r", "version": "v1"}),
        )
        .unwrap();
        let id = "a".repeat(40);
        let p = m
            .plan(&Observed::stdout(&format!("exists=no\nwant={id}\n")))
            .unwrap();
        assert!(matches!(
            p,
            Plan::Change(Change {
                action: Action::Clone { .. },
                ..
            })
        ));
        let same = format!(
            "exists=yes\nhead={id}\nurl=https://example.invalid/r.git\ndirty=no\nwant={id}\n"
        );
        assert!(matches!(
            m.plan(&Observed::stdout(&same)).unwrap(),
            Plan::Unchanged { .. }
        ));
        let moved = same.replace(&format!("want={id}"), &format!("want={}", "b".repeat(40)));
        assert!(matches!(
            m.plan(&Observed::stdout(&moved)).unwrap(),
            Plan::Change(Change {
                action: Action::Update { .. },
                ..
            })
        ));
        assert!(is_commit_id(&id) && !is_commit_id("v1") && !is_commit_id(&"A".repeat(40)));
    }
}
