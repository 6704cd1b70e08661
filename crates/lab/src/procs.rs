//! Finding the lab's processes in /proc.
//!
//! Pid files alone cannot be trusted: a killed session leaves stale ones, and a
//! pid may be reused. So the lab identifies its processes by what they are:
//!
//! * the `systemd-nspawn` process of a host has `--directory=<host root>` on its
//!   command line;
//! * the container's init carries `BOSUN_LAB_STATE=<state dir>` and
//!   `BOSUN_LAB_HOST=<name>` in its environment (set with nspawn's `--setenv`),
//!   which also finds a container whose nspawn already died;
//! * every other process of the container shares that init's pid namespace.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use super::cgroup;
use super::mounts;

/// Environment variable naming the lab (state dir) a container belongs to.
pub(crate) const ENV_STATE: &str = "BOSUN_LAB_STATE";
/// Environment variable naming the host a container is.
pub(crate) const ENV_HOST: &str = "BOSUN_LAB_HOST";

/// What the lab needs to know about one process.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    cmdline: Vec<String>,
    pid_ns: Option<String>,
    /// `Some(host)` when the environment marks it as an init of this lab.
    lab_host: Option<String>,
    /// Root directory, when it is not `/` (chrooted build steps).
    root: Option<PathBuf>,
}

/// The processes belonging to one lab host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostProcs {
    /// systemd-nspawn processes running this host's root (normally one).
    pub nspawn: Vec<u32>,
    /// Every process inside the container's pid namespace, init included.
    pub members: Vec<u32>,
}

impl HostProcs {
    /// A host counts as running while its nspawn supervisor lives.
    pub fn running(&self) -> bool {
        !self.nspawn.is_empty()
    }

    /// Container processes whose nspawn is gone (left by a killed session).
    pub fn orphaned(&self) -> bool {
        self.nspawn.is_empty() && !self.members.is_empty()
    }

    /// Every pid to signal for a hard power-off.
    pub fn all_pids(&self) -> Vec<u32> {
        let set: BTreeSet<u32> = self.nspawn.iter().chain(&self.members).copied().collect();
        set.into_iter().collect()
    }
}

/// A point-in-time view of the processes relevant to one lab.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    state: String,
    procs: Vec<Proc>,
    /// `<hierarchy>/bosun-lab` of each process-tracking cgroup hierarchy.
    cgroup_roots: Vec<PathBuf>,
}

fn read_nul_separated(path: &Path) -> Option<Vec<String>> {
    let bytes = std::fs::read(path).ok()?;
    Some(
        bytes
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Zombies have exited; only their parent's wait is missing.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            after
                .split_whitespace()
                .next()
                .map(|st| st == "Z" || st == "X")
        })
        .unwrap_or(true)
}

/// Whether `pid` exists and has not exited.
pub(crate) fn is_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

/// Start time of a process (field 22 of /proc/PID/stat), used to tell a live
/// lock holder from an unrelated process that reused its pid.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    // Fields after the comm: state is field 3, starttime field 22.
    after.split_whitespace().nth(19)?.parse().ok()
}

