//! `pip`: Python packages in a virtualenv, from requirement specifiers or a requirements file.
//!
//! A `virtualenv` is required: Debian 12's system Python is "externally managed" (PEP 668)
//! and refuses `pip install`; system-wide Python packages come from apt. The virtualenv is
//! created with `python3 -m venv` (or `virtualenv_python -m venv`) when missing — on Debian
//! that needs the `python3-venv` package, and the error says so.
//!
//! **Names.** The probe lists what is installed (`pip list --format=freeze`, no network) and
//! plan checks each requirement with a small, pure matcher: names are compared after PEP 503
//! normalisation (`Django_Rest.Framework` ≡ `django-rest-framework`), versions with the
//! specifiers `==` (and `==1.2.*`), `!=`, `>=`, `<=`, `>`, `<`, `~=` and `===`, ordered as PEP
//! 440 orders them (epochs, pre/post/dev releases; `1.0 == 1.0.0`) with a dotted-parts
//! fallback for versions PEP 440 cannot read. Extras (`uvicorn[standard]`) are passed to pip
//! but not checked: an installed `uvicorn` satisfies `uvicorn[standard]`. Only unsatisfied
//! requirements are installed. Environment markers and direct URLs are refused in `name`;
//! put them in a requirements file.
//!
//! **Requirements files** are read by pip on the host, with the working directory set to the
//! file's directory (so `-r base.txt` and `./pkg` resolve next to it). After a successful
//! install the file's sha256 is recorded in `VIRTUALENV/.bosun-requirements.sha256`, one line
//! per requirements file in `sha256sum` format (`HASH  PATH`), and the next converge installs
//! again only when the file's checksum differs from its recorded one (or the virtualenv is
//! new). Delete that stamp file to force a reinstall. Packages removed by hand behind bosun's
//! back are not noticed in this mode.
//!
//! **latest** cannot be decided without asking the package index, which a probe must not do,
//! so it always runs `pip install -U` and the plan says so; pin versions for quiet converges.

use super::command::split_words;
use super::support::probe_failed;
use super::{
    de_one_or_many, parse_args, ArgError, Change, Effects, Module, ModuleError, Observed, Plan,
};
use bosun_model::shell::{quote, quote_all};
use serde::Deserialize;
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Where the requirements-file checksums live, inside the virtualenv.
pub const STAMP: &str = ".bosun-requirements.sha256";

/// `present`, `absent` or `latest`, as for every package module.
pub use super::PackageState as State;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    #[serde(default, deserialize_with = "de_one_or_many")]
    name: Vec<String>,
    requirements: Option<String>,
    virtualenv: Option<String>,
    virtualenv_python: Option<String>,
    #[serde(default)]
    state: State,
    extra_args: Option<String>,
}

/// What the task installs.
#[derive(Debug)]
enum Source {
    Names(Vec<Requirement>),
    File(String),
}

#[derive(Debug)]
pub struct Pip {
    source: Source,
    venv: String,
    python: String,
    state: State,
    extra_args: Vec<String>,
}

/// What apply does.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// `pip install` these specifiers (creating the virtualenv first if needed).
    Install { specs: Vec<String>, upgrade: bool },
    /// `pip install -r` the requirements file, then record its checksum.
    InstallFile { upgrade: bool },
    /// `pip uninstall` these distribution names.
    Remove { names: Vec<String> },
}

