//! Ansible inventories as they are: INI or YAML, with `group_vars/` and `host_vars/`.
//!
//! Both formats are read into a [`Doc`] (hosts, groups, children, variables, each with the
//! line that declared it), the variable directories beside the file are merged in, and the
//! result goes through the same resolution as a bosun inventory, so patterns, variable
//! precedence and converge work unchanged. Then the `ansible_*` connection variables
//! become host settings ([`connection`]).
//!
//! Mapping of Ansible's model:
//! - `all` is not a group in bosun (every pattern already knows `all`); its vars are the
//!   inventory's `vars`;
//! - `ungrouped` is a real group holding the hosts that are in no other group, created when
//!   it has hosts;
//! - `group_vars/NAME{,.yml,.yaml,.json}` and `group_vars/NAME/*` overlay the inventory
//!   file's vars of group NAME (`all` for every host); `host_vars/` likewise per host.
//!
//! One precedence difference: Ansible ranks `group_vars/all` above the inventory file's
//! group vars, bosun ranks every group above `all`. When a key is set in both places,
//! a warning says so.

mod connection;
mod ini;
mod literal;

use super::source::{location, warning};
use super::{Inventory, RawGroup, RawHost, RawInventory};
use crate::diag::{LoadError, Place};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use std::path::{Path, PathBuf};

/// Reads an Ansible INI inventory.
pub(super) fn load_ini(path: &Path, text: &str) -> Result<Inventory, LoadError> {
    let mut doc = Doc::new(path);
    ini::parse(path, text, &mut doc)?;
    doc.finish()
}

/// Reads an Ansible YAML inventory (`all: {hosts:, children:, vars:}`).
pub(super) fn load_yaml(path: &Path, text: &str) -> Result<Inventory, LoadError> {
    let top: Option<IndexMap<String, Spanned<Option<YGroup>>>> = crate::yaml::parse(path, text)?;
    let mut doc = Doc::new(path);
    for (name, g) in top.iter().flatten() {
        doc.yaml_group(name, g, None)?;
    }
    doc.finish()
}

type VarMap = IndexMap<String, Spanned<Value>>;

/// One group of a YAML inventory; anything but these three keys is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YGroup {
    #[serde(default)]
    hosts: Option<IndexMap<String, Spanned<Option<VarMap>>>>,
    #[serde(default)]
    children: Option<IndexMap<String, Spanned<Option<YGroup>>>>,
    #[serde(default)]
    vars: Option<VarMap>,
}

/// Where a variable goes.
#[derive(Debug, Clone)]
enum Target {
    All,
    Group(String),
    Host(String),
}

#[derive(Debug, Default)]
struct DocHost {
    line: u64,
    vars: Map<String, Value>,
}

#[derive(Debug, Default)]
struct DocGroup {
    line: u64,
    hosts: Vec<String>,
    children: Vec<String>,
    vars: Map<String, Value>,
}

/// An Ansible inventory as read, before it becomes an [`Inventory`].
#[derive(Debug)]
struct Doc {
    path: PathBuf,
    all_vars: Map<String, Value>,
    hosts: IndexMap<String, DocHost>,
    groups: IndexMap<String, DocGroup>,
    /// Group vars set in the inventory file itself: (group, key, where).
    file_group_vars: Vec<(String, String, Place)>,
    warnings: Vec<String>,
}

