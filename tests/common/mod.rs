//! Test fixtures: a real OpenSSH sshd on loopback, and a project directory per test.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A private sshd listening on some loopback addresses, with its own host key and one
/// authorized client key. Stopped when dropped.
pub struct Sshd {
    pub dir: PathBuf,
    pub port: u16,
    pub addrs: Vec<String>,
    pub client_key: PathBuf,
    pub host_pub: String,
    child: Child,
}

pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "bosun-it-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

fn rand_suffix() -> u64 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000_007)
        .unwrap_or(0)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs (apt-get install openssh-client)");
    assert!(st.success());
}

impl Sshd {
    /// Starts sshd on `n` loopback addresses (127.0.0.2, .3, ...) sharing one port.
    pub fn start(n: usize) -> Sshd {
        Sshd::start_with(SshdSpec {
            addrs: (0..n).map(|i| format!("127.0.0.{}", i + 2)).collect(),
            extra_config: "MaxSessions 10".into(),
            ..SshdSpec::default()
        })
    }

    /// Ready = the SSH banner arrives (bounded; no fixed sleeps).
    fn wait_ready(&self, addr: &str) {
        let sa: SocketAddr = format!("{addr}:{}", self.port).parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = TcpStream::connect_timeout(&sa, Duration::from_millis(500)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 8];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"SSH-2.0") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "sshd on {sa} did not answer within 20s"
            );
            std::thread::yield_now();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// known_hosts lines for every address.
    pub fn known_hosts(&self) -> String {
        self.addrs
            .iter()
            .map(|a| format!("[{a}]:{} {}\n", self.port, self.host_pub))
            .collect()
    }
}

/// An sshd beyond [`Sshd::start`]'s defaults (jump host tests: several sshds, one client key).
#[derive(Default)]
pub struct SshdSpec {
    /// Listen addresses; default `127.0.0.2`.
    pub addrs: Vec<String>,
    /// Authorize this existing client key (its `.pub` beside it) instead of a new one.
    pub client_key: Option<PathBuf>,
    /// `(address, name)` lines only this sshd sees in /etc/hosts: it then runs in a private
    /// mount namespace with its own /etc/hosts bound over the machine's, so these names
    /// resolve for it (and for the `direct-tcpip` targets it connects to) and nowhere else.
    pub hosts: Vec<(String, String)>,
    /// More sshd_config lines.
    pub extra_config: String,
}

impl Sshd {
    /// Starts an sshd per `spec`, logging at INFO to `dir/sshd.log` (see [`Sshd::log`]).
    pub fn start_with(spec: SshdSpec) -> Sshd {
        let dir = tempdir("sshd");
        let host_key = dir.join("host_ed25519");
        keygen(&host_key);
        let client_key = match spec.client_key {
            Some(k) => k,
            None => {
                let k = dir.join("client_ed25519");
                keygen(&k);
                k
            }
        };
        std::fs::copy(
            client_key.with_extension("pub"),
            dir.join("authorized_keys"),
        )
        .expect("authorized_keys");
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let port = free_port();
        let addrs = if spec.addrs.is_empty() {
            vec!["127.0.0.2".to_string()]
        } else {
            spec.addrs
        };
        let listen: String = addrs
            .iter()
            .map(|a| format!("ListenAddress {a}:{port}\n"))
            .collect();
        let config = format!(
            "{listen}HostKey {hk}\nAuthorizedKeysFile {ak}\nPidFile {dir}/sshd.pid\nStrictModes no\nUsePAM no\n\
             PermitRootLogin yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nMaxStartups 200\n\
             LogLevel INFO\n{extra}\n",
            hk = host_key.display(),
            ak = dir.join("authorized_keys").display(),
            dir = dir.display(),
            extra = spec.extra_config,
        );
        let cfg = dir.join("sshd_config");
        std::fs::write(&cfg, config).expect("write sshd_config");
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd installed (apt-get install openssh-server)");
        let log = dir.join("sshd.log");
        let mut cmd = if spec.hosts.is_empty() {
            Command::new(sshd)
        } else {
            let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            for (a, n) in &spec.hosts {
                hosts.push_str(&format!("\n{a} {n}\n"));
            }
            let hosts_file = dir.join("hosts");
            std::fs::write(&hosts_file, hosts).expect("write hosts");
            // unshare and sh exec into sshd: the child's pid is sshd's.
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg("mount --bind \"$1\" /etc/hosts && shift && exec \"$@\"")
                .arg("sh")
                .arg(&hosts_file);
            c.arg(sshd);
            c
        };
        cmd.args(["-D", "-E"])
            .arg(&log)
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start sshd (and unshare: util-linux)");
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).expect("host pub");
        let s = Sshd {
            dir,
            port,
            addrs,
            client_key,
            host_pub: host_pub.trim().to_string(),
            child,
        };
        for a in &s.addrs {
            s.wait_ready(a);
        }
        s
    }

    /// What [`Sshd::start_with`]'s sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the real bosun binary.
