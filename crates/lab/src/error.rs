//! Error type of the lab. Every message says what to do next, because the
//! person reading it is usually looking at a CI log, not at this code.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong while building, starting or tearing down the lab.
#[derive(Debug, Error)]
pub enum LabError {
    #[error("the lab must run as root (it mounts overlays, creates a bridge and iptables rules)")]
    NotRoot,

    #[error("`{tool}` was not found in PATH; install it with `apt-get install -y {package}`")]
    MissingTool { tool: String, package: String },

    #[error("this machine cannot run the lab: {0}")]
    Unsupported(String),

    #[error("invalid lab configuration: {0}")]
    Config(String),

    #[error("unknown lab host `{name}`; this lab has: {known}")]
    UnknownHost { name: String, known: String },

    #[error("`{command}` failed ({status}){}", stderr_suffix(.stderr))]
    Command {
        command: String,
        status: String,
        stderr: String,
    },

    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    #[error("could not {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "host {name} ({address}) did not answer with an SSH banner on port 22 within {seconds} s; \
         last lines of {}:\n{console_tail}",
        .console.display()
    )]
    BootTimeout {
        name: String,
        address: Ipv4Addr,
        seconds: u64,
        console: PathBuf,
        console_tail: String,
    },

    #[error(
        "host {name} stopped while booting (systemd-nspawn exited); last lines of {}:\n{console_tail}",
        .console.display()
    )]
    HostDied {
        name: String,
        console: PathBuf,
        console_tail: String,
    },

    #[error(
        "another lab command (pid {pid}) is working on this lab (lock file {}); wait for it to finish",
        .path.display()
    )]
    Busy { pid: u32, path: PathBuf },

    #[error(
        "the base image at {} was built by an older recipe and must be rebuilt, but hosts still \
         use it ({hosts}); run `lab down` first",
        .path.display()
    )]
    BaseInUse { path: PathBuf, hosts: String },

    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout { what: String, seconds: u64 },

    #[error("the lab was not cleaned up completely; still present:\n  {}", .0.join("\n  "))]
    Leftovers(Vec<String>),

    #[error("{} hosts failed:\n{}", .0.len(), join_errors(.0))]
    Several(Vec<LabError>),

    #[error("internal task failed: {0}")]
    Task(String),
}

impl LabError {
    /// Shorthand for the common "this filesystem operation on that path failed" case.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        LabError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Collapses a list of per-host errors: none is `Ok`, one is itself, more are `Several`.
    pub(crate) fn from_many(mut errors: Vec<LabError>) -> Result<(), LabError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(LabError::Several(errors)),
        }
    }
}

impl From<tokio::task::JoinError> for LabError {
    fn from(e: tokio::task::JoinError) -> Self {
        LabError::Task(e.to_string())
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {trimmed}")
    }
}

fn join_errors(errors: &[LabError]) -> String {
    errors
        .iter()
        .map(|e| format!("- {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}
