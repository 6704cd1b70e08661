//! A scripted fake transport for the engine's tests: [`FakeNet`] is a [`Connector`], each
//! of its [`FakeHost`]s a [`Remote`].
//!
//! A fake host runs the scripts it receives with the local `/bin/sh`, in its own directory
//! (the host's "filesystem": tests point every path a role touches below it), so the
//! modules' real probe and apply shell runs. Two things are moved into that directory by
//! rewriting the script text before it runs (what was *sent* is recorded unchanged): the
//! state directory (`$__bs`, [`STATE_DIR_SH`]; `/var/lib/bosun` for root otherwise) and the
//! batches' scratch directories (`/tmp/.bosun.*`); a script that would still reach either
//! real directory is refused, since the tests run as root in CI. The boot id `reboot` reads
//! is a file of the host's, and the reboot `reboot` schedules only leaves a marker there:
//! the next opens go through the reboot as [`FakeHost::reboot_takes`] says (a script that
//! would still reboot the machine is refused).
//!
//! Every script is recorded ([`FakeHost::execs`]), so tests count round trips and assert
//! what was sent. A host can be told to misbehave ([`FakeHost::fault`]): to be unreachable
//! when opened, to lose its connection on some script, to answer a script with a given
//! output without running it, to stall before running it, or to raise the run's interrupt
//! as it starts.
//!
//! Deadlines follow `bosun-transport`'s `run_watched`: the script runs in its own process
//! group (`__pg` is set for [`crate::batch::Batch`]), stdout is fed to the [`Watch`] as it
//! arrives, and when a deadline passes (or the interrupt reaches level 2, or level 1 plus
//! the grace period) the group gets TERM, then KILL, the watch's cleanup runs, and the
//! output comes back with [`Output::killed`] set. The grace period after a first
//! interrupt is settable per host ([`FakeHost::set_grace`]). Left out: sudo (no `become`),
//! the prologue's `@@bosun-pg:` line and `/proc` lookup (the fake starts the process group
//! itself and knows its id), the channel limit per connection, connect timeouts and host
//! keys; the TERM→KILL wait is 1 s instead of 3 s.

use crate::batch::STATE_DIR_SH;
use crate::interrupt::Interrupt;
use crate::modules::reboot::{BOOT_ID_PATH, REBOOT_SH};
use crate::remote::{Connector, Killed, Output, Remote, RemoteError, Watch};
use bosun_model::inventory::Host;
use bosun_model::shell::quote;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Which script a fault applies to.
#[derive(Debug, Clone)]
pub enum On {
    /// The host's Nth script (1-based, counted over all its connections).
    Exec(u64),
    /// The first script whose text contains this.
    Contains(String),
}

/// How a host misbehaves on one script. Each fault fires once.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The connection breaks before the script runs: `run_watched` fails with this message.
    Break(String),
    /// The script runs to its end, then the connection breaks: its output is lost.
    BreakAfter(String),
    /// The script is not run; this comes back instead.
    Answer {
        rc: i32,
        stdout: String,
        stderr: String,
    },
    /// The host's shell sleeps this long before the script's first line (killable, like
    /// a host that is slow to start it).
    Stall(Duration),
    /// The run's interrupt is raised to this level as the script starts.
    Interrupt(u8),
}

/// One script a fake host received.
#[derive(Debug, Clone)]
pub struct Exec {
    /// 1-based, over all of the host's connections.
    pub n: u64,
    /// The script as the engine sent it.
    pub script: String,
    /// The interrupt level when it started (None: no interrupt was passed).
    pub interrupt_level: Option<u8>,
    /// How it ended: `None` when the connection broke.
    pub output: Option<Output>,
}

impl Exec {
    pub fn killed(&self) -> Option<Killed> {
        self.output.as_ref().and_then(|o| o.killed)
    }
}

