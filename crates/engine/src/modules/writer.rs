//! Who changes a path on the host, so that root never follows a symlink that a non-root
//! user could plant.
//!
//! Tasks run as root, but often write where a non-root user owns a directory on the way
//! (`/home/app/...`). That user can put a symlink where root is about to write, or swap a
//! directory for one between a check and the write, and so make root write, chmod or chown
//! somewhere else entirely (`/etc/shadow`). The rule here:
//!
//! - The probe reports every existing directory on the way to the path (`chain=`), with
//!   `lstat` owner, group and mode, and, when one of them is a symlink, where the path
//!   really leads (`real=`, `rchain=`).
//! - [`decide`], a pure function of that report, picks the [`Writer`]: root when root
//!   alone controls every directory on the way (the common case; the apply re-checks
//!   ownership with shell builtins, no extra process), or the one non-root user who
//!   controls some of them. Everything then happens as that user (`setpriv`, or `runuser`),
//!   so whatever they planted gains them nothing; root only ever runs `chown -h` there.
//! - Refused outright: a symlink on the way that root does not control (name the real
//!   path instead), a root-owned directory that a group or everyone may write without the
//!   sticky bit (no single user to act as), and a path two different users control.

use super::ModuleError;
use bosun_model::shell::quote;
use std::collections::BTreeMap;

/// One existing object on the way to a path, as `stat -c %f:%u:%g:%U` (no `-L`) saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `st_mode`, type bits included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
}

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

impl Entry {
    /// `41ed:1000:1000:app`.
    pub fn parse(s: &str) -> Option<Entry> {
        let mut f = s.splitn(4, ':');
        Some(Entry {
            mode: u32::from_str_radix(f.next()?, 16).ok()?,
            uid: f.next()?.parse().ok()?,
            gid: f.next()?.parse().ok()?,
            user: f.next()?.to_string(),
        })
    }

    pub fn parse_list(s: &str) -> Option<Vec<Entry>> {
        s.split_whitespace().map(Entry::parse).collect()
    }

    fn is_link(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    fn sticky(&self) -> bool {
        self.mode & 0o1000 != 0
    }

    /// Others than its owner may add, remove or rename entries (sticky or not).
    fn shared(&self) -> bool {
        self.is_dir() && (self.mode & 0o002 != 0 || (self.mode & 0o020 != 0 && self.gid != 0))
    }

    fn who(&self) -> String {
        format!("{} (uid {})", self.user, self.uid)
    }
}

/// What the probe reported on the way to a path (see [`chain_probe`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// `/`, each directory on the way, then the path itself: the prefix that exists.
    pub entries: Vec<Entry>,
    /// When a directory on the way is a symlink: the real path of the deepest existing
    /// directory, and its own chain from `/`.
    pub real: Option<(String, Vec<Entry>)>,
}

impl Chain {
    /// Reads `chain=`, `real=` and `rchain=` from probe output; `None` without `chain=`.
    pub fn from_kv(kv: &BTreeMap<&str, &str>) -> Result<Option<Chain>, ModuleError> {
        let Some(c) = kv.get("chain") else {
            return Ok(None);
        };
        let bad = || ModuleError::new(format!("unexpected probe output: chain={c}"));
        let entries = Entry::parse_list(c).ok_or_else(bad)?;
        let real = match (kv.get("real"), kv.get("rchain")) {
            (Some(r), Some(rc)) => Some((r.to_string(), Entry::parse_list(rc).ok_or_else(bad)?)),
            _ => None,
        };
        Ok(Some(Chain { entries, real }))
    }
}

/// Who changes the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// Only root controls the directories on the way; the apply re-checks that each of
    /// `check` is still root's (`true`: it is a root-owned symlink, followed as such).
    Root { check: Vec<(String, bool)> },
    /// `user` (uid `uid`) controls `dir`, a directory on the way: act as that user.
    Owner { uid: u32, user: String, dir: String },
}

impl Writer {
    /// For tests and callers that have no probe: root, re-checking every directory on the way.
    pub fn root_for(path: &str) -> Writer {
        Writer::Root {
            check: ancestors(path)
                .into_iter()
                .skip(1)
                .map(|a| (a, false))
                .collect(),
        }
    }

    /// A line for the plan when the change is not made by root.
    pub fn note(&self) -> Option<String> {
        match self {
            Writer::Root { .. } => None,
            Writer::Owner { user, uid, dir } => Some(format!(
                "done as {user} (uid {uid}), who controls {dir}, so no link they plant can redirect it"
            )),
        }
    }

