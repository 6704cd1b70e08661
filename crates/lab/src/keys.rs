//! SSH keys: the controller identity, each host's own host keys, and the lab's
//! known_hosts file so that bosun verifies host keys instead of ignoring them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::cmd;
use super::error::LabError;

/// Host key types `ssh-keygen -A` creates and sshd offers.
const HOST_KEY_TYPES: &[&str] = &["rsa", "ecdsa", "ed25519"];

/// A public key as it appears in known_hosts: type and base64 blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PubKey {
    pub kind: String,
    pub blob: String,
}

/// Parses `TYPE BASE64 [comment]`.
pub(crate) fn parse_pub_key(text: &str) -> Option<PubKey> {
    let mut f = text.split_whitespace();
    let kind = f.next()?;
    let blob = f.next()?;
    (kind.starts_with("ssh-") || kind.starts_with("ecdsa-")).then(|| PubKey {
        kind: kind.to_string(),
        blob: blob.to_string(),
    })
}

/// Creates the controller key pair once (`ssh-keygen -t ed25519 -N ''`) and
/// returns the public key line. Generated under a temporary name and renamed,
/// so an interrupted run never leaves half a key pair behind.
pub(crate) async fn ensure_identity(identity: &Path) -> Result<String, LabError> {
    let public = pub_path(identity);
    if !identity.exists() {
        let tmp = identity.with_extension("tmp");
        let tmp_pub = pub_path(&tmp);
        for p in [&tmp, &tmp_pub] {
            remove_if_exists(p).await?;
        }
        let tmp_s = tmp.to_string_lossy().into_owned();
        cmd::run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "bosun-lab",
                "-f",
                &tmp_s,
            ],
        )
        .await?;
        rename(&tmp_pub, &public).await?;
        rename(&tmp, identity).await?;
    } else if !public.exists() {
        let id = identity.to_string_lossy().into_owned();
        let out = cmd::run("ssh-keygen", &["-y", "-f", &id]).await?;
        write_atomic(&public, out.stdout.as_bytes()).await?;
    }
    let line = tokio::fs::read_to_string(&public)
        .await
        .map_err(|e| LabError::io("read", &public, e))?;
    Ok(line.trim().to_string())
}

fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

async fn remove_if_exists(p: &Path) -> Result<(), LabError> {
    match tokio::fs::remove_file(p).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LabError::io("delete", p, e)),
    }
}

async fn rename(from: &Path, to: &Path) -> Result<(), LabError> {
    tokio::fs::rename(from, to)
        .await
        .map_err(|e| LabError::io("rename", from, e))
}

/// Writes a file through a temporary sibling and a rename, so readers never
/// see a half-written file.
pub(crate) async fn write_atomic(path: &Path, content: &[u8]) -> Result<(), LabError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    tokio::fs::write(&tmp, content)
        .await
        .map_err(|e| LabError::io("write", &tmp, e))?;
    rename(&tmp, path).await
}

/// Gives a host root its own host keys if it lacks any (the base image has
/// none on purpose: every overlay would otherwise share one key), then returns
/// its public keys.
pub(crate) async fn ensure_host_keys(root: &Path) -> Result<Vec<PubKey>, LabError> {
    let ssh_dir = root.join("etc/ssh");
    let mut missing = false;
    for t in HOST_KEY_TYPES {
        let private = ssh_dir.join(format!("ssh_host_{t}_key"));
        let public = pub_path(&private);
        let non_empty = |p: &Path| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false);
        if non_empty(&private) && non_empty(&public) {
            continue;
        }
        // A key pair cut short by a killed run: regenerate it whole.
        remove_if_exists(&private).await?;
        remove_if_exists(&public).await?;
        missing = true;
    }
    if missing {
        tokio::fs::create_dir_all(&ssh_dir)
            .await
            .map_err(|e| LabError::io("create", &ssh_dir, e))?;
        let r = root.to_string_lossy().into_owned();
        cmd::run("ssh-keygen", &["-A", "-f", &r]).await?;
    }
    read_host_keys(root).await
}

