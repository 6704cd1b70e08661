//! The engine's seam to a host: run a script (with deadlines and the run's interrupt) and
//! upload a file. SSH implements it in `bosun-transport`; the engine's unit tests implement
//! it with a scripted fake (`fake.rs`, compiled for tests), so rounds, re-probes, handlers
//! and failures are tested without an sshd.
//!
//! The methods return boxed futures rather than being `async fn`s so that the engine can
//! hold any transport as `Arc<dyn Remote>` (one connection type per run, chosen at runtime).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_model::inventory::Host;
use bosun_model::shell::{emit_bytes, quote};
use futures::future::BoxFuture;

use crate::interrupt::Interrupt;

/// What a remote script printed and how it exited.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub rc: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Set when bosun killed the script's process group on the host.
    pub killed: Option<Killed>,
    /// The script's process group on the host.
    pub pgid: Option<u32>,
}

/// Why bosun killed a remote script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killed {
    /// A step overstayed its deadline (see [`Watch`]).
    Deadline,
    /// The operator interrupted the run (Ctrl-C, SIGTERM).
    Interrupted,
}

/// Deadlines of a running script, read from its output as it streams in.
pub trait Watch: Send + Sync {
    /// Everything the script printed so far; returns the instant by which it must end.
    fn deadline(&mut self, stdout: &[u8], now: Instant) -> Option<Instant>;
    /// The deadline passed at `now`: note what overstayed (the script is killed next).
    fn expire(&mut self, _now: Instant) {}
    /// Shell that removes what the killed script leaves behind.
    fn cleanup(&self) -> Option<String> {
        None
    }
}

/// A script with no deadline (`bosun exec`, facts, status).
pub struct NoDeadline;

impl Watch for NoDeadline {
    fn deadline(&mut self, _: &[u8], _: Instant) -> Option<Instant> {
        None
    }
}

/// When a running script must be stopped, for any transport: the deadline its [`Watch`]
/// gives, or the end of the grace period a first interrupt starts. Both transports (SSH and
/// the tests' fake) follow a script with this, so they stop scripts alike.
pub struct StopClock {
    deadline: Option<Instant>,
    grace: Duration,
    grace_from: Option<Instant>,
}

impl StopClock {
    /// A clock for a script just started, with `grace` after a first interrupt.
    pub fn new(watch: &mut dyn Watch, grace: Duration) -> StopClock {
        StopClock {
            deadline: watch.deadline(&[], Instant::now()),
            grace,
            grace_from: None,
        }
    }

    /// The script printed more: its deadline may have moved.
    pub fn output(&mut self, watch: &mut dyn Watch, stdout: &[u8]) {
        self.deadline = watch.deadline(stdout, Instant::now());
    }

    /// A first interrupt arrived: running steps get the grace period, then are stopped.
    pub fn interrupted(&mut self) {
        self.grace_from.get_or_insert_with(Instant::now);
    }

    /// Whether the grace period has begun (wait for the first interrupt only until then).
    pub fn in_grace(&self) -> bool {
        self.grace_from.is_some()
    }

    /// The instant the script must be stopped by (far in the future when nothing bounds it).
    pub fn until(&self) -> Instant {
        let grace_end = self.grace_from.map(|g| g + self.grace);
        match (self.deadline, grace_end) {
            (Some(d), Some(g)) => d.min(g),
            (Some(d), None) | (None, Some(d)) => d,
            (None, None) => Instant::now() + Duration::from_secs(365 * 24 * 3600),
        }
    }

    /// [`Self::until`] passed at `now`: why the script is killed. A passed deadline tells
    /// the watch, which notes the step that overstayed.
    pub fn expired(&self, watch: &mut dyn Watch, now: Instant) -> Killed {
        if self.deadline.is_some_and(|d| d <= now) {
            watch.expire(now);
            Killed::Deadline
        } else {
            Killed::Interrupted
        }
    }
}

/// Resolves once the run's interrupt reaches `level` (1: finish what runs, 2: kill);
/// never, without an interrupt.
pub async fn interrupt_reached(interrupt: Option<&Interrupt>, level: u8) {
    match interrupt {
        Some(i) => i.reached(level).await,
        None => std::future::pending().await,
    }
}

/// A host could not be reached, or its connection broke. The message names the address
/// and what to do; the engine reports the host unreachable with it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RemoteError(pub String);

/// One open connection to a host.
pub trait Remote: Send + Sync {
    /// Runs `script` with `/bin/sh` on the host, following its stdout with `watch`: when
    /// the deadline `watch` gives passes, or `interrupt` asks, the script's process group
    /// is killed on the host and what it printed until then comes back with
    /// [`Output::killed`] set.
    fn run_watched<'a>(
        &'a self,
        script: &'a str,
        watch: &'a mut dyn Watch,
        interrupt: Option<&'a Interrupt>,
    ) -> BoxFuture<'a, Result<Output, RemoteError>>;

    /// Runs `script` with no deadline.
    fn run<'a>(&'a self, script: &'a str) -> BoxFuture<'a, Result<Output, RemoteError>> {
        Box::pin(async move { self.run_watched(script, &mut NoDeadline, None).await })
    }

    /// Writes `bytes` to `path` with `mode`, atomically: a temporary file beside it is
    /// renamed into place, so an interrupted upload never leaves a half-written file.
    fn upload<'a>(
        &'a self,
        path: &'a str,
        bytes: &'a [u8],
        mode: u32,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            let out = self.run(&upload_script(path, bytes, mode)).await?;
            if out.rc == 0 {
                Ok(())
            } else {
                Err(RemoteError(format!(
                    "upload of {path} failed (exit code {}): {}",
                    out.rc,
                    String::from_utf8_lossy(&out.stderr).trim()
                )))
            }
        })
    }

    /// How many scripts this connection has run (the benchmark and tests count round trips).
    fn exec_count(&self) -> u64;

    /// Seconds the connection took to open (reported with `HostConnected`).
    fn connect_seconds(&self) -> f64;

    /// Closes the connection; scripts still running on it end.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// Opens connections: SSH in the product, a scripted fake in tests.
pub trait Connector: Send + Sync {
    fn open<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, Result<Arc<dyn Remote>, RemoteError>>;
}

/// Shell that writes `bytes` to `path` through a temporary file in the same directory.
pub fn upload_script(path: &str, bytes: &[u8], mode: u32) -> String {
    let p = quote(path);
    format!(
        "set -e\n__t=$(mktemp {p}.bosun-XXXXXX)\ntrap 'rm -f \"$__t\"' EXIT\n{{\n{}}} > \"$__t\"\n\
         chmod {mode:o} \"$__t\"\nmv -f \"$__t\" {p}\ntrap - EXIT\n",
        emit_bytes(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_script_writes_through_a_temporary_file() {
        let dir = std::env::temp_dir().join(format!("bosun-upload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("it's here");
        let script = upload_script(dest.to_str().unwrap(), b"a\x00b\n", 0o640);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"a\x00b\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left beside it");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
