//! `apt`: Debian packages, and the apt source and signing key they come from.
//!
//! One probe reads: the source file and key (through embedded `copy` probes, so a changed
//! source line shows a diff), the package states from `dpkg-query`, install candidates from
//! `apt-cache policy` (only for packages that `present` would install, or all of them for
//! `latest`), and how fresh the package lists are.
//!
//! **Cache freshness.** apt has no "last updated" record of its own, and the list files' mtimes
//! are the *server's* Last-Modified times (a repository that has not changed for a month has
//! month-old files right after an update). So freshness is the newest of:
//! - `/var/lib/apt/periodic/update-success-stamp` — bosun touches it after each successful
//!   `apt-get update` (the same file Ubuntu's apt hook and Ansible use);
//! - `/var/lib/apt/periodic/update-stamp` — Debian's apt-daily touches it after a successful
//!   update;
//! - the mtime of `/var/lib/apt/lists` itself, which changes whenever an update moves a new
//!   list into place (it misses updates that found nothing new, which only costs one extra
//!   update).
//!
//! Lists with no `*_Packages*` file at all (a fresh or cleaned image) count as never updated.
//!
//! **The cache is refreshed only when needed**:
//! - the task's source line or key changed (always: the new repository is unusable before);
//! - packages are to be installed or upgraded (or `state: latest`) and the lists are older than
//!   `cache_valid_time` — installing from stale lists fails on versions the mirror has dropped;
//! - a package to install has no candidate in the current lists (e.g. its repository was added
//!   by another task);
//! - `update_cache: true` and the lists are older than `cache_valid_time`, even with nothing to
//!   install. `update_cache: false` refreshes only for a changed source or key.
//!
//! `apt-get update` runs with `--error-on=any`: a repository that failed to download fails the
//! task, instead of stamping stale lists as fresh. It retries for up to two minutes while another
//! apt holds the lists lock (apt-daily at boot); install and remove wait for the dpkg lock the
//! same way (`DPkg::Lock::Timeout=120`).

use super::copy::{self, Copy};
use super::fileops::Attrs;
use super::support::{as_step, embed_probe, embedded, in_module, probe_failed};
use super::{
    de_one_or_many, parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan,
};
use bosun_model::shell::quote;
use serde::Deserialize;
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;

const LOCK_TIMEOUT: &str = "-o DPkg::Lock::Timeout=120";
const SUCCESS_STAMP: &str = "/var/lib/apt/periodic/update-success-stamp";
/// Where the probe looks for the time of the last update, and under which label.
const FRESHNESS: &[(&str, &str)] = &[
    ("success_stamp", SUCCESS_STAMP),
    ("daily_stamp", "/var/lib/apt/periodic/update-stamp"),
    ("lists_dir", "/var/lib/apt/lists"),
];

/// `present`, `absent` or `latest`, as for every package module.
pub use super::PackageState as State;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    #[serde(default, deserialize_with = "de_one_or_many")]
    name: Vec<String>,
    #[serde(default)]
    state: State,
    update_cache: Option<bool>,
    #[serde(default = "default_valid_time")]
    cache_valid_time: u64,
    /// One source line: `deb [signed-by=/etc/apt/keyrings/x.asc] URI SUITE COMPONENTS`.
    repo: Option<String>,
    /// File name in /etc/apt/sources.list.d (`.list` is added).
    repo_filename: Option<String>,
    /// ASCII-armored key, written where the repo line's `signed-by=` points.
    key: Option<String>,
}

fn default_valid_time() -> u64 {
    3600
}

/// A declared package: `name` or `name=version`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pkg {
    name: String,
    version: Option<String>,
}

impl Pkg {
    /// The word apt-get takes.
    fn arg(&self) -> String {
        match &self.version {
            Some(v) => format!("{}={v}", self.name),
            None => self.name.clone(),
        }
    }
}

#[derive(Debug)]
pub struct Apt {
    packages: Vec<Pkg>,
    state: State,
    update_cache: Option<bool>,
    cache_valid_time: u64,
    key: Option<Copy>,
    repo: Option<Copy>,
}

/// What happens to packages.
#[derive(Debug, PartialEq, Eq)]
pub enum Packages {
    Install {
        /// apt-get words: `name` or `name=version`.
        args: Vec<String>,
        /// A pinned version is older than the installed one.
        allow_downgrades: bool,
        /// A declared package is half-installed: `dpkg --configure -a` first.
        configure_pending: bool,
    },
    Remove(Vec<String>),
}

/// The steps apply takes, in this order.
#[derive(Debug, PartialEq, Eq)]
pub struct Action {
    pub key: Option<copy::Action>,
    pub repo: Option<copy::Action>,
    pub update: bool,
    pub packages: Option<Packages>,
}

/// A package as dpkg knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    NotInstalled,
    Installed(String),
    /// Unpacked, half-configured, half-installed or reinstall-required.
    Broken(&'static str),
}

