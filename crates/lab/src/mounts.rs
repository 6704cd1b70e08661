//! Mount bookkeeping: reading /proc/mounts, mounting host overlays, and
//! unmounting before anything is deleted.
//!
//! Deleting a directory that still has something mounted below it would
//! delete *through* the mount (a debootstrap killed mid-way can leave the
//! machine's /proc or /dev bound into its target), so every recursive delete in
//! the lab goes through [`safe_remove_dir`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cmd;
use super::error::LabError;

/// Source name given to host overlays, so they are recognisable in /proc/mounts.
pub(crate) const OVERLAY_SOURCE: &str = "bosun-lab";

/// One line of /proc/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub source: String,
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub options: String,
}

/// /proc/mounts escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of /proc/mounts (or /proc/self/mounts).
pub(crate) fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let source = f.next()?;
            let mountpoint = f.next()?;
            let fstype = f.next()?;
            let options = f.next()?;
            Some(MountEntry {
                source: unescape(source),
                mountpoint: PathBuf::from(unescape(mountpoint)),
                fstype: fstype.to_string(),
                options: unescape(options),
            })
        })
        .collect()
}

/// The current mount table; an unreadable /proc/mounts is reported as empty
/// only by callers that cannot fail (leftover reporting), so this returns a Result.
pub(crate) fn read_mounts() -> Result<Vec<MountEntry>, LabError> {
    let text = std::fs::read_to_string("/proc/mounts")
        .map_err(|e| LabError::io("read", "/proc/mounts", e))?;
    Ok(parse_mounts(&text))
}

/// Mounts at or below `path`, deepest first (the order to unmount them in).
pub(crate) fn mounts_under(mounts: &[MountEntry], path: &Path) -> Vec<MountEntry> {
    let mut found: Vec<MountEntry> = mounts
        .iter()
        .filter(|m| m.mountpoint.starts_with(path))
        .cloned()
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.mountpoint.components().count()));
    found
}

/// The mount whose mountpoint is exactly `path` (the topmost if stacked).
pub(crate) fn mount_at<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    mounts.iter().rev().find(|m| m.mountpoint == path)
}

/// Whether an overlay mount uses exactly `lower` as its (single) lower dir.
pub(crate) fn overlay_has_lower(entry: &MountEntry, lower: &Path) -> bool {
    let want = format!("lowerdir={}", lower.display());
    entry.fstype == "overlay" && entry.options.split(',').any(|o| o == want)
}

/// Mounts an overlay with `lower` as the read-only image and `upper`/`work` as
/// the host's own disk.
pub(crate) async fn mount_overlay(
    lower: &Path,
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), LabError> {
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let target = target.to_string_lossy().into_owned();
    cmd::run(
        "mount",
        &["-t", "overlay", OVERLAY_SOURCE, "-o", &options, &target],
    )
    .await?;
    Ok(())
}

/// Unmounts `target`, retrying briefly while it is busy (processes of a
/// just-killed container may still be exiting), then detaching it lazily so
/// that teardown always makes progress. Returns whether the lazy path was needed.
pub(crate) async fn unmount(target: &Path) -> Result<bool, LabError> {
    let t = target.to_string_lossy().into_owned();
    let mut last = None;
    for _ in 0..10 {
        let out = cmd::run_unchecked("umount", &[t.as_str()]).await?;
        if out.success || mount_at(&read_mounts()?, target).is_none() {
            return Ok(false);
        }
        last = Some(out.stderr);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::warn!(target = %t, error = ?last, "umount kept failing; detaching lazily");
    cmd::run("umount", &["-l", t.as_str()]).await?;
    Ok(true)
}

/// Unmounts everything at or below `path`, deepest first.
pub(crate) async fn unmount_all_under(path: &Path) -> Result<Vec<PathBuf>, LabError> {
    let mut done = Vec::new();
    // Stacked mounts on one point appear once per layer; loop until clean.
    for _ in 0..5 {
        let found = mounts_under(&read_mounts()?, path);
        if found.is_empty() {
            return Ok(done);
        }
        for m in found {
            unmount(&m.mountpoint).await?;
            done.push(m.mountpoint);
        }
    }
    let left = mounts_under(&read_mounts()?, path);
    if left.is_empty() {
        Ok(done)
    } else {
        Err(LabError::Leftovers(
            left.iter()
                .map(|m| format!("mount {} on {}", m.fstype, m.mountpoint.display()))
                .collect(),
        ))
    }
}

/// Removes a directory tree, but only after everything mounted inside it is
/// gone; refuses otherwise. Missing directories are fine.
pub(crate) async fn safe_remove_dir(path: &Path) -> Result<(), LabError> {
    if !path.exists() {
        return Ok(());
    }
    unmount_all_under(path).await?;
    if !mounts_under(&read_mounts()?, path).is_empty() {
        return Err(LabError::Leftovers(vec![format!(
            "refusing to delete {} while something is mounted below it",
            path.display()
        )]));
    }
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LabError::io("delete", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
bosun-lab /var/lib/bosun/lab/hosts/pg1/root overlay rw,relatime,lowerdir=/var/lib/bosun/lab/base,upperdir=/var/lib/bosun/lab/hosts/pg1/upper,workdir=/var/lib/bosun/lab/hosts/pg1/work,uuid=on 0 0
proc /var/lib/bosun/lab/hosts/pg1/root/proc proc rw 0 0
tmpfs /tmp/with\\040space tmpfs rw 0 0
";

    #[test]
    fn parses_and_unescapes() {
        let m = parse_mounts(SAMPLE);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].fstype, "overlay");
        assert_eq!(m[3].mountpoint, PathBuf::from("/tmp/with space"));
    }

    #[test]
    fn under_is_component_wise_and_deepest_first() {
        let m = parse_mounts(SAMPLE);
        let under = mounts_under(&m, Path::new("/var/lib/bosun/lab/hosts"));
        assert_eq!(under.len(), 2);
        assert!(under[0].mountpoint.ends_with("proc"));
        // "/var/lib/bosun/lab/hosts/pg" is not a parent of ".../pg1".
        assert!(mounts_under(&m, Path::new("/var/lib/bosun/lab/hosts/pg")).is_empty());
    }

    #[test]
    fn overlay_lower_match() {
        let m = parse_mounts(SAMPLE);
        let e = mount_at(&m, Path::new("/var/lib/bosun/lab/hosts/pg1/root")).expect("mounted");
        assert!(overlay_has_lower(e, Path::new("/var/lib/bosun/lab/base")));
        assert!(!overlay_has_lower(
            e,
            Path::new("/var/lib/bosun/lab/base.old")
        ));
    }

    #[test]
    fn unescape_leaves_plain_backslashes() {
        assert_eq!(unescape("a\\b"), "a\\b");
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("end\\04"), "end\\04");
    }
}
