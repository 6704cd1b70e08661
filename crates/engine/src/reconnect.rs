//! Waiting for a host that reboots (`reboot`) to come back.
//!
//! The reboot's apply printed the boot id it ran on and scheduled the restart; the host's
//! connection dies with it. From then on only the controller can tell when the host is
//! back: it opens new connections, with a growing pause between attempts, until one
//! reaches a *new* boot (a connection that still reaches the old one means the host has
//! not gone down yet) and the task's `test_command` succeeds there. That connection is
//! the one the play goes on with. Everything is bounded by the task's `reboot_timeout`
//! and ends promptly on an interrupt.

use crate::interrupt::Interrupt;
use crate::modules::reboot::{boot_id, boot_id_sh, RebootWait};
use crate::remote::Remote;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The pause before the first attempt; it doubles after each, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// The longest pause between two attempts: a host that is back is found within this.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// The host is back.
pub struct Back {
    /// The connection to the new boot, its boot id read and `test_command` run on it.
    pub conn: Arc<dyn Remote>,
    /// From the start of the wait to `test_command`'s success.
    pub elapsed: Duration,
}

/// Why the wait ended without the host.
#[derive(Debug, PartialEq, Eq)]
pub enum NotBack {
    /// `reboot_timeout` passed; the message says what the last attempt saw.
    Timeout(String),
    /// The operator interrupted the run.
    Interrupted,
}

/// Scripts run on connections that were given up (the old boot, a failing `test_command`),
/// for the recap's count of round trips.
#[derive(Debug, Default)]
pub struct Discarded {
    pub execs: u64,
}

/// Waits until `open` reaches a boot other than `old_boot` where `wait.test_command`
/// succeeds; `started` is when the reboot was scheduled (the timeout counts from there).
pub async fn wait_back<F, Fut>(
    mut open: F,
    wait: &RebootWait,
    old_boot: &str,
    interrupt: &Interrupt,
    started: Instant,
    discarded: &mut Discarded,
) -> Result<Back, NotBack>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Remote>, String>>,
{
    let deadline = started + wait.timeout;
    let mut pause = FIRST_PAUSE;
    let mut last = String::from("no attempt finished");
    let mut delayed = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(NotBack::Timeout(format!(
                "the host did not come back within {}s (last attempt: {last})",
                wait.timeout.as_secs()
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(pause.min(deadline - now)) => {}
            _ = interrupt.reached(1) => return Err(NotBack::Interrupted),
        }
        pause = (pause * 2).min(MAX_PAUSE);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            continue;
        }
        let attempt = attempt(open(), wait, old_boot, &mut delayed, discarded);
        let res = tokio::select! {
            r = tokio::time::timeout(left, attempt) => r,
            _ = interrupt.reached(1) => return Err(NotBack::Interrupted),
        };
        match res {
            Ok(Ok(conn)) => {
                return Ok(Back {
                    conn,
                    elapsed: started.elapsed(),
                })
            }
            Ok(Err(why)) => last = why,
            Err(_) => last = "it did not answer before the timeout".into(),
        }
    }
}

/// One attempt: open, read the boot id, run `test_command`. A connection that is not the
/// one to go on with is closed.
async fn attempt(
    open: impl Future<Output = Result<Arc<dyn Remote>, String>>,
    wait: &RebootWait,
    old_boot: &str,
    delayed: &mut bool,
    discarded: &mut Discarded,
) -> Result<Arc<dyn Remote>, String> {
    let conn = open.await?;
    let res = check(conn.as_ref(), wait, old_boot, delayed).await;
    if res.is_err() {
        discarded.execs += conn.exec_count();
        conn.close().await;
    }
    res.map(|_| conn)
}

async fn check(
    conn: &dyn Remote,
    wait: &RebootWait,
    old_boot: &str,
    delayed: &mut bool,
) -> Result<(), String> {
    let out = conn.run(&boot_id_sh()).await.map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(id) = boot_id(&stdout).filter(|_| out.rc == 0) else {
        return Err(format!(
            "the boot id could not be read: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    };
    if id == old_boot {
        return Err(format!(
            "the host answered, still on the old boot {old_boot}"
        ));
    }
    // `post_reboot_delay` is waited once, when the new boot first answers.
    if !std::mem::replace(delayed, true) && !wait.post_delay.is_zero() {
        tokio::time::sleep(wait.post_delay).await;
    }
    let out = conn
        .run(&wait.test_command)
        .await
        .map_err(|e| e.to_string())?;
    if out.rc == 0 {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let why = if why.is_empty() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        why
    };
    Err(format!(
        "`{}` failed on the new boot (exit code {}){}",
        wait.test_command,
        out.rc,
        if why.is_empty() {
            String::new()
        } else {
            format!(": {why}")
        }
    ))
}
