//! `npm`: Node packages, globally or in a project directory, or a project's locked install.
//!
//! Three ways to use it:
//! - `name` (one or a list of `pkg`, `pkg@1.2.3`, `pkg@^1.2`, `@scope/pkg@1.2.3`) with
//!   `global: true` or a project `path`: the probe lists what is installed (`npm ls --json
//!   --depth=0`, no network) and plan installs only packages that are missing or whose
//!   installed version does not satisfy the declared one. Exact versions and semver ranges
//!   (`^`, `~`, `x`-ranges, comparators, hyphen ranges, `||`) are checked here; a dist-tag
//!   (`pkg@next`) is satisfied by any installed version. Pre-release versions are ordered
//!   as semver orders them, without npm's rule that ranges exclude them. Local installs are
//!   saved to `package.json`, as `npm install pkg` does.
//! - `path` alone: install the project's dependencies (`npm install`) when `npm ls` reports
//!   one missing or not matching `package.json`.
//! - `ci: true` with `path`: `npm ci` when `node_modules` is missing or `package-lock.json`
//!   changed. After a successful run the lock file's sha256 (and `extra_args`) is recorded
//!   in `node_modules/.bosun-lock.sha256`; `npm ci` wipes `node_modules`, so the stamp can
//!   never outlive the tree it describes. Delete it to force a fresh `npm ci`.
//!
//! `npm ls` exits non-zero when the tree has problems (missing, invalid, extraneous) yet
//! still prints valid JSON describing them; the probe keeps the JSON and the exit code and
//! plan reads the problems. Output that is not JSON, or an `error` other than
//! `ELSPROBLEMS`, fails the plan with npm's message. Without npm the probe fails with a
//! clear message. Probes pass `--logs-max=0 --no-update-notifier` so they write no log
//! files and do not contact the registry.
//!
//! `state: latest` cannot be decided without the registry, so it always runs (the plan says
//! so); pin versions for quiet converges.

use super::command::split_words;
use super::support::probe_failed;
use super::{
    de_one_or_many, parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan,
};
use base64::Engine;
use bosun_model::shell::{quote, quote_all};
use serde::Deserialize;
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The `npm ci` stamp, inside `node_modules`.
pub const STAMP: &str = "node_modules/.bosun-lock.sha256";

/// `present`, `absent` or `latest`, as for every package module.
pub use super::PackageState as State;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    #[serde(default, deserialize_with = "de_one_or_many")]
    name: Vec<String>,
    #[serde(default)]
    global: bool,
    path: Option<String>,
    #[serde(default)]
    state: State,
    #[serde(default)]
    ci: bool,
    extra_args: Option<String>,
}

/// What the task manages.
#[derive(Debug)]
enum Mode {
    Packages(Vec<Package>),
    /// The dependencies declared in `path/package.json`.
    Deps,
    Ci,
}

#[derive(Debug)]
pub struct Npm {
    mode: Mode,
    /// `None` for global installs.
    path: Option<String>,
    state: State,
    extra_args: Vec<String>,
}

/// What apply does.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Install { specs: Vec<String> },
    Uninstall { names: Vec<String> },
    InstallDeps,
    Ci,
}