impl Apt {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("apt", args)?;
        let mut packages: Vec<Pkg> = Vec::new();
        for n in &a.name {
            let p = parse_package(n)?;
            if let Some(other) = packages.iter().find(|q| q.name == p.name) {
                if other != &p {
                    return Err(ArgError::new(format!(
                        "apt: `{}` is declared twice with different versions",
                        p.name
                    )));
                }
                continue;
            }
            if p.version.is_some() && a.state != State::Present {
                return Err(ArgError::new(format!(
                    "apt: `{n}` pins a version, which only makes sense with state: present"
                )));
            }
            packages.push(p);
        }
        if a.key.is_some() && a.repo.is_none() {
            return Err(ArgError::new(
                "apt: `key` needs the `repo` line that uses it (signed-by=)",
            ));
        }
        if a.repo_filename.is_some() && a.repo.is_none() {
            return Err(ArgError::new("apt: `repo_filename` without `repo`"));
        }
        let (mut repo, mut key) = (None, None);
        if let Some(line) = &a.repo {
            let r = parse_repo(line).map_err(|e| ArgError::new(format!("apt: repo: {e}")))?;
            let file = match &a.repo_filename {
                Some(f) => f.strip_suffix(".list").unwrap_or(f).to_string(),
                None => r.default_filename(),
            };
            let file_ok = !file.is_empty()
                && file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !file_ok {
                // apt silently ignores files in sources.list.d with other characters.
                return Err(ArgError::new(format!(
                    "apt: repo_filename `{file}` may only use letters, digits, _ - ."
                )));
            }
            let attrs = Attrs {
                mode: Some(0o644),
                ..Attrs::default()
            };
            if let Some(k) = &a.key {
                let path = r.signed_by.as_deref().ok_or_else(|| {
                    ArgError::new("apt: `key` given, but the repo line has no signed-by= to use it")
                        .hint(format!(
                            "write the line as: deb [signed-by=/etc/apt/keyrings/{file}.asc] ..."
                        ))
                })?;
                if !path.starts_with('/') || !path.ends_with(".asc") {
                    return Err(ArgError::new(format!(
                        "apt: signed-by={path} must be an absolute path ending in .asc for an ASCII-armored key"
                    ))
                    .hint("apt reads .gpg keyrings as binary and .asc files as armored"));
                }
                if !k.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
                    return Err(ArgError::new("apt: `key` must be an ASCII-armored public key (-----BEGIN PGP PUBLIC KEY BLOCK-----)"));
                }
                let mut text = k.clone();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                key = Some(
                    Copy::from_content(path, text.into_bytes(), attrs.clone(), None, false)
                        .map_err(|e| in_module("apt", e))?,
                );
            }
            let dest = format!("/etc/apt/sources.list.d/{file}.list");
            repo = Some(
                Copy::from_content(
                    dest,
                    format!("{}\n", line.trim()).into_bytes(),
                    attrs,
                    None,
                    false,
                )
                .map_err(|e| in_module("apt", e))?,
            );
        }
        if packages.is_empty() && repo.is_none() && a.update_cache != Some(true) {
            return Err(ArgError::new("apt: nothing to do")
                .hint("give `name`, `repo`, or `update_cache: true`"));
        }
        Ok(Apt {
            packages,
            state: a.state,
            update_cache: a.update_cache,
            cache_valid_time: a.cache_valid_time,
            key,
            repo,
        })
    }

    fn names(&self) -> String {
        self.packages
            .iter()
            .map(|p| quote(&p.name))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Why the lists must be refreshed before installing, if they must.
    fn update_reason(
        &self,
        observed: &Observed,
        sources_changed: bool,
        installing: bool,
        no_candidate: &[&str],
    ) -> Result<Option<String>, ModuleError> {
        if sources_changed {
            return Ok(Some("the apt sources changed".into()));
        }
        if self.update_cache == Some(false) {
            return Ok(None);
        }
        let kv = observed.kv();
        let num = |k: &str| kv.get(k).and_then(|v| v.trim().parse::<u64>().ok());
        let now =
            num("now").ok_or_else(|| ModuleError::new("probe did not report the host's time"))?;
        let lists = num("lists").unwrap_or(0);
        let last = FRESHNESS
            .iter()
            .filter_map(|(label, _)| num(&format!("mtime.{label}")))
            .max();
        let stale = match last {
            _ if lists == 0 => Some("the package lists are empty".to_string()),
            None => Some("apt has never updated its lists".to_string()),
            Some(t) if now.saturating_sub(t) > self.cache_valid_time => Some(format!(
                "the package lists are {} old (cache_valid_time: {})",
                human(now.saturating_sub(t)),
                human(self.cache_valid_time)
            )),
            Some(_) => None,
        };
        let wants_fresh =
            installing || self.state == State::Latest || self.update_cache == Some(true);
        Ok(match stale {
            Some(why) if wants_fresh => Some(why),
            _ if !no_candidate.is_empty() => Some(format!(
                "no install candidate for {} in the current lists",
                no_candidate.join(", ")
            )),
            _ => None,
        })
    }
}

