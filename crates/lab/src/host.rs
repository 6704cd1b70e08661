//! One lab host: its overlay disk, the files it gets before boot, booting it
//! under systemd-nspawn, waiting for sshd, and stopping it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::cgroup;
use super::cmd;
use super::error::LabError;
use super::files;
use super::keys::{self, PubKey};
use super::mounts;
use super::net;
use super::paths::HostPaths;
use super::procs::{self, ENV_HOST, ENV_STATE};

/// How long a host may take from nspawn start to an SSH banner. Seven hosts
/// on two cores take about five seconds; the margin covers a loaded CI machine.
pub(crate) const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// Interval between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Connect timeout of a readiness probe. On the local bridge a listening sshd
/// accepts in well under a millisecond; while the container's network is
/// still coming up the SYN goes unanswered, and a long timeout would only
/// delay noticing readiness (1 s made every boot look like 1.2 or 2.4 s).
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// Everything written into a host root before boot.
#[derive(Debug, Clone)]
pub(crate) struct HostSetup {
    pub name: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub dns: Ipv4Addr,
    pub hosts_file: String,
    pub authorized_key: String,
    pub base_stamp: String,
}

/// Mounts the host's overlay unless the right one is already mounted. A
/// mount over a different lower dir (an image since replaced) is remounted.
pub(crate) async fn ensure_overlay(base: &Path, hp: &HostPaths) -> Result<(), LabError> {
    let mounts = mounts::read_mounts()?;
    if let Some(m) = mounts::mount_at(&mounts, &hp.root) {
        if mounts::overlay_has_lower(m, base) {
            return Ok(());
        }
        mounts::unmount_all_under(&hp.root).await?;
    }
    for d in [&hp.upper, &hp.work, &hp.root] {
        tokio::fs::create_dir_all(d)
            .await
            .map_err(|e| LabError::io("create", d, e))?;
    }
    mounts::mount_overlay(base, &hp.upper, &hp.work, &hp.root).await
}

async fn write_file(path: &Path, content: &str, mode: u32) -> Result<(), LabError> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| LabError::io("create", parent, e))?;
    }
    // Replace rather than write through: the image may have a symlink here
    // (resolv.conf often is one).
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LabError::io("replace", path, e)),
    }
    tokio::fs::write(path, content)
        .await
        .map_err(|e| LabError::io("write", path, e))?;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(|e| LabError::io("chmod", path, e))
}

/// Writes identity, network and SSH files into the mounted root. Files that
/// follow from the config are rewritten on every boot; /etc/hosts, the machine id and
/// host keys are created once and then kept, because they are the host's identity
/// (a restarted host must present the same host key).
pub(crate) async fn prepare_root(hp: &HostPaths, s: &HostSetup) -> Result<Vec<PubKey>, LabError> {
    let root = &hp.root;
    write_file(&root.join("etc/hostname"), &format!("{}\n", s.name), 0o644).await?;
    // /etc/hosts is seeded once: after that it belongs to the host (roles manage it), and
    // a reboot must not undo what a converge wrote.
    let hosts = root.join("etc/hosts");
    if !tokio::fs::try_exists(&hosts).await.unwrap_or(false) {
        write_file(&hosts, &s.hosts_file, 0o644).await?;
    }
    write_file(
        &root.join("etc/systemd/network/10-host0.network"),
        &files::network_file(s.address, s.prefix_len, s.gateway, s.dns),
        0o644,
    )
    .await?;
    write_file(
        &root.join("etc/resolv.conf"),
        &files::resolv_conf(s.dns),
        0o644,
    )
    .await?;
    let mid = root.join("etc/machine-id");
    let has_id = tokio::fs::read_to_string(&mid)
        .await
        .map(|t| t.trim().len() == 32)
        .unwrap_or(false);
    if !has_id {
        let id = files::machine_id(&mut rand::thread_rng());
        write_file(&mid, &id, 0o444).await?;
    }
    let ssh = root.join("root/.ssh");
    tokio::fs::create_dir_all(&ssh)
        .await
        .map_err(|e| LabError::io("create", &ssh, e))?;
    tokio::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700))
        .await
        .map_err(|e| LabError::io("chmod", &ssh, e))?;
    write_file(
        &ssh.join("authorized_keys"),
        &format!("{}\n", s.authorized_key),
        0o600,
    )
    .await?;
    let keys = keys::ensure_host_keys(root).await?;
    tokio::fs::write(&hp.base_stamp, &s.base_stamp)
        .await
        .map_err(|e| LabError::io("write", &hp.base_stamp, e))?;
    Ok(keys)
}

/// Environment variable carrying the cgroup.procs files to the boot wrapper.
const CGROUP_PROCS_ENV: &str = "BOSUN_LAB_CGROUP_PROCS";

/// Environment variables naming, for the boot wrapper, the pid file and the veth.
const PID_FILE_ENV: &str = "BOSUN_LAB_PID_FILE";
const VETH_ENV: &str = "BOSUN_LAB_VETH";