impl Npm {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("npm", args)?;
        if let Some(p) = &a.path {
            if !p.starts_with('/') {
                return Err(ArgError::new(format!("npm: path `{p}` must be absolute")));
            }
        }
        if a.global && a.path.is_some() {
            return Err(ArgError::new(
                "npm: give `global: true` or a project `path`, not both",
            ));
        }
        let mode = if a.ci {
            if a.path.is_none() || a.global || !a.name.is_empty() || a.state != State::Present {
                return Err(ArgError::new(
                    "npm: `ci: true` takes a project `path` and no `name`, `global` or `state`",
                ));
            }
            Mode::Ci
        } else if a.name.is_empty() {
            if a.path.is_none() {
                return Err(ArgError::new(
                    "npm: give `name` (with `global: true` or `path`), or a project `path`",
                ));
            }
            if a.state != State::Present {
                return Err(ArgError::new("npm: without `name`, only state present applies (install the project's dependencies)"));
            }
            Mode::Deps
        } else {
            if !a.global && a.path.is_none() {
                return Err(ArgError::new(
                    "npm: packages need `global: true` or a project `path`",
                ));
            }
            let pkgs = a
                .name
                .iter()
                .map(|n| Package::parse(n).map_err(|e| ArgError::new(format!("npm: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            if a.state != State::Present {
                if let Some(p) = pkgs.iter().find(|p| p.want.is_some()) {
                    return Err(ArgError::new(format!(
                        "npm: state {} takes package names without versions, not `{}`",
                        if a.state == State::Absent {
                            "absent"
                        } else {
                            "latest"
                        },
                        p.raw
                    )));
                }
            }
            Mode::Packages(pkgs)
        };
        let extra_args = match a.extra_args {
            Some(e) => {
                split_words(&e).map_err(|e| ArgError::new(format!("npm: extra_args: {e}")))?
            }
            None => Vec::new(),
        };
        Ok(Npm {
            mode,
            path: a.path,
            state: a.state,
            extra_args,
        })
    }

    /// "globally" or "in /srv/app".
    fn place(&self) -> String {
        match &self.path {
            Some(p) => format!("in {p}"),
            None => "globally".into(),
        }
    }

    fn flags(&self) -> String {
        let mut s = String::new();
        if self.path.is_none() {
            s.push_str(" -g");
        }
        s.push_str(" --no-fund --no-audit --no-update-notifier");
        if !self.extra_args.is_empty() {
            s.push(' ');
            s.push_str(&quote_all(&self.extra_args));
        }
        s
    }

    fn plan_packages(&self, pkgs: &[Package], seen: &Seen) -> Plan<Action> {
        let place = self.place();
        let installed = |p: &Package| {
            seen.deps
                .get(&p.name)
                .filter(|d| !d.missing && d.version.is_some())
        };
        match self.state {
            State::Absent => {
                let present: Vec<(&Package, &Dep)> = pkgs
                    .iter()
                    .filter_map(|p| installed(p).map(|d| (p, d)))
                    .collect();
                if present.is_empty() {
                    return Plan::unchanged(format!(
                        "{} not installed {place}",
                        if pkgs.len() == 1 {
                            format!("{} is", pkgs[0].name)
                        } else {
                            "none of the packages is".into()
                        }
                    ));
                }
                let names: Vec<String> = present.iter().map(|(p, _)| p.name.clone()).collect();
                let details = present
                    .iter()
                    .map(|(p, d)| format!("{}@{}", p.name, d.version.as_deref().unwrap_or("?")))
                    .collect();
                Plan::Change(
                    Change::new(
                        format!("remove {} {place}", names.join(", ")),
                        Action::Uninstall { names },
                    )
                    .with_details(details),
                )
            }
            State::Latest => {
                let specs: Vec<String> =
                    pkgs.iter().map(|p| format!("{}@latest", p.name)).collect();
                let mut c = Change::new(
                    format!(
                        "upgrade {} {place}",
                        count_or_name(pkgs.iter().map(|p| p.name.clone()).collect())
                    ),
                    Action::Install { specs },
                )
                .with_details(vec![
                    "always runs: state latest asks the registry for newer versions".into(),
                ]);
                c.always = true;
                Plan::Change(c)
            }
            State::Present => {
                let mut details = Vec::new();
                if !seen.dir {
                    details.push(format!(
                        "{} does not exist yet (predicted: an earlier task must create it, or the install fails)",
                        self.path.as_deref().unwrap_or_default()
                    ));
                }
                let mut specs = Vec::new();
                for p in pkgs {
                    let why = match installed(p) {
                        None => "not installed".to_string(),
                        Some(d) => {
                            let v = d.version.as_deref().unwrap_or_default();
                            match &p.want {
                                Some(w) if !w.matches(v) => format!("installed {v}"),
                                _ if d.invalid => {
                                    format!("installed {v}, not matching package.json")
                                }
                                _ => continue,
                            }
                        }
                    };
                    details.push(format!("{} ({why})", p.raw));
                    specs.push(p.raw.clone());
                }
                if specs.is_empty() {
                    return Plan::unchanged(format!(
                        "{} installed {place}",
                        if pkgs.len() == 1 {
                            format!("{} is", pkgs[0].raw)
                        } else {
                            format!("all {} packages are", pkgs.len())
                        }
                    ));
                }
                Plan::Change(
                    Change::new(
                        format!("install {} {place}", count_or_name(specs.clone())),
                        Action::Install { specs },
                    )
                    .with_details(details),
                )
            }
        }
    }

    fn plan_deps(&self, seen: &Seen) -> Plan<Action> {
        let p = self.path.as_deref().unwrap_or_default();
        let summary = format!("install the dependencies of {p}");
        if !seen.dir || !seen.package_json {
            let what = if seen.dir {
                format!("{p}/package.json")
            } else {
                p.to_string()
            };
            return Plan::Change(Change::new(summary, Action::InstallDeps).with_details(vec![format!(
                "{what} does not exist yet (predicted: an earlier task must create it, or the install fails)"
            )]));
        }
        let details: Vec<String> = seen
            .deps
            .iter()
            .filter_map(|(name, d)| match (&d.version, d.missing, d.invalid) {
                (_, true, _) => Some(format!(
                    "{name}{} (missing)",
                    d.required
                        .as_deref()
                        .map(|r| format!("@{r}"))
                        .unwrap_or_default()
                )),
                (v, _, true) => Some(format!(
                    "{name} {} (does not match package.json)",
                    v.as_deref().unwrap_or("?")
                )),
                _ => None,
            })
            .collect();
        if details.is_empty() {
            Plan::unchanged(format!("the dependencies of {p} are installed"))
        } else {
            Plan::Change(Change::new(summary, Action::InstallDeps).with_details(details))
        }
    }

    fn plan_ci(&self, seen: &Seen) -> Plan<Action> {
        let p = self.path.as_deref().unwrap_or_default();
        let want_args = quote_all(&self.extra_args);
        let why = if !seen.dir {
            format!("{p} does not exist yet (predicted: an earlier task must create it, or npm ci fails)")
        } else if seen.lock_sha256.is_none() {
            format!("{p}/package-lock.json does not exist yet (predicted: an earlier task must create it, or npm ci fails)")
        } else if !seen.node_modules {
            "node_modules is missing".into()
        } else {
            match (&seen.lock_sha256, &seen.stamp_sha256) {
                (_, None) => "node_modules was not installed by bosun's npm ci".into(),
                (Some(now), Some(then)) if now != then => {
                    format!(
                        "package-lock.json changed since the last npm ci (sha256 {} → {})",
                        short(then),
                        short(now)
                    )
                }
                _ if seen.stamp_args.as_deref().unwrap_or_default() != want_args => format!(
                    "extra_args changed since the last npm ci ({:?} → {want_args:?})",
                    seen.stamp_args.as_deref().unwrap_or_default()
                ),
                (Some(now), _) => {
                    return Plan::unchanged(format!(
                        "node_modules in {p} matches package-lock.json (sha256 {})",
                        short(now)
                    ))
                }
                (None, _) => "package-lock.json is missing".into(),
            }
        };
        Plan::Change(Change::new(format!("run npm ci in {p}"), Action::Ci).with_details(vec![why]))
    }
}

/// One dependency as `npm ls --json` lists it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Dep {
    version: Option<String>,
    /// The range package.json asks for, when npm says.
    required: Option<String>,
    missing: bool,
    invalid: bool,
}

/// What the probe saw.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    /// The project directory exists (always true for global).
    dir: bool,
    package_json: bool,
    deps: BTreeMap<String, Dep>,
    node_modules: bool,
    lock_sha256: Option<String>,
    stamp_sha256: Option<String>,
    stamp_args: Option<String>,
}

