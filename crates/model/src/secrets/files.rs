//! Local file writes: temp file beside the target, then rename, so a reader (or a crash)
//! never sees half a file.

use super::error::SecretError;
use rand::Rng;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temp file in the same directory and a rename.
///
/// `mode`: the permission bits of the result. `None` keeps those of the file being
/// replaced, or the umask's default for a new file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), SecretError> {
    let err = |source| SecretError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mode = mode.or_else(|| {
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    });
    let suffix: u64 = rand::thread_rng().gen();
    let tmp = dir.join(format!(".{name}.bosun-{suffix:016x}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    // Created with the final mode (or stricter), so a secret is never briefly readable.
    opts.mode(mode.unwrap_or(0o666));
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        if let Some(m) = mode {
            // The umask may have narrowed it; the caller asked for exactly `m`.
            f.set_permissions(std::fs::Permissions::from_mode(m))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_the_mode_asked_and_keeps_an_existing_mode() {
        let dir = std::env::temp_dir().join(format!("bosun-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("out");
        write_atomic(&f, b"one", Some(0o600)).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"one");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&f), 0o600);
        write_atomic(&f, b"two", None).unwrap();
        assert_eq!(mode(&f), 0o600, "replacing keeps the mode");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temp left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
