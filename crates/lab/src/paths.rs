//! Layout of the lab's state directory.
//!
//! ```text
//! <state>/base/                 cached Debian 12 image (lower dir of every host)
//! <state>/base-debian-13/       cached Debian 13 image (the same, for `--os debian-13`)
//! <state>/base.partial/         a base being built; deleted if found at start
//! <state>/base.old/             the previous base while it is being replaced
//! <state>/hosts/NAME/upper/     the host's disk (overlay upper dir)
//! <state>/hosts/NAME/work/      overlay work dir
//! <state>/hosts/NAME/root/      the mounted overlay the container boots from
//! <state>/hosts/NAME/console.log, nspawn.pid, base-stamp
//! <state>/id_ed25519(.pub)      controller identity
//! <state>/known_hosts           host keys of the lab hosts
//! <state>/lock                  held by the command currently changing the lab
//! <state>/ip_forward.restore    forwarding setting to restore on `down`
//! ```

use std::path::{Path, PathBuf};

use super::config::{LabConfig, LabOs};

/// Absolute paths of the lab's state. The state dir is canonicalised when it
/// exists, because /proc/mounts and command lines show resolved paths and the
/// lab finds its mounts and processes by comparing against them.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub state: PathBuf,
    pub base: PathBuf,
    pub base_partial: PathBuf,
    pub base_old: PathBuf,
    pub hosts: PathBuf,
    pub known_hosts: PathBuf,
    pub identity: PathBuf,
    pub lock: PathBuf,
    pub forward_restore: PathBuf,
}

/// Paths of one host.
#[derive(Debug, Clone)]
pub(crate) struct HostPaths {
    pub dir: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub root: PathBuf,
    pub console: PathBuf,
    pub pid_file: PathBuf,
    pub base_stamp: PathBuf,
}

/// Canonical form of the state dir, falling back to an absolute path when it
/// does not exist (yet).
pub(crate) fn resolve_state_dir(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf())
}

impl Paths {
    pub fn new(cfg: &LabConfig) -> Paths {
        Self::for_os(resolve_state_dir(&cfg.state_dir), cfg.os)
    }

    /// The paths with the base image of `os` (Debian 12 keeps the plain `base` name).
    pub fn for_os(state: PathBuf, os: LabOs) -> Paths {
        let base = match os {
            LabOs::Debian12 => "base".to_string(),
            other => format!("base-{}", other.name()),
        };
        Paths {
            base_partial: state.join(format!("{base}.partial")),
            base_old: state.join(format!("{base}.old")),
            base: state.join(base),
            hosts: state.join("hosts"),
            known_hosts: state.join("known_hosts"),
            identity: state.join("id_ed25519"),
            lock: state.join("lock"),
            forward_restore: state.join("ip_forward.restore"),
            state,
        }
    }

    pub fn host(&self, name: &str) -> HostPaths {
        let dir = self.hosts.join(name);
        HostPaths {
            upper: dir.join("upper"),
            work: dir.join("work"),
            root: dir.join("root"),
            console: dir.join("console.log"),
            pid_file: dir.join("nspawn.pid"),
            base_stamp: dir.join("base-stamp"),
            dir,
        }
    }

    /// Names of the host directories present on disk (hosts of an earlier,
    /// possibly bigger, config included).
    pub fn host_dirs(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.hosts) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let p = Paths::for_os(PathBuf::from("/var/lib/bosun/lab"), LabOs::Debian12);
        assert_eq!(p.base, PathBuf::from("/var/lib/bosun/lab/base"));
        let p13 = Paths::for_os(PathBuf::from("/var/lib/bosun/lab"), LabOs::Debian13);
        assert_eq!(p13.base, PathBuf::from("/var/lib/bosun/lab/base-debian-13"));
        assert_eq!(
            p13.base_partial,
            PathBuf::from("/var/lib/bosun/lab/base-debian-13.partial")
        );
        let h = p.host("pg1");
        assert_eq!(h.root, PathBuf::from("/var/lib/bosun/lab/hosts/pg1/root"));
        assert_eq!(h.upper, PathBuf::from("/var/lib/bosun/lab/hosts/pg1/upper"));
        assert_eq!(
            p.known_hosts,
            PathBuf::from("/var/lib/bosun/lab/known_hosts")
        );
    }

    #[test]
    fn relative_state_dir_becomes_absolute() {
        assert!(resolve_state_dir(Path::new("does/not/exist")).is_absolute());
    }
}
