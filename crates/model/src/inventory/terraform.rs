//! Terraform state (format version 4) as an inventory, read from the JSON without the
//! terraform binary.
//!
//! Hosts come from these resource types (every `count`/`for_each` instance is one host):
//!
//! | type | name | private address | public address | labels |
//! |---|---|---|---|---|
//! | `yandex_compute_instance` | `name` | `network_interface[].ip_address` | `network_interface[].nat_ip_address` | `labels` |
//! | `aws_instance` | `tags.Name` | `private_ip` | `public_ip` | `tags` (but `Name`) |
//! | `google_compute_instance` | `name` | `network_interface[].network_ip` | `network_interface[].access_config[].nat_ip` | `labels` |
//! | `hcloud_server` | `name` | `network[].ip` | `ipv4_address` | `labels` |
//! | `digitalocean_droplet` | `name` | `ipv4_address_private` | `ipv4_address` | `tags` |
//!
//! A missing name becomes the resource name plus the instance key (`web-0`, `web-blue`).
//! Names keep letters, digits, `-`, `_` and `.`; anything else becomes `-`.
//! Each host gets the vars `private_address` and `public_address` (when known),
//! `terraform_resource` (its address in the state) and `terraform_labels`.
//!
//! **Groups from labels.** Every label `key=value` puts the host in the group `key_value`
//! (a label or tag without a value: the group `key`). The keys `role` and `group` also put
//! it in the group named by the value alone: `role=postgres` gives `role_postgres` and
//! `postgres`. Group names keep letters, digits and `_`; anything else becomes `_` (as in
//! Ansible's cloud inventories). A label group that would share a host's name is skipped
//! with a warning.
//!
//! **The address** bosun connects to is the public one when there is one, else the private
//! one; the mapping file can choose `address: private` (or `public`) for all hosts, a group
//! or one host, and falls back to the other address when the chosen one is missing.
//!
//! **The mapping file** `bosun-terraform.yml` beside the state is read when present; it can
//! also be the inventory itself (`-i bosun-terraform.yml`, naming the state with
//! `terraform_state:`):
//!
//! ```yaml
//! terraform_state: terraform.tfstate   # relative to this file; this is the default
//! address: private                     # public (default) or private
//! ssh: { user: ubuntu, known_hosts: known_hosts }   # as in a bosun inventory
//! vars: { env: production }
//! groups:
//!   postgres:
//!     hosts: ["pg-*"]                  # host name globs
//!     labels: ["role=db", "pg"]        # key=value, or a key that is present
//!     children: [etcd]
//!     vars: { pg_version: 15 }
//!     user: admin                      # ssh user for these hosts; also address:, jump:
//! hosts:
//!   bastion: { address: public, user: ops, vars: { } }   # also port:, jump:, secrets:
//! ```
//! Later groups in the file win over earlier ones for `user`/`address`/`jump`; a host entry
//! wins over its groups. Resource types bosun does not read hosts from are skipped with
//! one warning naming them.