/// Reads `npm ls --json` output: the top-level dependencies and their problems.
fn parse_ls(json: &str, stderr: &str) -> Result<BTreeMap<String, Dep>, ModuleError> {
    let v: Value = serde_json::from_str(json).map_err(|e| {
        let why = stderr.trim();
        ModuleError::new(if why.is_empty() {
            format!("npm ls printed no JSON ({e})")
        } else {
            format!("npm ls failed: {why}")
        })
    })?;
    if let Some(err) = v.get("error") {
        let code = err.get("code").and_then(Value::as_str).unwrap_or_default();
        if code != "ELSPROBLEMS" {
            let summary = err.get("summary").and_then(Value::as_str).unwrap_or(code);
            return Err(ModuleError::new(format!(
                "npm ls failed: {code}: {summary}"
            )));
        }
    }
    let mut deps = BTreeMap::new();
    if let Some(map) = v.get("dependencies").and_then(Value::as_object) {
        for (name, d) in map {
            // `invalid` is `true` in older npm and a reason string in newer ones.
            let flag = |k: &str| {
                d.get(k)
                    .is_some_and(|x| !matches!(x, Value::Null | Value::Bool(false)))
            };
            deps.insert(
                name.clone(),
                Dep {
                    version: d.get("version").and_then(Value::as_str).map(String::from),
                    required: d.get("required").and_then(Value::as_str).map(String::from),
                    missing: flag("missing"),
                    invalid: flag("invalid"),
                },
            );
        }
    }
    Ok(deps)
}

fn parse_seen(obs: &Observed, global: bool) -> Result<Seen, ModuleError> {
    probe_failed(obs)?;
    let kv = obs.kv();
    let dir = global || kv.get("dir") == Some(&"present");
    if !global && !matches!(kv.get("dir").copied(), Some("present") | Some("absent")) {
        return Err(ModuleError::new(format!(
            "unexpected probe output: {:?}",
            obs.stdout
        )));
    }
    let deps = match kv.get("ls_b64") {
        Some(b) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| ModuleError::new(format!("probe sent bad base64: {e}")))?;
            parse_ls(&String::from_utf8_lossy(&raw), &obs.stderr)?
        }
        None if global => {
            return Err(ModuleError::new(format!(
                "unexpected probe output: {:?}",
                obs.stdout
            )))
        }
        None => BTreeMap::new(),
    };
    Ok(Seen {
        dir,
        package_json: kv.get("package_json") == Some(&"yes"),
        deps,
        node_modules: kv.get("node_modules") == Some(&"present"),
        lock_sha256: kv.get("lock_sha256").map(|s| s.to_string()),
        stamp_sha256: kv
            .get("stamp_sha256")
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string()),
        stamp_args: kv.get("stamp_args").map(|s| s.to_string()),
    })
}

