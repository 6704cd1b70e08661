//! Inventory: which hosts exist, how to reach them, and their variables.
//!
//! ```yaml
//! ssh: { user: root, known_hosts: ../lab/known_hosts, identity_file: ~/.ssh/id_ed25519 }
//! vars: { app_port: 8000 }          # every host
//! secrets: { db_password: s3cret }  # like vars, but redacted everywhere
//! hosts:
//!   pg1: { address: 10.0.0.5, vars: { patroni_name: pg1 } }
//! groups:
//!   postgres: { hosts: [pg1], vars: {...} }
//!   database: { children: [postgres] }
//! ```
//!
//! Variable precedence, lowest first: role defaults, inventory `vars`, group vars (a parent
//! group before its children; groups of equal depth by name), host vars, play vars,
//! registered results, `-e` extra vars. `secrets:` maps sit at the same level as the `vars:`
//! beside them.
//!
//! Other sources produce the same [`Inventory`]: Ansible INI and YAML inventories with their
//! `group_vars/` and `host_vars/` ([`ansible`]) and Terraform state ([`terraform`]); which
//! one a path is, is decided in [`source`]. [`graph`] draws any of them.

mod ansible;
mod graph;
mod source;
mod terraform;

pub use graph::GraphFormat;

use crate::diag::{LoadError, Place};
use crate::text::closest;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to reach hosts; every field can be overridden per host where it makes sense.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshDefaults {
    #[serde(default = "default_user")]
    pub user: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Private key; when absent, ssh-agent and then ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
    pub identity_file: Option<String>,
    /// known_hosts used to verify host keys (relative paths are from the inventory file).
    pub known_hosts: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: u64,
    #[serde(default = "default_keepalive")]
    pub keepalive_interval: u64,
    /// Concurrent channels per connection; sshd's MaxSessions is 10 by default.
    #[serde(default = "default_max_channels")]
    pub max_channels: usize,
    /// How long a host behind a jump host waits for a free tunnel when every connection to
    /// that bastion is full and it refuses another (seconds).
    #[serde(default = "default_tunnel_wait")]
    pub tunnel_wait_timeout: u64,
    /// Run remote scripts through `sudo -n` (needed when `user` is not root).
    #[serde(default, rename = "become")]
    pub become_root: Option<bool>,
    /// Jump host chain for every host (`user@bastion[:port],...`, as OpenSSH's ProxyJump).
    #[serde(default)]
    pub jump: Option<Spanned<String>>,
}

