//! The scratch space of `bosun secret edit`: a private directory that holds the plaintext
//! while the editor runs, and is gone afterwards whatever happened.
//!
//! The directory is created with mode 0700 and a random name, on a RAM-backed file system
//! when there is one (`$XDG_RUNTIME_DIR`, then `/dev/shm`, then the system temp dir), so
//! the plaintext does not reach a disk. The editor's own swap and backup files land beside
//! the file, inside it. It is removed when [`PrivateDir`] is dropped: on success, on an
//! editor failure, and on Ctrl-C (bosun outlives the signal while the editor runs, see
//! [`run_editor`]). Only SIGKILL or a power cut can leave it behind, and then only in a
//! tmpfs that is private to the user and emptied at logout or reboot.

use rand::Rng;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A directory only this user can enter, removed with everything in it by
/// [`PrivateDir::remove`] or on drop.
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Creates one under the first usable base (see the module docs).
    pub fn create() -> std::io::Result<PrivateDir> {
        let mut last = None;
        for base in bases() {
            if !base.is_dir() {
                continue;
            }
            for _ in 0..8 {
                let name = format!("bosun-edit-{:016x}", rand::thread_rng().gen::<u64>());
                let path = base.join(name);
                match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                    Ok(()) => return Ok(PrivateDir { path }),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        // Not writable (a read-only /dev/shm, say): try the next base.
                        last = Some(e);
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no writable directory for a private scratch space",
            )
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` to a new file `name` inside, readable by this user only.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let p = self.path.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(p)
    }
}

impl PrivateDir {
    /// Wipes and removes the directory now; the error says what is left behind (the
    /// caller tells the operator: it holds plaintext).
    pub fn remove(mut self) -> std::io::Result<()> {
        let r = self.wipe_and_remove();
        self.path = PathBuf::new();
        r
    }

    fn wipe_and_remove(&self) -> std::io::Result<()> {
        // Overwrite what is still there first: cheap for a small file, and it keeps the
        // plaintext out of a page that a later reader of the same tmpfs could get.
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for e in entries.flatten() {
                let p = e.path();
                if let Ok(m) = std::fs::symlink_metadata(&p) {
                    if m.is_file() && m.len() <= 16 << 20 {
                        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&p) {
                            let _ = f.write_all(&vec![0u8; m.len() as usize]);
                        }
                    }
                }
            }
        }
        std::fs::remove_dir_all(&self.path)
    }
}

impl Drop for PrivateDir {
    /// Removal on every other path out (a panic, say), silently: only [`PrivateDir::remove`]
    /// can report a failure.
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = self.wipe_and_remove();
        }
    }
}

fn bases() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if x.is_absolute() {
            v.push(x);
        }
    }
    v.push(PathBuf::from("/dev/shm"));
    v.push(std::env::temp_dir());
    v
}

/// How the editor run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum EditorOutcome {
    /// It exited 0: the file holds what the operator wants.
    Saved,
    /// It exited non-zero or could not start.
    Failed(String),
    /// It was ended by Ctrl-C (SIGINT), or bosun was told to stop (SIGTERM, SIGHUP).
    Interrupted,
}

/// Runs `$EDITOR` (default `vi`) on `file` and waits for it.
///
/// `$EDITOR` may carry arguments (`code --wait`), so it runs through `sh -c` as git does.
/// While it runs, bosun catches SIGINT, SIGTERM and SIGHUP instead of dying, so that the
/// caller always gets to remove the plaintext. Ctrl-C reaches the editor too (same terminal
/// process group); the editor decides: vi ignores it, a script dies of it. SIGTERM or SIGHUP
/// to bosun alone ends the editor.
pub async fn run_editor(file: &Path) -> EditorOutcome {
    use tokio::signal::unix::{signal, SignalKind};
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".into());
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return EditorOutcome::Failed("cannot install signal handlers".into());
    };
    let mut child = match tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$@\""))
        .arg("bosun-edit")
        .arg(file)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return EditorOutcome::Failed(format!("cannot start `{editor}`: {e}")),
    };
    let mut stopped = false;
    let status = loop {
        tokio::select! {
            st = child.wait() => break st,
            _ = int.recv() => {}
            _ = term.recv() => { stopped = true; let _ = child.start_kill(); }
            _ = hup.recv() => { stopped = true; let _ = child.start_kill(); }
        }
    };
    if stopped {
        return EditorOutcome::Interrupted;
    }
    match status {
        Ok(s) if s.success() => EditorOutcome::Saved,
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            match s.signal() {
                Some(libc::SIGINT) | Some(libc::SIGTERM) | Some(libc::SIGHUP) => {
                    EditorOutcome::Interrupted
                }
                Some(sig) => EditorOutcome::Failed(format!("`{editor}` died of signal {sig}")),
                None => EditorOutcome::Failed(format!(
                    "`{editor}` exited with status {}",
                    s.code().unwrap_or(-1)
                )),
            }
        }
        Err(e) => EditorOutcome::Failed(format!("waiting for `{editor}`: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_dir_is_0700_and_gone_after_drop() {
        let d = PrivateDir::create().unwrap();
        let path = d.path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let f = d.write_file("x.yml", b"pw: hunter22\n").unwrap();
        let fmode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(fmode, 0o600);
        drop(d);
        assert!(!path.exists());
    }
}
