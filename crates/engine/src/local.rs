//! Scripts on the controller itself: `delegate_to: local`, and the engine tests' fake hosts.
//!
//! [`follow`] runs a spawned `/bin/sh` the way `bosun-transport` runs a script over SSH:
//! stdout is fed to the [`Watch`] as it arrives, and when a deadline passes (or the
//! interrupt reaches level 2, or level 1 plus the grace period) the script's process group
//! gets TERM, then KILL, and the output comes back with [`Output::killed`] set. [`Local`] is
//! the [`Remote`] for the controller: the script goes in on the shell's input, as over SSH,
//! so it never shows in a process list and needs no temporary file.

use crate::interrupt::Interrupt;
use crate::remote::{interrupt_reached, Killed, Output, Remote, RemoteError, StopClock, Watch};
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The name `delegate_to` gives the controller (`localhost` is accepted too).
pub const LOCAL: &str = "local";

/// Whether a `delegate_to` value names the controller.
pub fn is_local(name: &str) -> bool {
    matches!(name, "local" | "localhost" | "127.0.0.1")
}

/// Follows `child` (a shell started in its own process group, stdout and stderr piped) to
/// its end with `watch`'s deadlines and the run's interrupt; kills its group when either
/// says so, waiting `term_wait` between TERM and KILL. The watch's cleanup is left to the
/// caller, which knows where it must run.
pub async fn follow(
    mut child: tokio::process::Child,
    watch: &mut dyn Watch,
    interrupt: Option<&Interrupt>,
    grace: Duration,
    term_wait: Duration,
) -> Result<Output, RemoteError> {
    let pg = child.id();
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| RemoteError("the local shell has no stdout".into()))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| RemoteError("the local shell has no stderr".into()))?;
    let err_reader = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v).await;
        v
    });
    let mut out = Output {
        pgid: pg,
        ..Output::default()
    };
    let mut clock = StopClock::new(watch, grace);
    let finishing = interrupt_reached(interrupt, 1);
    let aborting = interrupt_reached(interrupt, 2);
    tokio::pin!(finishing, aborting);
    let mut eof = false;
    let mut buf = [0u8; 8192];
    let rc = loop {
        tokio::select! {
            r = stdout.read(&mut buf), if !eof => match r {
                Ok(0) | Err(_) => eof = true,
                Ok(k) => {
                    out.stdout.extend_from_slice(&buf[..k]);
                    clock.output(watch, &out.stdout);
                }
            },
            st = child.wait(), if eof => {
                break st.ok().map(exit_code);
            }
            _ = tokio::time::sleep_until(clock.until().into()) => {
                out.killed = Some(clock.expired(watch, Instant::now()));
                break None;
            }
            _ = &mut finishing, if !clock.in_grace() => clock.interrupted(),
            _ = &mut aborting => {
                out.killed = Some(Killed::Interrupted);
                break None;
            }
        }
    };
    if out.killed.is_some() {
        let status = kill_group(pg, &mut child, term_wait).await;
        // What the dying script still printed.
        if !eof {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let mut rest = Vec::new();
                let _ = stdout.read_to_end(&mut rest).await;
                out.stdout.extend_from_slice(&rest);
            })
            .await;
        }
        out.rc = status.unwrap_or(137);
    } else {
        out.rc = rc.unwrap_or(-1);
    }
    out.stderr = tokio::time::timeout(Duration::from_secs(2), err_reader)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Ok(out)
}

/// TERM, then (after `term_wait`) KILL, the process group `pg` that `child` leads.
async fn kill_group(
    pg: Option<u32>,
    child: &mut tokio::process::Child,
    term_wait: Duration,
) -> Option<i32> {
    let group = pg.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1);
    if let Some(g) = group {
        // SAFETY: a signal to the process group started for this script.
        unsafe {
            libc::kill(-g, libc::SIGTERM);
        }
    }
    let status = match tokio::time::timeout(term_wait, child.wait()).await {
        Ok(s) => s.ok().map(exit_code),
        Err(_) => None,
    };
    if let Some(g) = group {
        // SAFETY: as above; whatever of the group is left.
        unsafe {
            libc::kill(-g, libc::SIGKILL);
        }
    }
    match status {
        Some(s) => Some(s),
        None => child.wait().await.ok().map(exit_code),
    }
}

