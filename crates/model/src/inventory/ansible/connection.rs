//! Ansible's connection variables, turned into bosun's host settings.
//!
//! | Ansible | bosun |
//! |---|---|
//! | `ansible_host` | `address` |
//! | `ansible_port` | `port` |
//! | `ansible_user` | `user` |
//! | `ansible_ssh_private_key_file` | `identity_file` (relative to the inventory file) |
//! | `ansible_become` | `become` |
//! | `ProxyJump=`/`-J` in `ansible_ssh_common_args`/`ansible_ssh_extra_args` | `jump` |
//!
//! These are taken out of the host's variables once mapped. Every other connection
//! variable (`ansible_connection` other than ssh, passwords, `ansible_become_method` other
//! than sudo, ...) is dropped with a warning at the line that set it: bosun cannot honour
//! it, and an inventory that silently means something else is worse than a warning.

use crate::inventory::{resolve_path, Inventory};
use serde_json::{Map, Value};
use std::path::Path;

/// Variables bosun maps onto host settings.
const MAPPED: &[&str] = &[
    "ansible_host",
    "ansible_ssh_host",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ansible_become",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
];

/// Prefixes of variables that configure how Ansible connects (never plain data).
const CONNECTION_PREFIXES: &[&str] = &[
    "ansible_ssh_",
    "ansible_become",
    "ansible_sudo",
    "ansible_su_",
    "ansible_winrm_",
    "ansible_psrp_",
    "ansible_paramiko_",
    "ansible_libssh_",
    "ansible_docker_",
    "ansible_podman_",
    "ansible_sftp_",
    "ansible_scp_",
    "ansible_httpapi_",
    "ansible_netconf_",
    "ansible_shell_",
];

const CONNECTION_NAMES: &[&str] = &[
    "ansible_connection",
    "ansible_password",
    "ansible_timeout",
    "ansible_pipelining",
    "ansible_private_key_file",
    "ansible_host_key_checking",
];

