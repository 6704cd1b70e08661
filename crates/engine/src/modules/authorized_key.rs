//! `authorized_key`: one public key in a user's `~/.ssh/authorized_keys`.
//!
//! Keys are compared by type and base64 body: a key already there with another comment or
//! with options (`from="..."`) counts as present and is left as it is. `absent` removes
//! every line holding the key. The home directory comes from `getent passwd` on the host.
//!
//! The user owns their home, so everything there happens as that user (see [`Writer`]):
//! the probe reads the file as them (a link they planted cannot make root read another
//! file into the plan's diff), `~/.ssh` is created 0700 and the file written 0600 by them,
//! atomically, and only if it is still what was probed. For `root`, root does it.

use super::fileops::{self, Attrs};
use super::lineinfile::{join_lines, split_lines, Line};
use super::support::probe_failed;
use super::writer::{self, Writer};
use super::{parse_args, ArgError, Change, Diff, Effects, Module, ModuleError, Observed, Plan};
use base64::Engine;
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;

pub use super::support::Presence as State;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    user: String,
    key: String,
    #[serde(default)]
    state: State,
}

#[derive(Debug)]
pub struct AuthorizedKey {
    user: String,
    /// The key line as declared (trimmed).
    key: String,
    /// Its type and base64 body, the identity keys are compared by.
    id: (String, String),
    state: State,
}

/// What apply does: write `content` to `path`, as the user (`uid`), creating `~/.ssh`.
#[derive(Debug, PartialEq, Eq)]
pub struct Action {
    path: String,
    content: String,
    /// The sha256 of the file as probed; `None` when it did not exist.
    expect: Option<String>,
    create_dir: bool,
    writer: Writer,
}

/// The key type and base64 body of an authorized_keys line, after any options; `None`
/// for comments, blank lines and anything that is not a key.
fn key_id(line: &str) -> Option<(String, String)> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let words: Vec<&str> = t.split_whitespace().collect();
    let i = words.iter().position(|w| {
        w.starts_with("ssh-")
            || w.starts_with("ecdsa-sha2-")
            || w.starts_with("sk-ssh-")
            || w.starts_with("sk-ecdsa-")
    })?;
    let body = words.get(i + 1)?;
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()
        .map(|_| (words[i].to_string(), body.to_string()))
}

impl AuthorizedKey {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("authorized_key", args)?;
        if a.user.is_empty() || a.user.starts_with('-') || a.user.contains([':', '\n', ' ']) {
            return Err(ArgError::new(format!(
                "authorized_key: user `{}` is not a user name",
                a.user
            )));
        }
        let key = a.key.trim().to_string();
        let id = match key_id(&key) {
            Some(id) if !key.contains('\n') => id,
            _ => return Err(ArgError::new(
                "authorized_key: key must be one public key line (`ssh-ed25519 AAAA... comment`)",
            )
            .hint("paste one whole line of the .pub file")),
        };
        Ok(AuthorizedKey {
            user: a.user,
            key,
            id,
            state: a.state,
        })
    }

    /// The key as a plan names it: type, the start of its body, and its comment.
    fn short(&self) -> String {
        let comment = self
            .key
            .split_whitespace()
            .skip_while(|w| *w != self.id.1)
            .nth(1);
        let body = self.id.1.get(..12).unwrap_or(&self.id.1);
        match comment {
            Some(c) => format!("{} {body}… ({c})", self.id.0),
            None => format!("{} {body}…", self.id.0),
        }
    }

    /// Pure: the file with the key as declared, or `None` when nothing changes.
    fn edit(&self, old: &str) -> Option<String> {
        let mut lines = split_lines(old);
        let has = |l: &Line| key_id(&l.text).as_ref() == Some(&self.id);
        match self.state {
            State::Present if lines.iter().any(has) => None,
            State::Present => {
                let n = lines.len();
                super::lineinfile::insert_line(&mut lines, n, Line::new(self.key.clone()));
                Some(join_lines(&lines))
            }
            State::Absent if !lines.iter().any(has) => None,
            State::Absent => {
                lines.retain(|l| !has(l));
                Some(join_lines(&lines))
            }
        }
    }
}