/// `sh -c` script: join the host's cgroups, then run the rest of argv (nspawn) and record
/// its pid; boot it again whenever it ends with 133, nspawn's status for a reboot inside
/// the host (systemd-nspawn(1)), so `systemctl reboot` (or the `reboot` module) brings the
/// host back as it would a machine. Any other end (a power-off, `lab stop`, `lab kill`)
/// ends the wrapper too. It ignores the terminal's INT and HUP (it stays in the caller's
/// session), nspawn gets them back.
const BOOT_WRAPPER: &str = r#"for f in $BOSUN_LAB_CGROUP_PROCS; do
  echo $$ > "$f" || { echo "bosun lab: cannot move into cgroup $f" >&2; exit 125; }
done
unset BOSUN_LAB_CGROUP_PROCS
trap '' INT HUP
while :; do
  ( trap - INT HUP; exec "$@" ) &
  pid=$!
  echo "$pid" > "$BOSUN_LAB_PID_FILE.tmp" && mv -f "$BOSUN_LAB_PID_FILE.tmp" "$BOSUN_LAB_PID_FILE"
  wait "$pid"
  rc=$?
  [ "$rc" -eq 133 ] || exit "$rc"
  echo "bosun lab: the host rebooted; booting it again" >&2
  ip link del dev "$BOSUN_LAB_VETH" 2>/dev/null
done"#;

/// Starts systemd-nspawn for the host in its own session (so it survives the
/// caller's terminal and process group) under the boot wrapper, and returns the
/// wrapper's pid: alive while the host is, across reboots.
///
/// Flags and why:
/// * `--register=no --keep-unit`: there is no systemd/machined on the machine;
/// * `--network-bridge`: veth `vb-NAME` on the lab bridge, `host0` inside;
/// * `--resolv-conf=off --timezone=off --link-journal=no`: the host's files
///   are the lab's, not copies of the machine's;
/// * `--private-users=no --capability=all`: roles run nftables, PostgreSQL,
///   etcd, HAProxy…; they need real root with CAP_NET_ADMIN and friends;
/// * `--rlimit=RLIMIT_NOFILE=524288`: what services get on a real Debian host;
/// * `--kill-signal=SIGRTMIN+4`: SIGTERM to nspawn then means "power off"
///   (systemd's default SIGRTMIN+3 would only halt);
/// * `--setenv=BOSUN_LAB_*`: lets the lab find the container's init even if
///   its nspawn was killed (see `procs`).
pub(crate) async fn boot(
    hp: &HostPaths,
    name: &str,
    bridge: &str,
    state: &Path,
) -> Result<u32, LabError> {
    net::delete_stale_veth(name).await?;
    // Keep the previous boot's console for post-mortems.
    if hp.console.exists() {
        let old = hp.console.with_extension("log.1");
        tokio::fs::rename(&hp.console, &old)
            .await
            .map_err(|e| LabError::io("rename", &hp.console, e))?;
    }
    let log =
        std::fs::File::create(&hp.console).map_err(|e| LabError::io("create", &hp.console, e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| LabError::io("open", &hp.console, e))?;
    let args: Vec<String> = vec![
        "systemd-nspawn".into(),
        "--boot".into(),
        format!("--directory={}", hp.root.display()),
        format!("--machine={name}"),
        "--register=no".into(),
        "--keep-unit".into(),
        format!("--network-bridge={bridge}"),
        "--resolv-conf=off".into(),
        "--timezone=off".into(),
        "--link-journal=no".into(),
        "--private-users=no".into(),
        "--capability=all".into(),
        "--kill-signal=SIGRTMIN+4".into(),
        "--console=read-only".into(),
        // A Debian host gives services a hard limit of 524288 open files;
        // without this the container inherits the caller's (often 1024-20000),
        // which HAProxy, PostgreSQL and etcd outgrow.
        "--rlimit=RLIMIT_NOFILE=524288".into(),
        format!("--setenv={ENV_STATE}={}", state.display()),
        format!("--setenv={ENV_HOST}={name}"),
    ];
    // A tiny shell moves itself into the host's own cgroups and then starts
    // nspawn, so nspawn starts in the right cgroup (see
    // `cgroup::prepare_host_cgroup` for why that matters), and boots it again
    // after a reboot (see `BOOT_WRAPPER`).
    let procs_files = cgroup::prepare_host_cgroup(name).await?;
    let procs_list = procs_files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let child = Command::new("sh")
        .arg("-c")
        .arg(BOOT_WRAPPER)
        .arg("bosun-lab-boot")
        .arg("setsid")
        .args(&args)
        .env(CGROUP_PROCS_ENV, procs_list)
        .env(PID_FILE_ENV, &hp.pid_file)
        .env(VETH_ENV, net::veth_name(name))
        .env("PATH", cmd::STD_PATH)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|source| LabError::Spawn {
            command: cmd::display("sh -c BOOT_WRAPPER setsid", &args),
            source,
        })?;
    let pid = child.id().ok_or_else(|| LabError::HostDied {
        name: name.to_string(),
        console: hp.console.clone(),
        console_tail: console_tail(&hp.console),
    })?;
    // Dropping the handle leaves the wrapper and nspawn running; tokio reaps the wrapper
    // when it exits. The wrapper writes nspawn's pid to the pid file itself (it changes
    // with each reboot); `pid` is the wrapper's, alive as long as the host is.
    drop(child);
    Ok(pid)
}