/// Whether `key` configures the connection (such keys never reach a host's variables).
pub(super) fn is_connection_var(key: &str) -> bool {
    MAPPED.contains(&key)
        || CONNECTION_NAMES.contains(&key)
        || CONNECTION_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Checks one definition of a connection variable: `Err((message, hint))` when its value
/// cannot work, `Ok(Some(warning))` when bosun ignores it (or part of it).
pub(super) fn inspect(key: &str, value: &Value) -> Result<Option<String>, (String, String)> {
    if !is_connection_var(key) {
        return Ok(None);
    }
    let text = scalar(value);
    let need_text = || {
        text.clone().ok_or_else(|| {
            (
                format!("{key} must be a string"),
                "write it as a plain value".to_string(),
            )
        })
    };
    match key {
        "ansible_host"
        | "ansible_ssh_host"
        | "ansible_user"
        | "ansible_ssh_user"
        | "ansible_ssh_private_key_file"
        | "ansible_private_key_file" => {
            let t = need_text()?;
            // bosun reads the inventory before any template is rendered.
            Ok(t.contains("{{").then(|| {
                format!("{key}={t}: templates are not rendered in connection variables; used as written")
            }))
        }
        "ansible_port" | "ansible_ssh_port" => match port(value) {
            Some(_) => Ok(None),
            None => Err((
                format!("{key}={} is not a port number", text.unwrap_or_default()),
                "use a number from 1 to 65535".into(),
            )),
        },
        "ansible_become" => match boolean(value) {
            Some(_) => Ok(None),
            None => Err((
                format!("{key}={} is not a boolean", text.unwrap_or_default()),
                "use true or false".into(),
            )),
        },
        "ansible_ssh_common_args" | "ansible_ssh_extra_args" => {
            let (jump, ignored) = jump_from_args(&need_text()?);
            if let Some(j) = jump.filter(|j| !j.is_empty()) {
                crate::hops::parse(&j).map_err(|m| {
                    (
                        format!("{key}: malformed jump host `{j}`: {m}"),
                        crate::hops::SYNTAX_HINT.to_string(),
                    )
                })?;
            }
            Ok((!ignored.is_empty()).then(|| {
                format!(
                    "{key}: `{}` ignored; bosun takes only the jump host (ProxyJump, -J, or ProxyCommand=\"ssh -W %h:%p HOST\") from it",
                    ignored.join(" ")
                )
            }))
        }
        "ansible_connection" => {
            let c = need_text()?;
            let c = c.rsplit('.').next().unwrap_or(&c).to_string();
            Ok(match c.as_str() {
                "ssh" | "smart" | "paramiko" | "paramiko_ssh" | "libssh" => None,
                "local" => Some(format!(
                    "ansible_connection={c} is not supported: bosun does not run tasks on this machine; it will connect to the host over SSH"
                )),
                _ => Some(format!(
                    "ansible_connection={c} is not supported: bosun reaches hosts over SSH only and will try SSH to this host"
                )),
            })
        }
        "ansible_become_method" => {
            let m = need_text()?;
            Ok((!matches!(m.as_str(), "sudo" | "ansible.builtin.sudo")).then(|| {
                format!("ansible_become_method={m} is not supported: bosun becomes root with `sudo -n`; ignored")
            }))
        }
        "ansible_become_user" => {
            let u = need_text()?;
            Ok((u != "root").then(|| {
                format!(
                    "ansible_become_user={u} is not supported: bosun becomes root only; ignored"
                )
            }))
        }
        // Never echo a password's value.
        "ansible_password" | "ansible_ssh_pass" | "ansible_ssh_password" => Ok(Some(format!(
            "{key} is ignored: bosun logs in with keys (ssh-agent or identity_file), not passwords"
        ))),
        "ansible_become_password"
        | "ansible_become_pass"
        | "ansible_sudo_pass"
        | "ansible_sudo_password" => Ok(Some(format!(
            "{key} is ignored: bosun needs passwordless sudo (`sudo -n`)"
        ))),
        _ => Ok(Some(format!("{key} is not supported by bosun; ignored"))),
    }
}

/// Moves the mapped connection variables of every host into its settings, and drops all
/// connection variables from its variables.
pub(super) fn apply(inv: &mut Inventory, base: &Path) {
    for h in inv.hosts.values_mut() {
        let v = &h.vars;
        if let Some(a) = first_text(v, &["ansible_host", "ansible_ssh_host"]) {
            h.address = a;
        }
        if let Some(p) = ["ansible_port", "ansible_ssh_port"]
            .iter()
            .find_map(|k| v.get(*k).and_then(port))
        {
            h.port = p;
        }
        if let Some(u) = first_text(v, &["ansible_user", "ansible_ssh_user"]) {
            h.user = u;
        }
        if let Some(k) = first_text(
            v,
            &["ansible_ssh_private_key_file", "ansible_private_key_file"],
        ) {
            h.identity_file = Some(resolve_path(base, &k));
        }
        if let Some(b) = v.get("ansible_become").and_then(boolean) {
            h.become_root = b;
        }
        // ssh takes the first value it is given; Ansible puts common args before extra args.
        if let Some(j) = ["ansible_ssh_common_args", "ansible_ssh_extra_args"]
            .iter()
            .filter_map(|k| v.get(*k).and_then(scalar))
            .find_map(|a| jump_from_args(&a).0)
        {
            // Checked when the variable was read (`check`), so a malformed chain never gets here.
            h.jump = crate::hops::Jump::parse(&j).ok().flatten();
        }
        h.vars.retain(|k, _| !is_connection_var(k));
    }
}

fn first_text(v: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| v.get(*k).and_then(scalar))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn port(v: &Value) -> Option<u16> {
    scalar(v)?.trim().parse::<u16>().ok().filter(|p| *p > 0)
}

/// Ansible's booleans: true/false, yes/no, on/off, 1/0, in any case.
pub(super) fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => match scalar(v)?.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" | "y" | "t" => Some(true),
            "false" | "no" | "off" | "0" | "n" | "f" => Some(false),
            _ => None,
        },
    }
}