impl Doc {
    fn new(path: &Path) -> Doc {
        Doc {
            path: path.to_path_buf(),
            all_vars: Map::new(),
            hosts: IndexMap::new(),
            groups: IndexMap::new(),
            file_group_vars: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn group(&mut self, name: &str, line: u64) -> &mut DocGroup {
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| DocGroup {
                line,
                ..Default::default()
            })
    }

    /// Adds a host (once) and, unless `group` is None (ungrouped/all), puts it in `group`.
    fn add_host(&mut self, name: &str, line: u64, group: Option<&str>) {
        self.hosts
            .entry(name.to_string())
            .or_insert_with(|| DocHost {
                line,
                ..Default::default()
            });
        if let Some(g) = group {
            let grp = self.group(g, line);
            if !grp.hosts.iter().any(|h| h == name) {
                grp.hosts.push(name.to_string());
            }
        }
    }

    fn add_child(&mut self, parent: &str, child: &str) {
        if child == "all" || parent == "all" {
            return;
        }
        let p = self.group(parent, 0);
        if !p.children.iter().any(|c| c == child) {
            p.children.push(child.to_string());
        }
    }

    fn warn(&mut self, place: &Place, message: impl std::fmt::Display) {
        let w = warning(place, message);
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    /// Sets one variable, checking Ansible connection variables where they are defined so
    /// that errors and warnings name that line.
    fn set_var(
        &mut self,
        target: &Target,
        key: &str,
        value: Value,
        place: &Place,
    ) -> Result<(), LoadError> {
        if value
            .as_str()
            .is_some_and(|s| s.trim_start().starts_with("$ANSIBLE_VAULT"))
        {
            return Err(vault_error(place.clone(), key));
        }
        match connection::inspect(key, &value) {
            Ok(None) => {}
            Ok(Some(w)) => self.warn(place, w),
            Err((msg, hint)) => return Err(LoadError::new(place.clone(), msg).hint(hint)),
        }
        let map = match target {
            Target::All => &mut self.all_vars,
            Target::Group(g) => {
                if place.file == self.path {
                    self.file_group_vars
                        .push((g.clone(), key.to_string(), place.clone()));
                }
                &mut self.group(g, place.line).vars
            }
            Target::Host(h) => {
                &mut self
                    .hosts
                    .entry(h.clone())
                    .or_insert_with(|| DocHost {
                        line: place.line,
                        ..Default::default()
                    })
                    .vars
            }
        };
        map.insert(key.to_string(), value);
        Ok(())
    }

    fn set_vars(&mut self, target: &Target, file: &Path, vars: &VarMap) -> Result<(), LoadError> {
        for (k, v) in vars {
            let place = Place::at(file, &v.referenced);
            self.set_var(target, k, v.value.clone(), &place)?;
        }
        Ok(())
    }

    /// One group of a YAML inventory, then its children.
    fn yaml_group(
        &mut self,
        name: &str,
        g: &Spanned<Option<YGroup>>,
        parent: Option<&str>,
    ) -> Result<(), LoadError> {
        let path = self.path.clone();
        let line = g.referenced.line();
        let is_all = name == "all";
        if !is_all {
            self.group(name, line);
            if let Some(p) = parent {
                self.add_child(p, name);
            }
        }
        let Some(group) = &g.value else {
            return Ok(());
        };
        let member = (!is_all).then_some(name);
        for (pattern, h) in group.hosts.iter().flatten() {
            let place = Place::at(&path, &h.referenced);
            let (names, port) = ini::host_pattern(pattern).map_err(|e| {
                LoadError::new(place.clone(), e)
                    .hint("ranges are [begin:end] or [begin:end:step], e.g. web[01:10] or db-[a:c]")
            })?;
            for host in names {
                self.add_host(&host, place.line, member);
                let target = Target::Host(host);
                if let Some(p) = port {
                    self.set_var(&target, "ansible_port", p.into(), &place)?;
                }
                if let Some(vars) = &h.value {
                    self.set_vars(&target, &path, vars)?;
                }
            }
        }
        if let Some(vars) = &group.vars {
            let target = if is_all {
                Target::All
            } else {
                Target::Group(name.to_string())
            };
            self.set_vars(&target, &path, vars)?;
        }
        for (child, c) in group.children.iter().flatten() {
            self.yaml_group(child, c, member)?;
        }
        Ok(())
    }

    /// Merges `group_vars/` and `host_vars/` from beside the inventory file.
    fn load_var_dirs(&mut self) -> Result<(), LoadError> {
        let base = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        for (dir, is_group) in [
            (base.join("group_vars"), true),
            (base.join("host_vars"), false),
        ] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<(String, PathBuf)> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| usable(p))
                .filter_map(|p| {
                    let stem = if p.is_dir() {
                        p.file_name()
                    } else {
                        p.file_stem()
                    }?;
                    Some((stem.to_string_lossy().into_owned(), p))
                })
                .collect();
            names.sort();
            for (name, p) in names {
                let target = if is_group && name == "all" {
                    Target::All
                } else if is_group && self.groups.contains_key(&name) {
                    Target::Group(name.clone())
                } else if !is_group && self.hosts.contains_key(&name) {
                    Target::Host(name.clone())
                } else {
                    let what = if is_group { "group" } else { "host" };
                    self.warn(
                        &Place::file(&p),
                        format!("no {what} `{name}` in the inventory; file ignored"),
                    );
                    continue;
                };
                for file in var_files(&p) {
                    let vars = read_var_file(&file)?;
                    if matches!(target, Target::All) {
                        self.check_all_precedence(&file, &vars);
                    }
                    self.set_vars(&target, &file, &vars)?;
                }
            }
        }
        Ok(())
    }