/// How a fake host goes through a reboot `reboot`'s apply scheduled (see
/// [`FakeHost::reboot_takes`]).
#[derive(Debug, Clone, Copy)]
struct RebootPlan {
    /// Opens that still reach the old boot (the host has not gone down yet).
    stays_up: u64,
    /// Opens refused after those (the host is down); `u64::MAX`: it never comes back.
    down: u64,
    /// Opens since the reboot was scheduled.
    opens: u64,
}

/// A scripted host.
pub struct FakeHost {
    pub name: String,
    /// The host's directory: put every path its roles touch below it.
    pub dir: PathBuf,
    unreachable: Mutex<Option<String>>,
    faults: Mutex<Vec<(On, Fault)>>,
    execs: Mutex<Vec<Exec>>,
    cleanups: Mutex<Vec<String>>,
    next: AtomicU64,
    opens: AtomicU64,
    closes: AtomicU64,
    grace: Mutex<Duration>,
    reboot: Mutex<RebootPlan>,
    boots: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeHost {
    fn new(name: &str, dir: PathBuf) -> std::io::Result<FakeHost> {
        for sub in [
            ".fake/state",
            ".fake/scratch",
            ".fake/home",
            ".fake/scripts",
        ] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::write(dir.join(".fake/boot_id"), boot_id(1))?;
        Ok(FakeHost {
            name: name.to_string(),
            dir,
            unreachable: Mutex::new(None),
            faults: Mutex::new(Vec::new()),
            execs: Mutex::new(Vec::new()),
            cleanups: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
            opens: AtomicU64::new(0),
            closes: AtomicU64::new(0),
            grace: Mutex::new(crate::interrupt::GRACE),
            reboot: Mutex::new(RebootPlan {
                stays_up: 0,
                down: 1,
                opens: 0,
            }),
            boots: AtomicU64::new(1),
        })
    }

    /// Opening a connection to the host fails with `message`.
    pub fn unreachable(&self, message: &str) {
        *lock(&self.unreachable) = Some(message.to_string());
    }

    /// The host misbehaves on the script `on` names.
    pub fn fault(&self, on: On, fault: Fault) {
        lock(&self.faults).push((on, fault));
    }

    /// How long a script may go on after the interrupt's first level (the product waits
    /// [`crate::interrupt::GRACE`]).
    pub fn set_grace(&self, d: Duration) {
        *lock(&self.grace) = d;
    }

    /// How the host reboots once a `reboot` apply scheduled it: the next `stays_up`
    /// connections still reach the old boot, the `down` after them are refused, and the
    /// one after those finds a new boot (a new boot id). `down: u64::MAX`: the host never
    /// comes back. By default it is down for one attempt and up at once.
    pub fn reboot_takes(&self, stays_up: u64, down: u64) {
        let mut r = lock(&self.reboot);
        r.stays_up = stays_up;
        r.down = down;
    }

    /// Boots so far: 1, plus one per reboot.
    pub fn boots(&self) -> u64 {
        self.boots.load(Ordering::Relaxed)
    }

    /// A reboot was scheduled and has not happened yet.
    pub fn reboot_pending(&self) -> bool {
        self.dir.join(".fake/rebooting").exists()
    }

    /// One connection attempt against a reboot in progress: `Err` while the host is down;
    /// the attempt that finds it up again starts the new boot.
    fn open_through_reboot(&self) -> Result<(), RemoteError> {
        if !self.reboot_pending() {
            return Ok(());
        }
        let mut r = lock(&self.reboot);
        let k = r.opens;
        r.opens += 1;
        if k < r.stays_up {
            return Ok(());
        }
        if k - r.stays_up < r.down {
            return Err(RemoteError(format!(
                "{}: connection refused (rebooting)",
                self.name
            )));
        }
        r.opens = 0;
        let n = self.boots.fetch_add(1, Ordering::Relaxed) + 1;
        let broken = |e: std::io::Error| RemoteError(format!("{}: {e}", self.name));
        std::fs::write(self.dir.join(".fake/boot_id"), boot_id(n)).map_err(broken)?;
        std::fs::remove_file(self.dir.join(".fake/rebooting")).map_err(broken)?;
        Ok(())
    }

    /// Every script the host received, in order.
    pub fn execs(&self) -> Vec<Exec> {
        lock(&self.execs).clone()
    }

    /// How many scripts the host received.
    pub fn exec_count(&self) -> usize {
        lock(&self.execs).len()
    }

    /// The cleanup scripts run after kills.
    pub fn cleanups(&self) -> Vec<String> {
        lock(&self.cleanups).clone()
    }

    /// Connections opened (successfully or not) and closed.
    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }

