//! What the commands other than converge show, as text or JSON.

use super::{err_text, note, out, out_json, out_text, warning, OutputFormat};
use crate::status::Report;
use bosun_lab::{LabEvent, LabStatus};
use bosun_model::inventory::Inventory;
use bosun_model::redact::Redactor;
use console::style;
use serde_json::{Map, Value};

/// `bosun inventory list`: hosts (and with -v their variables), secrets redacted.
pub fn inventory_list(format: OutputFormat, inv: &Inventory, redactor: &Redactor, verbose: u8) {
    match format {
        OutputFormat::Json => {
            // Values are redacted before they are serialized: in JSON text a `"` or `\` of
            // a secret is escaped, and the escaped form no longer matches the secret.
            let hosts: Vec<Value> = inv
                .hosts
                .values()
                .map(|h| {
                    serde_json::json!({
                        "name": h.name, "address": h.address, "port": h.port, "user": h.user,
                        "identity_file": h.identity_file, "become": h.become_root, "jump": h.jump,
                        "groups": h.groups, "vars": h.vars,
                    })
                })
                .collect();
            let groups: Map<String, Value> = inv
                .groups
                .iter()
                .map(|(g, grp)| {
                    (
                        g.clone(),
                        serde_json::json!({"hosts": grp.hosts, "children": grp.children}),
                    )
                })
                .collect();
            let mut v =
                serde_json::json!({ "hosts": hosts, "groups": groups, "warnings": inv.warnings });
            redactor.json(&mut v);
            out(v);
        }
        OutputFormat::Text => {
            let w = inv.hosts.keys().map(String::len).max().unwrap_or(4).max(4);
            out(format!("{:<w$}  {:<22}  GROUPS", "HOST", "ADDRESS"));
            for h in inv.hosts.values() {
                out(format!(
                    "{:<w$}  {:<22}  {}",
                    h.name,
                    format!("{}@{}:{}", h.user, h.address, h.port),
                    h.groups.join(",")
                ));
                if verbose > 0 {
                    for (k, v) in &h.vars {
                        let mut v = v.clone();
                        redactor.json(&mut v);
                        out(format!("{:<w$}    {k} = {v}", ""));
                    }
                }
            }
        }
    }
}

/// `bosun facts`: one host's facts, pretty JSON.
pub fn facts(facts: &Value) -> Result<(), serde_json::Error> {
    out(serde_json::to_string_pretty(facts)?);
    Ok(())
}

/// How `bosun exec` ended on one host; host output already cleaned and redacted.
pub enum ExecResult {
    Ran {
        rc: i32,
        stdout: String,
        stderr: String,
    },
    Unreachable(String),
}

/// `bosun exec`: one host's result, as it finishes.
pub fn exec_result(format: OutputFormat, host: &str, r: &ExecResult) {
    match (format, r) {
        (OutputFormat::Json, ExecResult::Ran { rc, stdout, stderr }) => {
            out(serde_json::json!({"host": host, "rc": rc, "stdout": stdout, "stderr": stderr}))
        }
        (OutputFormat::Text, ExecResult::Ran { rc, stdout, stderr }) => {
            let head = format!("[{host}] rc={rc}");
            out(if *rc == 0 {
                style(head).green()
            } else {
                style(head).red()
            });
            out_text(stdout);
            if !stderr.is_empty() {
                err_text(stderr);
            }
        }
        (OutputFormat::Json, ExecResult::Unreachable(e)) => {
            out(serde_json::json!({"host": host, "unreachable": true, "error": e}))
        }
        (OutputFormat::Text, ExecResult::Unreachable(e)) => out(format!(
            "{} {e}",
            style(format!("[{host}] unreachable:")).red()
        )),
    }
}

/// `bosun status`: Patroni members, HAProxy backends, and what could not be read.
pub fn status(format: OutputFormat, r: &Report) {
    match format {
        OutputFormat::Json => out_json(r),
        OutputFormat::Text => {
            out("PATRONI MEMBER  HOST          ROLE           STATE      TL   LAG(MB)");
            for m in &r.patroni {
                out(format!(
                    "{:<15} {:<13} {:<14} {:<10} {:<4} {}",
                    m.name,
                    m.host,
                    m.role,
                    m.state,
                    m.timeline.map(|t| t.to_string()).unwrap_or_default(),
                    m.lag_mb
                        .map(|l| format!("{l:.1}"))
                        .unwrap_or_else(|| "-".into())
                ));
            }
            out("");
            out("HAPROXY  PROXY          SERVER   STATUS");
            for b in &r.haproxy {
                let line = format!(
                    "{:<8} {:<14} {:<8} {}",
                    b.balancer, b.proxy, b.server, b.status
                );
                out(if b.status.starts_with("UP") {
                    style(line).green()
                } else {
                    style(line).red()
                });
            }
            for p in &r.problems {
                warning(p);
            }
        }
    }
}

/// Lab progress, on stderr (the engine's events go to stdout).
pub fn lab_event(ev: LabEvent) {
    match ev {
        LabEvent::Step {
            host: Some(h),
            message,
        } => note(format!("lab: [{h}] {message}")),
        LabEvent::Step {
            host: None,
            message,
        } => note(format!("lab: {message}")),
        LabEvent::Warning { host, message } => note(format!(
            "lab: warning{}: {message}",
            host.map(|h| format!(" [{h}]")).unwrap_or_default()
        )),
        LabEvent::HostReady {
            name,
            address,
            seconds,
        } => note(format!("lab: [{name}] up at {address} in {seconds:.1}s")),
        LabEvent::HostStopped {
            name,
            clean,
            seconds,
        } => note(format!(
            "lab: [{name}] stopped{} in {seconds:.1}s",
            if clean { "" } else { " (killed)" }
        )),
    }
}

/// `bosun lab status`.
pub fn lab_status(format: OutputFormat, st: &LabStatus) {
    match format {
        OutputFormat::Json => out(serde_json::to_string(st).unwrap_or_default()),
        OutputFormat::Text => {
            out(format!(
                "bridge {} {}; base image {}",
                st.bridge,
                if st.bridge_up { "up" } else { "down" },
                if st.base_ready { "built" } else { "not built" }
            ));
            for h in &st.hosts {
                out(format!(
                    "{:<12} {:<12} {:<8} sshd {}",
                    h.name,
                    h.address,
                    if h.running { "running" } else { "stopped" },
                    if h.sshd { "answers" } else { "-" }
                ));
            }
        }
    }
}

/// The first and second Ctrl-C (or SIGTERM) of a run.
pub fn interrupted(level: u8) {
    note(format!(
        "{} {}",
        style("interrupted:").yellow().bold(),
        if level == 1 {
            "finishing the steps that run now (at most 60 s), starting nothing new; press Ctrl-C again to stop them at once"
        } else {
            "stopping the steps that run now and cleaning up"
        }
    ));
}