    /// Warns where Ansible and bosun would pick different values (see the module doc).
    fn check_all_precedence(&mut self, file: &Path, vars: &VarMap) {
        for (k, v) in vars {
            let clashes: Vec<(String, Place)> = self
                .file_group_vars
                .iter()
                .filter(|(_, key, _)| key == k)
                .map(|(g, _, p)| (g.clone(), p.clone()))
                .collect();
            for (g, at) in clashes {
                self.warn(
                    &Place::at(file, &v.referenced),
                    format!(
                        "`{k}` is also set for group `{g}` at {at}: Ansible uses this group_vars/all value there, bosun uses the group's; set it in one place"
                    ),
                );
            }
        }
    }

    /// Hosts in no group join `ungrouped`; hosts with a group leave it (as in Ansible).
    fn settle_ungrouped(&mut self) {
        let grouped: std::collections::BTreeSet<String> = self
            .groups
            .iter()
            .filter(|(g, _)| *g != "ungrouped")
            .flat_map(|(_, grp)| grp.hosts.iter().cloned())
            .collect();
        let lone: Vec<(String, u64)> = self
            .hosts
            .iter()
            .filter(|(h, _)| !grouped.contains(*h))
            .map(|(h, d)| (h.clone(), d.line))
            .collect();
        if let Some(u) = self.groups.get_mut("ungrouped") {
            u.hosts.retain(|h| !grouped.contains(h));
        }
        for (h, line) in lone {
            self.add_host(&h, line, Some("ungrouped"));
        }
    }

    fn finish(mut self) -> Result<Inventory, LoadError> {
        self.load_var_dirs()?;
        self.settle_ungrouped();
        let path = self.path.clone();
        let spanned =
            |line: u64, s: &str| Spanned::new(s.to_string(), location(line), location(line));
        let raw = RawInventory {
            ssh: None,
            vars: self.all_vars,
            secrets: Map::new(),
            secrets_file: None,
            secrets_identity: None,
            lab: None,
            task_timeout: None,
            probe_timeout: None,
            hosts: self
                .hosts
                .into_iter()
                .map(|(name, h)| {
                    let host = RawHost {
                        address: None,
                        port: None,
                        user: None,
                        identity_file: None,
                        become_root: None,
                        jump: None,
                        vars: h.vars,
                        secrets: Map::new(),
                    };
                    (name, Spanned::new(host, location(h.line), location(h.line)))
                })
                .collect(),
            groups: self
                .groups
                .into_iter()
                .map(|(name, g)| {
                    let line = g.line;
                    let group = RawGroup {
                        hosts: g.hosts.iter().map(|h| spanned(line, h)).collect(),
                        children: g.children.iter().map(|c| spanned(line, c)).collect(),
                        jump: None,
                        vars: g.vars,
                        secrets: Map::new(),
                    };
                    (name, Spanned::new(group, location(line), location(line)))
                })
                .collect(),
        };
        let mut inv = Inventory::resolve(&path, raw)?;
        connection::apply(&mut inv, path.parent().unwrap_or(Path::new(".")));
        inv.warnings = self.warnings;
        Ok(inv)
    }
}