impl Module for Npm {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        let mut s = String::from(
            "command -v npm >/dev/null 2>&1 || { echo 'npm is not installed on this host (install nodejs and npm first)' >&2; exit 3; }\n",
        );
        let ls = |g: &str| {
            format!(
                "out=$(npm ls{g} --json --depth=0 --logs-max=0 --no-update-notifier)\n\
                 echo \"ls_rc=$?\"\n\
                 printf 'ls_b64='; printf '%s' \"$out\" | base64 -w0; echo\n"
            )
        };
        match &self.path {
            None => s.push_str(&ls(" -g")),
            Some(p) => {
                s.push_str(&format!(
                    "d={}\n\
                     if [ ! -d \"$d\" ]; then echo dir=absent; exit 0; fi\n\
                     echo dir=present\n\
                     cd \"$d\" || exit 3\n\
                     if [ -f package.json ]; then echo package_json=yes; fi\n",
                    quote(p)
                ));
                match self.mode {
                    Mode::Ci => s.push_str(&format!(
                        "if [ -f package-lock.json ]; then h=$(sha256sum < package-lock.json) || exit 3; echo \"lock_sha256=${{h%% *}}\"; fi\n\
                         if [ -d node_modules ]; then echo node_modules=present; fi\n\
                         if [ -f {STAMP} ]; then {{ read -r s1; read -r s2; }} < {STAMP}; echo \"stamp_sha256=$s1\"; echo \"stamp_$s2\"; fi\n"
                    )),
                    _ => s.push_str(&ls("")),
                }
            }
        }
        Some(s)
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        let seen = parse_seen(observed, self.path.is_none())?;
        Ok(match &self.mode {
            Mode::Packages(pkgs) => self.plan_packages(pkgs, &seen),
            Mode::Deps => self.plan_deps(&seen),
            Mode::Ci => self.plan_ci(&seen),
        })
    }

    fn apply(&self, action: &Action) -> String {
        let mut s = String::new();
        if let Some(p) = &self.path {
            s.push_str(&format!(
                "d={}\ncd \"$d\" || {{ printf 'npm: directory %s does not exist\\n' \"$d\" >&2; exit 1; }}\n",
                quote(p)
            ));
        }
        let flags = self.flags();
        match action {
            Action::Install { specs } => s.push_str(&format!("npm install{flags} {}\n", quote_all(specs))),
            Action::Uninstall { names } => s.push_str(&format!("npm uninstall{flags} {}\n", quote_all(names))),
            Action::InstallDeps => s.push_str(&format!(
                "[ -f package.json ] || {{ printf 'npm: no package.json in %s\\n' \"$d\" >&2; exit 1; }}\n\
                 npm install{flags}\n"
            )),
            Action::Ci => s.push_str(&format!(
                "[ -f package-lock.json ] || {{ printf 'npm: npm ci needs package-lock.json in %s\\n' \"$d\" >&2; exit 1; }}\n\
                 h=$(sha256sum < package-lock.json) || exit 1; h=${{h%% *}}\n\
                 npm ci{flags} || exit 1\n\
                 mkdir -p node_modules && printf '%s\\nargs=%s\\n' \"$h\" {} > {STAMP}\n",
                quote(&quote_all(&self.extra_args))
            )),
        }
        s
    }

    fn effects(&self) -> Effects {
        match &self.path {
            Some(p) => Effects::Paths(vec![p.clone()]),
            None => Effects::Host,
        }
    }

    /// Starts an interpreter or a client on every probe.
    fn slow_probe(&self) -> bool {
        true
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// "pm2@5.3.0" for one, "3 packages" for more.
fn count_or_name(items: Vec<String>) -> String {
    match items.as_slice() {
        [one] => one.clone(),
        many => format!("{} packages", many.len()),
    }
}

// ---------------------------------------------------------------------------------------
// Package specs and semver.
// ---------------------------------------------------------------------------------------

/// One entry of `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub raw: String,
    /// `pkg` or `@scope/pkg`.
    pub name: String,
    pub want: Option<Want>,
}

/// The version part of `pkg@...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    Range(Range),
    /// A dist-tag such as `next`: cannot be checked without the registry.
    Tag(String),
}

impl Want {
    fn matches(&self, installed: &str) -> bool {
        match self {
            Want::Range(r) => Semver::parse(installed).is_some_and(|v| r.matches(&v)),
            Want::Tag(_) => true,
        }
    }
}

fn valid_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 214
        && !s.starts_with(['.', '_'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

impl Package {
    pub fn parse(s: &str) -> Result<Package, String> {
        let raw = s.trim();
        let at = if let Some(rest) = raw.strip_prefix('@') {
            rest.find('@').map(|i| i + 1)
        } else {
            raw.find('@')
        };
        let (name, version) = match at {
            Some(i) => (&raw[..i], Some(raw[i + 1..].trim())),
            None => (raw, None),
        };
        let name_ok = match name.strip_prefix('@') {
            Some(scoped) => scoped
                .split_once('/')
                .is_some_and(|(sc, n)| valid_name_part(sc) && valid_name_part(n)),
            None => valid_name_part(name),
        };
        if !name_ok {
            return Err(format!(
                "`{raw}` is not a registry package like `pkg`, `pkg@1.2.3` or `@scope/pkg@^1.2`"
            ));
        }
        let want = match version {
            None => None,
            Some("") => return Err(format!("`{raw}`: nothing after `@`")),
            Some(v) if v.contains([':', '/', '#']) => {
                return Err(format!(
                    "`{raw}`: only registry versions are supported, not URLs, paths or git refs"
                ))
            }
            Some(v) => Some(match Range::parse(v) {
                Some(r) => Want::Range(r),
                None if v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) =>
                {
                    Want::Tag(v.to_string())
                }
                None => {
                    return Err(format!(
                        "`{raw}`: `{v}` is neither a version, a range nor a tag"
                    ))
                }
            }),
        };
        Ok(Package {
            raw: raw.to_string(),
            name: name.to_string(),
            want,
        })
    }
}

/// A semantic version (build metadata dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Semver {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<String>,
}

impl Semver {
    fn new(major: u64, minor: u64, patch: u64) -> Self {
        Semver {
            major,
            minor,
            patch,
            pre: Vec::new(),
        }
    }

    pub fn parse(s: &str) -> Option<Semver> {
        let p = Partial::parse(s)?;
        match (p.major, p.minor, p.patch) {
            (Some(major), Some(minor), Some(patch)) => Some(Semver {
                major,
                minor,
                patch,
                pre: p.pre,
            }),
            _ => None,
        }
    }
}

impl Ord for Semver {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(o.major, o.minor, o.patch))
            .then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&o.pre) {
                        let c = match (a.parse::<u64>(), b.parse::<u64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            _ => a.cmp(b),
                        };
                        if c != Ordering::Equal {
                            return c;
                        }
                    }
                    self.pre.len().cmp(&o.pre.len())
                }
            })
    }
}

impl PartialOrd for Semver {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// A version with parts possibly missing or wild (`1`, `1.2`, `1.x`, `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: Vec<String>,
}