pub fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code()
        .or_else(|| st.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// The controller as a host: `delegate_to: local` runs its tasks here, as the user running
/// bosun, with the controller's `/bin/sh`.
#[derive(Default)]
pub struct Local {
    execs: AtomicU64,
}

impl Local {
    /// A shell that reads the script from its input and runs it in its own process group.
    fn shell(&self) -> tokio::process::Command {
        let mut c = sh_in_own_group(["-c", "b=$(cat) && eval \"$b\""]);
        c.stdin(std::process::Stdio::piped());
        c
    }

    async fn run_script(
        &self,
        script: &str,
        watch: &mut dyn Watch,
        interrupt: Option<&Interrupt>,
    ) -> Result<Output, RemoteError> {
        let broken = |e: std::io::Error| RemoteError(format!("{LOCAL}: {e}"));
        let mut child = self.shell().spawn().map_err(broken)?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| RemoteError("the local shell has no stdin".into()))?;
        stdin
            .write_all(format!("__pg=$$\n{script}").as_bytes())
            .await
            .map_err(broken)?;
        drop(stdin);
        let out = follow(
            child,
            watch,
            interrupt,
            Duration::from_secs(5),
            Duration::from_secs(3),
        )
        .await?;
        if out.killed.is_some() {
            if let Some(c) = watch.cleanup() {
                if let Ok(mut k) = self.shell().spawn() {
                    if let Some(mut i) = k.stdin.take() {
                        let _ = i.write_all(c.as_bytes()).await;
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(10), k.wait()).await;
                }
            }
        }
        Ok(out)
    }
}

impl Remote for Local {
    fn run_watched<'a>(
        &'a self,
        script: &'a str,
        watch: &'a mut dyn Watch,
        interrupt: Option<&'a Interrupt>,
    ) -> BoxFuture<'a, Result<Output, RemoteError>> {
        Box::pin(async move {
            self.execs.fetch_add(1, Ordering::Relaxed);
            self.run_script(script, watch, interrupt).await
        })
    }

    fn exec_count(&self) -> u64 {
        self.execs.load(Ordering::Relaxed)
    }

    fn connect_seconds(&self) -> f64 {
        0.0
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// `/bin/sh ARGS` with its output piped, in its own process group (a deadline or an
/// interrupt kills the whole group, as over SSH), and killed if dropped unfinished.
pub(crate) fn sh_in_own_group<I, S>(args: I) -> tokio::process::Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = tokio::process::Command::new("/bin/sh");
    c.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_controller_runs_a_script_from_its_input() {
        let l = Local::default();
        let out = l
            .run("echo \"$((6 * 7))\"; echo oops >&2; exit 3")
            .await
            .expect("runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
        assert_eq!((out.rc, l.exec_count()), (3, 1));
    }

    struct After(Duration, bool);
    impl Watch for After {
        fn deadline(&mut self, _: &[u8], now: Instant) -> Option<Instant> {
            Some(now + self.0)
        }
        fn expire(&mut self, _: Instant) {
            self.1 = true;
        }
    }

    #[tokio::test]
    async fn a_deadline_kills_the_local_script_and_its_children() {
        let l = Local::default();
        let mut w = After(Duration::from_millis(300), false);
        let out = l
            .run_watched("echo started; sleep 30 & sleep 30", &mut w, None)
            .await
            .expect("runs");
        assert_eq!(out.killed, Some(Killed::Deadline));
        assert!(w.1, "the watch was told");
        assert!(String::from_utf8_lossy(&out.stdout).contains("started"));
        // The background `sleep` belonged to the group: the group is gone too.
        let pg = out
            .pgid
            .and_then(|p| i32::try_from(p).ok())
            .expect("a group");
        let gone = (0..50).any(|_| {
            // SAFETY: signal 0 only asks whether the group still exists.
            let alive = unsafe { libc::kill(-pg, 0) } == 0;
            if alive {
                std::thread::sleep(Duration::from_millis(100));
            }
            !alive
        });
        assert!(gone, "process group {pg} outlived its deadline");
    }
}