/// The public host keys present in a host root.
pub(crate) async fn read_host_keys(root: &Path) -> Result<Vec<PubKey>, LabError> {
    let mut keys = Vec::new();
    for t in HOST_KEY_TYPES {
        let p = root.join(format!("etc/ssh/ssh_host_{t}_key.pub"));
        match tokio::fs::read_to_string(&p).await {
            Ok(text) => keys.extend(parse_pub_key(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io("read", &p, e)),
        }
    }
    Ok(keys)
}

/// Whether a known_hosts host-pattern field names `addr` on port 22.
fn names_address(hosts_field: &str, addr: &str) -> bool {
    let bracketed = format!("[{addr}]:22");
    hosts_field.split(',').any(|h| h == addr || h == bracketed)
}

/// Rewrites known_hosts text: drops every line for an address in `replace`
/// (stale keys of a re-created host) and appends the new `ADDRESS TYPE BASE64`
/// lines. Comments, hashed entries and unrelated hosts are kept as they were.
pub(crate) fn rewrite_known_hosts(existing: &str, replace: &[(Ipv4Addr, Vec<PubKey>)]) -> String {
    let addrs: Vec<String> = replace.iter().map(|(a, _)| a.to_string()).collect();
    let mut out = String::new();
    for line in existing.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        let stale = !first.starts_with('#')
            && !first.starts_with('@')
            && addrs.iter().any(|a| names_address(first, a));
        if !stale {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (addr, keys) in replace {
        for k in keys {
            out.push_str(&format!("{addr} {} {}\n", k.kind, k.blob));
        }
    }
    out
}

/// Applies [`rewrite_known_hosts`] to the file at `path` atomically.
pub(crate) async fn update_known_hosts(
    path: &Path,
    replace: &[(Ipv4Addr, Vec<PubKey>)],
) -> Result<(), LabError> {
    let existing = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(LabError::io("read", path, e)),
    };
    write_atomic(path, rewrite_known_hosts(&existing, replace).as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &str, blob: &str) -> PubKey {
        PubKey {
            kind: kind.into(),
            blob: blob.into(),
        }
    }

    #[test]
    fn parses_pub_keys() {
        assert_eq!(
            parse_pub_key("ssh-ed25519 AAAAC3Nz root@vm\n"),
            Some(key("ssh-ed25519", "AAAAC3Nz"))
        );
        assert_eq!(
            parse_pub_key("ecdsa-sha2-nistp256 AAAAE2 x"),
            Some(key("ecdsa-sha2-nistp256", "AAAAE2"))
        );
        assert_eq!(parse_pub_key("garbage"), None);
        assert_eq!(parse_pub_key(""), None);
    }

    #[test]
    fn replaces_stale_lines_and_keeps_others() {
        let existing = "\
# lab known hosts
10.20.0.11 ssh-ed25519 OLD1
10.20.0.11 ssh-rsa OLD2
[10.20.0.11]:22 ssh-rsa OLD3
10.20.0.111 ssh-ed25519 KEEP1
10.20.0.12 ssh-ed25519 KEEP2
|1|hashed= ssh-ed25519 KEEP3
";
        let new = rewrite_known_hosts(
            existing,
            &[(
                Ipv4Addr::new(10, 20, 0, 11),
                vec![key("ssh-ed25519", "NEW1"), key("ssh-rsa", "NEW2")],
            )],
        );
        assert_eq!(
            new,
            "\
# lab known hosts
10.20.0.111 ssh-ed25519 KEEP1
10.20.0.12 ssh-ed25519 KEEP2
|1|hashed= ssh-ed25519 KEEP3
10.20.0.11 ssh-ed25519 NEW1
10.20.0.11 ssh-rsa NEW2
"
        );
    }

    #[test]
    fn rewriting_twice_is_stable() {
        let upd = [(Ipv4Addr::new(10, 20, 0, 21), vec![key("ssh-ed25519", "K")])];
        let once = rewrite_known_hosts("", &upd);
        assert_eq!(rewrite_known_hosts(&once, &upd), once);
        assert_eq!(once, "10.20.0.21 ssh-ed25519 K\n");
    }

    #[test]
    fn pub_path_appends_suffix() {
        assert_eq!(
            pub_path(Path::new("/s/id_ed25519")),
            PathBuf::from("/s/id_ed25519.pub")
        );
    }
}
