//! cgroups for the lab: the v1 hierarchies systemd-nspawn expects, and one
//! cgroup per host so that the hosts' systemd instances do not share unit
//! cgroups (see [`prepare_host_cgroup`]).
//!
//! On a machine whose init is not systemd, /sys/fs/cgroup may be a tmpfs with
//! only some v1 controllers mounted. nspawn (in legacy/hybrid mode) then fails
//! with "Failed to read link /sys/fs/cgroup/net_prio": it wants every enabled
//! controller mounted, with the usual joint mounts (`net_cls,net_prio`,
//! `cpu,cpuacct`) reachable through per-controller symlinks. The mounts last
//! until the machine reboots and do no harm, so the lab adds them and never
//! removes them. The per-host cgroups (`<hierarchy>/bosun-lab/NAME`) are
//! removed by `down`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::cmd;
use super::error::LabError;
use super::mounts::{self, MountEntry};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Controllers systemd mounts together; nspawn follows the same convention.
const JOINT: &[&[&str]] = &[&["cpu", "cpuacct"], &["net_cls", "net_prio"]];

/// Enabled controllers from /proc/cgroups that no hierarchy has yet
/// (hierarchy id 0).
pub(crate) fn unmounted_controllers(proc_cgroups: &str) -> Vec<String> {
    proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [name, "0", _, "1"] => Some((*name).to_string()),
                _ => None,
            }
        })
        .collect()
}

/// Groups the missing controllers into the mounts to make: joint pairs when
/// both halves are missing, single controllers otherwise.
pub(crate) fn plan_mounts(missing: &[String]) -> Vec<Vec<String>> {
    let missing_set: HashSet<&str> = missing.iter().map(String::as_str).collect();
    let mut used = HashSet::new();
    let mut plan = Vec::new();
    for group in JOINT {
        if group.iter().all(|c| missing_set.contains(c)) {
            plan.push(group.iter().map(|c| (*c).to_string()).collect());
            used.extend(group.iter().copied());
        }
    }
    for c in missing {
        if !used.contains(c.as_str()) {
            plan.push(vec![c.clone()]);
        }
    }
    plan
}

/// What /sys/fs/cgroup is: `cgroup2` (unified, nothing to do), `tmpfs`
/// (legacy or hybrid), or absent.
fn root_fstype(mounts: &[MountEntry]) -> Option<String> {
    mounts::mount_at(mounts, Path::new(CGROUP_ROOT)).map(|m| m.fstype.clone())
}

/// Makes sure every enabled v1 controller is mounted. Returns the mounts made
/// (empty when everything was already in place).
pub(crate) async fn ensure_hierarchies() -> Result<Vec<String>, LabError> {
    let mounts = mounts::read_mounts()?;
    match root_fstype(&mounts).as_deref() {
        Some("cgroup2") => return Ok(Vec::new()),
        Some("tmpfs") => {}
        Some(other) => {
            return Err(LabError::Unsupported(format!(
                "{CGROUP_ROOT} is a {other} filesystem; expected cgroup2 or a tmpfs of cgroup v1 hierarchies"
            )))
        }
        None => {
            return Err(LabError::Unsupported(format!(
                "nothing is mounted on {CGROUP_ROOT}; systemd-nspawn needs cgroups"
            )))
        }
    }
    let proc_cgroups = std::fs::read_to_string("/proc/cgroups")
        .map_err(|e| LabError::io("read", "/proc/cgroups", e))?;
    let mut made = Vec::new();
    for group in plan_mounts(&unmounted_controllers(&proc_cgroups)) {
        let joined = group.join(",");
        let dir = Path::new(CGROUP_ROOT).join(&joined);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| LabError::io("create", &dir, e))?;
        if mounts::mount_at(&mounts, &dir).is_none() {
            let target = dir.to_string_lossy().into_owned();
            let opts = joined.clone();
            cmd::run("mount", &["-t", "cgroup", "-o", &opts, "cgroup", &target]).await?;
            made.push(target);
        }
        if group.len() > 1 {
            for c in &group {
                let link = Path::new(CGROUP_ROOT).join(c);
                if tokio::fs::symlink_metadata(&link).await.is_err() {
                    tokio::fs::symlink(&joined, &link)
                        .await
                        .map_err(|e| LabError::io("create symlink", &link, e))?;
                }
            }
        }
    }
    Ok(made)
}

/// Parent cgroup of all lab hosts in the process-tracking hierarchies.
pub(crate) const LAB_CGROUP: &str = "bosun-lab";

/// Mountpoints of the hierarchies systemd tracks processes in: the named v1
/// `name=systemd` hierarchy and cgroup2. A container's systemd creates its
/// unit cgroups there, below the cgroup its nspawn started in.
pub(crate) fn tracking_hierarchies(mounts: &[MountEntry]) -> Vec<PathBuf> {
    mounts
        .iter()
        .filter(|m| {
            m.fstype == "cgroup2"
                || (m.fstype == "cgroup" && m.options.split(',').any(|o| o == "name=systemd"))
        })
        .map(|m| m.mountpoint.clone())
        .collect()
}

