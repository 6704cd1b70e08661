//! Which kind of inventory a path holds, decided before anything is parsed for real.
//!
//! Rules, first match wins:
//! - a directory: its `terraform.tfstate` (Terraform);
//! - `*.tfstate`, or JSON with a `terraform_version`: Terraform state;
//! - `*.ini`, a file named `hosts`, or (any name but `.yml`/`.yaml`/`.json`) text whose first
//!   line that is not a comment is a `[section]` or not a YAML `key:`: Ansible INI;
//! - YAML with a top-level `terraform_state:`, or named `bosun-terraform.yml`: a Terraform
//!   mapping file used as the inventory;
//! - YAML whose top level is only Ansible groups (`all:` and others, each holding nothing
//!   but `hosts:`, `children:`, `vars:`): Ansible YAML;
//! - anything else: bosun's own YAML format.

use crate::diag::{LoadError, Place};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The name of the Terraform mapping file looked for beside a state file.
pub(super) const TF_MAPPING: &str = "bosun-terraform.yml";

/// What a path is, with the text already read where it was needed to decide.
pub(super) enum Source {
    Bosun(String),
    AnsibleIni(String),
    AnsibleYaml(String),
    /// At least one of the two is set; without `state`, the mapping file names it.
    Terraform {
        state: Option<PathBuf>,
        mapping: Option<PathBuf>,
    },
}

/// Top-level keys of bosun's own format: a file with any of them is never Ansible YAML.
const BOSUN_KEYS: &[&str] = &[
    "ssh",
    "vars",
    "secrets",
    "secrets_file",
    "lab",
    "hosts",
    "groups",
];

pub(super) fn detect(path: &Path) -> Result<Source, LoadError> {
    if path.is_dir() {
        let state = path.join("terraform.tfstate");
        if state.is_file() {
            let mapping = beside(&state);
            return Ok(Source::Terraform {
                state: Some(state),
                mapping,
            });
        }
        let mapping = path.join(TF_MAPPING);
        if mapping.is_file() {
            return Ok(Source::Terraform {
                state: None,
                mapping: Some(mapping),
            });
        }
        return Err(LoadError::new(
            Place::file(path),
            "is a directory without a terraform.tfstate",
        )
        .hint("pass an inventory file (bosun YAML, Ansible INI or YAML), a Terraform state file, or a directory holding terraform.tfstate"));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with(".tfstate") {
        return Ok(Source::Terraform {
            state: Some(path.to_path_buf()),
            mapping: beside(path),
        });
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError::new(Place::file(path), format!("cannot read: {e}")))?;
    let lower = name.to_ascii_lowercase();
    let yamlish = [".yml", ".yaml", ".json"]
        .iter()
        .any(|e| lower.ends_with(e));
    if lower.ends_with(".ini") || name == "hosts" || (!yamlish && looks_ini(&text)) {
        return Ok(Source::AnsibleIni(text));
    }
    if text.trim_start().starts_with('{') && text.contains("\"terraform_version\"") {
        return Ok(Source::Terraform {
            state: Some(path.to_path_buf()),
            mapping: beside(path),
        });
    }
    if let Ok(Value::Object(top)) = crate::yaml::parse::<Value>(path, &text) {
        if top.contains_key("terraform_state") || name == TF_MAPPING {
            return Ok(Source::Terraform {
                state: None,
                mapping: Some(path.to_path_buf()),
            });
        }
        if is_ansible_yaml(&top) {
            return Ok(Source::AnsibleYaml(text));
        }
    }
    Ok(Source::Bosun(text))
}

/// The mapping file beside a state file, when there is one.
fn beside(state: &Path) -> Option<PathBuf> {
    let m = state.parent().unwrap_or(Path::new(".")).join(TF_MAPPING);
    m.is_file().then_some(m)
}

/// INI when the first line that is not blank or a comment is a `[section]` or a host line;
/// YAML's first line is a `key:`, `---`, `- item` or a flow collection.
fn looks_ini(text: &str) -> bool {
    let Some(first) = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
    else {
        return false;
    };
    if first.starts_with('[') {
        return true;
    }
    if first.starts_with("---") || first.starts_with("- ") || first.starts_with('{') {
        return false;
    }
    let token = first.split_whitespace().next().unwrap_or("");
    !token.ends_with(':') && !first.contains(": ")
}

/// Every top-level value is an Ansible group: null or a map of `hosts`/`children`/`vars`.
fn is_ansible_yaml(top: &serde_json::Map<String, Value>) -> bool {
    if top.is_empty() || top.keys().any(|k| BOSUN_KEYS.contains(&k.as_str())) {
        return false;
    }
    top.values().all(|v| match v {
        Value::Null => true,
        Value::Object(g) => g
            .keys()
            .all(|k| matches!(k.as_str(), "hosts" | "children" | "vars")),
        _ => false,
    })
}

/// A YAML location for a line bosun found itself (INI lines, JSON lines), so places built
/// by other parsers go through the same [`Place::at`] as YAML ones.
pub(super) fn location(line: u64) -> serde_saphyr::Location {
    // serde-saphyr keeps Location's constructor private but deserializes it from a map.
    serde_json::from_value(serde_json::json!({ "line": line, "column": 0 }))
        .unwrap_or(serde_saphyr::Location::UNKNOWN)
}

/// `file:line: message`, the form every warning takes.
pub(super) fn warning(place: &Place, message: impl std::fmt::Display) -> String {
    format!("{place}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_or_yaml_by_first_line() {
        assert!(looks_ini("# c\n\n[web]\nw1\n"));
        assert!(looks_ini("w1 ansible_host=10.0.0.1\n[db]\n"));
        assert!(looks_ini("w1:2222\n"));
        assert!(!looks_ini("hosts:\n  a: {}\n"));
        assert!(!looks_ini("---\nall:\n"));
        assert!(!looks_ini("all: {hosts: {a: }}\n"));
        assert!(!looks_ini("# only comments\n"));
    }

    #[test]
    fn ansible_yaml_shape() {
        let v = |s: &str| -> serde_json::Map<String, Value> {
            match crate::yaml::parse(Path::new("t.yml"), s).unwrap() {
                Value::Object(m) => m,
                _ => panic!("not a map"),
            }
        };
        assert!(is_ansible_yaml(&v("all:\n  hosts:\n    a:\n")));
        assert!(is_ansible_yaml(&v("web:\n  hosts: {a: }\ndb:\n")));
        assert!(!is_ansible_yaml(&v("hosts:\n  a: {}\n")));
        assert!(!is_ansible_yaml(&v("all:\n  hosts: {}\nvars: {}\n")));
        assert!(!is_ansible_yaml(&v("web:\n  members: [a]\n")));
    }

    #[test]
    fn locations_carry_lines() {
        let p = Place::at(Path::new("i.ini"), &location(7));
        assert_eq!(p.to_string(), "i.ini:7");
    }
}