impl Module for Apt {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        let mut s = String::new();
        for (tag, file) in [("key", &self.key), ("repo", &self.repo)] {
            if let Some(p) = file.as_ref().and_then(|f| f.probe()) {
                s.push_str(&embed_probe(tag, &p));
            }
        }
        s.push_str("echo \"now=$(date +%s)\"\n");
        for (label, path) in FRESHNESS {
            s.push_str(&format!(
                "[ ! -e {path} ] || echo \"mtime.{label}=$(stat -c %Y {path})\"\n"
            ));
        }
        s.push_str(
            "set -- /var/lib/apt/lists/*_Packages*\n\
             if [ -e \"$1\" ]; then echo \"lists=$#\"; else echo lists=0; fi\n",
        );
        if self.packages.is_empty() {
            return Some(s);
        }
        let names = self.names();
        // dpkg-query exits 1 when some name is unknown to dpkg (never installed): that is
        // "absent", not a failure. 2 and up is a real error; run it again to show why.
        s.push_str(&format!(
            "q=$(LC_ALL=C dpkg-query -W -f='pkg=${{Package}}\\t${{db:Status-Abbrev}}\\t${{Version}}\\n' -- {names} 2>/dev/null)\n\
             rc=$?\n\
             if [ \"$rc\" -gt 1 ]; then LC_ALL=C dpkg-query -W -- {names} >/dev/null; echo \"dpkg-query failed (exit $rc)\" >&2; exit 3; fi\n\
             [ -z \"$q\" ] || printf '%s\\n' \"$q\"\n"
        ));
        match self.state {
            State::Absent => {}
            State::Latest => s.push_str(&format!("need=\"{names}\"\n")),
            // Candidates only for what is not installed: apt-cache is the slow part.
            State::Present => s.push_str(&format!(
                "nl='\n'\n\
                 need=\n\
                 for n in {names}; do\n\
                 case \"$nl$q$nl\" in *\"${{nl}}pkg=$n\t\"?[iWt]*) ;; *) need=\"$need $n\" ;; esac\n\
                 done\n"
            )),
        }
        if self.state != State::Absent {
            s.push_str(
                "if [ -n \"$need\" ]; then\n\
                 pol=$(LC_ALL=C apt-cache policy $need) || { echo \"apt-cache policy failed\" >&2; exit 3; }\n\
                 printf '%s\\n' \"$pol\" | sed 's/^/policy=/'\n\
                 fi\n",
            );
        }
        Some(s)
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        probe_failed(observed)?;
        let mut summary: Vec<String> = Vec::new();
        let mut details: Vec<String> = Vec::new();
        let mut diff = None;

        // Key and source file.
        let mut file_action =
            |tag: &str, file: &Option<Copy>, what: &str| -> Result<_, ModuleError> {
                let Some(f) = file else { return Ok(None) };
                match f.plan(&embedded(observed, tag))? {
                    Plan::Unchanged { .. } => Ok(None),
                    Plan::Change(c) => {
                        match c.action {
                            copy::Action::Write { .. } => {
                                summary.push(format!("write apt {what} {}", f.dest()));
                                // Keys are long armored blocks: the source line's diff is the one to show.
                                if tag == "repo" {
                                    diff = c.diff;
                                } else {
                                    details.push(format!("{what} {}: contents differ", f.dest()));
                                }
                            }
                            copy::Action::Attrs { .. } => summary.push(c.summary),
                        }
                        details.extend(c.details);
                        Ok(Some(c.action))
                    }
                }
            };
        let key = file_action("key", &self.key, "key")?;
        let repo = file_action("repo", &self.repo, "source")?;
        let sources_changed = [&key, &repo]
            .iter()
            .any(|a| matches!(a, Some(copy::Action::Write { .. })));