fn default_user() -> String {
    "root".into()
}
fn default_port() -> u16 {
    22
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_keepalive() -> u64 {
    15
}
fn default_max_channels() -> usize {
    9
}
fn default_tunnel_wait() -> u64 {
    120
}

impl Default for SshDefaults {
    fn default() -> Self {
        SshDefaults {
            user: default_user(),
            port: default_port(),
            identity_file: None,
            known_hosts: None,
            connect_timeout: default_connect_timeout(),
            keepalive_interval: default_keepalive(),
            max_channels: default_max_channels(),
            tunnel_wait_timeout: default_tunnel_wait(),
            become_root: None,
            jump: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    ssh: Option<SshDefaults>,
    #[serde(default)]
    vars: Map<String, Value>,
    #[serde(default)]
    secrets: Map<String, Value>,
    /// A YAML file of secrets (every value in it is secret): plain and kept out of version
    /// control, or age-encrypted (`bosun secret encrypt`) and committed.
    secrets_file: Option<Spanned<String>>,
    /// The identity that decrypts an encrypted `secrets_file` when neither `--identity` nor
    /// `BOSUN_IDENTITY` names one (see `secrets::keys`).
    secrets_identity: Option<String>,
    /// These hosts are the built-in lab: `converge` boots it first when it is down.
    /// `lab: true`, or `lab: {os: debian-13}` to choose the hosts' release.
    lab: Option<Spanned<RawLab>>,
    /// Deadline of every task without its own `timeout:` (seconds; plays may override).
    task_timeout: Option<Spanned<Value>>,
    /// Deadline of every probe (seconds).
    probe_timeout: Option<Spanned<Value>>,
    #[serde(default)]
    hosts: IndexMap<String, Spanned<RawHost>>,
    #[serde(default)]
    groups: IndexMap<String, Spanned<RawGroup>>,
}

/// `lab:` in an inventory.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawLab {
    On(bool),
    With { os: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    address: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    identity_file: Option<String>,
    #[serde(default, rename = "become")]
    become_root: Option<bool>,
    /// Jump host chain for this host (overrides the groups' and `ssh.jump`).
    #[serde(default)]
    jump: Option<Spanned<String>>,
    #[serde(default)]
    vars: Map<String, Value>,
    #[serde(default)]
    secrets: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    children: Vec<Spanned<String>>,
    #[serde(default)]
    jump: Option<Spanned<String>>,
    #[serde(default)]
    vars: Map<String, Value>,
    #[serde(default)]
    secrets: Map<String, Value>,
}

/// One host, fully resolved.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
    pub become_root: bool,
    /// Group names this host belongs to (directly or through children), sorted by depth.
    pub groups: Vec<String>,
    /// Merged inventory variables (all → groups → host), secrets included.
    pub vars: Map<String, Value>,
    /// Jump hosts (OpenSSH ProxyJump syntax, `user@bastion[:port],...`), parsed at load;
    /// `None` connects directly. Set by `jump:` or an Ansible `ProxyJump`/`-J`.
    pub jump: Option<crate::hops::Jump>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub hosts: Vec<String>,
    pub children: Vec<String>,
}

/// Deadlines of remote steps: a step that overstays is killed on the host and its task
/// fails, so a converge always ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A task's apply step (builds and migrations included): 30 minutes by default.
    pub task: Duration,
    /// A probe (reading state should be quick; a hung guard must not hold the run).
    pub probe: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            task: Duration::from_secs(1800),
            probe: Duration::from_secs(120),
        }
    }
}

/// A parsed, validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub path: PathBuf,
    pub ssh: SshDefaults,
    pub known_hosts: PathBuf,
    /// Hosts in the order the file lists them.
    pub hosts: IndexMap<String, Host>,
    pub groups: IndexMap<String, Group>,
    /// Every value that came from a `secrets:` map, for redaction.
    pub secret_values: BTreeSet<String>,
    /// The hosts are the built-in lab's (`lab: true`).
    pub lab: bool,
    /// The lab's release (`lab: {os: …}`); the lab's default when absent.
    pub lab_os: Option<crate::lab_os::LabOs>,
    /// How long remote steps may run (`task_timeout:`, `probe_timeout:`).
    pub timeouts: Timeouts,
    /// Things in the input bosun reads but does not honour (`file:line: what`); the CLI
    /// prints them to stderr so nothing is ignored silently.
    pub warnings: Vec<String>,
    /// `secrets_identity:`, resolved: the fallback identity for every encrypted file of a
    /// run that uses this inventory (`-e @file` too).
    pub secrets_identity: Option<PathBuf>,
}

/// Secrets shorter than this are redacted as whole words only, so that a short one does
/// not blank ordinary text (see [`crate::redact`]).
pub const MIN_SECRET_LEN: usize = 4;