    /// Shell that runs before any change to `path`: the re-check (root), or the `__as`
    /// and `__chown` functions (owner). After it, `__as CMD...` runs a command as the
    /// writer (as itself for root) and `__chown ARGS` is `chown -h ARGS` done safely.
    pub fn prelude(&self, path: &str) -> String {
        let what = quote(path);
        match self {
            Writer::Root { check } => {
                let mut s = String::from("__chown() { chown -h \"$@\"; }\n__as() { \"$@\"; }\n");
                if check.is_empty() {
                    return s;
                }
                s.push_str(&format!(
                    "if [ -O / ]; then\n\
                     __r() {{ echo \"refusing to change \"{what}\": $1 is no longer a root-owned directory (it changed since the probe; run again)\" >&2; exit 1; }}\n"
                ));
                for (a, link) in check {
                    let q = quote(a);
                    if *link {
                        s.push_str(&format!("[ -O {q} ] || __r {q}\n"));
                    } else {
                        s.push_str(&format!("{{ [ -O {q} ] && [ ! -L {q} ]; }} || __r {q}\n"));
                    }
                }
                s.push_str("fi\n");
                s
            }
            Writer::Owner { uid, user, dir } => {
                let dir = quote(dir);
                let u = quote(user);
                format!(
                    "if [ -O / ]; then\n\
                     __g=$(id -g -- {uid}) || {{ echo \"refusing to change \"{what}\" as root: \"{dir}\" belongs to uid {uid}, which has no account to act as\" >&2; exit 1; }}\n\
                     if command -v setpriv >/dev/null; then\n\
                     __as() {{ (cd / && exec setpriv --reuid={uid} --regid=\"$__g\" --init-groups -- \"$@\"); }}\n\
                     elif command -v runuser >/dev/null; then\n\
                     __as() {{ (cd / && exec runuser -u {u} -- \"$@\"); }}\n\
                     else\n\
                     echo \"refusing to change \"{what}\" as root: \"{dir}\" belongs to \"{u}\", and neither setpriv nor runuser (util-linux) is installed to act as that user\" >&2; exit 1\n\
                     fi\n\
                     else\n\
                     __as() {{ \"$@\"; }}\n\
                     fi\n\
                     __chown() {{\n\
                     __as chown -h \"$@\" 2>/dev/null && return 0\n\
                     [ -O / ] || {{ chown -h \"$@\"; return; }}\n\
                     __ph=0; read -r __ph 2>/dev/null </proc/sys/fs/protected_hardlinks\n\
                     [ \"$__ph\" = 1 ] || {{ echo \"refusing to chown as root in \"{dir}\" (it belongs to \"{u}\"): fs.protected_hardlinks is off, so a hard link planted there could be any file\" >&2; return 1; }}\n\
                     chown -h \"$@\"\n\
                     }}\n"
                )
            }
        }
    }

    /// Shell that creates directory `path` and any missing parents. As root, the first
    /// missing one is made with a plain `mkdir`, which fails if anything appeared there,
    /// so nothing planted in a sticky directory such as /tmp is followed.
    pub fn mkdirs(&self, path: &str) -> String {
        let p = quote(path);
        match self {
            Writer::Owner { .. } => format!("__as mkdir -p -- {p} || exit 1\n"),
            Writer::Root { .. } => {
                let mut all: Vec<String> = ancestors(path).into_iter().skip(1).collect();
                all.push(path.to_string());
                let all: Vec<String> = all.iter().map(|a| quote(a)).collect();
                format!(
                    "__c=\nfor __a in {}; do if [ ! -e \"$__a\" ] && [ ! -L \"$__a\" ]; then __c=$__a; break; fi; done\n\
                     if [ -n \"$__c\" ]; then mkdir -- \"$__c\" || exit 1; [ \"$__c\" = {p} ] || mkdir -p -- {p} || exit 1; fi\n",
                    all.join(" ")
                )
            }
        }
    }

    /// Shell that sets attributes on `target` (a quoted word or `"$t"`): `spec` for
    /// `chown` (`fileops::owner_spec`), `mode` for `chmod`. As another user, `chmod` runs as
    /// that user: before a root `chown -h` takes the file away from them, or after one gives
    /// it to them.
    pub fn attrs(&self, target: &str, spec: Option<String>, mode: Option<u32>) -> String {
        let chown = spec.map(|s| format!("__chown -- {s} {target}"));
        let chmod = mode.map(|m| format!("__as chmod {m:04o} -- {target}"));
        match (self, chown, chmod) {
            (_, None, None) => String::new(),
            (_, Some(c), None) => format!("{c} || exit 1\n"),
            (_, None, Some(m)) => format!("{m} || exit 1\n"),
            (Writer::Root { .. }, Some(c), Some(m)) => format!("{c} || exit 1\n{m} || exit 1\n"),
            (Writer::Owner { .. }, Some(c), Some(m)) => {
                format!("if {m} 2>/dev/null; then {c} || exit 1; else {c} && {m} || exit 1; fi\n")
            }
        }
    }
}

/// `/`, then each directory above `path`: `/a/b/c` → `/`, `/a`, `/a/b`.
pub fn ancestors(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut out = vec!["/".to_string()];
    let mut cur = String::new();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        cur.push('/');
        cur.push_str(part);
        out.push(cur.clone());
    }
    out
}

