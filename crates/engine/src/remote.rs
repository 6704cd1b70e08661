//! The engine's seam to a host: run a script (with deadlines and the run's interrupt) and
//! upload a file. SSH implements it in `bosun-transport`; the engine's unit tests implement
//! it with a scripted fake (`fake.rs`, compiled for tests), so rounds, re-probes, handlers
//! and failures are tested without an sshd.
//!
//! The methods return boxed futures rather than being `async fn`s so that the engine can
//! hold any transport as `Arc<dyn Remote>` (one connection type per run, chosen at runtime).

use std::sync::Arc;
use std::time::Instant;

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