impl Pip {
    pub fn from_args(args: Value) -> Result<Self, ArgError> {
        let a: Args = parse_args("pip", args)?;
        let venv = a.virtualenv.ok_or_else(|| {
            ArgError::new("pip: `virtualenv` is required")
                .hint("Debian 12's system Python refuses pip installs (PEP 668); use apt for system packages")
        })?;
        if !venv.starts_with('/') {
            return Err(ArgError::new(format!(
                "pip: virtualenv `{venv}` must be an absolute path"
            )));
        }
        let source = match (a.name.is_empty(), a.requirements) {
            (false, Some(_)) => {
                return Err(ArgError::new(
                    "pip: give `name` or `requirements`, not both",
                ))
            }
            (true, None) => return Err(ArgError::new("pip: `name` or `requirements` is required")),
            (true, Some(r)) => {
                if !r.starts_with('/') {
                    return Err(ArgError::new(format!(
                        "pip: requirements `{r}` must be an absolute path on the host"
                    )));
                }
                if a.state == State::Absent {
                    return Err(ArgError::new(
                        "pip: state absent takes `name` (the packages to remove)",
                    ));
                }
                Source::File(r)
            }
            (false, None) => {
                let reqs = a
                    .name
                    .iter()
                    .map(|n| Requirement::parse(n).map_err(|e| ArgError::new(format!("pip: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?;
                if a.state == State::Absent {
                    if let Some(r) = reqs.iter().find(|r| !r.specs.is_empty()) {
                        return Err(ArgError::new(format!(
                            "pip: state absent takes package names without versions, not `{}`",
                            r.raw
                        )));
                    }
                }
                Source::Names(reqs)
            }
        };
        let python = a.virtualenv_python.unwrap_or_else(|| "python3".to_string());
        if python.trim().is_empty() {
            return Err(ArgError::new("pip: `virtualenv_python` is empty"));
        }
        let extra_args = match a.extra_args {
            Some(e) => {
                split_words(&e).map_err(|e| ArgError::new(format!("pip: extra_args: {e}")))?
            }
            None => Vec::new(),
        };
        Ok(Pip {
            source,
            venv,
            python,
            state: a.state,
            extra_args,
        })
    }

    fn creates_venv(&self, seen: &Seen) -> Option<String> {
        (!seen.venv).then(|| format!("create virtualenv {} with {}", self.venv, self.python))
    }

    fn plan_names(&self, reqs: &[Requirement], seen: &Seen) -> Plan<Action> {
        let v = &self.venv;
        match self.state {
            State::Absent => {
                let present: Vec<(&Requirement, &String)> = reqs
                    .iter()
                    .filter_map(|r| seen.installed.get(&r.name).map(|ver| (r, ver)))
                    .collect();
                if present.is_empty() {
                    return Plan::unchanged(if seen.venv {
                        format!(
                            "none of {} is installed in {v}",
                            list(reqs.iter().map(|r| r.raw.as_str()))
                        )
                    } else {
                        format!("virtualenv {v} does not exist")
                    });
                }
                let names: Vec<String> = present.iter().map(|(r, _)| r.display.clone()).collect();
                let details = present
                    .iter()
                    .map(|(r, ver)| format!("{} {ver}", r.display))
                    .collect();
                Plan::Change(
                    Change::new(
                        format!("remove {} from {v}", list(names.iter().map(String::as_str))),
                        Action::Remove { names },
                    )
                    .with_details(details),
                )
            }
            State::Latest => {
                let specs: Vec<String> = reqs.iter().map(|r| r.raw.clone()).collect();
                let mut details: Vec<String> = self.creates_venv(seen).into_iter().collect();
                details.push(
                    "always runs: state latest asks the package index for newer versions".into(),
                );
                let mut c = Change::new(
                    format!("upgrade {} in {v}", count_or_name(&specs)),
                    Action::Install {
                        specs,
                        upgrade: true,
                    },
                )
                .with_details(details);
                c.always = true;
                Plan::Change(c)
            }
            State::Present => {
                let mut details: Vec<String> = self.creates_venv(seen).into_iter().collect();
                let mut specs = Vec::new();
                for r in reqs {
                    match seen.installed.get(&r.name) {
                        None => details.push(format!("{} (not installed)", r.raw)),
                        Some(ver) if !r.matches(ver) => {
                            details.push(format!("{} (installed {ver})", r.raw))
                        }
                        Some(_) => continue,
                    }
                    specs.push(r.raw.clone());
                }
                if specs.is_empty() {
                    return Plan::unchanged(format!(
                        "{} satisfied in {v}",
                        if reqs.len() == 1 {
                            format!("{} is", reqs[0].raw)
                        } else {
                            format!("all {} requirements are", reqs.len())
                        }
                    ));
                }
                Plan::Change(
                    Change::new(
                        format!("install {} into {v}", count_or_name(&specs)),
                        Action::Install {
                            specs,
                            upgrade: false,
                        },
                    )
                    .with_details(details),
                )
            }
        }
    }

    fn plan_file(&self, file: &str, seen: &Seen) -> Plan<Action> {
        let v = &self.venv;
        let mut details: Vec<String> = self.creates_venv(seen).into_iter().collect();
        let upgrade = self.state == State::Latest;
        let stamped = seen.stamps.get(file);
        match (&seen.req_sha256, stamped) {
            _ if upgrade => details.push("always runs: state latest asks the package index for newer versions".into()),
            (None, _) => details.push(format!(
                "{file} does not exist yet (predicted: an earlier task must create it, or the install fails)"
            )),
            (Some(_), None) if seen.venv => details.push(format!("{file} was not installed by bosun before")),
            (Some(_), None) => {}
            (Some(now), Some(then)) if now == then && seen.venv => {
                return Plan::unchanged(format!(
                    "{file} is installed in {v} (sha256 {} unchanged)",
                    short(now)
                ))
            }
            (Some(now), Some(then)) => {
                details.push(format!("{file} changed since the last install (sha256 {} → {})", short(then), short(now)))
            }
        }
        let mut c = Change::new(
            format!("install requirements {file} into {v}"),
            Action::InstallFile { upgrade },
        )
        .with_details(details);
        c.always = upgrade;
        Plan::Change(c)
    }

    /// Shell creating the virtualenv when it has no interpreter yet.
    fn ensure_venv(&self) -> String {
        format!(
            "if [ ! -x \"$v/bin/python\" ]; then\n\
             out=$({} -m venv \"$v\" 2>&1) || {{ printf '%s\\n' \"$out\" >&2; \
             printf 'pip: could not create virtualenv %s (on Debian: apt install python3-venv)\\n' \"$v\" >&2; exit 1; }}\n\
             fi\n",
            quote(&self.python)
        )
    }

    fn install_cmd(&self, upgrade: bool) -> String {
        let mut s = String::from("\"$v/bin/python\" -m pip install --disable-pip-version-check -q");
        if upgrade {
            s.push_str(" -U");
        }
        if !self.extra_args.is_empty() {
            s.push(' ');
            s.push_str(&quote_all(&self.extra_args));
        }
        s
    }
}

/// What the probe saw.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    /// The virtualenv has an interpreter.
    venv: bool,
    /// Normalised name → version.
    installed: BTreeMap<String, String>,
    req_sha256: Option<String>,
    /// Requirements path → recorded checksum.
    stamps: BTreeMap<String, String>,
}

fn parse_seen(obs: &Observed) -> Result<Seen, ModuleError> {
    probe_failed(obs)?;
    let kv = obs.kv();
    let venv = match kv.get("venv").copied() {
        Some("present") => true,
        Some("absent") | Some("incomplete") => false,
        _ => {
            return Err(ModuleError::new(format!(
                "unexpected probe output: {:?}",
                obs.stdout
            )))
        }
    };
    let mut seen = Seen {
        venv,
        req_sha256: kv.get("req_sha256").map(|s| s.to_string()),
        ..Seen::default()
    };
    for line in obs.stdout.lines() {
        if let Some(p) = line.strip_prefix("pkg=") {
            if let Some((name, ver)) = p.split_once("==") {
                seen.installed
                    .insert(normalize(name), ver.trim().to_string());
            }
        } else if let Some(s) = line.strip_prefix("stamp=") {
            if let Some((hash, path)) = s.split_once("  ") {
                seen.stamps.insert(path.to_string(), hash.to_string());
            }
        }
    }
    Ok(seen)
}

impl Module for Pip {
    type Action = Action;

    fn probe(&self) -> Option<String> {
        let mut s = format!(
            "v={}\n\
             if [ ! -e \"$v\" ]; then echo venv=absent\n\
             elif [ ! -d \"$v\" ]; then echo \"$v exists and is not a directory\" >&2; exit 3\n\
             elif [ ! -x \"$v/bin/python\" ]; then echo venv=incomplete\n\
             else echo venv=present\n",
            quote(&self.venv)
        );
        match &self.source {
            Source::Names(_) => s.push_str(
                "out=$(\"$v/bin/python\" -m pip list --format=freeze --disable-pip-version-check) || \
                 { echo \"cannot list the packages in $v (pip list failed)\" >&2; exit 3; }\n\
                 printf '%s\\n' \"$out\" | sed 's/^/pkg=/'\n\
                 fi\n",
            ),
            Source::File(r) => s.push_str(&format!(
                "fi\n\
                 r={}\n\
                 if [ -f \"$r\" ]; then h=$(sha256sum < \"$r\") || exit 3; echo \"req_sha256=${{h%% *}}\"; fi\n\
                 if [ -f \"$v/{STAMP}\" ]; then sed 's/^/stamp=/' \"$v/{STAMP}\" || exit 3; fi\n",
                quote(r)
            )),
        }
        Some(s)
    }

    fn plan(&self, observed: &Observed) -> Result<Plan<Action>, ModuleError> {
        let seen = parse_seen(observed)?;
        Ok(match &self.source {
            Source::Names(reqs) => self.plan_names(reqs, &seen),
            Source::File(f) => self.plan_file(f, &seen),
        })
    }

    fn apply(&self, action: &Action) -> String {
        let mut s = format!("v={}\n", quote(&self.venv));
        match action {
            Action::Install { specs, upgrade } => {
                s.push_str(&self.ensure_venv());
                s.push_str(&format!(
                    "{} {}\n",
                    self.install_cmd(*upgrade),
                    quote_all(specs)
                ));
            }
            Action::InstallFile { upgrade } => {
                let r = match &self.source {
                    Source::File(r) => r.as_str(),
                    // Only reachable through an engine bug.
                    Source::Names(_) => {
                        return "echo 'pip: internal error: no requirements file' >&2; exit 70\n"
                            .into()
                    }
                };
                s.push_str(&format!(
                    "r={}\n\
                     [ -f \"$r\" ] || {{ printf 'pip: requirements file %s does not exist\\n' \"$r\" >&2; exit 1; }}\n\
                     h=$(sha256sum < \"$r\") || exit 1; h=${{h%% *}}\n",
                    quote(r)
                ));
                s.push_str(&self.ensure_venv());
                // The checksum is taken before installing, so a file changed meanwhile is
                // installed again next time rather than marked done.
                s.push_str(&format!(
                    "cd \"$(dirname \"$r\")\" || exit 1\n\
                     {} -r \"$r\" || exit 1\n\
                     s=\"$v/{STAMP}\"\n\
                     {}{{ if [ -f \"$s\" ]; then p=\"$r\" awk 'substr($0, 67) != ENVIRON[\"p\"]' \"$s\"; fi; \
                     printf '%s  %s\\n' \"$h\" \"$r\"; }} > \"$s.tmp\" && mv -f \"$s.tmp\" \"$s\"\n",
                    self.install_cmd(*upgrade),
                    bosun_model::shell::track_temp("\"$s.tmp\"")
                ));
            }
            Action::Remove { names } => s.push_str(&format!(
                "\"$v/bin/python\" -m pip uninstall --disable-pip-version-check -q -y {}\n",
                quote_all(names)
            )),
        }
        s
    }

    fn effects(&self) -> Effects {
        // The requirements file is listed too: it is not written here, but a task that writes
        // it (template, copy, git) makes this task's probe stale, and effects are how the
        // engine pairs them.
        let mut paths = vec![self.venv.clone()];
        if let Source::File(r) = &self.source {
            paths.push(r.clone());
        }
        Effects::Paths(paths)
    }

    /// Starts an interpreter or a client on every probe.
    fn slow_probe(&self) -> bool {
        true
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// "django==4.2" for one, "3 packages" for more.
fn count_or_name(specs: &[String]) -> String {
    match specs {
        [one] => one.clone(),
        many => format!("{} packages", many.len()),
    }
}

// ---------------------------------------------------------------------------------------
// Requirement specifiers and versions (PEP 508 names/extras/specifiers, PEP 440 versions).
// ---------------------------------------------------------------------------------------

/// PEP 503 normalisation: lowercase, runs of `-`, `_`, `.` become one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
    Compatible,
    Arbitrary,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub op: Op,
    pub version: String,
}

/// One requirement from `name`: `Django==4.2.1`, `uvicorn[standard]>=0.20`, `requests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// As written (trimmed): what pip is given.
    pub raw: String,
    /// As written, without extras and specifiers.
    pub display: String,
    /// PEP 503-normalised.
    pub name: String,
    pub specs: Vec<Spec>,
}

impl Requirement {
    pub fn parse(s: &str) -> Result<Requirement, String> {
        let raw = s.trim();
        let bad = || {
            format!(
                "`{raw}` is not a requirement like `name`, `name==1.2` or `name[extra]>=1.0,<2`"
            )
        };
        if raw.contains(';') {
            return Err(format!(
                "`{raw}`: environment markers are not supported in `name`; use a requirements file"
            ));
        }
        if raw.contains('@') || raw.contains("://") {
            return Err(format!(
                "`{raw}`: direct references are not supported in `name`; use a requirements file"
            ));
        }
        let end = raw
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .unwrap_or(raw.len());
        let display = &raw[..end];
        let ok_edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        if !ok_edge(display.chars().next()) || !ok_edge(display.chars().last()) {
            return Err(bad());
        }
        let mut rest = raw[end..].trim_start();
        if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']').ok_or_else(bad)?;
            rest = r[close + 1..].trim_start();
        }
        if let Some(r) = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
            rest = r.trim();
        }
        let mut specs = Vec::new();
        if !rest.is_empty() {
            for part in rest.split(',') {
                let part = part.trim();
                let ops = [
                    ("===", Op::Arbitrary),
                    ("==", Op::Eq),
                    ("!=", Op::Ne),
                    ("<=", Op::Le),
                    (">=", Op::Ge),
                    ("~=", Op::Compatible),
                    ("<", Op::Lt),
                    (">", Op::Gt),
                ];
                let (op, v) = ops
                    .iter()
                    .find_map(|(p, op)| part.strip_prefix(p).map(|v| (*op, v.trim())))
                    .ok_or_else(bad)?;
                if v.is_empty() || v.contains(char::is_whitespace) {
                    return Err(bad());
                }
                if op == Op::Compatible && Version::parse(v).is_none_or(|v| v.release.len() < 2) {
                    return Err(format!(
                        "`{raw}`: ~= needs a version with at least two parts, like ~=1.4"
                    ));
                }
                specs.push(Spec {
                    op,
                    version: v.to_string(),
                });
            }
        }
        Ok(Requirement {
            raw: raw.to_string(),
            display: display.to_string(),
            name: normalize(display),
            specs,
        })
    }