        // Packages.
        let statuses = parse_dpkg(observed)?;
        let candidates = parse_policy(observed);
        let candidate = |name: &str| candidates.get(name).cloned().flatten();
        let mut args: Vec<String> = Vec::new();
        let mut lines: Vec<String> = Vec::new();
        let (mut new, mut up, mut down) = (Vec::new(), Vec::new(), Vec::new());
        let mut no_candidate: Vec<&str> = Vec::new();
        let mut configure_pending = false;
        for p in &self.packages {
            let status = statuses
                .get(p.name.as_str())
                .cloned()
                .unwrap_or(Status::NotInstalled);
            match (self.state, status) {
                (State::Absent, Status::NotInstalled) => {}
                (State::Absent, Status::Installed(v)) => {
                    lines.push(format!("- {} {v}", p.name));
                    args.push(p.name.clone());
                }
                (State::Absent, Status::Broken(how)) => {
                    lines.push(format!("- {} (dpkg: {how})", p.name));
                    args.push(p.name.clone());
                }
                (_, Status::Broken(how)) => {
                    lines.push(format!("+ {} (dpkg: {how}; configured first)", p.name));
                    configure_pending = true;
                    new.push(&p.name);
                    args.push(p.arg());
                }
                (_, Status::NotInstalled) => {
                    match (&p.version, candidate(&p.name)) {
                        (_, None) => {
                            lines.push(format!("+ {} (not in the current package lists)", p.name));
                            no_candidate.push(&p.name);
                        }
                        (Some(pin), Some(_)) => lines.push(format!("+ {} {pin}", p.name)),
                        (None, Some(c)) => lines.push(format!("+ {} {c}", p.name)),
                    }
                    new.push(&p.name);
                    args.push(p.arg());
                }
                (state, Status::Installed(have)) => {
                    let want = match &p.version {
                        Some(pin) => Some(pin.clone()),
                        None if state == State::Latest => candidate(&p.name),
                        None => None,
                    };
                    if let Some(want) = want.filter(|w| *w != have) {
                        if compare_versions(&want, &have) == Ordering::Less {
                            lines.push(format!("↓ {} {have} → {want}", p.name));
                            down.push(&p.name);
                        } else {
                            lines.push(format!("↑ {} {have} → {want}", p.name));
                            up.push(&p.name);
                        }
                        args.push(p.arg());
                    }
                }
            }
        }
        let installing = self.state != State::Absent && !args.is_empty();
        let update = self.update_reason(observed, sources_changed, installing, &no_candidate)?;
        if let Some(why) = &update {
            summary.push("refresh apt cache".into());
            details.push(format!("refresh apt cache: {why}"));
        }
        details.extend(lines);
        // After a refresh, `latest` may find newer versions than the old lists showed.
        if update.is_some() && self.state == State::Latest {
            let rest: Vec<&Pkg> = self
                .packages
                .iter()
                .filter(|p| !args.contains(&p.arg()))
                .collect();
            if !rest.is_empty() {
                details.push(format!(
                    "then install the newest of: {}",
                    rest.iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                args.extend(rest.iter().map(|p| p.arg()));
            }
        }
        let count = |verb: &str, names: &[&String]| match names {
            [] => None,
            [one] => Some(format!("{verb} {one}")),
            many => Some(format!("{verb} {} packages", many.len())),
        };
        let packages = if args.is_empty() {
            None
        } else if self.state == State::Absent {
            let names: Vec<&String> = args.iter().collect();
            summary.extend(count("remove", &names));
            Some(Packages::Remove(args))
        } else {
            summary.extend(count("install", &new));
            summary.extend(count("upgrade", &up));
            summary.extend(count("downgrade", &down));
            Some(Packages::Install {
                args,
                allow_downgrades: !down.is_empty(),
                configure_pending,
            })
        };

        if summary.is_empty() {
            let what = match self.state {
                State::Present => "installed",
                State::Latest => "installed at the candidate version",
                State::Absent => "absent",
            };
            let mut parts = Vec::new();
            if !self.packages.is_empty() {
                let names: Vec<&str> = self.packages.iter().map(|p| p.name.as_str()).collect();
                parts.push(format!("{} {what}", names.join(", ")));
            }
            if self.repo.is_some() {
                parts.push("apt source up to date".into());
            }
            if parts.is_empty() {
                parts.push("package lists are fresh".into());
            }
            return Ok(Plan::unchanged(parts.join("; ")));
        }
        let mut c = Change::new(
            summary.join(", "),
            Action {
                key,
                repo,
                update: update.is_some(),
                packages,
            },
        )
        .with_details(details);
        c.diff = diff;
        Ok(Plan::Change(c))
    }

    fn apply(&self, action: &Action) -> String {
        let mut s = String::new();
        if let (Some(a), Some(k)) = (&action.key, &self.key) {
            if let Some((dir, _)) = k.dest().rsplit_once('/').filter(|(d, _)| !d.is_empty()) {
                s.push_str(&format!("mkdir -p -m 0755 -- {}\n", quote(dir)));
            }
            s.push_str(&as_step(&k.apply(a)));
        }
        if let (Some(a), Some(r)) = (&action.repo, &self.repo) {
            s.push_str(&as_step(&r.apply(a)));
        }
        if action.update {
            // The lists lock has no wait option (DPkg::Lock::Timeout covers only dpkg's).
            s.push_str(&format!(
                "n=0\n\
                 until out=$(LC_ALL=C apt-get update -q --error-on=any 2>&1); do\n\
                 case $out in\n\
                 *'Could not get lock'*) n=$((n+1)); [ \"$n\" -lt 24 ] || {{ printf '%s\\n' \"$out\" >&2; exit 1; }}; sleep 5 ;;\n\
                 *) printf '%s\\n' \"$out\" >&2; exit 1 ;;\n\
                 esac\n\
                 done\n\
                 printf '%s\\n' \"$out\"\n\
                 mkdir -p /var/lib/apt/periodic && touch {SUCCESS_STAMP}\n"
            ));
        }
        let env = "DEBIAN_FRONTEND=noninteractive";
        match &action.packages {
            None => {}
            Some(Packages::Install {
                args,
                allow_downgrades,
                configure_pending,
            }) => {
                if *configure_pending {
                    s.push_str(&format!(
                        "{env} dpkg --force-confdef --force-confold --configure -a || exit 1\n"
                    ));
                }
                let downgrades = if *allow_downgrades {
                    " --allow-downgrades"
                } else {
                    ""
                };
                s.push_str(&format!(
                    "{env} apt-get install -y -q --no-install-recommends {LOCK_TIMEOUT} \
                     -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold{downgrades} {} || exit 1\n",
                    args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
                ));
            }
            Some(Packages::Remove(args)) => s.push_str(&format!(
                "{env} apt-get remove -y -q {LOCK_TIMEOUT} {} || exit 1\n",
                args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
            )),
        }
        s
    }

    fn effects(&self) -> Effects {
        // Packages run maintainer scripts, create users, start services: anything.
        Effects::Host
    }
}

/// `name` or `name=version`, checked against Debian's package name rules.
fn parse_package(s: &str) -> Result<Pkg, ArgError> {
    let (name, version) = match s.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (s, None),
    };
    if name.contains(':') {
        return Err(ArgError::new(format!(
            "apt: `{s}`: architecture qualifiers (name:arch) are not supported"
        )));
    }
    let name_ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    if !name_ok {
        return Err(ArgError::new(format!("apt: `{s}` is not a Debian package name"))
            .hint("package names use a-z, 0-9, + - . and start with a letter or digit; pin a version with name=version"));
    }
    if let Some(v) = version {
        let ok = !v.is_empty()
            && v.starts_with(|c: char| c.is_ascii_digit())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | ':' | '-'));
        if !ok {
            return Err(ArgError::new(format!(
                "apt: `{v}` in `{s}` is not a Debian version"
            )));
        }
    }
    Ok(Pkg {
        name: name.to_string(),
        version: version.map(str::to_string),
    })
}

/// What the declared source line says.
#[derive(Debug, PartialEq, Eq)]
struct Repo {
    signed_by: Option<String>,
    uri: String,
}