use super::source::{location, warning};
use super::{glob_match, Inventory, RawGroup, RawHost, RawInventory, SshDefaults};
use crate::diag::{LoadError, Place};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The resource types hosts are read from.
const HOST_TYPES: &[&str] = &[
    "yandex_compute_instance",
    "aws_instance",
    "google_compute_instance",
    "hcloud_server",
    "digitalocean_droplet",
];

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AddressChoice {
    Public,
    Private,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mapping {
    /// The state file, relative to this file (default: terraform.tfstate beside it).
    terraform_state: Option<Spanned<String>>,
    address: Option<AddressChoice>,
    ssh: Option<SshDefaults>,
    #[serde(default)]
    vars: Map<String, Value>,
    #[serde(default)]
    secrets: Map<String, Value>,
    secrets_file: Option<Spanned<String>>,
    /// Identity for an age-encrypted `secrets_file` (as in a bosun inventory).
    secrets_identity: Option<String>,
    #[serde(default)]
    groups: IndexMap<String, Spanned<MapGroup>>,
    #[serde(default)]
    hosts: IndexMap<String, Spanned<MapHost>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapGroup {
    /// Host name globs.
    #[serde(default)]
    hosts: Vec<String>,
    /// `key=value`, or `key` (present with any value).
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    children: Vec<Spanned<String>>,
    #[serde(default)]
    vars: Map<String, Value>,
    #[serde(default)]
    secrets: Map<String, Value>,
    user: Option<String>,
    address: Option<AddressChoice>,
    jump: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapHost {
    user: Option<String>,
    port: Option<u16>,
    address: Option<AddressChoice>,
    jump: Option<Spanned<String>>,
    #[serde(default)]
    vars: Map<String, Value>,
    #[serde(default)]
    secrets: Map<String, Value>,
}

/// One compute instance found in the state.
#[derive(Debug)]
struct Found {
    name: String,
    /// Its address in the state, e.g. `module.db.aws_instance.pg[0]`.
    resource: String,
    line: u64,
    private: Option<String>,
    public: Option<String>,
    labels: IndexMap<String, String>,
}

/// Reads the state (and the mapping file, when there is one) into an inventory.
pub(super) fn load(
    state: Option<&Path>,
    mapping_path: Option<&Path>,
) -> Result<Inventory, LoadError> {
    let mapping: Mapping = match mapping_path {
        Some(m) => crate::yaml::load::<Option<Mapping>>(m)?.unwrap_or_default(),
        None => Mapping::default(),
    };
    let state: PathBuf = match (state, mapping_path) {
        (Some(s), _) => s.to_path_buf(),
        (None, Some(m)) => {
            let dir = m.parent().unwrap_or(Path::new("."));
            let s = match &mapping.terraform_state {
                Some(s) => super::resolve_path(dir, &s.value),
                None => dir.join("terraform.tfstate"),
            };
            if !s.is_file() {
                let place = match &mapping.terraform_state {
                    Some(sp) => Place::at(m, &sp.referenced),
                    None => Place::file(m),
                };
                return Err(LoadError::new(
                    place,
                    format!("Terraform state {} does not exist", s.display()),
                )
                .hint("run `terraform state pull > terraform.tfstate` beside this file, or point terraform_state: at the state"));
            }
            s
        }
        (None, None) => return Err(LoadError::new(Place::default(), "no Terraform state given")),
    };
    let text = std::fs::read_to_string(&state)
        .map_err(|e| LoadError::new(Place::file(&state), format!("cannot read: {e}")))?;
    let mut warnings = Vec::new();
    let found = read_state(&state, &text, &mut warnings)?;
    let inv_path = mapping_path.unwrap_or(&state);
    let raw = build(&state, inv_path, found, mapping, &mut warnings)?;
    let mut inv = Inventory::resolve(inv_path, raw)?;
    inv.warnings = warnings;
    Ok(inv)
}

/// Every host instance in the state, in state order.
fn read_state(
    path: &Path,
    text: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Found>, LoadError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        LoadError::new(
            Place::new(path, e.line() as u64, e.column() as u64),
            format!("not valid JSON: {e}"),
        )
        .hint("the state file is damaged; `terraform state pull > terraform.tfstate` writes a fresh copy")
    })?;
    let version = doc.get("version").and_then(Value::as_u64);
    if version != Some(4) {
        return Err(LoadError::new(
            Place::new(path, line_of(text, "\"version\"", 0).unwrap_or(0), 0),
            format!(
                "Terraform state format version {} is not supported",
                version.map_or_else(|| "(missing)".to_string(), |v| v.to_string())
            ),
        )
        .hint("bosun reads format version 4 (Terraform 0.12 and later); `terraform state pull` with a current Terraform writes it"));
    }
    let mut found = Vec::new();
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let mut cursor = 0;
    let resources = doc
        .get("resources")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for r in resources {
        let ty = r.get("type").and_then(Value::as_str).unwrap_or("");
        let rname = r.get("name").and_then(Value::as_str).unwrap_or("");
        let line = line_of(text, &format!("\"type\": \"{ty}\""), cursor).unwrap_or(0);
        cursor = line as usize;
        if r.get("mode").and_then(Value::as_str) != Some("managed") {
            continue;
        }
        if !HOST_TYPES.contains(&ty) {
            *skipped.entry(ty.to_string()).or_default() += 1;
            continue;
        }
        let module = r
            .get("module")
            .and_then(Value::as_str)
            .map(|m| format!("{m}."))
            .unwrap_or_default();
        let instances = r
            .get("instances")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for inst in instances {
            if inst.get("deposed").is_some() {
                continue;
            }
            let (suffix, key) = match inst.get("index_key") {
                Some(Value::Number(n)) => (format!("[{n}]"), Some(n.to_string())),
                Some(Value::String(s)) => (format!("[\"{s}\"]"), Some(s.clone())),
                _ => (String::new(), None),
            };
            let resource = format!("{module}{ty}.{rname}{suffix}");
            let attrs = inst.get("attributes").unwrap_or(&Value::Null);
            let x = extract(ty, attrs);
            let name = x.name.unwrap_or_else(|| match &key {
                Some(k) => format!("{rname}-{k}"),
                None => rname.to_string(),
            });
            if x.private.is_none() && x.public.is_none() {
                warnings.push(warning(
                    &Place::new(path, line, 0),
                    format!("{resource} has no IP address (not created yet?); skipped"),
                ));
                continue;
            }
            found.push(Found {
                name: clean_name(&name),
                resource,
                line,
                private: x.private,
                public: x.public,
                labels: x.labels,
            });
        }
    }
    if !skipped.is_empty() {
        let list: Vec<String> = skipped
            .iter()
            .map(|(t, n)| {
                if *n > 1 {
                    format!("{t} (×{n})")
                } else {
                    t.clone()
                }
            })
            .collect();
        warnings.push(warning(
            &Place::file(path),
            format!(
                "skipped resource types bosun does not read hosts from: {}; hosts come from {}",
                list.join(", "),
                HOST_TYPES.join(", ")
            ),
        ));
    }
    Ok(found)
}

/// The first line at or after line `from` (0-based count of lines to skip) containing
/// `needle`, 1-based. Terraform writes one key per line, so this finds a resource's line.
fn line_of(text: &str, needle: &str, from: usize) -> Option<u64> {
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i as u64 + 1)
}