impl Inventory {
    /// Reads a bosun inventory, an Ansible inventory (INI or YAML) or Terraform state.
    pub fn load(path: &Path) -> Result<Inventory, LoadError> {
        match source::detect(path)? {
            source::Source::Bosun(text) => Self::parse(path, &text),
            source::Source::AnsibleIni(text) => ansible::load_ini(path, &text),
            source::Source::AnsibleYaml(text) => ansible::load_yaml(path, &text),
            source::Source::Terraform { state, mapping } => {
                terraform::load(state.as_deref(), mapping.as_deref())
            }
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Inventory, LoadError> {
        let raw: RawInventory = crate::yaml::parse(path, text)?;
        Self::resolve(path, raw)
    }

    fn resolve(path: &Path, mut raw: RawInventory) -> Result<Inventory, LoadError> {
        let base = path.parent().unwrap_or(Path::new("."));
        let secrets_identity = raw
            .secrets_identity
            .as_deref()
            .map(|p| resolve_path(base, p));
        if let Some(sf) = &raw.secrets_file {
            let file = resolve_path(base, &sf.value);
            if !file.is_file() {
                return Err(LoadError::new(
                    Place::at(path, &sf.referenced),
                    format!("secrets_file {} does not exist", file.display()),
                )
                .hint("create it (a YAML map of secret variables, plain or encrypted with `bosun secret encrypt`), e.g. from the .example file beside it"));
            }
            let m: Option<Map<String, Value>> =
                crate::secrets::load_yaml(&file, secrets_identity.as_deref())
                    .map_err(|e| e.at(Place::at(path, &sf.referenced)))?;
            // File secrets are the base; inline `secrets:` of the inventory override them.
            let mut all = m.unwrap_or_default();
            merge(&mut all, &raw.secrets);
            raw.secrets = all;
        }
        let ssh = raw.ssh.unwrap_or_default();
        let (lab, lab_os) = match &raw.lab {
            None
            | Some(Spanned {
                value: RawLab::On(false),
                ..
            }) => (false, None),
            Some(Spanned {
                value: RawLab::On(true),
                ..
            }) => (true, None),
            Some(Spanned {
                value: RawLab::With { os },
                referenced,
                ..
            }) => match crate::lab_os::LabOs::parse(os) {
                Ok(o) => (true, Some(o)),
                Err(m) => {
                    return Err(
                        LoadError::new(Place::at(path, referenced), m).hint("lab: {os: debian-13}")
                    )
                }
            },
        };
        let timeout = |t: &Option<Spanned<Value>>, key: &str, default: Duration| match t {
            None => Ok(default),
            Some(t) => crate::site::positive_seconds(&t.value).ok_or_else(|| {
                LoadError::new(
                    Place::at(path, &t.referenced),
                    format!("{key} `{}` is not a positive number of seconds", t.value),
                )
                .hint(format!("{key}: {}", default.as_secs()))
            }),
        };
        let timeouts = Timeouts {
            task: timeout(&raw.task_timeout, "task_timeout", Timeouts::default().task)?,
            probe: timeout(
                &raw.probe_timeout,
                "probe_timeout",
                Timeouts::default().probe,
            )?,
        };
        let known_hosts = match &ssh.known_hosts {
            Some(k) => resolve_path(base, k),
            None => home().join(".ssh/known_hosts"),
        };
        let mut secret_values = BTreeSet::new();
        collect_secrets(&raw.secrets, &mut secret_values);
        let default_jump = jump_setting(path, &ssh.jump)?;
        let mut group_jump = BTreeMap::new();
        for (gname, g) in &raw.groups {
            if let Some(j) = jump_setting(path, &g.value.jump)? {
                group_jump.insert(gname.as_str(), j);
            }
        }

        // Groups: validate references, compute each group's depth (parents first).
        let host_names: Vec<&str> = raw.hosts.keys().map(String::as_str).collect();
        let group_names: Vec<&str> = raw.groups.keys().map(String::as_str).collect();
        for (gname, g) in &raw.groups {
            if raw.hosts.contains_key(gname) {
                return Err(LoadError::new(
                    Place::at(path, &g.referenced),
                    format!("`{gname}` is both a host and a group"),
                )
                .hint("rename one of them: --limit and plays could not tell them apart"));
            }
            for h in &g.value.hosts {
                if !raw.hosts.contains_key(&h.value) {
                    let mut e = LoadError::new(
                        Place::at(path, &h.referenced),
                        format!("group `{gname}` lists unknown host `{}`", h.value),
                    );
                    e = match closest(&h.value, &host_names) {
                        Some(s) => e.hint(format!(
                            "did you mean `{s}`? hosts are declared under `hosts:`"
                        )),
                        None => e.hint("declare it under `hosts:` with an address"),
                    };
                    return Err(e);
                }
            }
            for c in &g.value.children {
                if !raw.groups.contains_key(&c.value) {
                    let mut e = LoadError::new(
                        Place::at(path, &c.referenced),
                        format!("group `{gname}` has unknown child group `{}`", c.value),
                    );
                    if let Some(s) = closest(&c.value, &group_names) {
                        e = e.hint(format!("did you mean `{s}`?"));
                    }
                    return Err(e);
                }
            }
            collect_secrets(&g.value.secrets, &mut secret_values);
        }
        let depth = group_depths(path, &raw.groups)?;

        // Membership through children: a host in `postgres` is in `database` too.
        let mut members: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for gname in raw.groups.keys() {
            let mut set = BTreeSet::new();
            let mut stack = vec![gname.as_str()];
            let mut seen = BTreeSet::new();
            while let Some(g) = stack.pop() {
                if !seen.insert(g) {
                    continue;
                }
                if let Some(grp) = raw.groups.get(g) {
                    set.extend(grp.value.hosts.iter().map(|h| h.value.as_str()));
                    stack.extend(grp.value.children.iter().map(|c| c.value.as_str()));
                }
            }
            members.insert(gname, set);
        }

        let mut hosts = IndexMap::new();
        for (name, h) in &raw.hosts {
            validate_name(path, name, &h.referenced, "host")?;
            collect_secrets(&h.value.secrets, &mut secret_values);
            let mut groups: Vec<&str> = members
                .iter()
                .filter(|(_, m)| m.contains(name.as_str()))
                .map(|(g, _)| *g)
                .collect();
            groups.sort_by_key(|g| (depth.get(g).copied().unwrap_or(0), g.to_string()));
            let mut vars = Map::new();
            merge(&mut vars, &raw.vars);
            merge(&mut vars, &raw.secrets);
            for g in &groups {
                if let Some(grp) = raw.groups.get(*g) {
                    merge(&mut vars, &grp.value.vars);
                    merge(&mut vars, &grp.value.secrets);
                }
            }
            merge(&mut vars, &h.value.vars);
            merge(&mut vars, &h.value.secrets);
            check_become_password(path, name, &h.referenced, &vars, &secret_values)?;
            let address = h.value.address.clone().unwrap_or_else(|| name.clone());
            // The host's own, else its most specific group's (same order as vars), else the default.
            let jump = match jump_setting(path, &h.value.jump)? {
                Some(j) => j,
                None => groups
                    .iter()
                    .rev()
                    .find_map(|g| group_jump.get(g).cloned())
                    .or_else(|| default_jump.clone())
                    .flatten(),
            };
            hosts.insert(
                name.clone(),
                Host {
                    name: name.clone(),
                    address,
                    port: h.value.port.unwrap_or(ssh.port),
                    user: h.value.user.clone().unwrap_or_else(|| ssh.user.clone()),
                    identity_file: h
                        .value
                        .identity_file
                        .as_deref()
                        .or(ssh.identity_file.as_deref())
                        .map(|p| resolve_path(base, p)),
                    become_root: h.value.become_root.or(ssh.become_root).unwrap_or(false),
                    groups: groups.iter().map(|g| g.to_string()).collect(),
                    vars,
                    jump,
                },
            );
        }
        let groups = raw
            .groups
            .iter()
            .map(|(name, g)| {
                let hosts = raw
                    .hosts
                    .keys()
                    .filter(|h| {
                        members
                            .get(name.as_str())
                            .is_some_and(|m| m.contains(h.as_str()))
                    })
                    .cloned()
                    .collect();
                (
                    name.clone(),
                    Group {
                        name: name.clone(),
                        hosts,
                        children: g.value.children.iter().map(|c| c.value.clone()).collect(),
                    },
                )
            })
            .collect();
        Ok(Inventory {
            path: path.to_path_buf(),
            ssh,
            known_hosts,
            hosts,
            groups,
            secret_values,
            lab,
            lab_os,
            timeouts,
            warnings: Vec::new(),
            secrets_identity,
        })
    }

    /// Hosts matching a pattern, in inventory order.
    ///
    /// Patterns: `all`, a host or group name, globs (`pg*`), comma-separated unions,
    /// `!x` to exclude and `&x` to intersect (as in Ansible).
    pub fn select(&self, pattern: &str) -> Result<Vec<&Host>, String> {
        let mut included: BTreeSet<&str> = BTreeSet::new();
        let mut excluded: BTreeSet<&str> = BTreeSet::new();
        let mut intersect: Vec<BTreeSet<&str>> = Vec::new();
        for part in pattern.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, word) = match part.as_bytes()[0] {
                b'!' => ('!', &part[1..]),
                b'&' => ('&', &part[1..]),
                _ => ('+', part),
            };
            let set = self.expand(word)?;
            match kind {
                '!' => excluded.extend(set),
                '&' => intersect.push(set),
                _ => included.extend(set),
            }
        }
        Ok(self
            .hosts
            .values()
            .filter(|h| {
                let n = h.name.as_str();
                included.contains(n)
                    && !excluded.contains(n)
                    && intersect.iter().all(|s| s.contains(n))
            })
            .collect())
    }

