//! Running the system tools the lab drives (ip, iptables, mount, debootstrap, …)
//! and checking up front that they exist.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use super::error::LabError;

/// PATH given to every child. The caller's PATH may lack the sbin directories
/// (sudo, CI runners), and chrooted commands need a Debian default anyway.
pub(crate) const STD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Tools `up` needs on every run, with the Debian package that ships each.
pub(crate) const RUNTIME_TOOLS: &[(&str, &str)] = &[
    ("systemd-nspawn", "systemd-container"),
    ("iptables", "iptables"),
    ("ssh-keygen", "openssh-client"),
    ("ip", "iproute2"),
    ("mount", "mount"),
    ("umount", "mount"),
    ("setsid", "util-linux"),
    ("chroot", "coreutils"),
    ("kill", "procps"),
];

/// Tools needed only when the base image has to be (re)built.
pub(crate) const BUILD_TOOLS: &[(&str, &str)] = &[("debootstrap", "debootstrap")];

/// Captured result of a finished command.
#[derive(Debug)]
pub(crate) struct Output {
    pub success: bool,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

/// Renders a command line for messages, quoting arguments with spaces.
pub(crate) fn display<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut s = program.to_string();
    for a in args {
        let a = a.as_ref().to_string_lossy();
        s.push(' ');
        if a.is_empty() || a.contains(char::is_whitespace) {
            s.push('\'');
            s.push_str(&a);
            s.push('\'');
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Runs a command to completion and returns its output whatever the exit status.
/// Used where failure is an expected answer (`iptables -C`, `kill` of a pid that
/// may already be gone).
pub(crate) async fn run_unchecked<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
) -> Result<Output, LabError> {
    let out = Command::new(program)
        .args(args)
        .env("PATH", STD_PATH)
        .env("LC_ALL", "C")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| LabError::Spawn {
            command: display(program, args),
            source,
        })?;
    let status = match out.status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    };
    Ok(Output {
        success: out.status.success(),
        status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs a command and turns a non-zero exit into [`LabError::Command`] carrying
/// the tail of its stderr (or stdout, for tools that report there).
pub(crate) async fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<Output, LabError> {
    let out = run_unchecked(program, args).await?;
    if out.success {
        return Ok(out);
    }
    let detail = if out.stderr.trim().is_empty() {
        &out.stdout
    } else {
        &out.stderr
    };
    Err(LabError::Command {
        command: display(program, args),
        status: out.status,
        stderr: tail_lines(detail, 15),
    })
}

/// Synchronous variant for [`super::leftovers`], which is a plain `fn`.
pub(crate) fn run_sync<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .env("PATH", STD_PATH)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `n` lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Looks a tool up in the caller's PATH plus the standard directories.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let caller = std::env::var("PATH").unwrap_or_default();
    caller
        .split(':')
        .chain(STD_PATH.split(':'))
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Fails with the apt package to install for the first missing tool.
pub(crate) fn require_tools(tools: &[(&str, &str)]) -> Result<(), LabError> {
    for (tool, package) in tools {
        if find_tool(tool).is_none() {
            return Err(LabError::MissingTool {
                tool: (*tool).to_string(),
                package: (*package).to_string(),
            });
        }
    }
    Ok(())
}

/// The lab changes mounts, links and firewall rules: nothing works without root.
pub(crate) fn require_root() -> Result<(), LabError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| LabError::io("read", "/proc/self/status", e))?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u32>().ok());
    match euid {
        Some(0) => Ok(()),
        _ => Err(LabError::NotRoot),
    }
}

/// Overlayfs is how each host gets its own disk on one shared base image.
pub(crate) fn require_overlayfs() -> Result<(), LabError> {
    let fs = std::fs::read_to_string("/proc/filesystems")
        .map_err(|e| LabError::io("read", "/proc/filesystems", e))?;
    if fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        Ok(())
    } else {
        Err(LabError::Unsupported(
            "the kernel has no overlay filesystem (try `modprobe overlay`)".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_spaces() {
        assert_eq!(
            display("iptables", &["-m", "comment", "--comment", "a b"]),
            "iptables -m comment --comment 'a b'"
        );
    }

    #[test]
    fn tail_takes_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
        assert_eq!(tail_lines("", 5), "");
    }
}