    pub fn closes(&self) -> u64 {
        self.closes.load(Ordering::Relaxed)
    }

    /// A path below the host's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The host's state directory (`$__bs`: pending handler notifications).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(".fake/state")
    }

    fn take_fault(&self, n: u64, script: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let i = faults.iter().position(|(on, _)| match on {
            On::Exec(k) => *k == n,
            On::Contains(s) => script.contains(s.as_str()),
        })?;
        Some(faults.remove(i).1)
    }

    /// The script as this host runs it: its state and scratch directories and its boot id
    /// moved below its own directory, and a reboot replaced by a marker the next opens
    /// read ([`FakeHost::reboot_takes`]).
    fn localize(&self, script: &str) -> String {
        let fake = self.dir.join(".fake");
        let state = fake.join("state");
        let tmp = fake.join("scratch");
        script
            .replace(
                REBOOT_SH,
                &format!(
                    ": > {}\n",
                    quote(&fake.join("rebooting").display().to_string())
                ),
            )
            .replace(BOOT_ID_PATH, &fake.join("boot_id").display().to_string())
            .replace(
                STATE_DIR_SH,
                &format!("__bs={}\n", quote(&state.display().to_string())),
            )
            .replace("/tmp/.bosun.", &format!("{}/.bosun.", tmp.display()))
    }

    fn command(&self, path: &Path) -> tokio::process::Command {
        let mut c = crate::local::sh_in_own_group([path]);
        c.current_dir(&self.dir)
            .env("HOME", self.dir.join(".fake/home"))
            .stdin(std::process::Stdio::null());
        c
    }

    /// Runs `script` locally with `watch`'s deadlines and the interrupt.
    async fn run_local(
        &self,
        n: u64,
        script: &str,
        stall: Option<Duration>,
        watch: &mut dyn Watch,
        interrupt: Option<&Interrupt>,
    ) -> Result<Output, RemoteError> {
        let stall = stall
            .map(|d| format!("sleep {:.3}\n", d.as_secs_f64()))
            .unwrap_or_default();
        let local = self.localize(script);
        // The fake runs as the test's user (root in CI): nothing may reach the real
        // state or scratch directories, or reboot the machine.
        if ["systemctl reboot", "shutdown -r"]
            .iter()
            .any(|r| local.contains(r))
        {
            return Err(RemoteError(format!(
                "{}: the fake refuses a script that would reboot the machine",
                self.name
            )));
        }
        if local.contains("/var/lib/bosun") || local.contains("/tmp/.bosun.") {
            let line = local
                .lines()
                .find(|l| l.contains("/var/lib/bosun") || l.contains("/tmp/.bosun."))
                .unwrap_or_default();
            return Err(RemoteError(format!(
                "{}: the fake refuses a script that would touch /var/lib/bosun or /tmp/.bosun.*: {line}",
                self.name
            )));
        }
        let text = format!("__pg=$$\n{stall}{local}");
        let path = self.dir.join(format!(".fake/scripts/{n}.sh"));
        let broken = |e: std::io::Error| RemoteError(format!("{}: {e}", self.name));
        std::fs::write(&path, text).map_err(broken)?;
        let child = self.command(&path).spawn().map_err(broken)?;
        let grace = *lock(&self.grace);
        let out =
            crate::local::follow(child, watch, interrupt, grace, Duration::from_secs(1)).await?;
        if out.killed.is_some() {
            self.cleanup(&*watch).await;
        }
        Ok(out)
    }

    /// The watch's cleanup, after a kill, in the host's directory.
    async fn cleanup(&self, watch: &dyn Watch) {
        if let Some(c) = watch.cleanup() {
            lock(&self.cleanups).push(c.clone());
            let path = self.dir.join(".fake/scripts/cleanup.sh");
            if std::fs::write(&path, self.localize(&c)).is_ok() {
                if let Ok(mut k) = self.command(&path).spawn() {
                    let _ = tokio::time::timeout(Duration::from_secs(10), k.wait()).await;
                }
            }
        }
    }
}

