//! A lock file so two lab commands (say `up` from CI and a manual `down`)
//! cannot interleave mounts and kills. The file holds the owner's pid and
//! start time; a lock whose owner is gone (killed session) is taken over.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::LabError;
use super::procs;

/// Held while a lab command changes the lab; released on drop.
#[derive(Debug)]
pub(crate) struct LabLock {
    path: PathBuf,
}

fn owner_line() -> String {
    let pid = std::process::id();
    format!("{pid} {}\n", procs::start_time(pid).unwrap_or(0))
}

/// Whether the lock content names a process that still exists (same pid and
/// same start time, so a reused pid does not count).
fn owner_alive(content: &str) -> Option<u32> {
    let mut f = content.split_whitespace();
    let pid: u32 = f.next()?.parse().ok()?;
    let start: u64 = f.next()?.parse().ok()?;
    (procs::is_alive(pid) && procs::start_time(pid) == Some(start)).then_some(pid)
}

impl LabLock {
    pub fn acquire(path: &Path) -> Result<LabLock, LabError> {
        for _ in 0..3 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    f.write_all(owner_line().as_bytes())
                        .map_err(|e| LabError::io("write", path, e))?;
                    return Ok(LabLock {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let content = std::fs::read_to_string(path).unwrap_or_default();
                    if let Some(pid) = owner_alive(&content) {
                        return Err(LabError::Busy {
                            pid,
                            path: path.to_path_buf(),
                        });
                    }
                    tracing::info!(lock = %path.display(), "taking over stale lab lock");
                    match std::fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(LabError::io("delete stale lock", path, e)),
                    }
                }
                Err(e) => return Err(LabError::io("create", path, e)),
            }
        }
        Err(LabError::Busy {
            pid: 0,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for LabLock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(lock = %self.path.display(), error = %e, "could not remove lab lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_in_same_process_is_busy_and_release_frees() {
        let dir = std::env::temp_dir().join(format!("bosun-lab-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("lock");
        let first = LabLock::acquire(&path).expect("first");
        assert!(matches!(
            LabLock::acquire(&path),
            Err(LabError::Busy { .. })
        ));
        drop(first);
        let again = LabLock::acquire(&path).expect("again");
        drop(again);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn stale_owner_is_not_alive() {
        assert_eq!(owner_alive("999999999 1"), None);
        assert_eq!(owner_alive("garbage"), None);
        assert_eq!(owner_alive(&owner_line()), Some(std::process::id()));
    }
}