/// Connects to `addr` (within `timeout`) and reads until an `SSH-2.0` banner
/// line arrives.
/// Plain std I/O, run on a blocking thread: one probe every 200 ms needs no
/// async networking (and the main crate's tokio has no `net` feature).
pub(crate) fn probe_ssh(addr: SocketAddrV4, timeout: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::V4(addr), timeout) else {
        return false;
    };
    // sshd may be slow to send its banner on a loaded machine; give the read
    // more time than the connect.
    let read_timeout = timeout.max(Duration::from_secs(2));
    if s.set_read_timeout(Some(read_timeout)).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    let deadline = Instant::now() + read_timeout;
    while Instant::now() < deadline && buf.len() < 4096 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if has_ssh_banner(&buf) {
            // Answer with a client banner before closing: sshd then logs a
            // quiet "closed [preauth]" instead of an error per probe.
            let _ = s.write_all(b"SSH-2.0-bosun_lab_probe\r\n");
            return true;
        }
    }
    false
}

/// RFC 4253: the server may send other lines before `SSH-2.0-…`.
pub(crate) fn has_ssh_banner(buf: &[u8]) -> bool {
    buf.split(|b| *b == b'\n')
        .any(|line| line.starts_with(b"SSH-2.0-"))
}

/// [`probe_ssh`] off the async runtime.
pub(crate) async fn probe_ssh_async(address: Ipv4Addr, timeout: Duration) -> bool {
    let addr = SocketAddrV4::new(address, 22);
    tokio::task::spawn_blocking(move || probe_ssh(addr, timeout))
        .await
        .unwrap_or(false)
}

/// Polls until sshd on the host sends its banner; fails early if nspawn dies
/// and with the console tail after [`BOOT_TIMEOUT`]. Returns seconds waited.
pub(crate) async fn wait_ready(
    name: String,
    address: Ipv4Addr,
    nspawn_pid: u32,
    console: PathBuf,
    started: Instant,
) -> Result<f64, LabError> {
    loop {
        if probe_ssh_async(address, PROBE_TIMEOUT).await {
            return Ok(started.elapsed().as_secs_f64());
        }
        if !procs::is_alive(nspawn_pid) {
            return Err(LabError::HostDied {
                name,
                console_tail: console_tail(&console),
                console,
            });
        }
        if started.elapsed() > BOOT_TIMEOUT {
            return Err(LabError::BootTimeout {
                name,
                address,
                seconds: BOOT_TIMEOUT.as_secs(),
                console_tail: console_tail(&console),
                console,
            });
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// Last lines of a console log, without terminal colour codes, for errors.
pub(crate) fn console_tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return format!("(no console log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    let text = strip_ansi(&String::from_utf8_lossy(&bytes));
    cmd::tail_lines(&text, 20)
}

/// Removes ANSI escape sequences (systemd colours its boot messages).
pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for n in chars.by_ref() {
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Sends `signal` (a `kill -s` name such as `KILL` or `TERM`) to every pid.
/// Pids that already exited make `kill` fail for them only; that is fine.
pub(crate) async fn signal(pids: &[u32], signal: &str) -> Result<(), LabError> {
    if pids.is_empty() {
        return Ok(());
    }
    let mut args = vec!["-s".to_string(), signal.to_string(), "--".to_string()];
    args.extend(pids.iter().map(u32::to_string));
    cmd::run_unchecked("kill", &args).await?;
    Ok(())
}

/// Waits until none of `pids` is alive, up to `timeout`. Returns whether they all went.
pub(crate) async fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|p| !procs::is_alive(*p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Hard power-off: SIGKILL nspawn and every process of the container at
/// once, no shutdown. Used by failover drills and as teardown's last resort.
pub(crate) async fn kill_hard(pids: &[u32]) -> Result<(), LabError> {
    signal(pids, "KILL").await?;
    if wait_gone(pids, Duration::from_secs(10)).await {
        Ok(())
    } else {
        let left: Vec<String> = pids
            .iter()
            .filter(|p| procs::is_alive(**p))
            .map(|p| format!("process {p} survived SIGKILL"))
            .collect();
        Err(LabError::Leftovers(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_detection() {
        assert!(has_ssh_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"));
        assert!(has_ssh_banner(b"hello\r\nSSH-2.0-x\r\n"));
        assert!(!has_ssh_banner(b"SSH-1.5-old\r\n"));
        assert!(!has_ssh_banner(b""));
    }

    #[test]
    fn strips_colours() {
        assert_eq!(
            strip_ansi("[\u{1b}[0;32m  OK  \u{1b}[0m] Started"),
            "[  OK  ] Started"
        );
    }

    #[test]
    fn probe_of_closed_port_is_false() {
        // Loopback only; port 1 is closed on any sane machine.
        assert!(!probe_ssh(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1),
            Duration::from_millis(200)
        ));
    }
}