    /// Whether `installed` satisfies every specifier.
    pub fn matches(&self, installed: &str) -> bool {
        self.specs.iter().all(|s| spec_matches(s, installed))
    }
}

/// A PEP 440 version, enough of it to order and compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    epoch: u64,
    release: Vec<u64>,
    /// (0 = a, 1 = b, 2 = rc, number)
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Option<String>,
}

fn version_re() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // PEP 440, appendix B, in Rust regex syntax.
        regex::Regex::new(
            r"(?ix)^\s*v?
            (?:(?P<epoch>[0-9]+)!)?
            (?P<release>[0-9]+(?:\.[0-9]+)*)
            (?:[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
            (?:-(?P<post_n1>[0-9]+)|[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?)?
            (?:[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
            (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
            \s*$",
        )
        .expect("the PEP 440 pattern is valid")
    })
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let c = version_re().captures(s)?;
        let num = |name: &str| -> Option<Option<u64>> {
            match c.name(name) {
                Some(m) => m.as_str().parse().ok().map(Some),
                None => Some(None),
            }
        };
        let release = c
            .name("release")?
            .as_str()
            .split('.')
            .map(|p| p.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        let pre = match c.name("pre_l") {
            Some(l) => {
                let phase = match l.as_str().to_ascii_lowercase().as_str() {
                    "a" | "alpha" => 0,
                    "b" | "beta" => 1,
                    _ => 2,
                };
                Some((phase, num("pre_n")?.unwrap_or(0)))
            }
            None => None,
        };
        let post = match (num("post_n1")?, c.name("post_l")) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => Some(num("post_n2")?.unwrap_or(0)),
            (None, None) => None,
        };
        let dev = match c.name("dev_l") {
            Some(_) => Some(num("dev_n")?.unwrap_or(0)),
            None => None,
        };
        Some(Version {
            epoch: num("epoch")?.unwrap_or(0),
            release,
            pre,
            post,
            dev,
            local: c.name("local").map(|m| m.as_str().to_ascii_lowercase()),
        })
    }

    /// PEP 440 order: `1.0.dev0 < 1.0a1 < 1.0a1.post1 < 1.0b1 < 1.0rc1 < 1.0 < 1.0.post1`.
    #[allow(clippy::type_complexity)]
    fn key(&self) -> (u64, &[u64], (u8, u64), (bool, u64), (bool, u64)) {
        let mut rel = &self.release[..];
        while let [head @ .., 0] = rel {
            rel = head;
        }
        let pre = match (self.pre, self.post, self.dev) {
            (Some((p, n)), _, _) => (1 + p, n),
            (None, None, Some(_)) => (0, 0),
            (None, _, _) => (9, 0),
        };
        let post = (self.post.is_some(), self.post.unwrap_or(0));
        let dev = (self.dev.is_none(), self.dev.unwrap_or(0));
        (self.epoch, rel, pre, post, dev)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key()
            .cmp(&other.key())
            .then_with(|| self.local.cmp(&other.local))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two version strings: PEP 440 when both parse, else part by part (numbers as
/// numbers, anything else as text).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (Version::parse(a), Version::parse(b)) {
        (Some(x), Some(y)) => x.key().cmp(&y.key()),
        _ => {
            let parts = |s: &str| {
                s.split(['.', '-', '_', '+', '!'])
                    .map(String::from)
                    .collect::<Vec<_>>()
            };
            let (pa, pb) = (parts(a), parts(b));
            for (x, y) in pa.iter().zip(pb.iter()) {
                let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    _ => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            pa.len().cmp(&pb.len())
        }
    }
}

/// `==1.2.*`: same epoch and release starting with 1.2 (zero-padded).
fn prefix_matches(installed: &str, prefix: &str) -> bool {
    match (Version::parse(installed), Version::parse(prefix)) {
        (Some(i), Some(p)) => {
            let padded: Vec<u64> = (0..p.release.len())
                .map(|k| i.release.get(k).copied().unwrap_or(0))
                .collect();
            i.epoch == p.epoch && padded == p.release
        }
        _ => installed == prefix || installed.starts_with(&format!("{prefix}.")),
    }
}

fn spec_matches(spec: &Spec, installed: &str) -> bool {
    let v = spec.version.as_str();
    if let Some(prefix) = v.strip_suffix(".*") {
        return match spec.op {
            Op::Eq => prefix_matches(installed, prefix),
            Op::Ne => !prefix_matches(installed, prefix),
            _ => false,
        };
    }
    let equal = || match (Version::parse(installed), Version::parse(v)) {
        // A specifier without a local label matches any local build of that version.
        (Some(i), Some(w)) => i.key() == w.key() && (w.local.is_none() || i.local == w.local),
        _ => compare_versions(installed, v) == Ordering::Equal,
    };
    let ord = || compare_versions(installed, v);
    match spec.op {
        Op::Arbitrary => installed.trim().eq_ignore_ascii_case(v),
        Op::Eq => equal(),
        Op::Ne => !equal(),
        Op::Ge => ord() != Ordering::Less,
        Op::Le => ord() != Ordering::Greater,
        Op::Gt => ord() == Ordering::Greater,
        Op::Lt => ord() == Ordering::Less,
        Op::Compatible => {
            let Some(w) = Version::parse(v) else {
                return false;
            };
            let prefix = w.release[..w.release.len().saturating_sub(1)]
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(".");
            let prefix = if w.epoch > 0 {
                format!("{}!{prefix}", w.epoch)
            } else {
                prefix
            };
            ord() != Ordering::Less && prefix_matches(installed, &prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::test_support::run;
    use serde_json::json;

    fn module(v: Value) -> Pip {
        Pip::from_args(v).expect("valid args")
    }

    fn req(s: &str) -> Requirement {
        Requirement::parse(s).expect("valid requirement")
    }

    const VENV: &str =
        "venv=present\npkg=Django==4.2.1\npkg=uvicorn==0.23.2\npkg=typing_extensions==4.8.0\n\
                        pkg=pip==23.0.1\n";

    #[test]
    fn names_normalize_per_pep_503() {
        assert_eq!(normalize("Django_Rest.Framework"), "django-rest-framework");
        assert_eq!(normalize("a--_.b"), "a-b");
        assert_eq!(normalize("typing_extensions"), "typing-extensions");
    }

    #[test]
    fn requirements_parse() {
        let r = req("uvicorn[standard]>=0.20, <1");
        assert_eq!(r.name, "uvicorn");
        assert_eq!(r.display, "uvicorn");
        assert_eq!(
            r.specs,
            vec![
                Spec {
                    op: Op::Ge,
                    version: "0.20".into()
                },
                Spec {
                    op: Op::Lt,
                    version: "1".into()
                }
            ]
        );
        assert_eq!(req("Django==4.2.1").specs[0].op, Op::Eq);
        assert_eq!(req("x===weird").specs[0].op, Op::Arbitrary);
        assert!(req("requests").specs.is_empty());
        for bad in [
            "",
            "==1",
            "x=1",
            "x>=",
            "x[a",
            "x; python_version<'3.8'",
            "x @ https://h/x.whl",
            "-e .",
            "x~=1",
        ] {
            assert!(Requirement::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pep_440_ordering() {
        let order = [
            "1.0.dev0",
            "1.0a1.dev1",
            "1.0a1",
            "1.0a1.post1",
            "1.0b2",
            "1.0rc1",
            "1.0",
            "1.0.post1.dev0",
            "1.0.post1",
            "1.0.1",
            "1.1",
            "2!0.1",
        ];
        for w in order.windows(2) {
            assert_eq!(
                compare_versions(w[0], w[1]),
                Ordering::Less,
                "{} < {}",
                w[0],
                w[1]
            );
        }
        assert_eq!(compare_versions("1.0", "1.0.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.0-1", "1.0.post1"), Ordering::Equal);
        assert_eq!(compare_versions("1.10", "1.9"), Ordering::Greater);
        // Fallback for versions PEP 440 cannot read.
        assert_eq!(compare_versions("2023.10.x", "2023.9.x"), Ordering::Greater);
    }

    #[test]
    fn specifiers_match() {
        let m = |spec: &str, v: &str| req(&format!("x{spec}")).matches(v);
        assert!(m("==4.2.1", "4.2.1"));
        assert!(m("==4.2", "4.2.0"));
        assert!(!m("==4.2.1", "4.2.10"));
        assert!(m("==4.2.1", "4.2.1+local"));
        assert!(!m("==4.2.1+a", "4.2.1+b"));
        assert!(m("==4.2.*", "4.2.7"));
        assert!(!m("==4.2.*", "4.20.0"));
        assert!(m("!=4.2.*", "4.3"));
        assert!(m("!=1.0", "1.1"));
        assert!(m(">=0.20", "0.23.2"));
        assert!(!m(">=0.20", "0.3"));
        assert!(m("<=1.0", "1.0"));
        assert!(m(">1.0", "1.0.1"));
        assert!(!m("<1.0", "1.0"));
        assert!(m("<1.0", "1.0rc1"));
        assert!(m("~=1.4", "1.9"));
        assert!(!m("~=1.4", "2.0"));
        assert!(m("~=1.4.5", "1.4.9"));
        assert!(!m("~=1.4.5", "1.5.0"));
        assert!(!m("~=1.4.5", "1.4.4"));
        assert!(m(">=1,<2,!=1.5", "1.6"));
        assert!(!m(">=1,<2,!=1.5", "1.5"));
        assert!(m("===1.0", "1.0"));
        assert!(!m("===1.0", "1.0.0"));
    }

    #[test]
    fn present_installs_only_unsatisfied_requirements() {
        let m = module(json!({
            "name": ["Django==4.2.1", "uvicorn[standard]>=0.24", "gunicorn", "typing-extensions>=4"],
            "virtualenv": "/srv/venv"
        }));
        match m.plan(&Observed::stdout(VENV)).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "install 2 packages into /srv/venv");
                assert_eq!(
                    c.details,
                    vec![
                        "uvicorn[standard]>=0.24 (installed 0.23.2)",
                        "gunicorn (not installed)"
                    ]
                );
                assert_eq!(
                    c.action,
                    Action::Install {
                        specs: vec!["uvicorn[standard]>=0.24".into(), "gunicorn".into()],
                        upgrade: false
                    }
                );
                let s = m.apply(&c.action);
                assert!(
                    s.starts_with(
                        "v=/srv/venv\nif [ ! -x \"$v/bin/python\" ]; then\nout=$(python3 -m venv"
                    ),
                    "{s}"
                );
                assert!(
                    s.ends_with(
                        "\"$v/bin/python\" -m pip install --disable-pip-version-check -q 'uvicorn[standard]>=0.24' gunicorn\n"
                    ),
                    "{s}"
                );
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn satisfied_requirements_are_unchanged() {
        let m =
            module(json!({"name": ["django>=4", "Typing_Extensions"], "virtualenv": "/srv/venv"}));
        match m.plan(&Observed::stdout(VENV)).unwrap() {
            Plan::Unchanged { reason } => {
                assert_eq!(reason, "all 2 requirements are satisfied in /srv/venv")
            }
            p => panic!("{p:?}"),
        }
        let m = module(json!({"name": "uvicorn[standard]", "virtualenv": "/srv/venv"}));
        assert!(matches!(
            m.plan(&Observed::stdout(VENV)).unwrap(),
            Plan::Unchanged { .. }
        ));
    }

    #[test]
    fn missing_venv_is_created_first() {
        let m = module(
            json!({"name": "django==4.2.1", "virtualenv": "/srv/venv", "virtualenv_python": "python3.11",
                              "extra_args": "--index-url 'https://pypi.example/simple'"}),
        );
        match m.plan(&Observed::stdout("venv=absent\n")).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "install django==4.2.1 into /srv/venv");
                assert_eq!(
                    c.details,
                    vec![
                        "create virtualenv /srv/venv with python3.11",
                        "django==4.2.1 (not installed)"
                    ]
                );
                let s = m.apply(&c.action);
                assert!(s.contains("out=$(python3.11 -m venv \"$v\" 2>&1)"), "{s}");
                assert!(s.contains("apt install python3-venv"), "{s}");
                assert!(
                    s.contains("-q --index-url https://pypi.example/simple django==4.2.1\n"),
                    "{s}"
                );
            }
            p => panic!("{p:?}"),
        }
        // A half-made virtualenv (no interpreter) counts as missing.
        assert!(matches!(
            m.plan(&Observed::stdout("venv=incomplete\n")).unwrap(),
            Plan::Change(_)
        ));
    }

    #[test]
    fn latest_always_runs_and_says_so() {
        let m = module(
            json!({"name": ["django", "uvicorn"], "virtualenv": "/srv/venv", "state": "latest"}),
        );
        match m.plan(&Observed::stdout(VENV)).unwrap() {
            Plan::Change(c) => {
                assert!(c.always);
                assert_eq!(c.summary, "upgrade 2 packages in /srv/venv");
                assert!(m
                    .apply(&c.action)
                    .contains("pip install --disable-pip-version-check -q -U django uvicorn\n"));
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn absent_removes_installed_names_only() {
        let m = module(
            json!({"name": ["Django", "flask"], "virtualenv": "/srv/venv", "state": "absent"}),
        );
        match m.plan(&Observed::stdout(VENV)).unwrap() {
            Plan::Change(c) => {
                assert_eq!(c.summary, "remove Django from /srv/venv");
                assert_eq!(c.details, vec!["Django 4.2.1"]);
                assert_eq!(
                    m.apply(&c.action),
                    "v=/srv/venv\n\"$v/bin/python\" -m pip uninstall --disable-pip-version-check -q -y Django\n"
                );
            }
            p => panic!("{p:?}"),
        }
        let m = module(json!({"name": "flask", "virtualenv": "/srv/venv", "state": "absent"}));
        assert!(matches!(
            m.plan(&Observed::stdout(VENV)).unwrap(),
            Plan::Unchanged { .. }
        ));
        assert!(matches!(
            m.plan(&Observed::stdout("venv=absent\n")).unwrap(),
            Plan::Unchanged { .. }
        ));
    }

    #[test]
    fn requirements_file_uses_the_stamp() {
        let m =
            module(json!({"requirements": "/srv/app/requirements.txt", "virtualenv": "/srv/venv"}));
        let h1 = "a".repeat(64);
        let h2 = "b".repeat(64);
        let same = format!(
            "venv=present\nreq_sha256={h1}\nstamp={h2}  /srv/other.txt\nstamp={h1}  /srv/app/requirements.txt\n"
        );
        match m.plan(&Observed::stdout(&same)).unwrap() {
            Plan::Unchanged { reason } => {
                assert!(reason.contains("sha256 aaaaaaaaaaaa unchanged"), "{reason}")
            }
            p => panic!("{p:?}"),
        }
        let changed =
            format!("venv=present\nreq_sha256={h2}\nstamp={h1}  /srv/app/requirements.txt\n");
        match m.plan(&Observed::stdout(&changed)).unwrap() {
            Plan::Change(c) => {
                assert_eq!(
                    c.summary,
                    "install requirements /srv/app/requirements.txt into /srv/venv"
                );
                assert_eq!(
                    c.details,
                    vec!["/srv/app/requirements.txt changed since the last install (sha256 aaaaaaaaaaaa → bbbbbbbbbbbb)"]
                );
                let s = m.apply(&c.action);
                assert!(s.contains("cd \"$(dirname \"$r\")\" || exit 1\n"), "{s}");
                assert!(s.contains("-q -r \"$r\" || exit 1\n"), "{s}");
                assert!(s.contains("s=\"$v/.bosun-requirements.sha256\""), "{s}");
            }
            p => panic!("{p:?}"),
        }
        let never = format!("venv=present\nreq_sha256={h1}\n");
        match m.plan(&Observed::stdout(&never)).unwrap() {
            Plan::Change(c) => assert_eq!(
                c.details,
                vec!["/srv/app/requirements.txt was not installed by bosun before"]
            ),
            p => panic!("{p:?}"),
        }
        // Not there yet: predicted install, the apply checks again.
        match m.plan(&Observed::stdout("venv=absent\n")).unwrap() {
            Plan::Change(c) => assert!(
                c.details[1].contains("does not exist yet"),
                "{:?}",
                c.details
            ),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn probe_failure_is_an_error() {
        let m = module(json!({"name": "x", "virtualenv": "/srv/venv"}));
        let failed = Observed {
            rc: 3,
            stdout: "venv=present\n".into(),
            stderr: "/srv/venv/bin/python: No module named pip\ncannot list the packages in /srv/venv (pip list failed)\n"
                .into(),
        };
        assert!(m
            .plan(&failed)
            .unwrap_err()
            .0
            .contains("No module named pip"));
        assert!(m.plan(&Observed::stdout("")).is_err());
    }

    #[test]
    fn scripts_are_valid_sh() {
        let names = module(
            json!({"name": ["a[x]>=1", "b"], "virtualenv": "/srv/my venv", "extra_args": "--pre"}),
        );
        let file = module(json!({"requirements": "/srv/a b/req.txt", "virtualenv": "/srv/venv"}));
        let scripts = [
            names.probe().unwrap(),
            names.apply(&Action::Install {
                specs: vec!["a[x]>=1".into()],
                upgrade: true,
            }),
            names.apply(&Action::Remove {
                names: vec!["a".into()],
            }),
            file.probe().unwrap(),
            file.apply(&Action::InstallFile { upgrade: false }),
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
            json!({"name": "x"}),
            json!({"name": "x", "virtualenv": "rel"}),
            json!({"virtualenv": "/v"}),
            json!({"name": "x", "requirements": "/r.txt", "virtualenv": "/v"}),
            json!({"requirements": "r.txt", "virtualenv": "/v"}),
            json!({"requirements": "/r.txt", "virtualenv": "/v", "state": "absent"}),
            json!({"name": "x==1", "virtualenv": "/v", "state": "absent"}),
            json!({"name": "x y", "virtualenv": "/v"}),
            json!({"name": "x", "virtualenv": "/v", "extra_args": "'unclosed"}),
            json!({"name": "x", "virtualenv": "/v", "chdir": "/"}),
        ];
        for b in bad {
            assert!(Pip::from_args(b.clone()).is_err(), "accepted {b}");
        }
        let e = Pip::from_args(json!({"name": "x"})).unwrap_err();
        assert!(e.hint.unwrap().contains("PEP 668"));
    }

    #[test]
    fn probe_and_stamp_against_a_real_venv() {
        let dir = std::env::temp_dir().join(format!("bosun-pip-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let venv = dir.join("venv");
        let venv_s = venv.to_str().unwrap().to_string();
        let m = module(json!({"name": ["pip>=1", "nonexistent-pkg-bosun"], "virtualenv": venv_s}));
        // Missing virtualenv.
        let seen = parse_seen(&run(&m.probe().unwrap())).unwrap();
        assert!(!seen.venv);
        // A real one (no network: venv bundles pip).
        let made = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(made.success());
        let obs = run(&m.probe().unwrap());
        let seen = parse_seen(&obs).unwrap();
        assert!(seen.venv, "{obs:?}");
        assert!(seen.installed.contains_key("pip"), "{obs:?}");
        match m.plan(&obs).unwrap() {
            Plan::Change(c) => assert_eq!(
                c.action,
                Action::Install {
                    specs: vec!["nonexistent-pkg-bosun".into()],
                    upgrade: false
                }
            ),
            p => panic!("{p:?}"),
        }

        // The requirements stamp, written by the same shell apply uses, with pip faked so no
        // network is needed: a `python` that accepts `-m pip install`.
        let fake = dir.join("fakevenv");
        std::fs::create_dir_all(fake.join("bin")).unwrap();
        let py = fake.join("bin/python");
        std::fs::write(
            &py,
            "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/calls\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).unwrap();
        let reqf = dir.join("requirements.txt");
        std::fs::write(&reqf, "django==4.2.1\n").unwrap();
        let fake_s = fake.to_str().unwrap().to_string();
        let m = module(json!({"requirements": reqf.to_str().unwrap(), "virtualenv": fake_s}));
        let Plan::Change(c) = m.plan(&run(&m.probe().unwrap())).unwrap() else {
            panic!("expected install")
        };
        std::fs::write(
            fake.join(STAMP),
            format!("{}  /other/req.txt\n", "c".repeat(64)),
        )
        .unwrap();
        let r = run(&m.apply(&c.action));
        assert_eq!(r.rc, 0, "{}", r.stderr);
        let calls = std::fs::read_to_string(fake.join("bin/calls")).unwrap();
        assert!(
            calls.contains("-m pip install --disable-pip-version-check -q -r"),
            "{calls}"
        );
        let stamp = std::fs::read_to_string(fake.join(STAMP)).unwrap();
        assert!(
            stamp.starts_with(&format!("{}  /other/req.txt\n", "c".repeat(64))),
            "{stamp}"
        );
        assert!(
            stamp.contains(&format!("  {}\n", reqf.to_str().unwrap())),
            "{stamp}"
        );
        assert!(matches!(
            m.plan(&run(&m.probe().unwrap())).unwrap(),
            Plan::Unchanged { .. }
        ));
        // Changing the file makes the next plan install again.
        std::fs::write(&reqf, "django==4.2.2\n").unwrap();
        assert!(matches!(
            m.plan(&run(&m.probe().unwrap())).unwrap(),
            Plan::Change(_)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