    fn expand(&self, word: &str) -> Result<BTreeSet<&str>, String> {
        if word == "all" || word == "*" {
            return Ok(self.hosts.keys().map(String::as_str).collect());
        }
        if let Some(g) = self.groups.get(word) {
            return Ok(g.hosts.iter().map(String::as_str).collect());
        }
        if let Some((name, _)) = self.hosts.get_key_value(word) {
            return Ok([name.as_str()].into());
        }
        if word.contains(['*', '?']) {
            let set: BTreeSet<&str> = self
                .hosts
                .keys()
                .filter(|h| glob_match(word, h))
                .map(String::as_str)
                .chain(
                    self.groups
                        .iter()
                        .filter(|(g, _)| glob_match(word, g))
                        .flat_map(|(_, g)| g.hosts.iter().map(String::as_str)),
                )
                .collect();
            return Ok(set);
        }
        let names: Vec<&str> = self
            .hosts
            .keys()
            .chain(self.groups.keys())
            .map(String::as_str)
            .collect();
        Err(match closest(word, &names) {
            Some(s) => format!("no host or group `{word}` in the inventory (did you mean `{s}`?)"),
            None => format!("no host or group `{word}` in the inventory"),
        })
    }

    /// `groups` as templates see it: group name → host names (plus `all`).
    pub fn groups_value(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "all".into(),
            self.hosts.keys().cloned().collect::<Vec<_>>().into(),
        );
        for (g, grp) in &self.groups {
            m.insert(g.clone(), grp.hosts.clone().into());
        }
        Value::Object(m)
    }
}