fn vault_error(place: Place, what: &str) -> LoadError {
    LoadError::new(place, format!("`{what}` is encrypted with ansible-vault"))
        .hint("bosun cannot decrypt Ansible Vault; decrypt it (ansible-vault decrypt) and keep the values in a bosun secrets file")
}

/// Files Ansible's host_group_vars plugin reads: YAML/JSON or no extension, not hidden,
/// not editor backups.
fn usable(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with('.') || name.ends_with('~') {
        return false;
    }
    p.is_dir()
        || matches!(
            p.extension().and_then(|e| e.to_str()),
            None | Some("yml" | "yaml" | "json")
        )
}

/// A vars file, or every usable file under a vars directory in name order.
fn var_files(p: &Path) -> Vec<PathBuf> {
    if !p.is_dir() {
        return vec![p.to_path_buf()];
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
        .into_iter()
        .filter(|e| usable(e))
        .flat_map(|e| var_files(&e))
        .collect()
}

fn read_var_file(file: &Path) -> Result<VarMap, LoadError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| LoadError::new(Place::file(file), format!("cannot read: {e}")))?;
    if text.trim_start().starts_with("$ANSIBLE_VAULT") {
        return Err(vault_error(Place::new(file, 1, 0), "this file"));
    }
    let vars: Option<VarMap> = crate::yaml::parse(file, &text)?;
    Ok(vars.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "bosun-ansible-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (p, text) in files {
            let f = dir.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        }
        dir
    }

    #[test]
    fn yaml_nesting_and_var_dirs() {
        let dir = project(&[
            (
                "inv.yml",
                "all:\n  vars:\n    env: prod\n  hosts:\n    lone:\n  children:\n    db:\n      children:\n        pg:\n          hosts:\n            pg[1:2]:\n              ansible_user: admin\n      vars:\n        level: db\n",
            ),
            ("group_vars/pg.yml", "level: pg\n"),
            ("group_vars/db/a.yml", "from_dir: 1\n"),
            ("host_vars/pg2", "ansible_host: 10.0.0.2\nlevel: host\n"),
            ("host_vars/ghost.yml", "x: 1\n"),
        ]);
        let inv = Inventory::load(&dir.join("inv.yml")).unwrap();
        let pg2 = &inv.hosts["pg2"];
        assert_eq!(pg2.address, "10.0.0.2");
        assert_eq!(pg2.user, "admin");
        assert_eq!(pg2.vars["level"], "host");
        assert_eq!(inv.hosts["pg1"].vars["level"], "pg");
        assert_eq!(inv.hosts["pg1"].vars["from_dir"], 1);
        assert_eq!(inv.hosts["lone"].vars["env"], "prod");
        assert_eq!(inv.groups["ungrouped"].hosts, ["lone"]);
        assert_eq!(inv.groups["db"].children, ["pg"]);
        assert!(
            inv.warnings.iter().any(|w| w.contains("ghost")),
            "{:?}",
            inv.warnings
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_yaml_keys_and_vault_are_errors() {
        let dir = project(&[
            (
                "a.yml",
                "all:\n  children:\n    web:\n      host:\n        w1:\n",
            ),
            ("b/inv.yml", "all:\n  hosts:\n    w1:\n"),
            ("b/group_vars/all.yml", "$ANSIBLE_VAULT;1.1;AES256\n6162\n"),
        ]);
        let e = Inventory::load(&dir.join("a.yml")).unwrap_err();
        assert!(e.message.contains("host"), "{}", e.message);
        assert_eq!(e.place.line, 4);
        let e = Inventory::load(&dir.join("b/inv.yml")).unwrap_err();
        assert!(e.message.contains("ansible-vault"), "{}", e.message);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn precedence_difference_is_warned() {
        let dir = project(&[
            ("hosts", "[web]\nw1\n[web:vars]\nport=1\n"),
            ("group_vars/all.yml", "port: 2\n"),
        ]);
        let inv = Inventory::load(&dir.join("hosts")).unwrap();
        assert_eq!(inv.hosts["w1"].vars["port"], 1);
        assert!(
            inv.warnings
                .iter()
                .any(|w| w.contains("group_vars/all.yml:1") && w.contains("hosts:4")),
            "{:?}",
            inv.warnings
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