/// ssh options whose value is the next word.
const SSH_FLAGS_WITH_ARG: &str = "BbcDEeFIiLlmOoPpQRSWwJ";

/// The jump chain in ssh arguments (`Some("")` for `ProxyJump=none`: explicitly none), and
/// the parts bosun ignores.
pub(super) fn jump_from_args(args: &str) -> (Option<String>, Vec<String>) {
    let words = match crate::text::split_words(args, false) {
        Ok(w) => w,
        Err(_) => return (None, vec![args.to_string()]),
    };
    let mut jump: Option<String> = None;
    let mut ignored = Vec::new();
    let mut it = words.iter().peekable();
    while let Some(w) = it.next() {
        let (flag, attached) = match w.strip_prefix('-') {
            Some(rest) if !rest.is_empty() && !rest.starts_with('-') => {
                let (f, a) = rest.split_at(1);
                (f.chars().next(), (!a.is_empty()).then(|| a.to_string()))
            }
            _ => (None, None),
        };
        let Some(flag) = flag.filter(|f| SSH_FLAGS_WITH_ARG.contains(*f)) else {
            ignored.push(w.clone());
            continue;
        };
        let arg = match attached {
            Some(a) => a,
            None => match it.next() {
                Some(a) => a.clone(),
                None => {
                    ignored.push(w.clone());
                    continue;
                }
            },
        };
        let found = match flag {
            'J' => normalize_chain(&arg),
            'o' => {
                let (k, v) = arg
                    .split_once(['=', ' '])
                    .map(|(k, v)| (k.trim(), v.trim()))
                    .unwrap_or((arg.as_str(), ""));
                match k.to_ascii_lowercase().as_str() {
                    "proxyjump" => normalize_chain(v),
                    "proxycommand" => match proxy_command(v) {
                        Some(j) => Some(j),
                        None => {
                            ignored.push(format!("-o {arg}"));
                            None
                        }
                    },
                    _ => {
                        ignored.push(format!("-o {arg}"));
                        None
                    }
                }
            }
            f => {
                ignored.push(format!("-{f} {arg}"));
                None
            }
        };
        if jump.is_none() {
            jump = found;
        }
    }
    (jump, ignored)
}

/// `[ssh://][user@]host[:port]`, comma-separated; `none` means no jump host.
fn normalize_chain(v: &str) -> Option<String> {
    if v.eq_ignore_ascii_case("none") {
        return Some(String::new());
    }
    let hops: Vec<&str> = v
        .split(',')
        .map(|h| h.trim().trim_start_matches("ssh://").trim_end_matches('/'))
        .filter(|h| !h.is_empty())
        .collect();
    (!hops.is_empty()).then(|| hops.join(","))
}