#[derive(Default)]
struct Extracted {
    name: Option<String>,
    private: Option<String>,
    public: Option<String>,
    labels: IndexMap<String, String>,
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// The first non-empty `key` among the elements of the array `v`.
fn first_in(v: Option<&Value>, key: &str) -> Option<String> {
    v.and_then(Value::as_array)?
        .iter()
        .find_map(|e| text(e.get(key)))
}

fn label_map(v: Option<&Value>) -> IndexMap<String, String> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        // DigitalOcean tags: a list of strings, `key:value` or a bare name.
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(|t| match t.split_once([':', '=']) {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (t.to_string(), String::new()),
            })
            .collect(),
        _ => IndexMap::new(),
    }
}

fn extract(ty: &str, a: &Value) -> Extracted {
    match ty {
        "yandex_compute_instance" => {
            let nics = a.get("network_interface");
            Extracted {
                name: text(a.get("name")),
                private: first_in(nics, "ip_address"),
                public: first_in(nics, "nat_ip_address"),
                labels: label_map(a.get("labels")),
            }
        }
        "aws_instance" => {
            let mut labels = label_map(a.get("tags"));
            let name = labels.shift_remove("Name").filter(|n| !n.trim().is_empty());
            Extracted {
                name,
                private: text(a.get("private_ip")),
                public: text(a.get("public_ip")),
                labels,
            }
        }
        "google_compute_instance" => {
            let nics = a.get("network_interface").and_then(Value::as_array);
            Extracted {
                name: text(a.get("name")),
                private: first_in(a.get("network_interface"), "network_ip"),
                public: nics.and_then(|n| {
                    n.iter()
                        .find_map(|nic| first_in(nic.get("access_config"), "nat_ip"))
                }),
                labels: label_map(a.get("labels")),
            }
        }
        "hcloud_server" => Extracted {
            name: text(a.get("name")),
            private: first_in(a.get("network"), "ip"),
            public: text(a.get("ipv4_address")),
            labels: label_map(a.get("labels")),
        },
        "digitalocean_droplet" => Extracted {
            name: text(a.get("name")),
            private: text(a.get("ipv4_address_private")),
            public: text(a.get("ipv4_address")),
            labels: label_map(a.get("tags")),
        },
        _ => Extracted::default(),
    }
}

/// A name bosun accepts for a host or group: letters, digits, `-`, `_`, `.`.
fn clean_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn group_name(s: &str) -> String {
    clean_name(s).replace(['-', '.'], "_")
}

/// Groups a host's labels put it in (see the module doc).
fn label_groups(labels: &IndexMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in labels {
        if v.is_empty() {
            out.push(group_name(k));
            continue;
        }
        out.push(group_name(&format!("{k}_{v}")));
        if matches!(k.as_str(), "role" | "group") {
            out.push(group_name(v));
        }
    }
    out
}