fn pid_ns(pid: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The host name a container init carries, if its environment marks it as
/// belonging to the lab at `state`.
pub(crate) fn marker_host(environ: &[String], state: &str) -> Option<String> {
    let state_entry = format!("{ENV_STATE}={state}");
    if !environ.contains(&state_entry) {
        return None;
    }
    environ
        .iter()
        .find_map(|e| e.strip_prefix(&format!("{ENV_HOST}=")))
        .map(str::to_string)
}

/// Whether a command line is a systemd-nspawn for the host root `root`.
pub(crate) fn is_nspawn_for(cmdline: &[String], root: &Path) -> bool {
    let is_nspawn = cmdline
        .first()
        .map(|a| Path::new(a).file_name().and_then(|f| f.to_str()) == Some("systemd-nspawn"))
        .unwrap_or(false);
    let want = format!("--directory={}", root.display());
    is_nspawn && cmdline.contains(&want)
}

/// The `--machine=` value of an nspawn command line.
fn machine_name(cmdline: &[String]) -> Option<String> {
    cmdline
        .iter()
        .find_map(|a| a.strip_prefix("--machine="))
        .map(str::to_string)
}

impl Snapshot {
    /// Reads /proc once. Only processes outside our own pid namespace have their
    /// environment read (container inits live in their own namespace), which
    /// keeps this a few milliseconds even on a busy machine.
    pub fn take(state_dir: &Path) -> Snapshot {
        let state = state_dir.to_string_lossy().into_owned();
        let own_ns = pid_ns("self");
        let cgroup_roots = mounts::read_mounts()
            .map(|m| cgroup::tracking_hierarchies(&m))
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.join(cgroup::LAB_CGROUP))
            .collect();
        let mut procs = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Snapshot {
                state,
                procs,
                cgroup_roots,
            };
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if is_zombie(pid) {
                continue;
            }
            let cmdline = read_nul_separated(&entry.path().join("cmdline")).unwrap_or_default();
            let ns = pid_ns(&pid.to_string());
            let lab_host = if ns.is_some() && ns != own_ns {
                read_nul_separated(&entry.path().join("environ"))
                    .and_then(|env| marker_host(&env, &state))
            } else {
                None
            };
            let root = std::fs::read_link(entry.path().join("root"))
                .ok()
                .filter(|r| r != Path::new("/"));
            procs.push(Proc {
                pid,
                cmdline,
                pid_ns: ns,
                lab_host,
                root,
            });
        }
        Snapshot {
            state,
            procs,
            cgroup_roots,
        }
    }

    /// The processes of host `name` whose root is `root`.
    pub fn host(&self, name: &str, root: &Path) -> HostProcs {
        let nspawn: Vec<u32> = self
            .procs
            .iter()
            .filter(|p| is_nspawn_for(&p.cmdline, root))
            .map(|p| p.pid)
            .collect();
        let namespaces: HashSet<&str> = self
            .procs
            .iter()
            .filter(|p| p.lab_host.as_deref() == Some(name))
            .filter_map(|p| p.pid_ns.as_deref())
            .collect();
        let mut members: BTreeSet<u32> = self
            .procs
            .iter()
            .filter(|p| {
                p.pid_ns
                    .as_deref()
                    .is_some_and(|ns| namespaces.contains(ns))
            })
            .map(|p| p.pid)
            .collect();
        // The host's cgroups catch anything that left the pid namespace view
        // (and the nspawn itself, which lives in `<host>/supervisor`).
        for root in &self.cgroup_roots {
            members.extend(
                cgroup::procs_in(&root.join(name))
                    .into_iter()
                    .filter(|p| is_alive(*p)),
            );
        }
        let members = members
            .into_iter()
            .filter(|p| !nspawn.contains(p))
            .collect();
        HostProcs { nspawn, members }
    }

    /// Names of all hosts of this lab that have processes, whatever the
    /// current config says (a bigger earlier config must still be torn down).
    pub fn host_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self
            .procs
            .iter()
            .filter_map(|p| p.lab_host.clone())
            .collect();
        for p in &self.procs {
            if self.is_lab_nspawn(p) {
                if let Some(m) = machine_name(&p.cmdline) {
                    names.insert(m);
                }
            }
        }
        names
    }

    fn is_lab_nspawn(&self, p: &Proc) -> bool {
        p.cmdline
            .first()
            .is_some_and(|a| a.ends_with("systemd-nspawn"))
            && p.cmdline.iter().any(|a| a.contains(&self.state))
    }

    /// Image build processes working in `dir`: debootstrap itself (its
    /// command line names the target) and everything chrooted into it (dpkg,
    /// maintainer scripts). A killed `up` leaves them running; they must die
    /// before the half-built directory is deleted.
    pub fn builders_in(&self, dir: &Path) -> Vec<u32> {
        let dir_s = dir.to_string_lossy();
        self.procs
            .iter()
            .filter(|p| p.pid != std::process::id())
            .filter(|p| {
                p.root.as_deref().is_some_and(|r| r.starts_with(dir))
                    || (p.cmdline.iter().any(|a| a.contains("debootstrap"))
                        && p.cmdline.iter().any(|a| a.contains(dir_s.as_ref())))
            })
            .map(|p| p.pid)
            .collect()
    }

    /// Human-readable descriptions of every lab process, for [`super::leftovers`].
    pub fn describe_all(&self) -> Vec<String> {
        let mut out = Vec::new();
        let builders = self.builders_in(Path::new(&self.state));
        for p in &self.procs {
            if builders.contains(&p.pid) {
                out.push(format!(
                    "process {}: image build step ({})",
                    p.pid,
                    p.cmdline.join(" ")
                ));
            } else if self.is_lab_nspawn(p) {
                out.push(format!("process {}: {}", p.pid, p.cmdline.join(" ")));
            } else if let Some(h) = &p.lab_host {
                out.push(format!(
                    "process {}: init of lab host {h} ({})",
                    p.pid,
                    p.cmdline.join(" ")
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn marker_needs_matching_state() {
        let env = v(&[
            "container=systemd-nspawn",
            "BOSUN_LAB_STATE=/var/lib/bosun/lab",
            "BOSUN_LAB_HOST=pg1",
        ]);
        assert_eq!(
            marker_host(&env, "/var/lib/bosun/lab").as_deref(),
            Some("pg1")
        );
        assert_eq!(marker_host(&env, "/var/lib/bosun/lab2"), None);
        assert_eq!(marker_host(&env, "/var/lib/bosun"), None);
    }

    #[test]
    fn nspawn_match_is_exact_on_directory() {
        let cmd = v(&[
            "systemd-nspawn",
            "-b",
            "--directory=/s/hosts/pg1/root",
            "--machine=pg1",
        ]);
        assert!(is_nspawn_for(&cmd, Path::new("/s/hosts/pg1/root")));
        assert!(!is_nspawn_for(&cmd, Path::new("/s/hosts/pg/root")));
        let other = v(&["/usr/bin/vim", "--directory=/s/hosts/pg1/root"]);
        assert!(!is_nspawn_for(&other, Path::new("/s/hosts/pg1/root")));
        assert_eq!(machine_name(&cmd).as_deref(), Some("pg1"));
    }

    #[test]
    fn host_procs_merge_pids() {
        let hp = HostProcs {
            nspawn: vec![10],
            members: vec![11, 12, 10],
        };
        assert_eq!(hp.all_pids(), vec![10, 11, 12]);
        assert!(hp.running());
        assert!(!hp.orphaned());
    }

    #[test]
    fn own_process_is_alive() {
        assert!(is_alive(std::process::id()));
        assert!(start_time(std::process::id()).is_some());
    }
}