pub fn bosun(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bosun"))
        .current_dir(cwd)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run bosun")
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Writes `files` (relative path → content) under `root`.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (p, c) in files {
        let path = root.join(p);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(&path, c).expect("write");
    }
}

/// Parses `--output json` lines.
pub fn events(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// Why a converge failed, in a few lines: the failed and unreachable hosts with their
/// messages, the tasks that failed, the aborted plays, then the end of stderr. A whole
/// site's JSON events run to thousands of lines, and CI shows only part of a test's output.
pub fn why(o: &Output) -> String {
    let mut lines = vec![format!("exit status {:?}", o.status.code())];
    for e in events(o) {
        let line = match e["event"].as_str() {
            Some("host_failed") => format!(
                "FAILED {} in {} at {}: {}",
                e["host"], e["play"], e["task"], e["message"]
            ),
            Some("host_unreachable") => format!("UNREACHABLE {}: {}", e["host"], e["message"]),
            Some("task") if e["status"] == "failed" => format!(
                "task failed on {}: {} / {}: {} {}",
                e["host"], e["role"], e["task"], e["message"], e["details"]
            ),
            Some("play_end") if e["aborted"] == true => {
                format!("play {} aborted: {}", e["play"], e["reason"])
            }
            _ => continue,
        };
        lines.push(line);
    }
    let err = String::from_utf8_lossy(&o.stderr);
    let tail: Vec<&str> = err.lines().rev().take(30).collect();
    lines.extend(tail.into_iter().rev().map(|l| format!("stderr: {l}")));
    lines.join("\n")
}

/// The repository root (lab tests run bosun from there, with inventory/lab.yml).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The variables a converge gives `host` in the first play of `site` that runs `role` (that
/// play's hosts as `play_hosts`, `extra` as `-e` gives it), facts left pending: for
/// rendering a role's templates offline exactly as a run would.
pub fn role_scope(
    inv: &bosun_model::inventory::Inventory,
    site: &bosun_model::site::Site,
    role: &str,
    host: &str,
    extra: &serde_json::Map<String, serde_json::Value>,
    t: &bosun_model::template::Templates,
) -> bosun_engine::expand::Scope {
    use bosun_engine::expand::{Globals, PlayVars, Scope};
    let play = site
        .plays
        .iter()
        .find(|p| p.roles.iter().any(|r| r == role))
        .unwrap_or_else(|| panic!("a play with the {role} role"));
    let roles: Vec<_> = play
        .roles
        .iter()
        .filter_map(|r| site.roles.get(r))
        .collect();
    let names: Vec<String> = inv
        .select(&play.hosts)
        .expect("the play's hosts")
        .iter()
        .map(|h| h.name.clone())
        .collect();
    let globals = Globals::new(inv);
    let pv = PlayVars {
        roles: &roles,
        play_vars: &play.vars,
        extra,
        globals: &globals,
        play_hosts: &names,
        play_hosts_value: bosun_model::template::jv(&names),
        check: false,
        templates: t,
    };
    let mut scope = Scope::new(&inv.hosts[host], &pv);
    scope.set_pending("facts");
    scope.resolve(t);
    scope
}

/// The repository's lab inventory and site, as a converge of the lab loads them.
pub fn lab_site() -> (bosun_model::inventory::Inventory, bosun_model::site::Site) {
    let inv = bosun_model::inventory::Inventory::load(&repo().join("inventory/lab.yml"))
        .expect("the lab inventory");
    let site = bosun_engine::load_site(&repo().join("roles/site.yml")).expect("the repo's site");
    (inv, site)
}

/// A JSON object literal as extra variables.
pub fn vars(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// The first task of `role` whose name starts with `prefix`.
pub fn role_task<'a>(
    site: &'a bosun_model::site::Site,
    role: &str,
    prefix: &str,
) -> &'a bosun_model::site::Task {
    site.roles[role]
        .tasks
        .iter()
        .find(|t| t.name.starts_with(prefix))
        .unwrap_or_else(|| panic!("{role} task `{prefix}…`"))
}