impl Module for AuthorizedKey {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        let u = quote(&self.user);
        Some(format!(
            "__pw=$(getent passwd {u}) || {{ echo \"authorized_key: there is no user \"{u}\" on the host\" >&2; exit 1; }}\n\
             __uid=$(printf '%s\\n' \"$__pw\" | cut -d: -f3); __gid=$(printf '%s\\n' \"$__pw\" | cut -d: -f4)\n\
             __h=$(printf '%s\\n' \"$__pw\" | cut -d: -f6)\n\
             case \"$__h\" in /*) ;; *) echo \"authorized_key: the home of \"{u}\" is not an absolute path: $__h\" >&2; exit 1 ;; esac\n\
             echo uid=$__uid; echo \"home=$__h\"\n\
             if [ \"$__uid\" = 0 ] || [ ! -O / ]; then __as() {{ \"$@\"; }}\n\
             elif command -v setpriv >/dev/null; then __as() {{ (cd / && exec setpriv --reuid=\"$__uid\" --regid=\"$__gid\" --init-groups -- \"$@\"); }}\n\
             elif command -v runuser >/dev/null; then __as() {{ (cd / && exec runuser -u {u} -- \"$@\"); }}\n\
             else echo \"authorized_key: neither setpriv nor runuser (util-linux) is installed to act as \"{u} >&2; exit 1; fi\n\
             f=\"$__h/.ssh/authorized_keys\"\n\
             if [ -d \"$__h/.ssh\" ]; then echo ssh=yes; else echo ssh=no; fi\n\
             if [ -L \"$f\" ]; then echo \"authorized_key: $f is a symlink; bosun does not write through it\" >&2; exit 1\n\
             elif [ -f \"$f\" ]; then\n\
             __c=$(__as cat -- \"$f\" && echo x) || {{ echo \"authorized_key: \"{u}\" cannot read $f\" >&2; exit 1; }}\n\
             echo exists=yes; printf 'content_b64='; printf '%s' \"${{__c%x}}\" | base64 -w0; echo\n\
             elif [ -e \"$f\" ]; then echo \"authorized_key: $f is not a regular file\" >&2; exit 1\n\
             else echo exists=no; fi\n"
        ))
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        probe_failed(observed)?;
        let kv = observed.kv();
        let bad = || {
            ModuleError::new(format!(
                "authorized_key: cannot read the probe's output: {}",
                observed.stdout.trim()
            ))
        };
        let uid: u32 = kv.get("uid").and_then(|u| u.parse().ok()).ok_or_else(bad)?;
        let home = kv.get("home").ok_or_else(bad)?.trim_end_matches('/');
        let path = format!("{home}/.ssh/authorized_keys");
        let old = match kv.get("exists").copied() {
            Some("no") => None,
            Some("yes") => {
                let b = kv.get("content_b64").copied().unwrap_or("");
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .map_err(|e| ModuleError::new(format!("probe sent bad base64: {e}")))?;
                Some(String::from_utf8(bytes).map_err(|_| {
                    ModuleError::new(format!("{path} is not UTF-8 text; refusing to edit it"))
                })?)
            }
            _ => return Err(bad()),
        };
        let Some(new) = self.edit(old.as_deref().unwrap_or("")) else {
            return Ok(Plan::unchanged(match self.state {
                State::Present => format!("{path} has the key {}", self.short()),
                State::Absent => format!("{path} does not have the key {}", self.short()),
            }));
        };
        let create_dir = kv.get("ssh").copied() != Some("yes");
        let writer = if uid == 0 {
            // Root's own home: root re-checks every existing directory on the way.
            let check = writer::ancestors(&path)
                .into_iter()
                .skip(1)
                .filter(|a| !(create_dir && a.ends_with("/.ssh")))
                .map(|a| (a, false))
                .collect();
            Writer::Root { check }
        } else {
            Writer::Owner {
                uid,
                user: self.user.clone(),
                dir: home.to_string(),
            }
        };
        let summary = match self.state {
            State::Present => format!("add key {} to {path}", self.short()),
            State::Absent => format!("remove key {} from {path}", self.short()),
        };
        let mut details = Vec::new();
        if create_dir {
            details.push(format!("create {home}/.ssh (0700)"));
        }
        details.extend(writer.note());
        let diff = Diff {
            path: path.clone(),
            before: old.clone(),
            after: Some(new.clone()),
        };
        Ok(Plan::Change(
            Change::new(
                summary,
                Action {
                    path,
                    content: new,
                    expect: old.map(|o| fileops::sha256_hex(o.as_bytes())),
                    create_dir,
                    writer,
                },
            )
            .with_details(details)
            .with_diff(diff),
        ))
    }

    fn apply(&self, a: &Action) -> String {
        let p = quote(&a.path);
        let dir = quote(a.path.trim_end_matches("/authorized_keys"));
        let changed = quote(&format!(
            "authorized_key: {} changed after it was probed; not overwriting it (run again to plan against it)",
            a.path
        ));
        let mut s = a.writer.prelude(&a.path);
        if a.create_dir {
            s.push_str(&format!(
                "if [ ! -d {dir} ]; then __as mkdir -m 0700 -- {dir} || exit 1; fi\n"
            ));
        }
        s.push_str(&match &a.expect {
            None => format!("if [ -e {p} ] || [ -L {p} ]; then echo {changed} >&2; exit 1; fi\n"),
            Some(h) => format!(
                "h=$(__as cat -- {p} | sha256sum); [ \"${{h%% *}}\" = {h} ] || {{ echo {changed} >&2; exit 1; }}\n"
            ),
        });
        let attrs = Attrs {
            mode: Some(0o600),
            ..Attrs::default()
        };
        s.push_str(&fileops::write_file(
            &a.path,
            a.content.as_bytes(),
            &attrs,
            None,
            &a.writer,
        ));
        s
    }

    fn effects(&self) -> Effects {
        // The path is only known once the probe has read the home directory.
        Effects::Host
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::{run, temp_dir};
    use serde_json::json;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@laptop";
    const OTHER: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 deploy";

    /// Runs `script` with a `getent` first on PATH that knows one user, `name`, with
    /// `uid`:`gid` and home `home`: the host's user database, without touching it.
    fn with_user(t: &Path, name: &str, uid: u32, home: &Path, script: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let bin = t.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let fake = format!(
            "#!/bin/sh\n[ \"$1\" = passwd ] && [ \"$2\" = {name} ] || exit 2\necho '{name}:x:{uid}:{uid}::{}:/bin/sh'\n",
            home.display()
        );
        std::fs::write(bin.join("getent"), fake).unwrap();
        std::fs::set_permissions(bin.join("getent"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        format!("PATH={}:$PATH\n{script}", quote(bin.to_str().unwrap()))
    }

    fn converge(t: &Path, uid: u32, home: &Path, m: &AuthorizedKey) -> Plan<Action> {
        let probe = with_user(t, &m.user, uid, home, &m.probe().unwrap());
        let plan = m.plan(&run(&probe)).unwrap();
        if let Plan::Change(c) = &plan {
            let out = run(&m.apply(&c.action));
            assert_eq!(out.rc, 0, "{}", out.stderr);
        }
        plan
    }

    fn key(user: &str, key: &str, state: &str) -> AuthorizedKey {
        AuthorizedKey::from_args(json!({"user": user, "key": key, "state": state})).unwrap()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn adds_once_ignoring_comments_and_removes_by_key() {
        let t = temp_dir("authkey");
        let home = t.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let uid = std::fs::metadata(&t).unwrap().uid();
        let m = key("ops", KEY, "present");
        match converge(&t, uid, &home, &m) {
            Plan::Change(c) => {
                assert!(
                    c.summary
                        .starts_with("add key ssh-ed25519 AAAAC3NzaC1l… (ops@laptop)"),
                    "{}",
                    c.summary
                );
                assert_eq!(
                    c.diff.unwrap().after.as_deref(),
                    Some(&format!("{KEY}\n")[..])
                );
            }
            p => panic!("{p:?}"),
        }
        let file = home.join(".ssh/authorized_keys");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{KEY}\n"));
        assert_eq!(mode(&home.join(".ssh")), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert!(matches!(
            converge(&t, uid, &home, &m),
            Plan::Unchanged { .. }
        ));

        // The same key with another comment and options is already there.
        std::fs::write(
            &file,
            format!(
                "{OTHER}\nfrom=\"10.0.0.1\" {} renamed",
                &KEY[..KEY.len() - 11]
            ),
        )
        .unwrap();
        assert!(matches!(
            converge(&t, uid, &home, &m),
            Plan::Unchanged { .. }
        ));
        converge(&t, uid, &home, &key("ops", KEY, "absent"));
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("{OTHER}\n")
        );
        assert!(matches!(
            converge(&t, uid, &home, &key("ops", KEY, "absent")),
            Plan::Unchanged { .. }
        ));
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_users_files_are_written_as_that_user() {
        // Needs root (to act as another user) and an account to act as.
        let nobody = run("id -u nobody");
        let is_root = run("id -u").stdout.trim() == "0";
        let Ok(uid) = nobody.stdout.trim().parse::<u32>() else {
            return;
        };
        if !is_root || nobody.rc != 0 {
            eprintln!("not root or no `nobody`: writing as another user is not exercised");
            return;
        }
        let t = temp_dir("authkey-user");
        let home = t.join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(uid), None).unwrap();
        let m = key("nobody", KEY, "present");
        match converge(&t, uid, &home, &m) {
            Plan::Change(c) => assert!(
                c.details.iter().any(|d| d.contains("done as nobody")),
                "{:?}",
                c.details
            ),
            p => panic!("{p:?}"),
        }
        let file = home.join(".ssh/authorized_keys");
        assert_eq!(std::fs::metadata(&file).unwrap().uid(), uid);
        assert_eq!(std::fs::metadata(home.join(".ssh")).unwrap().uid(), uid);
        assert_eq!(mode(&file), 0o600);
        // A link the user planted is refused, not followed.
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", &file).unwrap();
        let probe = with_user(&t, "nobody", uid, &home, &m.probe().unwrap());
        let e = m.plan(&run(&probe)).unwrap_err();
        assert!(e.0.contains("symlink"), "{e}");
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn an_unknown_user_or_a_bad_key_is_an_error() {
        let t = temp_dir("authkey-bad");
        let m = key("ghost", KEY, "present");
        let probe = with_user(&t, "someone", 0, &t, &m.probe().unwrap());
        let e = m.plan(&run(&probe)).unwrap_err();
        assert!(
            e.0.contains("no user \"ghost\"") || e.0.contains("no user ghost"),
            "{e}"
        );
        for k in [
            "",
            "not a key",
            "ssh-ed25519 !!!",
            &format!("{KEY}\n{OTHER}"),
        ] {
            let e = AuthorizedKey::from_args(json!({"user": "ops", "key": k})).unwrap_err();
            assert!(e.message.contains("one public key line"), "{k}: {e}");
        }
        std::fs::remove_dir_all(&t).unwrap();
    }
}