/// A `jump:` as written: `None` when absent, `Some(None)` for `none`, else the chain.
/// A malformed chain is an error at its line.
fn jump_setting(
    path: &Path,
    jump: &Option<Spanned<String>>,
) -> Result<Option<Option<crate::hops::Jump>>, LoadError> {
    let Some(j) = jump else {
        return Ok(None);
    };
    match crate::hops::Jump::parse(&j.value) {
        Ok(chain) => Ok(Some(chain)),
        Err(m) => Err(LoadError::new(
            Place::at(path, &j.referenced),
            format!("malformed jump `{}`: {m}", j.value),
        )
        .hint(crate::hops::SYNTAX_HINT)),
    }
}

/// Names a host's sudo password may have: bosun's, and Ansible's two.
pub const BECOME_PASSWORD_VARS: &[&str] = &[
    "become_password",
    "ansible_become_password",
    "ansible_become_pass",
];

impl Host {
    /// The password `sudo` asks for when `become` is on, from the host's secrets. The
    /// transport sends it on the channel's input, never on a command line.
    pub fn become_password(&self) -> Option<&str> {
        BECOME_PASSWORD_VARS
            .iter()
            .find_map(|k| self.vars.get(*k).and_then(Value::as_str))
    }
}

/// A sudo password must be a secret (a `secrets:` map or the secrets file): as a plain
/// variable it would be printed wherever variables are.
fn check_become_password(
    path: &Path,
    host: &str,
    loc: &serde_saphyr::Location,
    vars: &Map<String, Value>,
    secrets: &BTreeSet<String>,
) -> Result<(), LoadError> {
    for k in BECOME_PASSWORD_VARS {
        let Some(v) = vars.get(*k) else { continue };
        if !v.as_str().is_some_and(|s| secrets.contains(s)) {
            return Err(LoadError::new(
                Place::at(path, loc),
                format!("host `{host}`: `{k}` must be a secret string, not a plain variable"),
            )
            .hint(format!(
                "move it under `secrets:` (or into secrets_file): secrets: {{ {k}: ... }}"
            )));
        }
    }
    Ok(())
}