/// `sh -c SCRIPT`, with `path` (a directory of stand-in commands) first on PATH.
pub fn sh_with_path(script: &str, path: Option<&Path>) -> Output {
    let mut c = Command::new("/bin/sh");
    c.args(["-c", script]);
    if let Some(p) = path {
        c.env(
            "PATH",
            format!(
                "{}:{}",
                p.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    }
    c.output().expect("sh")
}

/// `bosun converge -i inventory/lab.yml --output json EXTRA...` from the repository: its
/// output and its events.
pub fn lab_converge(extra: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let mut args = vec!["converge", "-i", "inventory/lab.yml", "--output", "json"];
    args.extend_from_slice(extra);
    let o = bosun(&repo(), &args);
    let evs = events(&o);
    (o, evs)
}

/// The recap's `changed_tasks` (`[[host, task], ...]`), Null without a recap.
pub fn changed_tasks(evs: &[serde_json::Value]) -> serde_json::Value {
    evs.iter()
        .find(|e| e["event"] == "recap")
        .map(|r| r["changed_tasks"].clone())
        .unwrap_or(serde_json::Value::Null)
}

/// `bosun lab ssh HOST CMD`: its exit code and trimmed stdout.
pub fn lab_ssh(host: &str, cmd: &str) -> (i32, String) {
    let o = bosun(&repo(), &["lab", "ssh", host, cmd]);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
    )
}

/// Polls until `f` holds (bounded); returns how long it took.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what}: not true after {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    t0.elapsed()
}

/// The inventory secret of every [`Project`].
pub const SECRET: &str = "Sup3r-Secret-Pa55word";

/// A project (inventory, site, roles) over `n` loopback hosts of one private sshd.
pub struct Project {
    pub dir: PathBuf,
    /// A scratch directory each host's paths live under (`root` in the inventory).
    pub root: PathBuf,
    pub _sshd: Sshd,
}

impl Project {
    /// A project with an inventory of `n` loopback hosts and the given role files.
    pub fn new(n: usize, files: &[(&str, &str)]) -> Project {
        Project::with_inventory(n, files, "")
    }

    /// Like [`Project::new`], with `extra` top-level inventory lines.
    pub fn with_inventory(n: usize, files: &[(&str, &str)], extra: &str) -> Project {
        let sshd = Sshd::start(n);
        let dir = tempdir("proj");
        let root = tempdir("root");
        std::fs::write(dir.join("known_hosts"), sshd.known_hosts()).expect("known_hosts");
        let hosts: String = (0..n)
            .map(|i| format!("  h{}: {{address: 127.0.0.{}}}\n", i + 1, i + 2))
            .collect();
        let names: Vec<String> = (0..n).map(|i| format!("h{}", i + 1)).collect();
        let inv = format!(
            "ssh:\n  user: root\n  port: {port}\n  identity_file: {key}\n  known_hosts: known_hosts\n\
             vars:\n  root: {root}\nsecrets:\n  app_password: {SECRET}\nhosts:\n{hosts}groups:\n  web: {{hosts: [{names}]}}\n{extra}",
            port = sshd.port,
            key = sshd.client_key.display(),
            root = root.display(),
            names = names.join(", "),
        );
        write_tree(
            &dir,
            &[
                ("inventory.yml", &inv),
                (
                    "roles/site.yml",
                    "- name: web\n  hosts: web\n  roles: [every]\n",
                ),
            ],
        );
        write_tree(&dir, files);
        Project {
            dir,
            root,
            _sshd: sshd,
        }
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        bosun(&self.dir, args)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