fn label_matches(labels: &IndexMap<String, String>, sel: &str) -> bool {
    match sel.split_once('=') {
        Some((k, v)) => labels.get(k.trim()).is_some_and(|x| x == v.trim()),
        None => labels.contains_key(sel.trim()),
    }
}

fn build(
    state: &Path,
    inv_path: &Path,
    found: Vec<Found>,
    mapping: Mapping,
    warnings: &mut Vec<String>,
) -> Result<RawInventory, LoadError> {
    let unknown = location(0);
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for f in &found {
        if let Some(other) = seen.insert(f.name.clone(), &f.resource) {
            return Err(LoadError::new(
                Place::new(state, f.line, 0),
                format!("{} and {other} are both named `{}`", f.resource, f.name),
            )
            .hint(
                "give the instances distinct names (the name attribute, or the Name tag on AWS)",
            ));
        }
    }
    let host_names: BTreeSet<&str> = found.iter().map(|f| f.name.as_str()).collect();

    // Label groups first, then the mapping's groups (which may extend a label group).
    let mut groups: Groups = IndexMap::new();
    for f in &found {
        for g in label_groups(&f.labels) {
            if host_names.contains(g.as_str()) {
                let w = warning(
                    &Place::new(state, f.line, 0),
                    format!(
                        "label group `{g}` of {} is skipped: a host has that name",
                        f.name
                    ),
                );
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
                continue;
            }
            let members = &mut groups.entry(g).or_default().0;
            if !members.contains(&f.name) {
                members.push(f.name.clone());
            }
        }
    }
    for (gname, g) in mapping.groups {
        let mut matched = 0;
        let entry = groups.entry(gname.clone()).or_default();
        for f in &found {
            let hit = g.value.hosts.iter().any(|p| glob_match(p, &f.name))
                || g.value.labels.iter().any(|l| label_matches(&f.labels, l));
            if hit {
                matched += 1;
                if !entry.0.contains(&f.name) {
                    entry.0.push(f.name.clone());
                }
            }
        }
        let selects = !g.value.hosts.is_empty() || !g.value.labels.is_empty();
        if selects && matched == 0 {
            warnings.push(warning(
                &Place::at(inv_path, &g.referenced),
                format!("group `{gname}` matches no host in {}", state.display()),
            ));
        }
        entry.1 = Some(g);
    }
    for (h, m) in &mapping.hosts {
        if !host_names.contains(h.as_str()) {
            warnings.push(warning(
                &Place::at(inv_path, &m.referenced),
                format!("host `{h}` is not in {}; entry ignored", state.display()),
            ));
        }
    }

    let all_members = transitive_members(&groups);
    let mut hosts = IndexMap::new();
    for f in &found {
        let over = mapping.hosts.get(&f.name).map(|h| &h.value);
        // Settings: top level, then groups in file order (later wins), then the host.
        let mut choice = mapping.address;
        let mut user = None;
        let mut jump = None;
        for (gname, (_, g)) in &groups {
            let member = all_members
                .get(gname.as_str())
                .is_some_and(|m| m.contains(f.name.as_str()));
            if let Some(g) = g.as_ref().filter(|_| member) {
                choice = g.value.address.or(choice);
                user = g.value.user.clone().or(user);
                jump = g.value.jump.clone().or(jump);
            }
        }
        if let Some(o) = over {
            choice = o.address.or(choice);
            user = o.user.clone().or(user);
            jump = o.jump.clone().or(jump);
        }
        let address = match choice {
            Some(AddressChoice::Private) => f.private.clone().or_else(|| f.public.clone()),
            _ => f.public.clone().or_else(|| f.private.clone()),
        };
        let mut vars = Map::new();
        if let Some(p) = &f.private {
            vars.insert("private_address".into(), p.clone().into());
        }
        if let Some(p) = &f.public {
            vars.insert("public_address".into(), p.clone().into());
        }
        vars.insert("terraform_resource".into(), f.resource.clone().into());
        vars.insert(
            "terraform_labels".into(),
            Value::Object(
                f.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
        let (port, secrets) = match over {
            Some(o) => {
                vars.extend(o.vars.clone());
                (o.port, o.secrets.clone())
            }
            None => (None, Map::new()),
        };
        // Places of hosts point into the file the inventory is named by.
        let loc = match mapping.hosts.get(&f.name) {
            Some(h) => h.referenced,
            None if inv_path == state => location(f.line),
            None => unknown,
        };
        hosts.insert(
            f.name.clone(),
            Spanned::new(
                RawHost {
                    address,
                    port,
                    user,
                    identity_file: None,
                    become_root: None,
                    jump,
                    vars,
                    secrets,
                },
                loc,
                loc,
            ),
        );
    }
    let groups = groups
        .into_iter()
        .map(|(name, (members, g))| {
            let (loc, children, vars, secrets) = match g {
                Some(g) => (
                    g.referenced,
                    g.value.children,
                    g.value.vars,
                    g.value.secrets,
                ),
                None => (unknown, Vec::new(), Map::new(), Map::new()),
            };
            let raw = RawGroup {
                hosts: members
                    .into_iter()
                    .map(|h| Spanned::new(h, loc, loc))
                    .collect(),
                children,
                // Set per host above: a mapping group's `jump` applies to its members.
                jump: None,
                vars,
                secrets,
            };
            (name, Spanned::new(raw, loc, loc))
        })
        .collect();
    Ok(RawInventory {
        ssh: mapping.ssh,
        vars: mapping.vars,
        secrets: mapping.secrets,
        secrets_file: mapping.secrets_file,
        secrets_identity: mapping.secrets_identity,
        lab: None,
        task_timeout: None,
        probe_timeout: None,
        hosts,
        groups,
    })
}

type Groups = IndexMap<String, (Vec<String>, Option<Spanned<MapGroup>>)>;

/// Each group's hosts including those of its child groups (cycles are reported later, by
/// the common resolution).
fn transitive_members(groups: &Groups) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut out = BTreeMap::new();
    for name in groups.keys() {
        let mut set = BTreeSet::new();
        let mut stack = vec![name.as_str()];
        let mut seen = BTreeSet::new();
        while let Some(g) = stack.pop() {
            if !seen.insert(g) {
                continue;
            }
            if let Some((members, mg)) = groups.get(g) {
                set.extend(members.iter().map(String::as_str));
                if let Some(mg) = mg {
                    stack.extend(mg.value.children.iter().map(|c| c.value.as_str()));
                }
            }
        }
        out.insert(name.as_str(), set);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_groups_rule() {
        let labels: IndexMap<String, String> = [
            ("role", "postgres"),
            ("env", "prod"),
            ("web", ""),
            ("group", "db-main"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            label_groups(&labels),
            [
                "role_postgres",
                "postgres",
                "env_prod",
                "web",
                "group_db_main",
                "db_main"
            ]
        );
        assert!(label_matches(&labels, "role=postgres"));
        assert!(label_matches(&labels, "env"));
        assert!(!label_matches(&labels, "env=dev"));
    }

    #[test]
    fn bad_json_names_line_and_column() {
        let mut w = Vec::new();
        let e = read_state(
            Path::new("t.tfstate"),
            "{\n  \"version\": 4,\n  \"resources\": [,]\n}\n",
            &mut w,
        )
        .unwrap_err();
        assert_eq!(e.to_string().split(':').nth(1), Some("3"), "{e}");
        assert!(e.hint.is_some());
        let e = read_state(Path::new("t.tfstate"), "{\n  \"version\": 3\n}\n", &mut w).unwrap_err();
        assert_eq!(e.place.line, 2);
        assert!(e.message.contains("version 3"), "{}", e.message);
    }

    #[test]
    fn names_fall_back_to_resource_and_key() {
        let text = r#"{"version": 4, "resources": [
 {"mode": "managed", "type": "aws_instance", "name": "web", "instances": [
  {"index_key": 0, "attributes": {"private_ip": "10.0.0.1", "public_ip": "", "tags": null}},
  {"index_key": "blue", "attributes": {"private_ip": "10.0.0.2", "tags": {"Name": "web blue"}}},
  {"index_key": 2, "attributes": {"private_ip": ""}}
 ]},
 {"mode": "data", "type": "aws_ami", "name": "x", "instances": []}
]}"#;
        let mut w = Vec::new();
        let f = read_state(Path::new("t.tfstate"), text, &mut w).unwrap();
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["web-0", "web-blue"]);
        assert_eq!(f[0].resource, "aws_instance.web[0]");
        assert_eq!(f[0].public, None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("aws_instance.web[2] has no IP address"),
            "{w:?}"
        );
    }
}