fn validate_name(
    path: &Path,
    name: &str,
    loc: &serde_saphyr::Location,
    what: &str,
) -> Result<(), LoadError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(LoadError::new(
            Place::at(path, loc),
            format!("{what} name `{name}` has characters other than letters, digits, - _ ."),
        ));
    }
    Ok(())
}

/// Depth of each group below its top-level ancestors; rejects cycles.
fn group_depths<'a>(
    path: &Path,
    groups: &'a IndexMap<String, Spanned<RawGroup>>,
) -> Result<BTreeMap<&'a str, usize>, LoadError> {
    fn visit<'a>(
        path: &Path,
        g: &'a str,
        groups: &'a IndexMap<String, Spanned<RawGroup>>,
        d: usize,
        trail: &mut Vec<&'a str>,
        out: &mut BTreeMap<&'a str, usize>,
    ) -> Result<(), LoadError> {
        if trail.contains(&g) {
            let loc = groups
                .get(g)
                .map(|x| Place::at(path, &x.referenced))
                .unwrap_or_else(|| Place::file(path));
            return Err(
                LoadError::new(loc, format!("group cycle: {} → {g}", trail.join(" → ")))
                    .hint("a group cannot be its own descendant"),
            );
        }
        let e = out.entry(g).or_insert(0);
        *e = (*e).max(d);
        trail.push(g);
        if let Some(grp) = groups.get(g) {
            for c in &grp.value.children {
                visit(path, &c.value, groups, d + 1, trail, out)?;
            }
        }
        trail.pop();
        Ok(())
    }
    let mut out = BTreeMap::new();
    for g in groups.keys() {
        visit(path, g, groups, 0, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// Overlays `src` onto `dst` (top-level keys replace; maps are not deep-merged, as in Ansible).
pub fn merge(dst: &mut Map<String, Value>, src: &Map<String, Value>) {
    for (k, v) in src {
        dst.insert(k.clone(), v.clone());
    }
}

/// Collects every string and number leaf of a `secrets:` map. Any length is accepted:
/// short values (`7`, `ab`) are redacted as whole words only (see [`crate::redact`]), and
/// an empty one has nothing to redact.
pub fn collect_secrets(m: &Map<String, Value>, out: &mut BTreeSet<String>) {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::String(s) if !s.is_empty() => {
                out.insert(s.clone());
            }
            Value::Number(n) => {
                out.insert(n.to_string());
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    m.values().for_each(|v| walk(v, out));
}

/// `~` and relative paths as operators mean them.
pub fn resolve_path(base: &Path, p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        home().join(rest)
    } else if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        base.join(p)
    }
}

pub fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn glob_match(pat: &str, s: &str) -> bool {
    fn rec(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => rec(&p[1..], s) || (!s.is_empty() && rec(p, &s[1..])),
            (Some(b'?'), Some(_)) => rec(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &s[1..]),
            _ => false,
        }
    }
    rec(pat.as_bytes(), s.as_bytes())
}