impl Repo {
    /// The key's file stem (`pgdg` for `pgdg.asc`), or the repository host with `_` for dots.
    fn default_filename(&self) -> String {
        if let Some(stem) = self
            .signed_by
            .as_deref()
            .and_then(|p| p.rsplit('/').next())
            .and_then(|f| f.split('.').next())
            .filter(|s| !s.is_empty())
        {
            return stem.to_string();
        }
        let host = self
            .uri
            .split_once("://")
            .map_or(self.uri.as_str(), |(_, rest)| rest);
        let host = host.split('/').next().unwrap_or(host);
        host.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

fn parse_repo(line: &str) -> Result<Repo, String> {
    let line = line.trim();
    if line.contains('\n') {
        return Err("give one source line".into());
    }
    let rest = line
        .strip_prefix("deb-src ")
        .or_else(|| line.strip_prefix("deb "))
        .ok_or_else(|| format!("`{line}` must start with `deb ` or `deb-src `"))?
        .trim_start();
    let (options, rest) = match rest.strip_prefix('[') {
        Some(r) => {
            let (opts, after) = r.split_once(']').ok_or("unclosed [ in the options")?;
            (opts, after)
        }
        None => ("", rest),
    };
    let mut signed_by = None;
    for opt in options.split_whitespace() {
        if let Some(v) = opt.strip_prefix("signed-by=") {
            signed_by = Some(v.to_string());
        }
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words.as_slice() {
        [uri, _suite, ..] if uri.contains(':') => Ok(Repo {
            signed_by,
            uri: uri.to_string(),
        }),
        _ => Err(format!(
            "`{line}` needs a URI and a suite, e.g. deb http://deb.debian.org/debian bookworm main"
        )),
    }
}

/// dpkg's view of the declared packages, from the probe's `pkg=NAME\tSTATUS\tVERSION` lines.
/// A package dpkg does not list is not installed. With several rows for one name (one per
/// architecture), an installed one counts.
fn parse_dpkg(observed: &Observed) -> Result<BTreeMap<&str, Status>, ModuleError> {
    let mut out = BTreeMap::new();
    for row in observed
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("pkg="))
    {
        let mut f = row.split('\t');
        let (Some(name), Some(abbrev), version) = (f.next(), f.next(), f.next().unwrap_or(""))
        else {
            return Err(ModuleError::new(format!(
                "unexpected dpkg-query line: {row:?}"
            )));
        };
        let flags: Vec<char> = abbrev.chars().collect();
        let status = match (flags.get(1), flags.get(2)) {
            (_, Some('R')) => Status::Broken("reinstall required"),
            (Some('i' | 'W' | 't'), _) => Status::Installed(version.to_string()),
            (Some('n' | 'c'), _) => Status::NotInstalled,
            (Some('U'), _) => Status::Broken("unpacked, not configured"),
            (Some('F'), _) => Status::Broken("half-configured"),
            (Some('H'), _) => Status::Broken("half-installed"),
            _ => {
                return Err(ModuleError::new(format!(
                    "unexpected dpkg status `{abbrev}` for {name}"
                )))
            }
        };
        let rank = |s: &Status| match s {
            Status::Installed(_) => 2,
            Status::Broken(_) => 1,
            Status::NotInstalled => 0,
        };
        let keep = out.get(name).is_some_and(|old| rank(old) >= rank(&status));
        if !keep {
            out.insert(name, status);
        }
    }
    Ok(out)
}

/// Install candidates from the probe's `policy=` lines (`apt-cache policy` output).
/// A package apt does not know is missing from the map; `(none)` is `None`.
fn parse_policy(observed: &Observed) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in observed
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("policy="))
    {
        if !line.starts_with(' ') && line.ends_with(':') {
            let name = line.trim_end_matches(':');
            current = Some(name.split(':').next().unwrap_or(name).to_string());
        } else if let (Some(name), Some(c)) = (&current, line.trim().strip_prefix("Candidate:")) {
            let c = c.trim();
            out.insert(name.clone(), (c != "(none)").then(|| c.to_string()));
        }
    }
    out
}

/// Debian version order (dpkg's algorithm): epoch, then upstream, then revision, each
/// compared in alternating non-digit and numeric runs, with `~` sorting before everything.
fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if !e.is_empty() && e.chars().all(|c| c.is_ascii_digit()) => {
                (e.parse().unwrap_or(0), r)
            }
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((up, rev)) => (epoch, up, rev),
            None => (epoch, rest, ""),
        }
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua, ub))
        .then_with(|| compare_part(ra, rb))
}