/// The host's own cgroup in each tracking hierarchy.
pub(crate) fn host_cgroups(mounts: &[MountEntry], name: &str) -> Vec<PathBuf> {
    tracking_hierarchies(mounts)
        .into_iter()
        .map(|h| h.join(LAB_CGROUP).join(name))
        .collect()
}

/// Removes a cgroup subtree, deepest first. cgroup directories are removed
/// with rmdir (their files are virtual), which fails while processes remain.
pub(crate) fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Pids in a cgroup and all its descendants.
pub(crate) fn procs_in(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                pids.extend(procs_in(&entry.path()));
            }
        }
    }
    pids
}

/// Gives a host a fresh cgroup of its own in every tracking hierarchy and
/// returns the `cgroup.procs` files its nspawn must be moved into.
///
/// Why: with `--keep-unit`, nspawn creates `supervisor` and `payload` below
/// the cgroup it was started in. Started from one shell, all hosts would
/// share `/payload`, and their systemd instances would create and delete the
/// same unit cgroups (`/payload/system.slice/ssh.service` holding the sshd of
/// every host). Measured effect: units failing at boot with status
/// 219/CGROUP ("Failed to attach to cgroup … No such file or directory")
/// because another host's systemd had just removed the cgroup, which left
/// random hosts `degraded`.
pub(crate) async fn prepare_host_cgroup(name: &str) -> Result<Vec<PathBuf>, LabError> {
    let mounts = mounts::read_mounts()?;
    let mut procs_files = Vec::new();
    for dir in host_cgroups(&mounts, name) {
        // Leftover unit cgroups of an earlier boot (its processes are gone):
        // the next boot must start from an empty tree.
        if let Err(e) = remove_cgroup_tree(&dir) {
            tracing::warn!(cgroup = %dir.display(), error = %e, "could not remove stale cgroup");
        }
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| LabError::io("create cgroup", &dir, e))?;
        procs_files.push(dir.join("cgroup.procs"));
    }
    Ok(procs_files)
}

/// Removes the lab's cgroup trees (for `down`, after every host is stopped).
pub(crate) fn remove_lab_cgroups() -> Result<(), LabError> {
    for h in tracking_hierarchies(&mounts::read_mounts()?) {
        let dir = h.join(LAB_CGROUP);
        remove_cgroup_tree(&dir).map_err(|e| LabError::io("remove cgroup", &dir, e))?;
    }
    Ok(())
}

/// The lab's cgroup trees still present, for leftover reports.
pub(crate) fn lab_cgroup_leftovers(mounts: &[MountEntry]) -> Vec<String> {
    tracking_hierarchies(mounts)
        .into_iter()
        .map(|h| h.join(LAB_CGROUP))
        .filter(|d| d.exists())
        .map(|d| format!("cgroup {}", d.display()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_CGROUPS: &str = "\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t1\t1\t1
cpuacct\t2\t1\t1
memory\t4\t42\t1
net_cls\t0\t1\t1
perf_event\t0\t1\t1
net_prio\t0\t1\t1
hugetlb\t0\t1\t1
rdma\t0\t1\t0
pids\t8\t1\t1
";

    #[test]
    fn finds_enabled_unmounted() {
        assert_eq!(
            unmounted_controllers(PROC_CGROUPS),
            ["net_cls", "perf_event", "net_prio", "hugetlb"]
        );
    }

    #[test]
    fn plans_joint_mounts() {
        let plan = plan_mounts(&unmounted_controllers(PROC_CGROUPS));
        assert_eq!(
            plan,
            vec![
                vec!["net_cls".to_string(), "net_prio".to_string()],
                vec!["perf_event".to_string()],
                vec!["hugetlb".to_string()],
            ]
        );
    }

    #[test]
    fn half_of_a_pair_is_mounted_alone() {
        let plan = plan_mounts(&["net_prio".to_string()]);
        assert_eq!(plan, vec![vec!["net_prio".to_string()]]);
    }

    #[test]
    fn finds_tracking_hierarchies() {
        let m = mounts::parse_mounts(
            "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n\
             cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\n\
             cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n",
        );
        assert_eq!(
            host_cgroups(&m, "pg1"),
            [
                PathBuf::from("/sys/fs/cgroup/systemd/bosun-lab/pg1"),
                PathBuf::from("/sys/fs/cgroup/unified/bosun-lab/pg1")
            ]
        );
    }

    #[test]
    fn removes_plain_directory_trees() {
        let dir = std::env::temp_dir().join(format!("bosun-lab-cg-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b/c")).expect("mkdir");
        remove_cgroup_tree(&dir).expect("removed");
        assert!(!dir.exists());
        remove_cgroup_tree(&dir).expect("missing is fine");
    }
}