impl Partial {
    fn parse(s: &str) -> Option<Partial> {
        let s = s.trim().trim_start_matches(['v', '=']).trim();
        let s = s.split_once('+').map_or(s, |(v, _)| v);
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, p.split('.').map(String::from).collect::<Vec<_>>()),
            None => (s, Vec::new()),
        };
        if pre.iter().any(|p| p.is_empty()) {
            return None;
        }
        let mut parts = [None, None, None];
        if !core.is_empty() {
            let pieces: Vec<&str> = core.split('.').collect();
            if pieces.len() > 3 {
                return None;
            }
            let mut wild = false;
            for (i, piece) in pieces.iter().enumerate() {
                if matches!(*piece, "x" | "X" | "*") {
                    wild = true;
                } else if wild {
                    return None; // 1.x.3
                } else {
                    parts[i] = Some(piece.parse().ok()?);
                }
            }
        }
        if !pre.is_empty() && parts.iter().any(Option::is_none) {
            return None;
        }
        Some(Partial {
            major: parts[0],
            minor: parts[1],
            patch: parts[2],
            pre,
        })
    }

    /// Missing parts as zeros.
    fn floor(&self) -> Semver {
        Semver {
            major: self.major.unwrap_or(0),
            minor: self.minor.unwrap_or(0),
            patch: self.patch.unwrap_or(0),
            pre: self.pre.clone(),
        }
    }

    /// The first version above everything this partial covers (`1.2` → `1.3.0`).
    fn ceiling(&self) -> Option<Semver> {
        match (self.major, self.minor) {
            (None, _) => None,
            (Some(m), None) => Some(Semver::new(m + 1, 0, 0)),
            (Some(m), Some(n)) => Some(Semver::new(m, n + 1, 0)),
        }
    }

    fn is_full(&self) -> bool {
        self.patch.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// An npm range: alternatives (`||`) of comparator sets that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range(Vec<Vec<(Cmp, Semver)>>);

impl Range {
    pub fn parse(s: &str) -> Option<Range> {
        let mut alts = Vec::new();
        for alt in s.split("||") {
            let alt = alt.trim();
            let mut set = Vec::new();
            if let Some((lo, hi)) = alt.split_once(" - ") {
                let (lo, hi) = (Partial::parse(lo)?, Partial::parse(hi)?);
                set.push((Cmp::Ge, lo.floor()));
                if hi.is_full() {
                    set.push((Cmp::Le, hi.floor()));
                } else if let Some(c) = hi.ceiling() {
                    set.push((Cmp::Lt, c));
                }
            } else {
                // Operators may be written apart from their version: `>= 1.2`.
                let mut tokens = Vec::new();
                let mut pending = String::new();
                for t in alt.split_whitespace() {
                    if matches!(t, ">" | ">=" | "<" | "<=" | "=" | "~" | "^" | "~>") {
                        pending.push_str(t);
                    } else {
                        tokens.push(format!("{pending}{t}"));
                        pending.clear();
                    }
                }
                if !pending.is_empty() {
                    return None;
                }
                for t in tokens {
                    set.extend(desugar(&t)?);
                }
            }
            alts.push(set);
        }
        Some(Range(alts))
    }

    pub fn matches(&self, v: &Semver) -> bool {
        self.0.iter().any(|set| {
            set.iter().all(|(c, w)| match c {
                Cmp::Lt => v < w,
                Cmp::Le => v <= w,
                Cmp::Gt => v > w,
                Cmp::Ge => v >= w,
                Cmp::Eq => v == w,
            })
        })
    }
}

/// One comparator token as the plain comparators npm reduces it to.
fn desugar(t: &str) -> Option<Vec<(Cmp, Semver)>> {
    let ops = [">=", "<=", "~>", ">", "<", "=", "~", "^"];
    let (op, rest) = ops
        .iter()
        .find_map(|o| t.strip_prefix(o).map(|r| (*o, r)))
        .unwrap_or(("", t));
    let p = Partial::parse(rest)?;
    let none = || Semver::new(0, 0, 0); // `< 0.0.0`: matches nothing
    Some(match op {
        "" | "=" => match p.ceiling() {
            _ if p.is_full() => vec![(Cmp::Eq, p.floor())],
            None => vec![],
            Some(c) => vec![(Cmp::Ge, p.floor()), (Cmp::Lt, c)],
        },
        ">" => match p.ceiling() {
            _ if p.is_full() => vec![(Cmp::Gt, p.floor())],
            None => vec![(Cmp::Lt, none())],
            Some(c) => vec![(Cmp::Ge, c)],
        },
        ">=" => vec![(Cmp::Ge, p.floor())],
        "<" if p.major.is_none() => vec![(Cmp::Lt, none())],
        "<" => vec![(Cmp::Lt, p.floor())],
        "<=" => match p.ceiling() {
            _ if p.is_full() => vec![(Cmp::Le, p.floor())],
            None => vec![],
            Some(c) => vec![(Cmp::Lt, c)],
        },
        "~" | "~>" => match (p.major, p.minor) {
            (None, _) => vec![],
            (Some(m), None) => vec![(Cmp::Ge, p.floor()), (Cmp::Lt, Semver::new(m + 1, 0, 0))],
            (Some(m), Some(n)) => vec![(Cmp::Ge, p.floor()), (Cmp::Lt, Semver::new(m, n + 1, 0))],
        },
        "^" => match (p.major, p.minor, p.patch) {
            (None, _, _) => vec![],
            (Some(m), _, _) if m > 0 => {
                vec![(Cmp::Ge, p.floor()), (Cmp::Lt, Semver::new(m + 1, 0, 0))]
            }
            (Some(_), None, _) => vec![(Cmp::Ge, p.floor()), (Cmp::Lt, Semver::new(1, 0, 0))],
            (Some(_), Some(n), _) if n > 0 => {
                vec![(Cmp::Ge, p.floor()), (Cmp::Lt, Semver::new(0, n + 1, 0))]
            }
            (Some(_), Some(_), None) => vec![(Cmp::Ge, p.floor()), (Cmp::Lt, Semver::new(0, 1, 0))],
            (Some(_), Some(_), Some(q)) => {
                vec![(Cmp::Ge, p.floor()), (Cmp::Lt, Semver::new(0, 0, q + 1))]
            }
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::run;
    use serde_json::json;

    fn module(v: Value) -> Npm {
        Npm::from_args(v).expect("valid args")
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn ls_probe(json: &str, rc: i32, local: bool) -> Observed {
        let dir = if local {
            "dir=present\npackage_json=yes\n"
        } else {
            ""
        };
        Observed::stdout(&format!("{dir}ls_rc={rc}\nls_b64={}\n", b64(json)))
    }

    const GLOBAL: &str = r#"{"name": "lib", "dependencies": {
        "npm": {"version": "9.2.0", "overridden": false},
        "pm2": {"version": "5.2.0", "overridden": false},
        "@vue/cli": {"version": "5.0.8", "overridden": false}}}"#;

    /// Recorded from npm 11: a project with one missing, one invalid, one extraneous package.
    const PROBLEMS: &str = r#"{"version": "1.0.0", "name": "app",
      "problems": ["missing: left-pad@^1.3.0, required by app@1.0.0"],
      "dependencies": {
        "left-pad": {"required": "^1.3.0", "missing": true, "problems": ["missing: left-pad@^1.3.0"]},
        "lodash": {"version": "4.0.0", "overridden": false, "invalid": "\"^4.17.0\" from the root project"},
        "extra": {"version": "2.0.0", "overridden": false, "extraneous": true},
        "express": {"version": "4.18.2", "overridden": false}},
      "error": {"code": "ELSPROBLEMS", "summary": "missing: left-pad@^1.3.0", "detail": ""}}"#;

    #[test]
    fn package_specs_parse() {
        let p = Package::parse("@scope/pkg@1.2.3").unwrap();
        assert_eq!(p.name, "@scope/pkg");
        assert!(matches!(p.want, Some(Want::Range(_))));
        assert_eq!(Package::parse("@scope/pkg").unwrap().want, None);
        assert_eq!(Package::parse("pm2").unwrap().name, "pm2");
        assert_eq!(
            Package::parse("pm2@next").unwrap().want,
            Some(Want::Tag("next".into()))
        );
        for bad in [
            "",
            "@scope",
            "@/x",
            ".x",
            "x@",
            "x@git+https://h/x.git",
            "x@file:../x",
            "a b",
            "user/repo",
            "x@>=1 <",
        ] {
            assert!(Package::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn semver_ranges() {
        let m = |r: &str, v: &str| Range::parse(r).unwrap().matches(&Semver::parse(v).unwrap());
        assert!(m("1.2.3", "1.2.3"));
        assert!(!m("1.2.3", "1.2.4"));
        assert!(m("^1.2.3", "1.9.0"));
        assert!(!m("^1.2.3", "2.0.0"));
        assert!(!m("^1.2.3", "1.2.2"));
        assert!(m("^0.2.3", "0.2.9"));
        assert!(!m("^0.2.3", "0.3.0"));
        assert!(m("^0.0.3", "0.0.3"));
        assert!(!m("^0.0.3", "0.0.4"));
        assert!(m("~1.2.3", "1.2.9"));
        assert!(!m("~1.2.3", "1.3.0"));
        assert!(m("~1", "1.9.9"));
        assert!(m("1.x", "1.4.0"));
        assert!(!m("1.x", "2.0.0"));
        assert!(m("1.2", "1.2.7"));
        assert!(m("*", "3.0.0"));
        assert!(m(">=1.2 <2", "1.5.0"));
        assert!(m(">= 1.2.0 < 2", "1.5.0"));
        assert!(!m(">=1.2 <2", "2.0.0"));
        assert!(m(">1.2", "1.3.0"));
        assert!(!m(">1.2", "1.2.9"));
        assert!(m("<=1.2", "1.2.9"));
        assert!(m("1.2.3 - 2.3", "2.3.9"));
        assert!(!m("1.2.3 - 2.3", "2.4.0"));
        assert!(m("^1 || ^3", "3.1.0"));
        assert!(!m("^1 || ^3", "2.0.0"));
        assert!(Semver::parse("1.0.0-alpha").unwrap() < Semver::parse("1.0.0-alpha.1").unwrap());
        assert!(Semver::parse("1.0.0-beta.2").unwrap() < Semver::parse("1.0.0-beta.11").unwrap());
        assert!(Semver::parse("1.0.0-rc.1").unwrap() < Semver::parse("1.0.0").unwrap());
        assert!(Range::parse("1.x.3").is_none());
    }

    #[test]
    fn global_installs_only_what_is_missing_or_off_version() {
        let m = module(json!({"name": ["pm2@5.3.0", "@vue/cli@^5", "typescript"], "global": true}));
        match m.plan(&ls_probe(GLOBAL, 0, false)).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "install 2 packages globally");
                assert_eq!(
                    c.details,
                    vec!["pm2@5.3.0 (installed 5.2.0)", "typescript (not installed)"]
                );
                assert_eq!(
                    m.apply(&c.action),
                    "npm install -g --no-fund --no-audit --no-update-notifier pm2@5.3.0 typescript\n"
                );
            }
            p => panic!("{p:?}"),
        }
        let m = module(json!({"name": ["pm2", "@vue/cli@5.0.8"], "global": true}));
        match m.plan(&ls_probe(GLOBAL, 0, false)).unwrap() {
            Plan::Unchanged { reason } => {
                assert_eq!(reason, "all 2 packages are installed globally")
            }
            p => panic!("{p:?}"),
        }
        assert_eq!(m.effects(), Effects::Host);
    }

    #[test]
    fn local_installs_read_problem_output() {
        // npm ls exits 1 with problems but its JSON is still the truth.
        let m =
            module(json!({"name": ["left-pad@^1.3.0", "lodash", "express@4"], "path": "/srv/app"}));
        match m.plan(&ls_probe(PROBLEMS, 1, true)).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "install 2 packages in /srv/app");
                assert_eq!(
                    c.details,
                    vec![
                        "left-pad@^1.3.0 (not installed)",
                        "lodash (installed 4.0.0, not matching package.json)"
                    ]
                );
                assert_eq!(
                    m.apply(&c.action),
                    "d=/srv/app\ncd \"$d\" || { printf 'npm: directory %s does not exist\\n' \"$d\" >&2; exit 1; }\n\
                     npm install --no-fund --no-audit --no-update-notifier 'left-pad@^1.3.0' lodash\n"
                );
            }
            p => panic!("{p:?}"),
        }
        assert_eq!(m.effects(), Effects::Paths(vec!["/srv/app".into()]));
    }

    #[test]
    fn missing_project_dir_is_a_prediction() {
        let m = module(json!({"name": "express", "path": "/srv/app"}));
        match m.plan(&Observed::stdout("dir=absent\n")).unwrap() {
            Plan::Change(c) => assert!(
                c.details[0].contains("does not exist yet"),
                "{:?}",
                c.details
            ),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn absent_and_latest() {
        let m = module(json!({"name": ["pm2", "typescript"], "global": true, "state": "absent"}));
        match m.plan(&ls_probe(GLOBAL, 0, false)).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "remove pm2 globally");
                assert_eq!(c.details, vec!["pm2@5.2.0"]);
                assert_eq!(
                    m.apply(&c.action),
                    "npm uninstall -g --no-fund --no-audit --no-update-notifier pm2\n"
                );
            }
            p => panic!("{p:?}"),
        }
        let m = module(json!({"name": "typescript", "global": true, "state": "absent"}));
        assert!(matches!(
            m.plan(&ls_probe(GLOBAL, 0, false)).unwrap(),
            Plan::Unchanged { .. }
        ));
        let m = module(json!({"name": "pm2", "global": true, "state": "latest"}));
        match m.plan(&ls_probe(GLOBAL, 0, false)).unwrap() {
            Plan::Change(c) => {
                assert!(c.always);
                assert_eq!(c.summary, "upgrade pm2 globally");
                assert!(m.apply(&c.action).ends_with(" pm2@latest\n"));
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn project_dependencies() {
        let m = module(json!({"path": "/srv/app", "extra_args": "--omit=dev"}));
        match m.plan(&ls_probe(PROBLEMS, 1, true)).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "install the dependencies of /srv/app");
                assert_eq!(
                    c.details,
                    vec![
                        "left-pad@^1.3.0 (missing)",
                        "lodash 4.0.0 (does not match package.json)"
                    ]
                );
                assert!(m.apply(&c.action).ends_with(
                    "npm install --no-fund --no-audit --no-update-notifier --omit=dev\n"
                ));
            }
            p => panic!("{p:?}"),
        }
        let ok = r#"{"name": "app", "dependencies": {"express": {"version": "4.18.2"}}}"#;
        assert!(matches!(
            m.plan(&ls_probe(ok, 0, true)).unwrap(),
            Plan::Unchanged { .. }
        ));
    }

    #[test]
    fn ci_runs_when_the_lock_changes() {
        let m = module(json!({"ci": true, "path": "/srv/app", "extra_args": "--omit=dev"}));
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let probe = |lock: &str, stamp: &str, args: &str| {
            Observed::stdout(&format!(
                "dir=present\npackage_json=yes\nlock_sha256={lock}\nnode_modules=present\nstamp_sha256={stamp}\nstamp_args={args}\n"
            ))
        };
        match m.plan(&probe(&a, &a, "--omit=dev")).unwrap() {
            Plan::Unchanged { reason } => {
                assert!(reason.contains("matches package-lock.json"), "{reason}")
            }
            p => panic!("{p:?}"),
        }
        match m.plan(&probe(&b, &a, "--omit=dev")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "run npm ci in /srv/app");
                assert_eq!(c.details, vec!["package-lock.json changed since the last npm ci (sha256 aaaaaaaaaaaa → bbbbbbbbbbbb)"]);
                let s = m.apply(&c.action);
                assert!(
                    s.contains(
                        "npm ci --no-fund --no-audit --no-update-notifier --omit=dev || exit 1\n"
                    ),
                    "{s}"
                );
                assert!(
                    s.contains("args=%s\\n' \"$h\" --omit=dev > node_modules/.bosun-lock.sha256"),
                    "{s}"
                );
            }
            p => panic!("{p:?}"),
        }
        match m.plan(&probe(&a, &a, "")).unwrap() {
            Plan::Change(c) => assert!(
                c.details[0].starts_with("extra_args changed"),
                "{:?}",
                c.details
            ),
            p => panic!("{p:?}"),
        }
        let no_modules = format!("dir=present\nlock_sha256={a}\n");
        match m.plan(&Observed::stdout(&no_modules)).unwrap() {
            Plan::Change(c) => assert_eq!(c.details, vec!["node_modules is missing"]),
            p => panic!("{p:?}"),
        }
        assert!(matches!(
            m.plan(&Observed::stdout("dir=absent\n")).unwrap(),
            Plan::Change(_)
        ));
    }

    #[test]
    fn npm_errors_are_reported() {
        let m = module(json!({"name": "x", "global": true}));
        let missing = Observed {
            rc: 3,
            stdout: String::new(),
            stderr: "npm is not installed on this host (install nodejs and npm first)\n".into(),
        };
        assert!(m
            .plan(&missing)
            .unwrap_err()
            .0
            .contains("npm is not installed"));
        let garbage = Observed {
            rc: 0,
            stdout: format!("ls_rc=1\nls_b64={}\n", b64("not json")),
            stderr: "npm error code EJSONPARSE\n".into(),
        };
        assert!(m.plan(&garbage).unwrap_err().0.contains("EJSONPARSE"));
        let other = r#"{"error": {"code": "EJSONPARSE", "summary": "Invalid package.json"}}"#;
        assert!(m
            .plan(&ls_probe(other, 1, false))
            .unwrap_err()
            .0
            .contains("Invalid package.json"));
    }

    #[test]
    fn scripts_are_valid_sh() {
        let g = module(json!({"name": ["@scope/x@^1 || ^2"], "global": true}));
        let ci = module(
            json!({"ci": true, "path": "/srv/my app", "extra_args": "--omit=dev --ignore-scripts"}),
        );
        let deps = module(json!({"path": "/srv/app"}));
        let scripts = [
            g.probe().unwrap(),
            g.apply(&Action::Install {
                specs: vec!["@scope/x@^1 || ^2".into()],
            }),
            g.apply(&Action::Uninstall {
                names: vec!["@scope/x".into()],
            }),
            ci.probe().unwrap(),
            ci.apply(&Action::Ci),
            deps.probe().unwrap(),
            deps.apply(&Action::InstallDeps),
        ];
        for script in scripts {
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
        let bad = [
            json!({}),
            json!({"name": "x"}),
            json!({"name": "x", "global": true, "path": "/p"}),
            json!({"name": "x", "path": "rel"}),
            json!({"ci": true}),
            json!({"ci": true, "path": "/p", "name": "x"}),
            json!({"ci": true, "path": "/p", "state": "latest"}),
            json!({"path": "/p", "state": "absent"}),
            json!({"name": "x@1", "global": true, "state": "absent"}),
            json!({"name": "x@1", "global": true, "state": "latest"}),
            json!({"name": "x", "global": true, "production": true}),
        ];
        for b in bad {
            assert!(Npm::from_args(b.clone()).is_err(), "accepted {b}");
        }
    }

    #[test]
    fn probes_run_against_this_host() {
        if run("command -v npm").rc != 0 {
            return; // npm is a prerequisite on targets, not of the test machine
        }
        let dir = std::env::temp_dir().join(format!("bosun-npm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("node_modules/left-pad")).unwrap();
        let manifest = |range: &str| {
            let json = format!(
                r#"{{"name":"app","version":"1.0.0","dependencies":{{"left-pad":"{range}"}}}}"#
            );
            std::fs::write(dir.join("package.json"), json).unwrap();
        };
        manifest("^1.0.0");
        std::fs::write(
            dir.join("node_modules/left-pad/package.json"),
            r#"{"name":"left-pad","version":"1.0.0"}"#,
        )
        .unwrap();
        let path = dir.to_str().unwrap();
        let m = module(json!({"name": "left-pad@1.0.0", "path": path}));
        let obs = run(&m.probe().unwrap());
        assert_eq!(obs.rc, 0, "{}", obs.stderr);
        assert!(
            matches!(m.plan(&obs).unwrap(), Plan::Unchanged { .. }),
            "{obs:?}"
        );
        let deps = module(json!({"path": path}));
        assert!(matches!(
            deps.plan(&run(&deps.probe().unwrap())).unwrap(),
            Plan::Unchanged { .. }
        ));
        // package.json now wants another version: npm ls exits 1, its JSON says why.
        manifest("^1.3.0");
        match m.plan(&run(&m.probe().unwrap())).unwrap() {
            Plan::Change(c) => assert_eq!(
                c.details,
                vec!["left-pad@1.0.0 (installed 1.0.0, not matching package.json)"]
            ),
            p => panic!("{p:?}"),
        }
        match deps.plan(&run(&deps.probe().unwrap())).unwrap() {
            Plan::Change(c) => assert_eq!(
                c.details,
                vec!["left-pad 1.0.0 (does not match package.json)"]
            ),
            p => panic!("{p:?}"),
        }
        // npm ci stamp round trip, without running npm ci.
        std::fs::write(dir.join("package-lock.json"), "{}\n").unwrap();
        let ci = module(json!({"ci": true, "path": path}));
        assert!(matches!(
            ci.plan(&run(&ci.probe().unwrap())).unwrap(),
            Plan::Change(_)
        ));
        let sha = super::super::fileops::sha256_hex(b"{}\n");
        std::fs::write(dir.join(STAMP), format!("{sha}\nargs=\n")).unwrap();
        assert!(matches!(
            ci.plan(&run(&ci.probe().unwrap())).unwrap(),
            Plan::Unchanged { .. }
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