/// Who may change `path`, from what the probe saw on the way (`exists`: the path itself
/// was there). `None` (a hand-written observation) means root, re-checked at apply.
pub fn decide(path: &str, exists: bool, chain: Option<&Chain>) -> Result<Writer, ModuleError> {
    let refuse = |why: String| ModuleError::new(format!("refusing to change {path}: {why}"));
    if !path.starts_with('/') || path.split('/').any(|c| c == "." || c == "..") {
        return Err(refuse(
            "the path must be absolute, without `.` or `..` components".into(),
        ));
    }
    let names = ancestors(path);
    let Some(chain) = chain else {
        return Ok(Writer::root_for(path));
    };
    let n = names.len();
    let e = &chain.entries;
    let (dirs, me) = match (exists, e.len()) {
        (true, l) if l == n + 1 => (&e[..n], e.last()),
        (false, l) if (1..=n).contains(&l) => (&e[..], None),
        _ => {
            return Err(ModuleError::new(format!(
                "the probe's report on the directories above {path} does not add up; run again"
            )))
        }
    };
    // uid → (user, first directory of theirs on the way)
    let mut owners: BTreeMap<u32, (String, String)> = BTreeMap::new();
    let mut check = Vec::new();
    let mut links = Vec::new();
    let mut consider = |entry: &Entry, name: &str| -> Result<(), ModuleError> {
        if entry.uid != 0 {
            owners
                .entry(entry.uid)
                .or_insert_with(|| (entry.user.clone(), name.to_string()));
        } else if entry.shared() && !entry.sticky() {
            return Err(refuse(format!(
                "{name} is writable by {} (mode {:04o}) without the sticky bit, so anyone in it could redirect root's write; make it 0755 (or 1775), or write elsewhere",
                if entry.mode & 0o002 != 0 {
                    "everyone".to_string()
                } else {
                    format!("group id {}", entry.gid)
                },
                entry.mode & 0o7777
            )));
        }
        Ok(())
    };
    for (i, entry) in dirs.iter().enumerate() {
        let name = &names[i];
        if entry.is_link() {
            let parent = i.checked_sub(1).and_then(|j| dirs.get(j));
            let parent_is_roots =
                parent.is_some_and(|p| p.uid == 0 && !p.is_link() && (p.sticky() || !p.shared()));
            if entry.uid != 0 || !parent_is_roots {
                return Err(refuse(format!(
                    "{name} is a symlink {}, so a non-root user could point it anywhere; name the real path instead",
                    if entry.uid != 0 {
                        format!("owned by {}", entry.who())
                    } else {
                        format!("in {}, which root alone does not control", names[i - 1])
                    }
                )));
            }
            links.push(name.clone());
            check.push((name.clone(), true));
            continue;
        }
        consider(entry, name)?;
        if i > 0 {
            check.push((name.clone(), false));
        }
    }
    // The directory the path is really in, for the sticky rule below.
    let mut parent = dirs.last().filter(|_| dirs.len() == n);
    if !links.is_empty() {
        let Some((real, rchain)) = &chain.real else {
            return Err(refuse(format!(
                "cannot tell where the symlink {} leads; run again",
                links.join(", ")
            )));
        };
        let mut rnames = ancestors(real);
        if real != "/" {
            rnames.push(real.clone());
        }
        if rnames.len() != rchain.len() || rchain.iter().any(Entry::is_link) {
            return Err(ModuleError::new(format!(
                "the probe's report on where {path} really leads does not add up; run again"
            )));
        }
        for (entry, name) in rchain.iter().zip(&rnames) {
            consider(entry, name)?;
        }
        parent = rchain.last().filter(|_| dirs.len() == n);
    }
    // In a sticky directory anyone may write (/tmp), the path's own owner may still
    // replace it (with a symlink, say) between a check and a chmod.
    if let (Some(me), Some(d)) = (me, parent) {
        if me.uid != 0 && d.shared() && d.sticky() {
            owners
                .entry(me.uid)
                .or_insert_with(|| (me.user.clone(), path.to_string()));
        }
    }
    let mut owners = owners.into_iter();
    match (owners.next(), owners.next()) {
        (None, _) => Ok(Writer::Root { check }),
        (Some((uid, (user, dir))), None) => Ok(Writer::Owner { uid, user, dir }),
        (Some((_, (u1, d1))), Some((_, (u2, d2)))) => Err(refuse(format!(
            "{u1} controls {d1} and {u2} controls {d2}; bosun writes only where at most one non-root user could interfere"
        ))),
    }
}