/// One connection to a fake host.
struct FakeConn {
    host: Arc<FakeHost>,
    execs: AtomicU64,
    closed: AtomicBool,
}

impl Remote for FakeConn {
    fn run_watched<'a>(
        &'a self,
        script: &'a str,
        watch: &'a mut dyn Watch,
        interrupt: Option<&'a Interrupt>,
    ) -> BoxFuture<'a, Result<Output, RemoteError>> {
        Box::pin(async move {
            let h = &self.host;
            self.execs.fetch_add(1, Ordering::Relaxed);
            let n = h.next.fetch_add(1, Ordering::Relaxed) + 1;
            lock(&h.execs).push(Exec {
                n,
                script: script.to_string(),
                interrupt_level: interrupt.map(Interrupt::level),
                output: None,
            });
            if self.closed.load(Ordering::Relaxed) {
                return Err(RemoteError(format!(
                    "{}: the connection was closed",
                    h.name
                )));
            }
            let fault = h.take_fault(n, script);
            let mut stall = None;
            let mut break_after = None;
            match fault {
                Some(Fault::Break(m)) => return Err(RemoteError(format!("{}: {m}", h.name))),
                Some(Fault::Answer { rc, stdout, stderr }) => {
                    let out = Output {
                        rc,
                        stdout: stdout.into_bytes(),
                        stderr: stderr.into_bytes(),
                        ..Output::default()
                    };
                    record(h, n, &out);
                    return Ok(out);
                }
                Some(Fault::Stall(d)) => stall = Some(d),
                Some(Fault::Interrupt(level)) => {
                    if let Some(i) = interrupt {
                        while i.level() < level {
                            i.raise();
                        }
                    }
                }
                Some(Fault::BreakAfter(m)) => break_after = Some(m),
                None => {}
            }
            let out = h.run_local(n, script, stall, watch, interrupt).await?;
            record(h, n, &out);
            match break_after {
                Some(m) => Err(RemoteError(format!("{}: {m}", h.name))),
                None => Ok(out),
            }
        })
    }

    fn exec_count(&self) -> u64 {
        self.execs.load(Ordering::Relaxed)
    }

    fn connect_seconds(&self) -> f64 {
        0.0
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if !self.closed.swap(true, Ordering::Relaxed) {
                self.host.closes.fetch_add(1, Ordering::Relaxed);
            }
        })
    }
}

/// The fake boot id of boot `n`, shaped like the kernel's.
fn boot_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}\n")
}

fn record(h: &FakeHost, n: u64, out: &Output) {
    if let Some(e) = lock(&h.execs).iter_mut().find(|e| e.n == n) {
        e.output = Some(out.clone());
    }
}

/// The fake network: a directory per host under a temporary root (removed when dropped).
pub struct FakeNet {
    pub root: PathBuf,
    hosts: Mutex<BTreeMap<String, Arc<FakeHost>>>,
}