/// `ssh [-q] [-p PORT] [-l USER] [-J CHAIN] -W %h:%p [USER@]HOST` as a jump chain.
fn proxy_command(cmd: &str) -> Option<String> {
    let words = crate::text::split_words(cmd, false).ok()?;
    let (prog, rest) = words.split_first()?;
    if prog.rsplit('/').next() != Some("ssh") {
        return None;
    }
    let (mut port, mut user, mut dest, mut before, mut forward) = (None, None, None, None, false);
    let mut it = rest.iter();
    while let Some(w) = it.next() {
        if let Some(f) = w.strip_prefix('-') {
            let flag = f.chars().next()?;
            if SSH_FLAGS_WITH_ARG.contains(flag) {
                let arg = if f.len() > 1 {
                    f[1..].to_string()
                } else {
                    it.next()?.clone()
                };
                match flag {
                    'p' => port = Some(arg),
                    'l' => user = Some(arg),
                    'J' => before = normalize_chain(&arg).filter(|c| !c.is_empty()),
                    'W' if arg.contains("%h") && arg.contains("%p") => forward = true,
                    // Any other option (-i, -o, ...) changes the hop in ways bosun cannot follow.
                    _ => return None,
                }
            }
        } else if dest.is_none() {
            dest = Some(w.clone());
        } else {
            return None;
        }
    }
    let dest = dest?;
    if !forward {
        return None;
    }
    let mut hop = match (user, dest.contains('@')) {
        (Some(u), false) => format!("{u}@{dest}"),
        _ => dest,
    };
    if let Some(p) = port {
        hop = format!("{hop}:{p}");
    }
    Some(match before {
        Some(b) => format!("{b},{hop}"),
        None => hop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jump(args: &str) -> Option<String> {
        jump_from_args(args).0.filter(|j| !j.is_empty())
    }

    #[test]
    fn jump_hosts_from_ssh_args() {
        assert_eq!(
            jump("-o ProxyJump=admin@bastion:2222").as_deref(),
            Some("admin@bastion:2222")
        );
        assert_eq!(jump("-o 'ProxyJump a@b, c'").as_deref(), Some("a@b,c"));
        assert_eq!(jump("-J ops@gw").as_deref(), Some("ops@gw"));
        assert_eq!(jump("-Jgw").as_deref(), Some("gw"));
        assert_eq!(jump("-J ssh://u@h:2200").as_deref(), Some("u@h:2200"));
        assert_eq!(
            jump(r#"-o ProxyCommand="ssh -W %h:%p -q -p 2222 ops@bastion""#).as_deref(),
            Some("ops@bastion:2222")
        );
        assert_eq!(
            jump(r#"-o "ProxyCommand=ssh -l ops -W %h:%p bastion""#).as_deref(),
            Some("ops@bastion")
        );
        // ssh keeps the first value.
        assert_eq!(jump("-J a -J b").as_deref(), Some("a"));
        assert_eq!(jump_from_args("-o ProxyJump=none").0, Some(String::new()));
        assert_eq!(jump("-o StrictHostKeyChecking=no"), None);
    }

    #[test]
    fn ignored_ssh_args_are_reported() {
        let (j, ignored) =
            jump_from_args("-C -o StrictHostKeyChecking=no -J gw -o ProxyCommand='nc %h %p'");
        assert_eq!(j.as_deref(), Some("gw"));
        assert_eq!(
            ignored,
            [
                "-C",
                "-o StrictHostKeyChecking=no",
                "-o ProxyCommand=nc %h %p"
            ]
        );
    }

    #[test]
    fn inspect_accepts_maps_warns_and_refuses() {
        assert_eq!(inspect("app_port", &json!("x")), Ok(None));
        assert_eq!(inspect("ansible_port", &json!("2222")), Ok(None));
        assert_eq!(inspect("ansible_connection", &json!("ssh")), Ok(None));
        assert!(inspect("ansible_port", &json!("http")).is_err());
        assert!(inspect("ansible_become", &json!("maybe")).is_err());
        assert!(inspect("ansible_host", &json!([1])).is_err());
        assert!(inspect("ansible_host", &json!("{{ ip }}"))
            .unwrap()
            .is_some());
        let w = inspect("ansible_connection", &json!("winrm"))
            .unwrap()
            .unwrap();
        assert!(w.contains("winrm"), "{w}");
        let w = inspect("ansible_password", &json!("hunter22"))
            .unwrap()
            .unwrap();
        assert!(!w.contains("hunter22"), "{w}");
        assert!(inspect("ansible_become_method", &json!("su"))
            .unwrap()
            .is_some());
        assert!(
            inspect("ansible_python_interpreter", &json!("/usr/bin/python3"))
                .unwrap()
                .is_none()
        );
        assert!(is_connection_var("ansible_winrm_transport"));
        assert!(!is_connection_var("ansible_python_interpreter"));
    }

    #[test]
    fn booleans_as_ansible_reads_them() {
        assert_eq!(boolean(&json!("yes")), Some(true));
        assert_eq!(boolean(&json!("False")), Some(false));
        assert_eq!(boolean(&json!(1)), Some(true));
        assert_eq!(boolean(&json!("perhaps")), None);
    }
}