fn compare_part(a: &str, b: &str) -> Ordering {
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(b'~') => -1,
            Some(c) => i32::from(c) + 256,
        }
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let digit = |s: &[u8], i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// `90s`, `45m`, `5h`, `3d`: rough, for plans.
fn human(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::fileops::sha256_hex;
    use crate::modules::test_support::run;
    use crate::modules::writer::Writer;
    use serde_json::json;

    fn module(v: Value) -> Apt {
        Apt::from_args(v).expect("valid args")
    }

    fn change(p: Plan<Action>) -> Change<Action> {
        match p {
            Plan::Change(c) => c,
            p => panic!("expected a change, got {p:?}"),
        }
    }

    /// Fresh lists (updated 10 minutes ago), as the probe prints them.
    const FRESH: &str = "now=1700000600\nmtime.lists_dir=1700000000\nlists=4\n";
    /// Lists last refreshed two days ago.
    const STALE: &str =
        "now=1700172800\nmtime.lists_dir=1700000000\nmtime.daily_stamp=1699990000\nlists=4\n";

    const POLICY_REDIS: &str = "policy=redis-server:\npolicy=  Installed: (none)\npolicy=  Candidate: 5:7.0.15-1~deb12u1\npolicy=  Version table:\npolicy=     5:7.0.15-1~deb12u1 500\n";

    #[test]
    fn missing_package_is_installed_from_fresh_lists() {
        let m = module(json!({"name": ["redis-server", "curl"]}));
        let o = Observed::stdout(&format!(
            "{FRESH}pkg=curl\tii \t7.88.1-10+deb12u5\n{POLICY_REDIS}"
        ));
        let c = change(m.plan(&o).unwrap());
        assert_eq!(c.summary, "install redis-server");
        assert_eq!(c.details, vec!["+ redis-server 5:7.0.15-1~deb12u1"]);
        assert_eq!(
            c.action,
            Action {
                key: None,
                repo: None,
                update: false,
                packages: Some(Packages::Install {
                    args: vec!["redis-server".into()],
                    allow_downgrades: false,
                    configure_pending: false
                })
            }
        );
        assert_eq!(
            m.apply(&c.action),
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=120 \
             -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold redis-server || exit 1\n"
        );
    }

    #[test]
    fn installed_packages_are_unchanged_even_with_stale_lists() {
        let m = module(json!({"name": "curl"}));
        let o = Observed::stdout(&format!("{STALE}pkg=curl\tii \t7.88.1-10+deb12u5\n"));
        match m.plan(&o).unwrap() {
            Plan::Unchanged { reason } => assert_eq!(reason, "curl installed"),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn stale_lists_are_refreshed_before_installing() {
        let m = module(json!({"name": ["redis-server", "nginx"]}));
        let o = Observed::stdout(&format!(
            "{STALE}{POLICY_REDIS}policy=nginx:\npolicy=  Installed: (none)\npolicy=  Candidate: 1.22.1-9\n"
        ));
        let c = change(m.plan(&o).unwrap());
        assert_eq!(c.summary, "refresh apt cache, install 2 packages");
        assert_eq!(
            c.details,
            vec![
                "refresh apt cache: the package lists are 2d old (cache_valid_time: 60m)",
                "+ redis-server 5:7.0.15-1~deb12u1",
                "+ nginx 1.22.1-9"
            ]
        );
        let script = m.apply(&c.action);
        assert!(
            script.contains("apt-get update -q --error-on=any"),
            "{script}"
        );
        assert!(
            script.contains("touch /var/lib/apt/periodic/update-success-stamp"),
            "{script}"
        );
        assert!(script.find("apt-get update").unwrap() < script.find("apt-get install").unwrap());
    }

    #[test]
    fn unknown_candidate_triggers_a_refresh_even_when_fresh() {
        let m = module(json!({"name": "postgresql-16"}));
        let c = change(m.plan(&Observed::stdout(FRESH)).unwrap());
        assert_eq!(c.summary, "refresh apt cache, install postgresql-16");
        assert_eq!(
            c.details,
            vec![
                "refresh apt cache: no install candidate for postgresql-16 in the current lists",
                "+ postgresql-16 (not in the current package lists)"
            ]
        );
        // update_cache: false means never: apt-get will say what is missing.
        let m = module(json!({"name": "postgresql-16", "update_cache": false}));
        assert!(
            !change(m.plan(&Observed::stdout(FRESH)).unwrap())
                .action
                .update
        );
    }

    #[test]
    fn empty_lists_count_as_never_updated() {
        let m = module(json!({"update_cache": true}));
        let c = change(
            m.plan(&Observed::stdout("now=100\nmtime.lists_dir=90\nlists=0\n"))
                .unwrap(),
        );
        assert_eq!(c.summary, "refresh apt cache");
        assert_eq!(
            c.details,
            vec!["refresh apt cache: the package lists are empty"]
        );
        assert!(matches!(
            m.plan(&Observed::stdout(FRESH)).unwrap(),
            Plan::Unchanged { .. }
        ));
    }

    #[test]
    fn latest_upgrades_to_the_candidate() {
        let m = module(json!({"name": ["haproxy", "curl"], "state": "latest"}));
        let o = Observed::stdout(&format!(
            "{FRESH}pkg=haproxy\tii \t2.6.12-1\npkg=curl\tii \t7.88.1-10\n\
             policy=haproxy:\npolicy=  Installed: 2.6.12-1\npolicy=  Candidate: 2.6.13-1\n\
             policy=curl:\npolicy=  Installed: 7.88.1-10\npolicy=  Candidate: 7.88.1-10\n"
        ));
        let c = change(m.plan(&o).unwrap());
        assert_eq!(c.summary, "upgrade haproxy");
        assert_eq!(c.details, vec!["↑ haproxy 2.6.12-1 → 2.6.13-1"]);
        // With stale lists, every `latest` package is installed again after the refresh.
        let stale = Observed::stdout(&o.stdout.replace(FRESH, STALE));
        let c = change(m.plan(&stale).unwrap());
        assert_eq!(c.summary, "refresh apt cache, upgrade haproxy");
        assert_eq!(
            c.details.last().unwrap(),
            "then install the newest of: curl"
        );
        match c.action.packages {
            Some(Packages::Install { args, .. }) => assert_eq!(args, vec!["haproxy", "curl"]),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn pinned_versions_can_go_down() {
        let m = module(json!({"name": "haproxy=2.6.12-1"}));
        let o = Observed::stdout(&format!("{FRESH}pkg=haproxy\tii \t2.6.13-1\n"));
        let c = change(m.plan(&o).unwrap());
        assert_eq!(c.summary, "downgrade haproxy");
        assert_eq!(c.details, vec!["↓ haproxy 2.6.13-1 → 2.6.12-1"]);
        let script = m.apply(&c.action);
        assert!(
            script.contains("--allow-downgrades haproxy=2.6.12-1 ||"),
            "{script}"
        );
        let same = Observed::stdout(&format!("{FRESH}pkg=haproxy\tii \t2.6.12-1\n"));
        assert!(matches!(m.plan(&same).unwrap(), Plan::Unchanged { .. }));
    }

    #[test]
    fn absent_removes_installed_packages_only() {
        let m = module(json!({"name": ["nano", "vim-tiny", "ed"], "state": "absent"}));
        let o = Observed::stdout(&format!(
            "{STALE}pkg=nano\tii \t7.2-1\npkg=vim-tiny\trc \t2:9.0\n"
        ));
        let c = change(m.plan(&o).unwrap());
        assert_eq!(c.summary, "remove nano");
        assert_eq!(c.details, vec!["- nano 7.2-1"]);
        assert!(!c.action.update, "removing needs no fresh lists");
        assert_eq!(
            m.apply(&c.action),
            "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q -o DPkg::Lock::Timeout=120 nano || exit 1\n"
        );
        let none = Observed::stdout(&format!("{STALE}pkg=nano\tun \t\n"));
        match m.plan(&none).unwrap() {
            Plan::Unchanged { reason } => assert_eq!(reason, "nano, vim-tiny, ed absent"),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn half_configured_package_is_configured_then_installed() {
        let m = module(json!({"name": "postgresql-15"}));
        let o = Observed::stdout(&format!("{FRESH}pkg=postgresql-15\tiF \t15.8-0+deb12u1\n"));
        let c = change(m.plan(&o).unwrap());
        assert_eq!(
            c.details,
            vec!["+ postgresql-15 (dpkg: half-configured; configured first)"]
        );
        let script = m.apply(&c.action);
        assert!(script.starts_with(
            "DEBIAN_FRONTEND=noninteractive dpkg --force-confdef --force-confold --configure -a"
        ));
    }

    const KEY: &str =
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\nmQINBE...\n-----END PGP PUBLIC KEY BLOCK-----\n";
    const LINE: &str =
        "deb [signed-by=/etc/apt/keyrings/pgdg.asc] http://apt.postgresql.org/pub/repos/apt bookworm-pgdg main";

    #[test]
    fn new_repo_and_key_are_written_then_the_cache_refreshed() {
        let m = module(json!({"repo": LINE, "key": KEY, "name": "postgresql-16"}));
        let probe = m.probe().unwrap();
        assert!(probe.contains("p=/etc/apt/keyrings/pgdg.asc"), "{probe}");
        assert!(
            probe.contains("p=/etc/apt/sources.list.d/pgdg.list"),
            "{probe}"
        );
        let o = Observed::stdout(&format!("key.type=absent\nrepo.type=absent\n{FRESH}"));
        let c = change(m.plan(&o).unwrap());
        assert_eq!(
            c.summary,
            "write apt key /etc/apt/keyrings/pgdg.asc, write apt source /etc/apt/sources.list.d/pgdg.list, \
             refresh apt cache, install postgresql-16"
        );
        assert_eq!(
            c.diff.as_ref().unwrap().after.as_deref(),
            Some(format!("{LINE}\n").as_str())
        );
        assert!(c
            .details
            .contains(&"refresh apt cache: the apt sources changed".to_string()));
        let script = m.apply(&c.action);
        let order: Vec<usize> = [
            "mkdir -p -m 0755 -- /etc/apt/keyrings",
            "p=/etc/apt/keyrings/pgdg.asc",
            "p=/etc/apt/sources.list.d/pgdg.list",
            "apt-get update",
            "apt-get install",
        ]
        .iter()
        .map(|s| {
            script
                .find(s)
                .unwrap_or_else(|| panic!("{s} missing in {script}"))
        })
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{script}");
    }

    #[test]
    fn matching_repo_and_key_change_nothing() {
        let m = module(json!({"repo": LINE, "key": KEY, "update_cache": false}));
        let o = Observed::stdout(&format!(
            "key.type=file\nkey.mode=644\nkey.sha256={}\nrepo.type=file\nrepo.mode=644\nrepo.sha256={}\n{STALE}",
            sha256_hex(KEY.as_bytes()),
            sha256_hex(format!("{LINE}\n").as_bytes())
        ));
        match m.plan(&o).unwrap() {
            Plan::Unchanged { reason } => assert_eq!(reason, "apt source up to date"),
            p => panic!("{p:?}"),
        }
        // A changed key alone refreshes the cache even with update_cache: false.
        let changed_key = Observed::stdout(&o.stdout.replace(&sha256_hex(KEY.as_bytes()), "0ld"));
        let c = change(m.plan(&changed_key).unwrap());
        assert_eq!(
            c.summary,
            "write apt key /etc/apt/keyrings/pgdg.asc, refresh apt cache"
        );
        assert_eq!(
            c.details[0],
            "key /etc/apt/keyrings/pgdg.asc: contents differ"
        );
    }

    #[test]
    fn bad_args_are_rejected() {
        let bad = |v: Value| Apt::from_args(v).unwrap_err().message;
        assert!(bad(json!({"name": "Redis"})).contains("not a Debian package name"));
        assert!(bad(json!({"name": "redis; rm -rf /"})).contains("not a Debian package name"));
        assert!(bad(json!({"name": "libc6:i386"})).contains("architecture"));
        assert!(bad(json!({"name": "curl=abc"})).contains("not a Debian version"));
        assert!(bad(json!({"name": "curl=7.88", "state": "latest"})).contains("state: present"));
        assert!(bad(json!({"name": ["curl=1", "curl=2"]})).contains("twice"));
        assert!(bad(json!({})).contains("nothing to do"));
        assert!(bad(json!({"key": KEY})).contains("repo"));
        assert!(bad(json!({"repo": "http://x bookworm main"})).contains("deb "));
        assert!(bad(json!({"repo": "deb http://x bookworm", "key": KEY})).contains("signed-by"));
        assert!(
            bad(json!({"repo": "deb [signed-by=/k.gpg] http://x b", "key": KEY})).contains(".asc")
        );
        assert!(bad(json!({"repo": LINE, "key": "not a key"})).contains("ASCII-armored"));
        assert!(bad(json!({"repo": LINE, "repo_filename": "my repo"})).contains("repo_filename"));
        assert!(bad(json!({"name": "curl", "stat": "present"})).contains("stat"));
    }

    #[test]
    fn repo_filenames_default_from_key_or_host() {
        let r = parse_repo("deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable").unwrap();
        assert_eq!(r.default_filename(), "docker");
        let r = parse_repo("deb http://deb.debian.org/debian bookworm-backports main").unwrap();
        assert_eq!(r.default_filename(), "deb_debian_org");
        let m = module(
            json!({"repo": "deb http://deb.debian.org/debian bookworm-backports main", "repo_filename": "backports.list"}),
        );
        assert_eq!(
            m.repo.as_ref().unwrap().dest(),
            "/etc/apt/sources.list.d/backports.list"
        );
    }

    #[test]
    fn versions_compare_like_dpkg() {
        use Ordering::*;
        let cases = [
            ("1.0~rc1", "1.0", Less),
            ("2.6.12-1", "2.6.13-1", Less),
            ("1:1.0", "2.0", Greater),
            ("1.0-1", "1.0-1+deb12u1", Less),
            ("7.0.15-1~deb12u1", "7.0.15-1", Less),
            ("1.10", "1.9", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0", "1.00", Equal),
            ("2:9.0", "2:9.0", Equal),
            ("1.0+b1", "1.0", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn several_architectures_count_as_installed() {
        let o = Observed::stdout("pkg=libc6\tii \t2.36\npkg=libc6\tun \t\npkg=x\tiU \t1\n");
        let s = parse_dpkg(&o).unwrap();
        assert_eq!(s.get("libc6"), Some(&Status::Installed("2.36".into())));
        assert_eq!(
            s.get("x"),
            Some(&Status::Broken("unpacked, not configured"))
        );
        assert!(parse_dpkg(&Observed::stdout("pkg=x\n")).is_err());
    }

    /// The real probe against this machine's dpkg and apt (read-only): `dash` is installed
    /// on every Debian, the other name exists nowhere.
    #[test]
    fn probe_reads_this_machines_dpkg() {
        let m = module(json!({"name": ["dash", "bosun-no-such-package"]}));
        let o = run(&m.probe().unwrap());
        assert_eq!(o.rc, 0, "{}", o.stderr);
        let dpkg = parse_dpkg(&o).unwrap();
        assert!(
            matches!(dpkg.get("dash"), Some(Status::Installed(v)) if !v.is_empty()),
            "{o:?}"
        );
        assert_eq!(dpkg.get("bosun-no-such-package"), None);
        // Only the missing package was looked up, and apt does not know it.
        assert!(!o.stdout.contains("policy=dash:"), "{}", o.stdout);
        assert!(!parse_policy(&o).contains_key("bosun-no-such-package"));
        let kv = o.kv();
        assert!(kv.get("now").unwrap().parse::<u64>().is_ok());
        assert!(kv.contains_key("lists"));
        let c = change(m.plan(&o).unwrap());
        assert_eq!(
            c.summary,
            "refresh apt cache, install bosun-no-such-package"
        );

        let latest = module(json!({"name": ["dash", "bosun-no-such-package"], "state": "latest"}));
        let o = run(&latest.probe().unwrap());
        assert_eq!((o.rc, o.stderr.as_str()), (0, ""));
        let policy = parse_policy(&o);
        assert!(matches!(policy.get("dash"), Some(Some(_))), "{}", o.stdout);
        assert!(!policy.contains_key("bosun-no-such-package"));
    }

    #[test]
    fn scripts_are_valid_sh() {
        let m = module(json!({"repo": LINE, "key": KEY, "name": ["a1", "b2"]}));
        let action = Action {
            key: Some(copy::Action::Write {
                backup: false,
                replaces_link: false,
                writer: Writer::root_for("/etc/apt/keyrings/x.asc"),
            }),
            repo: Some(copy::Action::Attrs {
                writer: Writer::root_for("/etc/apt/sources.list.d/x.list"),
            }),
            update: true,
            packages: Some(Packages::Install {
                args: vec!["a1".into(), "b2=1.0".into()],
                allow_downgrades: true,
                configure_pending: true,
            }),
        };
        for script in [m.probe().unwrap(), m.apply(&action)] {
            let out = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}\n{script}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