impl FakeNet {
    /// A fake network under a new temporary directory.
    pub fn new(tag: &str) -> FakeNet {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let root = std::env::temp_dir().join(format!(
            "bosun-fake-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        FakeNet {
            root,
            hosts: Mutex::new(BTreeMap::new()),
        }
    }

    /// The host called `name` (made on first use).
    pub fn host(&self, name: &str) -> Arc<FakeHost> {
        let mut hosts = lock(&self.hosts);
        if let Some(h) = hosts.get(name) {
            return h.clone();
        }
        let dir = self.root.join(name);
        let h = Arc::new(FakeHost::new(name, dir).expect("fake host directory"));
        hosts.insert(name.to_string(), h.clone());
        h
    }
}

impl Drop for FakeNet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Connector for FakeNet {
    fn open<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, Result<Arc<dyn Remote>, RemoteError>> {
        Box::pin(async move {
            let h = self.host(&host.name);
            h.opens.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = lock(&h.unreachable).clone() {
                return Err(RemoteError(m));
            }
            h.open_through_reboot()?;
            let c: Arc<dyn Remote> = Arc::new(FakeConn {
                host: h,
                execs: AtomicU64::new(0),
                closed: AtomicBool::new(false),
            });
            Ok(c)
        })
    }
}

/// `Arc<FakeNet>` as the engine's connector.
impl Connector for Arc<FakeNet> {
    fn open<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, Result<Arc<dyn Remote>, RemoteError>> {
        self.as_ref().open(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::NoDeadline;

    /// A watch whose deadline is `after` from its creation.
    struct After(Instant, bool);

    impl Watch for After {
        fn deadline(&mut self, _: &[u8], _: Instant) -> Option<Instant> {
            Some(self.0)
        }
        fn expire(&mut self, _: Instant) {
            self.1 = true;
        }
        fn cleanup(&self) -> Option<String> {
            Some("touch cleaned\n".into())
        }
    }

    fn conn(net: &FakeNet, name: &str) -> FakeConn {
        FakeConn {
            host: net.host(name),
            execs: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    #[tokio::test]
    async fn an_upload_lands_whole_or_not_at_all() {
        let net = FakeNet::new("self");
        let c = conn(&net, "a");
        let h = net.host("a");
        let dest = h.path("conf");
        let dest = dest.to_str().expect("a UTF-8 temp path");
        c.upload(dest, b"one\n\x00two", 0o600)
            .await
            .expect("uploads");
        assert_eq!(std::fs::read(dest).expect("written"), b"one\n\x00two");
        // The connection breaks before the next upload's script: the old file stays whole.
        h.fault(On::Exec(2), Fault::Break("link down".into()));
        assert!(c.upload(dest, b"new", 0o600).await.is_err());
        assert_eq!(std::fs::read(dest).expect("still there"), b"one\n\x00two");
        // It breaks after the script ran: the upload is reported failed (its end was not
        // seen), and the file is the new one, whole.
        h.fault(On::Exec(3), Fault::BreakAfter("link down".into()));
        assert!(c.upload(dest, b"new", 0o600).await.is_err());
        assert_eq!(std::fs::read(dest).expect("replaced"), b"new");
        let beside: Vec<_> = std::fs::read_dir(&h.dir)
            .expect("host dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("conf.bosun-"))
            .collect();
        assert!(beside.is_empty(), "{beside:?}");
        // A directory that does not exist: the error names the path.
        let e = c
            .upload(h.path("missing/conf").to_str().expect("UTF-8"), b"x", 0o644)
            .await
            .expect_err("no such directory");
        assert!(e.to_string().contains("missing/conf"), "{e}");
    }

    #[tokio::test]
    async fn scripts_run_in_the_host_directory_and_are_recorded() {
        let net = FakeNet::new("self");
        let c = conn(&net, "a");
        let out = c
            .run("echo out; echo err >&2; pwd; exit 3")
            .await
            .expect("runs");
        assert_eq!(out.rc, 3);
        let dir = net.host("a").dir.display().to_string();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("out\n{dir}\n")
        );
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(c.exec_count(), 1);
        let e = net.host("a").execs();
        assert_eq!(e[0].script, "echo out; echo err >&2; pwd; exit 3");
        assert_eq!(e[0].output.as_ref().map(|o| o.rc), Some(3));
    }

    #[tokio::test]
    async fn state_and_scratch_directories_move_below_the_host() {
        let net = FakeNet::new("self");
        let c = conn(&net, "a");
        let out = c
            .run(&format!("{STATE_DIR_SH}echo \"$__bs\"; echo /tmp/.bosun.x"))
            .await
            .expect("runs");
        let h = net.host("a");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!(
                "{}\n{}/.bosun.x\n",
                h.state_dir().display(),
                h.dir.join(".fake/scratch").display()
            )
        );
    }

    #[tokio::test]
    async fn a_deadline_kills_the_whole_process_group_and_cleans_up() {
        let net = FakeNet::new("self");
        let c = conn(&net, "a");
        let mut w = After(Instant::now() + Duration::from_millis(300), false);
        let out = c
            .run_watched(
                "sleep 30 & echo $! > child; echo started; wait",
                &mut w,
                None,
            )
            .await
            .expect("runs");
        assert_eq!(out.killed, Some(Killed::Deadline));
        assert!(w.1, "the watch was told what expired");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
        let h = net.host("a");
        let child: i32 = std::fs::read_to_string(h.path("child"))
            .expect("child pid")
            .trim()
            .parse()
            .expect("pid");
        // Gone, or a zombie nobody reaped yet (PID 1 of a container may not).
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        let alive = stat
            .rsplit(") ")
            .next()
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('Z'));
        assert!(!alive, "the background child died with the group");
        assert!(h.path("cleaned").exists(), "the watch's cleanup ran");
        assert_eq!(h.cleanups().len(), 1);
    }

    #[tokio::test]
    async fn faults_fire_once_on_the_script_they_name() {
        let net = FakeNet::new("self");
        let h = net.host("a");
        h.fault(On::Contains("second".into()), Fault::Break("gone".into()));
        h.fault(
            On::Exec(1),
            Fault::Answer {
                rc: 7,
                stdout: "canned".into(),
                stderr: String::new(),
            },
        );
        let c = conn(&net, "a");
        let first = c.run("echo first").await.expect("answered");
        assert_eq!((first.rc, first.stdout), (7, b"canned".to_vec()));
        let second = c.run("echo second").await;
        assert_eq!(second.err().map(|e| e.0), Some("a: gone".into()));
        let again = c.run("echo second").await.expect("the fault fired once");
        assert_eq!(again.stdout, b"second\n");
        assert_eq!(h.exec_count(), 3);
    }

    #[tokio::test]
    async fn an_unreachable_host_fails_to_open_and_a_closed_connection_refuses_scripts() {
        let net = FakeNet::new("self");
        let inv = bosun_model::inventory::Inventory::parse(
            std::path::Path::new("inv.yml"),
            "hosts: {a: {}, b: {}}\n",
        )
        .expect("inventory");
        net.host("b").unreachable("no route to host");
        let err = net.open(&inv.hosts["b"]).await.err().map(|e| e.0);
        assert_eq!(err.as_deref(), Some("no route to host"));
        let c = net.open(&inv.hosts["a"]).await.expect("opens");
        c.close().await;
        assert!(c.run_watched("true", &mut NoDeadline, None).await.is_err());
        assert_eq!(net.host("a").closes(), 1);
    }

    #[tokio::test]
    async fn an_abort_kills_at_once_and_a_first_interrupt_after_the_grace() {
        let net = FakeNet::new("self");
        let h = net.host("a");
        h.set_grace(Duration::from_millis(200));
        let c = conn(&net, "a");
        let i = Interrupt::new();
        i.raise();
        let t0 = Instant::now();
        let out = c
            .run_watched("echo a; sleep 30", &mut NoDeadline, Some(&i))
            .await
            .expect("runs");
        assert_eq!(out.killed, Some(Killed::Interrupted));
        assert!(t0.elapsed() < Duration::from_secs(10));
        i.raise();
        let out = c
            .run_watched("sleep 30", &mut NoDeadline, Some(&i))
            .await
            .expect("runs");
        assert_eq!(out.killed, Some(Killed::Interrupted));
        assert_eq!(h.execs()[1].interrupt_level, Some(2));
    }
}
