//! Host key verification end to end: the real `bosun` binary against a real OpenSSH sshd
//! on loopback (its host key is ed25519), with known_hosts files that record another
//! algorithm, revoke the key, or hash the name.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Project {
    dir: PathBuf,
    sshd: Sshd,
}

impl Project {
    fn new() -> Project {
        let sshd = Sshd::start(1);
        let dir = tempdir("hostkeys");
        let inv = format!(
            "ssh:\n  user: root\n  port: {port}\n  identity_file: {key}\n  known_hosts: known_hosts\n  connect_timeout: 10\n\
             hosts:\n  h1: {{address: 127.0.0.2}}\n",
            port = sshd.port,
            key = sshd.client_key.display(),
        );
        write_tree(&dir, &[("inventory.yml", &inv)]);
        Project { dir, sshd }
    }

    fn known_hosts_path(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    fn set_known_hosts(&self, text: &str) {
        std::fs::write(self.known_hosts_path(), text).expect("known_hosts");
    }

    fn known_hosts(&self) -> String {
        std::fs::read_to_string(self.known_hosts_path()).expect("read known_hosts")
    }

    /// `bosun exec ... -- true`: exit code and stdout (where unreachable hosts are reported).
    fn connect(&self, extra: &[&str]) -> (Option<i32>, String) {
        let mut args = vec!["exec", "-i", "inventory.yml", "-l", "all"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "true"]);
        let o = bosun(&self.dir, &args);
        let (out, err) = text(&o);
        (o.status.code(), format!("{out}{err}"))
    }

    /// `[127.0.0.2]:PORT`, the name known_hosts knows the host by.
    fn name(&self) -> String {
        format!("[127.0.0.2]:{}", self.sshd.port)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh public key of `kind` (`TYPE BASE64`).
fn other_key(dir: &Path, kind: &str) -> String {
    let path = dir.join(format!("other_{kind}"));
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "", "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_key_of_another_algorithm_than_the_recorded_one_is_a_changed_key() {
    let p = Project::new();
    let ecdsa = other_key(&p.dir, "ecdsa");
    // Line 2 records an ecdsa key; the server offers its ed25519 key.
    let kh = format!(
        "# recorded when the host had an ecdsa key\n{} {ecdsa}\n",
        p.name()
    );
    p.set_known_hosts(&kh);
    let (code, out) = p.connect(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("CHANGED"), "{out}");
    assert!(out.contains("ecdsa-sha2-nistp256 (line 2)"), "{out}");
    assert!(out.contains("ssh-ed25519 SHA256:"), "{out}");
    assert!(out.contains("known_hosts:2"), "{out}");
    assert!(
        out.contains(&format!("ssh-keygen -R '{}'", p.name())),
        "{out}"
    );

    // Learning applies only to hosts with no line at all: still refused, nothing recorded.
    let (code, out) = p.connect(&["--accept-new-host-keys"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("CHANGED"), "{out}");
    assert_eq!(p.known_hosts(), kh, "known_hosts untouched");

    // With the server's real key recorded as well, the host is known.
    p.set_known_hosts(&format!("{kh}{}", p.sshd.known_hosts()));
    let (code, out) = p.connect(&[]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn a_revoked_key_is_refused_even_when_it_is_also_recorded() {
    let p = Project::new();
    let good = p.sshd.known_hosts();
    p.set_known_hosts(&good);
    let (code, out) = p.connect(&[]);
    assert_eq!(code, Some(0), "the recorded key is accepted: {out}");

    let kh = format!("{good}@revoked {} {}\n", p.name(), p.sshd.host_pub);
    p.set_known_hosts(&kh);
    for extra in [&[][..], &["--accept-new-host-keys"][..]] {
        let (code, out) = p.connect(extra);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("REVOKED"), "{out}");
        assert!(out.contains("known_hosts:2"), "{out}");
    }
    // A wildcard revocation covers the host too.
    p.set_known_hosts(&format!("{good}@revoked * {}\n", p.sshd.host_pub));
    let (code, out) = p.connect(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("REVOKED"), "{out}");
    assert_eq!(p.known_hosts().lines().count(), 2, "nothing learned");
}

#[test]
fn hashed_names_are_matched_and_unknown_hosts_are_learned() {
    let p = Project::new();
    p.set_known_hosts(&p.sshd.known_hosts());
    let st = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(p.known_hosts_path())
        .output()
        .expect("ssh-keygen -H");
    assert!(st.status.success());
    let hashed = p.known_hosts();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    let (code, out) = p.connect(&[]);
    assert_eq!(code, Some(0), "a hashed line is matched: {out}");

    // A host with no line at all is unknown: refused, then learned on request.
    p.set_known_hosts("");
    let (code, out) = p.connect(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("is not in"), "{out}");
    let (code, out) = p.connect(&["--accept-new-host-keys"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(p.known_hosts().contains(&p.name()), "{}", p.known_hosts());
}