impl SshDefaults {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INV: &str = r#"
ssh: { user: admin, known_hosts: kh }
vars: { level: all, only_all: 1 }
secrets: { db_password: hunter22 }
hosts:
  lb: { address: 10.0.0.1 }
  pg1: { address: 10.0.0.21, vars: { level: host } }
  pg2: { address: 10.0.0.22, user: root }
groups:
  postgres: { hosts: [pg1, pg2], vars: { level: postgres, pg: yes } }
  database: { children: [postgres], vars: { level: database } }
  web: { hosts: [lb] }
"#;

    fn inv() -> Inventory {
        Inventory::parse(Path::new("inventory/test.yml"), INV).unwrap()
    }

    #[test]
    fn precedence_all_then_groups_by_depth_then_host() {
        let i = inv();
        assert_eq!(i.hosts["pg1"].vars["level"], "host");
        assert_eq!(
            i.hosts["pg2"].vars["level"], "postgres",
            "child group beats parent"
        );
        assert_eq!(i.hosts["lb"].vars["level"], "all");
        assert_eq!(i.hosts["pg2"].groups, vec!["database", "postgres"]);
        assert_eq!(i.hosts["pg2"].user, "root");
        assert_eq!(i.hosts["lb"].user, "admin");
        assert_eq!(i.known_hosts, PathBuf::from("inventory/kh"));
        assert!(i.secret_values.contains("hunter22"));
    }

    #[test]
    fn become_password_comes_only_from_secrets() {
        let p = Path::new("inv.yml");
        let i = Inventory::parse(
            p,
            "hosts:\n  a: {secrets: {become_password: hunter2}}\n  b: {secrets: {ansible_become_pass: x2}}\n  c: {}\n",
        )
        .expect("secret passwords load");
        assert_eq!(i.hosts["a"].become_password(), Some("hunter2"));
        assert_eq!(i.hosts["b"].become_password(), Some("x2"));
        assert_eq!(i.hosts["c"].become_password(), None);
        let e = Inventory::parse(p, "hosts:\n  a:\n    vars: {become_password: hunter2}\n")
            .expect_err("a plain variable is refused");
        assert!(
            e.message.contains("become_password") && e.message.contains("secret"),
            "{}",
            e.message
        );
        assert_eq!((e.place.line, e.hint.is_some()), (3, true), "{e:?}");
        assert!(!e.message.contains("hunter2"), "the value is not repeated");
    }

    #[test]
    fn lab_release_and_deadlines() {
        let p = Path::new("inventory/lab.yml");
        let i = Inventory::parse(
            p,
            "lab: {os: debian-13}\ntask_timeout: 90\nhosts: {a: {}}\n",
        )
        .unwrap();
        assert!(i.lab);
        assert_eq!(i.lab_os, Some(crate::lab_os::LabOs::Debian13));
        assert_eq!(i.timeouts.task, Duration::from_secs(90));
        assert_eq!(i.timeouts.probe, Timeouts::default().probe);
        let i = Inventory::parse(p, "lab: true\nhosts: {a: {}}\n").unwrap();
        assert!(i.lab && i.lab_os.is_none());
        let e = Inventory::parse(p, "hosts: {a: {}}\nlab: {os: debian-11}\n").unwrap_err();
        assert!(
            e.render().contains("lab.yml:2") && e.render().contains("debian-13"),
            "{}",
            e.render()
        );
        let e = Inventory::parse(p, "probe_timeout: -5\nhosts: {a: {}}\n").unwrap_err();
        assert!(
            e.render().contains("lab.yml:1") && e.render().contains("probe_timeout"),
            "{}",
            e.render()
        );
    }