/// Shell that prints `chain=` for `$p` (holding `path`): `stat -c %f:%u:%g:%U` of `/`,
/// each existing directory on the way and the path itself when it exists, in one `stat`.
/// When a directory on the way is a symlink, also `real=` (`readlink -f` of the deepest
/// existing one) and `rchain=`, the same for that real path. With `full`, the path's own
/// `mode=`, `owner=`, `group=` and `size=` lines come from the same `stat`.
pub fn chain_probe(path: &str, full: bool) -> String {
    let anc: Vec<String> = ancestors(path).iter().map(|a| quote(a)).collect();
    let mut s = format!(
        "set -f\nset -- {}\n\
         if [ -e \"$p\" ] || [ -L \"$p\" ]; then set -- \"$@\" \"$p\"; fi\n\
         __n=$#; __k=1; __l=; __d=; __e=\n\
         for __a do\n\
         if [ $__k = 1 ] && {{ [ -e \"$__a\" ] || [ -L \"$__a\" ]; }}; then\n\
         set -- \"$@\" \"$__a\"\n\
         if [ \"$__a\" != \"$p\" ]; then __d=$__a; [ ! -L \"$__a\" ] || __l=1; else __e=1; fi\n\
         else __k=0; fi\n\
         done\nshift $__n\n",
        anc.join(" ")
    );
    if full {
        s.push_str(
            "if [ -n \"$__e\" ]; then\n\
             __s=$(stat -c '%f:%u:%g:%U %a %U %G %s' -- \"$@\") || exit 3\n\
             set -- $__s; __c=\n\
             while [ $# -gt 5 ]; do __c=\"$__c$1 \"; shift 5; done\n\
             printf 'mode=%s\\nowner=%s\\ngroup=%s\\nsize=%s\\nchain=%s\\n' \"$2\" \"$3\" \"$4\" \"$5\" \"$__c$1\"\n\
             else\n",
        );
    }
    s.push_str("__s=$(stat -c '%f:%u:%g:%U' -- \"$@\") || exit 3\necho chain=$__s\n");
    if full {
        s.push_str("fi\n");
    }
    s.push_str(
        "if [ -n \"$__l\" ]; then\n\
         __r=$(readlink -f -- \"$__d\") || exit 3\n\
         set --; __x=$__r\n\
         while [ -n \"$__x\" ]; do set -- \"$__x\" \"$@\"; __x=${__x%/*}; done\n\
         [ \"$1\" = / ] || set -- / \"$@\"\n\
         __s=$(stat -c '%f:%u:%g:%U' -- \"$@\") || exit 3\n\
         printf 'real=%s\\n' \"$__r\"; echo rchain=$__s\n\
         fi\nset +f\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str) -> Entry {
        Entry::parse(s).expect("entry")
    }

    fn chain(list: &str) -> Chain {
        Chain {
            entries: Entry::parse_list(list).expect("entries"),
            real: None,
        }
    }

    const ROOT: &str = "41ed:0:0:root";

    #[test]
    fn ancestors_of_a_path() {
        assert_eq!(ancestors("/a/b/c"), vec!["/", "/a", "/a/b"]);
        assert_eq!(ancestors("/x"), vec!["/"]);
        assert_eq!(ancestors("/a//b/"), vec!["/", "/a"]);
    }

    #[test]
    fn root_owned_directories_are_written_as_root_and_rechecked() {
        let c = chain(&format!("{ROOT} {ROOT} {ROOT} 81a4:0:0:root"));
        let w = decide("/etc/app/x.conf", true, Some(&c)).unwrap();
        assert_eq!(
            w,
            Writer::Root {
                check: vec![("/etc".into(), false), ("/etc/app".into(), false)]
            }
        );
        let p = w.prelude("/etc/app/x.conf");
        assert!(
            p.contains("{ [ -O /etc/app ] && [ ! -L /etc/app ]; } || __r /etc/app\n"),
            "{p}"
        );
        // A missing directory is created by root; the probe saw only /etc.
        let c = chain(&format!("{ROOT} {ROOT}"));
        assert!(matches!(
            decide("/etc/new/x", false, Some(&c)),
            Ok(Writer::Root { .. })
        ));
        assert_eq!(e("a1ff:0:0:root").mode & S_IFMT, S_IFLNK);
    }

    #[test]
    fn a_users_directory_is_written_as_that_user() {
        let c = chain(&format!("{ROOT} {ROOT} 41ed:1001:1001:app 81a4:0:0:root"));
        assert_eq!(
            decide("/home/app/x", true, Some(&c)).unwrap(),
            Writer::Owner {
                uid: 1001,
                user: "app".into(),
                dir: "/home/app".into()
            }
        );
        // Also when the user's directory is higher up and the parent is root's.
        let c = chain(&format!("{ROOT} {ROOT} 41ed:1001:1001:app {ROOT}"));
        assert!(matches!(
            decide("/home/app/etc/x", false, Some(&c)),
            Ok(Writer::Owner { uid: 1001, .. })
        ));
    }

    #[test]
    fn symlinks_on_the_way_are_refused_unless_root_controls_them() {
        let c = chain(&format!(
            "{ROOT} {ROOT} 41ed:1001:1001:app a1ff:1001:1001:app"
        ));
        let err = decide("/home/app/conf/x", false, Some(&c)).unwrap_err();
        assert!(
            err.0.contains("/home/app/conf is a symlink owned by app"),
            "{}",
            err.0
        );
        // A root-owned link in a user's directory: the user can replace it.
        let c = chain(&format!("{ROOT} {ROOT} 41ed:1001:1001:app a1ff:0:0:root"));
        let err = decide("/home/app/conf/x", false, Some(&c)).unwrap_err();
        assert!(
            err.0.contains("which root alone does not control"),
            "{}",
            err.0
        );
        // /var/run -> /run: fine, and followed where it leads.
        let mut c = chain(&format!("{ROOT} {ROOT} a1ff:0:0:root"));
        c.real = Some((
            "/run".into(),
            Entry::parse_list(&format!("{ROOT} {ROOT}")).unwrap(),
        ));
        let w = decide("/var/run/x.pid", false, Some(&c)).unwrap();
        assert_eq!(
            w,
            Writer::Root {
                check: vec![("/var".into(), false), ("/var/run".into(), true)]
            }
        );
        // A root link that leads into a user's directory: act as that user.
        let mut c = chain(&format!("{ROOT} {ROOT} a1ff:0:0:root"));
        c.real = Some((
            "/home/app/site".into(),
            Entry::parse_list(&format!("{ROOT} {ROOT} 41ed:1001:1001:app {ROOT}")).unwrap(),
        ));
        assert!(matches!(
            decide("/srv/site/x", false, Some(&c)),
            Ok(Writer::Owner { uid: 1001, .. })
        ));
        // Without the real path, no guess.
        let c = chain(&format!("{ROOT} {ROOT} a1ff:0:0:root"));
        assert!(decide("/srv/site/x", false, Some(&c)).is_err());
    }

    #[test]
    fn shared_directories() {
        // Writable by a group without the sticky bit: refused.
        let c = chain(&format!("{ROOT} {ROOT} 45fd:0:50:root"));
        let err = decide("/usr/local/x", false, Some(&c)).unwrap_err();
        assert!(err.0.contains("writable by group id 50"), "{}", err.0);
        // By everyone: refused.
        let c = chain(&format!("{ROOT} 41ff:0:0:root"));
        assert!(decide("/pub/x", false, Some(&c))
            .unwrap_err()
            .0
            .contains("everyone"));
        // Group root may write: root's.
        let c = chain(&format!("{ROOT} 41fd:0:0:root"));
        assert!(matches!(
            decide("/g/x", false, Some(&c)),
            Ok(Writer::Root { .. })
        ));
        // Sticky /tmp: a new file is root's to write; a file someone else owns is theirs.
        let c = chain(&format!("{ROOT} 43ff:0:0:root"));
        assert!(matches!(
            decide("/tmp/x", false, Some(&c)),
            Ok(Writer::Root { .. })
        ));
        let c = chain(&format!("{ROOT} 43ff:0:0:root 81a4:1001:1001:app"));
        assert!(matches!(
            decide("/tmp/x", true, Some(&c)),
            Ok(Writer::Owner { uid: 1001, .. })
        ));
        let c = chain(&format!("{ROOT} 43ff:0:0:root 81a4:0:0:root"));
        assert!(matches!(
            decide("/tmp/x", true, Some(&c)),
            Ok(Writer::Root { .. })
        ));
    }

    #[test]
    fn two_users_or_odd_paths_are_refused() {
        let c = chain(&format!("{ROOT} 41ed:1001:1001:a 41ed:1002:1002:b"));
        let err = decide("/a/b/x", false, Some(&c)).unwrap_err();
        assert!(
            err.0.contains("a controls /a and b controls /a/b"),
            "{}",
            err.0
        );
        assert!(decide("/a/../etc/x", false, None).is_err());
        assert!(decide("rel/x", false, None).is_err());
        // A report that does not fit the path.
        assert!(decide("/a/x", true, Some(&chain(ROOT))).is_err());
    }

    #[test]
    fn no_report_means_root_rechecked() {
        assert_eq!(
            decide("/etc/x", false, None).unwrap(),
            Writer::root_for("/etc/x")
        );
    }

    /// The generated shell, run for real as root against a directory owned by `nobody`,
    /// with the links such a user could plant. Skipped when not running as root.
    mod as_root {
        use crate::modules::copy::{self, Copy};
        use crate::modules::file::{self, File};
        use crate::modules::test_support::{run, FakeCtl};
        use crate::modules::upload::{Deploy, Upload};
        use crate::modules::writer::Writer;
        use crate::modules::{ArgError, Controller, Module, ModuleError, Observed, Plan};
        use serde_json::{json, Value};
        use std::os::unix::fs::{chown, lchown, symlink, MetadataExt, PermissionsExt};
        use std::path::{Path, PathBuf};

        const NOBODY: u32 = 65534;

        fn is_root() -> bool {
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() == 0 }
        }

        /// A root-owned 0755 directory with a root-owned `victim` file (0600) in it.
        struct Lab {
            root: PathBuf,
        }

        impl Lab {
            fn new(tag: &str) -> Lab {
                let root =
                    std::env::temp_dir().join(format!("bosun-writer-{tag}-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&root);
                std::fs::create_dir_all(&root).unwrap();
                std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
                let lab = Lab { root };
                std::fs::write(lab.victim(), "precious\n").unwrap();
                std::fs::set_permissions(lab.victim(), std::fs::Permissions::from_mode(0o600))
                    .unwrap();
                lab
            }

            fn path(&self, rel: &str) -> PathBuf {
                self.root.join(rel)
            }

            fn victim(&self) -> PathBuf {
                self.path("victim")
            }

            fn assert_victim_untouched(&self) {
                let m = std::fs::metadata(self.victim()).unwrap();
                assert_eq!(
                    std::fs::read_to_string(self.victim()).unwrap(),
                    "precious\n"
                );
                assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o600));
            }

            /// A directory owned by nobody (mode 0755).
            fn user_dir(&self, rel: &str) -> PathBuf {
                let d = self.path(rel);
                std::fs::create_dir_all(&d).unwrap();
                chown(&d, Some(NOBODY), Some(NOBODY)).unwrap();
                d
            }

            /// A symlink `at` → `to`, owned by `uid`.
            fn link(&self, to: &Path, at: &Path, uid: u32) {
                symlink(to, at).unwrap();
                lchown(at, Some(uid), Some(uid)).unwrap();
            }
        }

        impl Drop for Lab {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.root);
            }
        }

        fn s(p: &Path) -> String {
            p.to_str().unwrap().to_string()
        }

        fn plan<M: Module>(m: &M) -> Result<Plan<M::Action>, ModuleError> {
            let obs = run(&m.probe().unwrap());
            assert_eq!(obs.rc, 0, "{}", obs.stderr);
            m.plan(&obs)
        }

        fn action<M: Module>(m: &M) -> M::Action {
            match plan(m).unwrap() {
                Plan::Change(c) => c.action,
                p => panic!("expected a change, got {p:?}"),
            }
        }

        fn copy_to(path: &Path, extra: Value) -> Copy {
            let mut args = json!({"dest": s(path), "content": "new\n"});
            if let (Some(a), Value::Object(e)) = (args.as_object_mut(), extra) {
                a.extend(e);
            }
            Copy::from_args(args, &FakeCtl).unwrap()
        }

        fn owner_of(p: &Path) -> u32 {
            std::fs::symlink_metadata(p).unwrap().uid()
        }

        #[test]
        fn a_link_planted_at_dest_is_replaced_as_the_user_never_followed() {
            if !is_root() {
                return;
            }
            let lab = Lab::new("dest");
            let home = lab.user_dir("home");
            lab.link(&lab.victim(), &home.join("x"), NOBODY);
            let m = copy_to(&home.join("x"), json!({}));
            let Plan::Change(c) = plan(&m).unwrap() else {
                panic!("a change")
            };
            assert!(
                matches!(
                    &c.action,
                    copy::Action::Write {
                        writer: Writer::Owner { uid: NOBODY, .. },
                        ..
                    }
                ),
                "{:?}",
                c.action
            );
            assert!(
                c.details.iter().any(|d| d.starts_with("done as nobody")),
                "{:?}",
                c.details
            );
            let r = run(&m.apply(&c.action));
            assert_eq!(r.rc, 0, "{}", r.stderr);
            lab.assert_victim_untouched();
            let x = home.join("x");
            assert!(std::fs::symlink_metadata(&x).unwrap().is_file());
            assert_eq!(std::fs::read_to_string(&x).unwrap(), "new\n");
            assert_eq!(owner_of(&x), NOBODY);
            // Declaring another owner: root gives it away with `chown -h` only.
            let m = copy_to(
                &x,
                json!({"owner": "root", "mode": "0640", "content": "newer\n"}),
            );
            let r = run(&m.apply(&action(&m)));
            assert_eq!(r.rc, 0, "{}", r.stderr);
            let meta = std::fs::metadata(&x).unwrap();
            assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o640));
            assert_eq!(std::fs::read_to_string(&x).unwrap(), "newer\n");
        }

        #[test]
        fn a_link_planted_at_the_temp_path_is_not_followed() {
            if !is_root() {
                return;
            }
            let lab = Lab::new("temp");
            let home = lab.user_dir("home");
            let etc = lab.path("etc");
            std::fs::create_dir_all(&etc).unwrap();
            for dir in [&home, &etc] {
                let dest = dir.join("y");
                let m = copy_to(&dest, json!({"mode": "0644"}));
                let script = m.apply(&action(&m));
                let at = script.find("/.bosun.").expect("temp name") + 1;
                let temp = dir.join(&script[at..at + 19]);
                lab.link(&lab.victim(), &temp, NOBODY);
                let r = run(&script);
                assert_ne!(r.rc, 0, "{}", r.stderr);
                lab.assert_victim_untouched();
                assert!(!dest.exists());
                // (As nobody, the failed write's cleanup may already have removed it.)
                let _ = std::fs::remove_file(&temp);
            }
        }

        #[test]
        fn a_symlinked_directory_on_the_way_is_refused() {
            if !is_root() {
                return;
            }
            let lab = Lab::new("parent");
            let home = lab.user_dir("home");
            let etc = lab.path("etc");
            std::fs::create_dir_all(&etc).unwrap();
            lab.link(&etc, &home.join("conf"), NOBODY);
            let err = plan(&copy_to(&home.join("conf/z"), json!({}))).unwrap_err();
            assert!(
                err.0.contains("conf is a symlink owned by nobody"),
                "{}",
                err.0
            );
            // Even a root-owned link there: nobody can replace it.
            std::fs::remove_file(home.join("conf")).unwrap();
            lab.link(&etc, &home.join("conf"), 0);
            let err = plan(&copy_to(&home.join("conf/z"), json!({}))).unwrap_err();
            assert!(
                err.0.contains("which root alone does not control"),
                "{}",
                err.0
            );
            let err = plan(
                &File::from_args(json!({"path": s(&home.join("conf/d")), "state": "directory"}))
                    .unwrap(),
            )
            .unwrap_err();
            assert!(err.0.contains("refusing to change"), "{}", err.0);
            assert!(!etc.join("z").exists() && !etc.join("d").exists());
            // A root link in a root directory that leads into the user's: act as the user.
            lab.link(&home, &lab.path("site"), 0);
            let m = copy_to(&lab.path("site/w"), json!({}));
            let r = run(&m.apply(&action(&m)));
            assert_eq!(r.rc, 0, "{}", r.stderr);
            assert_eq!(owner_of(&home.join("w")), NOBODY);
        }

        #[test]
        fn a_directory_that_changes_hands_after_the_probe_is_refused() {
            if !is_root() {
                return;
            }
            let lab = Lab::new("recheck");
            let etc = lab.path("etc");
            std::fs::create_dir_all(&etc).unwrap();
            let m = copy_to(&etc.join("q"), json!({}));
            let a = action(&m);
            assert!(matches!(
                a,
                copy::Action::Write {
                    writer: Writer::Root { .. },
                    ..
                }
            ));
            chown(&etc, Some(NOBODY), Some(NOBODY)).unwrap();
            let r = run(&m.apply(&a));
            assert_eq!(r.rc, 1);
            assert!(
                r.stderr.contains("is no longer a root-owned directory"),
                "{}",
                r.stderr
            );
            assert!(!etc.join("q").exists());
        }

        #[test]
        fn file_module_acts_as_the_user_and_its_chmod_never_follows() {
            if !is_root() {
                return;
            }
            let lab = Lab::new("file");
            let home = lab.user_dir("home");
            let f = home.join("f");
            std::fs::write(&f, "").unwrap();
            chown(&f, Some(NOBODY), Some(NOBODY)).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
            let m =
                File::from_args(json!({"path": s(&f), "state": "file", "mode": "0644"})).unwrap();
            let a = action(&m);
            assert!(
                matches!(
                    a,
                    file::Action::Attrs {
                        writer: Writer::Owner { .. }
                    }
                ),
                "{a:?}"
            );
            // Swapped for a link between probe and apply: the chmod runs as nobody.
            std::fs::remove_file(&f).unwrap();
            lab.link(&lab.victim(), &f, NOBODY);
            let r = run(&m.apply(&a));
            assert_ne!(r.rc, 0);
            lab.assert_victim_untouched();
            // New directories and files in the user's directory are theirs.
            let d = home.join("new/deeper");
            let m = File::from_args(json!({"path": s(&d), "state": "directory", "mode": "0700"}))
                .unwrap();
            let r = run(&m.apply(&action(&m)));
            assert_eq!(r.rc, 0, "{}", r.stderr);
            assert_eq!(
                (owner_of(&d), owner_of(&home.join("new"))),
                (NOBODY, NOBODY)
            );
            let m = File::from_args(json!({"path": s(&d.join("e")), "state": "file"})).unwrap();
            let r = run(&m.apply(&action(&m)));
            assert_eq!(r.rc, 0, "{}", r.stderr);
            assert_eq!(owner_of(&d.join("e")), NOBODY);
            // In a root directory nothing changes: root creates, with a plain mkdir first.
            let d = lab.path("srv/app");
            let m = File::from_args(json!({"path": s(&d), "state": "directory"})).unwrap();
            let r = run(&m.apply(&action(&m)));
            assert_eq!(r.rc, 0, "{}", r.stderr);
            assert_eq!(owner_of(&d), 0);
        }

        struct SrcCtl(PathBuf);

        impl Controller for SrcCtl {
            fn read_file(&self, src: &str) -> Result<Vec<u8>, ArgError> {
                Err(ArgError::new(src))
            }
            fn render_template(&self, src: &str) -> Result<String, ArgError> {
                Err(ArgError::new(src))
            }
            fn find_path(&self, _: &str) -> Result<PathBuf, ArgError> {
                Ok(self.0.clone())
            }
            fn test(&self, expr: &str) -> Result<bool, ArgError> {
                Err(ArgError::new(expr))
            }
            fn var(&self, _: &str) -> Option<serde_json::Value> {
                None
            }
        }

        #[test]
        fn upload_into_a_users_directory_runs_as_that_user() {
            if !is_root() {
                return;
            }
            let lab = Lab::new("upload");
            let src = lab.path("src");
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(src.join("a.txt"), "a\n").unwrap();
            let home = lab.user_dir("home");
            let kept = lab.path("kept");
            std::fs::create_dir_all(&kept).unwrap();
            std::fs::write(kept.join("keep"), "k").unwrap();
            // The swap's `.old` name, planted as a link to a root directory.
            lab.link(&kept, &home.join("app.old"), NOBODY);
            let m = Upload::from_args(
                json!({"src": "src", "dest": s(&home.join("app"))}),
                &SrcCtl(src.clone()),
            )
            .unwrap();
            let a: Deploy = action(&m);
            assert!(
                matches!(a.writer, Writer::Owner { uid: NOBODY, .. }),
                "{a:?}"
            );
            let r = run(&m.apply(&a));
            assert_eq!(r.rc, 0, "{}", r.stderr);
            assert_eq!(
                std::fs::read_to_string(home.join("app/a.txt")).unwrap(),
                "a\n"
            );
            assert_eq!(owner_of(&home.join("app/a.txt")), NOBODY);
            assert!(
                kept.join("keep").exists(),
                "the planted link was removed, not followed"
            );
        }

        #[test]
        fn validation_in_a_users_directory_sees_a_private_copy() {
            if !is_root() {
                return;
            }
            let lab = Lab::new("validate");
            let home = lab.user_dir("home");
            let validate = format!(
                "sh -c 'case \"$1\" in {}/*) echo \"validator saw $1\"; exit 1;; esac; grep -q new \"$1\"' sh %s",
                s(&home)
            );
            let m = copy_to(
                &home.join("v"),
                json!({"validate": validate, "mode": "0600"}),
            );
            let r = run(&m.apply(&action(&m)));
            assert_eq!(r.rc, 0, "{}", r.stderr);
            assert_eq!(std::fs::read_to_string(home.join("v")).unwrap(), "new\n");
            let m = copy_to(&home.join("v2"), json!({"validate": "grep -q nope %s"}));
            let r = run(&m.apply(&action(&m)));
            assert_ne!(r.rc, 0);
            assert!(r.stderr.contains("validation failed"), "{}", r.stderr);
            let left: Vec<_> = std::fs::read_dir(&home)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(left, vec!["v"], "no temp file left behind");
        }

        #[test]
        fn shared_and_sticky_directories() {
            if !is_root() {
                return;
            }
            let lab = Lab::new("shared");
            let shared = lab.path("shared");
            std::fs::create_dir_all(&shared).unwrap();
            chown(&shared, Some(0), Some(NOBODY)).unwrap();
            std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o775)).unwrap();
            let err = plan(&copy_to(&shared.join("x"), json!({}))).unwrap_err();
            assert!(err.0.contains("writable by group id 65534"), "{}", err.0);
            let sticky = lab.path("sticky");
            std::fs::create_dir_all(&sticky).unwrap();
            std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
            // Someone else's file there: theirs to replace, so written as them.
            let f = sticky.join("f");
            std::fs::write(&f, "").unwrap();
            chown(&f, Some(NOBODY), Some(NOBODY)).unwrap();
            let a = action(&copy_to(&f, json!({})));
            assert!(matches!(
                a,
                copy::Action::Write {
                    writer: Writer::Owner { uid: NOBODY, .. },
                    ..
                }
            ));
            // A new name there is root's; a link planted at it is replaced, not followed.
            let g = sticky.join("g");
            let m = copy_to(&g, json!({}));
            let a = action(&m);
            assert!(matches!(
                a,
                copy::Action::Write {
                    writer: Writer::Root { .. },
                    ..
                }
            ));
            lab.link(&lab.victim(), &g, NOBODY);
            let r = run(&m.apply(&a));
            assert_eq!(r.rc, 0, "{}", r.stderr);
            lab.assert_victim_untouched();
            assert_eq!(owner_of(&g), 0);
            let _: Option<Observed> = None;
        }
    }
}