    #[test]
    fn patterns() {
        let i = inv();
        let names = |p: &str| {
            i.select(p)
                .unwrap()
                .iter()
                .map(|h| h.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("all"), vec!["lb", "pg1", "pg2"]);
        assert_eq!(names("database"), vec!["pg1", "pg2"]);
        assert_eq!(names("database,!pg2"), vec!["pg1"]);
        assert_eq!(names("all,&postgres"), vec!["pg1", "pg2"]);
        assert_eq!(names("pg*"), vec!["pg1", "pg2"]);
        assert_eq!(names("lb"), vec!["lb"]);
        let err = i.select("postgress").unwrap_err();
        assert!(err.contains("did you mean `postgres`"), "{err}");
    }

    #[test]
    fn unknown_host_in_group_names_line() {
        let text = "hosts:\n  pg1: {}\ngroups:\n  db:\n    hosts: [pg1, pg9]\n";
        let e = Inventory::parse(Path::new("inv.yml"), text).unwrap_err();
        assert_eq!(e.place.line, 5);
        assert!(e.message.contains("pg9"));
    }

    #[test]
    fn cycles_and_unknown_keys_are_rejected() {
        let text = "hosts: {a: {}}\ngroups:\n  x: {children: [y]}\n  y: {children: [x]}\n";
        assert!(Inventory::parse(Path::new("i.yml"), text)
            .unwrap_err()
            .message
            .contains("cycle"));
        let e =
            Inventory::parse(Path::new("i.yml"), "hosts:\n  a: {adress: 1.2.3.4}\n").unwrap_err();
        assert!(e.message.contains("adress"), "{}", e.message);
        assert_eq!(e.place.line, 2);
    }

    #[test]
    fn jump_comes_from_host_then_deepest_group_then_defaults() {
        let text = "ssh: { jump: root@bastion }\nhosts:\n  lb: { jump: none }\n  pg1: {}\n  \
                    pg2: { jump: \"a@b1, c@b2:2222\" }\n  web1: {}\n  db9: {}\n\
                    groups:\n  database: { children: [postgres, dbx], jump: u@outer }\n  \
                    postgres: { hosts: [pg1, pg2], jump: lb }\n  dbx: { hosts: [db9], jump: none }\n";
        let i = Inventory::parse(Path::new("i.yml"), text).unwrap();
        assert_eq!(i.hosts["lb"].jump, None, "`none` overrides the default");
        assert_eq!(
            i.hosts["pg1"].jump.as_ref().map(|j| j.as_str()),
            Some("lb"),
            "child group beats parent"
        );
        assert_eq!(
            i.hosts["pg2"].jump.as_ref().map(|j| j.as_str()),
            Some("a@b1, c@b2:2222")
        );
        assert_eq!(
            i.hosts["web1"].jump.as_ref().map(|j| j.as_str()),
            Some("root@bastion")
        );
        assert_eq!(
            i.hosts["db9"].jump, None,
            "a group's `none` beats the default"
        );
    }

    #[test]
    fn malformed_jump_names_its_line() {
        for (text, line) in [
            ("hosts:\n  a: {}\n  b:\n    jump: \"x@y,,z\"\n", 4),
            (
                "hosts: {a: {}}\ngroups:\n  g:\n    hosts: [a]\n    jump: \"x@y:http\"\n",
                5,
            ),
            ("ssh:\n  user: root\n  jump: \"@y\"\nhosts: {a: {}}\n", 3),
        ] {
            let e = Inventory::parse(Path::new("i.yml"), text).unwrap_err();
            assert_eq!(e.place.line, line, "{text}: {e}");
            assert!(e.message.contains("malformed jump"), "{}", e.message);
            assert!(e.hint.as_deref().unwrap_or("").contains("ProxyJump"));
        }
    }

    #[test]
    fn short_secrets_are_accepted() {
        // Redacted as whole words (see redact.rs); an empty one has nothing to redact.
        let i =
            Inventory::parse(Path::new("i.yml"), "secrets: {pw: ab, pin: 7, e: \"\"}\n").unwrap();
        assert_eq!(i.secret_values, ["7".to_string(), "ab".to_string()].into());
    }
}
