//! Jump hosts on the lab: the database hosts refuse SSH from the controller (a temporary
//! nftables table), and bosun reaches them through `lb` as a bastion.
//! Needs root and the lab (run with `--ignored`, like tests/lab.rs).
//!
//! Safety: the temporary table is removed at the end in every case (a guard), and its
//! block is a set element with a timeout, so even a killed test run leaves the database
//! hosts reachable again after [`BLOCK_SECS`].

mod common;
use bosun_model::inventory::Inventory;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PG: [&str; 3] = ["pg1", "pg2", "pg3"];
const TABLE: &str = "bosun_jump_test";
const MARKER: &str = "/tmp/bosun-jump-test";
/// How long the controller's address stays blocked at most, whatever happens to the test.
const BLOCK_SECS: u64 = 300;

/// `bosun exec --output json`: exit code and host → its JSON line.
fn exec(dir: &Path, inventory: &str, cmd: &str) -> (i32, BTreeMap<String, Value>) {
    let o = bosun(
        dir,
        &[
            "exec", "-i", inventory, "-l", "postgres", "--output", "json", "--", cmd,
        ],
    );
    let by_host = events(&o)
        .into_iter()
        .map(|e| (e["host"].as_str().unwrap_or_default().to_string(), e))
        .collect();
    (o.status.code().unwrap_or(-1), by_host)
}

/// Removes the temporary table and the marker from the database hosts when dropped:
/// through the bastion first, then directly (waiting, bounded, for the block to expire).
struct Cleanup {
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let cmd = format!("nft delete table inet {TABLE} 2>/dev/null; rm -f {MARKER}; true");
        let _ = exec(&self.dir, "jump.yml", &cmd);
        let deadline = Instant::now() + Duration::from_secs(BLOCK_SECS + 60);
        for h in PG {
            loop {
                let (rc, left) = lab_ssh(
                    h,
                    &format!(
                        "{cmd}; if nft list table inet {TABLE} >/dev/null 2>&1; then echo left; fi"
                    ),
                );
                if rc == 0 && left.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    eprintln!("lab_jump cleanup: {h} still unreachable or still has table {TABLE}");
                    break;
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The lab inventory's hosts with `jump` on the database hosts (or not), as YAML.
fn inventory(lab: &Inventory, known_hosts: &Path, jump: Option<&str>) -> String {
    let key = lab.hosts["pg1"]
        .identity_file
        .clone()
        .expect("the lab inventory names its key");
    let mut s = format!(
        "ssh:\n  user: root\n  identity_file: {}\n  known_hosts: {}\n  connect_timeout: 5\nhosts:\n",
        key.display(),
        known_hosts.display()
    );
    for h in ["lb"].iter().chain(PG.iter()) {
        let address = &lab.hosts[*h].address;
        match jump {
            Some(j) if h.starts_with("pg") => {
                s.push_str(&format!("  {h}: {{address: {address}, jump: \"{j}\"}}\n"))
            }
            _ => s.push_str(&format!("  {h}: {{address: {address}}}\n")),
        }
    }
    s.push_str("groups:\n  postgres: {hosts: [pg1, pg2, pg3]}\n");
    s
}

/// known_hosts text with every key of `addr` replaced by `other`'s key of the same type.
fn swap_keys(known_hosts: &str, addr: &str, other: &str) -> String {
    let names = |l: &str| -> Vec<String> {
        l.split_whitespace()
            .next()
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect()
    };
    let is = |l: &str, a: &str| names(l).iter().any(|n| n == a || *n == format!("[{a}]:22"));
    let other_key = |kind: &str| {
        known_hosts
            .lines()
            .filter(|l| is(l, other))
            .find(|l| l.split_whitespace().nth(1) == Some(kind))
            .and_then(|l| l.split_whitespace().nth(2))
            .map(str::to_string)
    };
    let mut out = String::new();
    let mut swapped = 0;
    for l in known_hosts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 3 && is(l, addr) {
            if let Some(k) = other_key(f[1]) {
                out.push_str(&format!("{} {} {k}\n", f[0], f[1]));
                swapped += 1;
                continue;
            }
        }
        out.push_str(l);
        out.push('\n');
    }
    assert!(swapped > 0, "no key of {addr} found to swap in known_hosts");
    out
}

#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn database_hosts_are_reached_through_lb_as_a_bastion() {
    let lab = Inventory::load(&repo().join("inventory/lab.yml")).expect("lab inventory");
    let lb = lab.hosts["lb"].address.clone();
    let dir = tempdir("lab-jump");
    let jump = format!("root@{lb}");
    write_tree(
        &dir,
        &[
            ("jump.yml", &inventory(&lab, &lab.known_hosts, Some(&jump))),
            ("direct.yml", &inventory(&lab, &lab.known_hosts, None)),
            (
                "bad-key.yml",
                &inventory(&lab, &dir.join("bad_known_hosts"), Some(&jump)),
            ),
            (
                "roles/site.yml",
                "- name: jump test\n  hosts: postgres\n  roles: [jumpmark]\n",
            ),
            (
                "roles/jumpmark/tasks.yml",
                &format!("- name: marker\n  copy: {{dest: {MARKER}, content: \"converged {{{{ inventory_hostname }}}}\\n\"}}\n"),
            ),
        ],
    );
    let known = std::fs::read_to_string(&lab.known_hosts).expect("lab known_hosts");
    std::fs::write(
        dir.join("bad_known_hosts"),
        swap_keys(&known, &lb, &lab.hosts["saleor"].address),
    )
    .expect("bad known_hosts");
    let _cleanup = Cleanup { dir: dir.clone() };

    // The controller's address as the database hosts see it (the bridge's, 10.20.0.1).
    let (rc, conn) = lab_ssh("pg1", "echo $SSH_CONNECTION");
    assert_eq!(rc, 0, "pg1 reachable before the test");
    let controller = conn
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        !controller.is_empty() && controller != lb,
        "controller address: {conn}"
    );

    // New SSH connections from the controller are dropped; lb's pass.
    let rules = format!(
        "nft -f - <<'EOF'\n\
         table inet {TABLE} {{\n\
           set blocked {{ type ipv4_addr; flags timeout; elements = {{ {controller} timeout {BLOCK_SECS}s }} }}\n\
           chain input {{\n\
             type filter hook input priority -10; policy accept;\n\
             ip saddr @blocked tcp dport 22 ct state new drop\n\
             ip saddr {lb} tcp dport 22 accept\n\
           }}\n\
         }}\n\
         EOF\n\
         nft list table inet {TABLE} >/dev/null && rm -f {MARKER} && echo installed"
    );
    for h in PG {
        let (rc, out) = lab_ssh(h, &rules);
        assert_eq!((rc, out.as_str()), (0, "installed"), "{h}: rules");
    }

    // Without the jump the database hosts are unreachable: the firewall is real.
    let (rc, direct) = exec(&dir, "direct.yml", "true");
    assert_eq!(rc, 1);
    for h in PG {
        let e = &direct[h];
        assert_eq!(e["unreachable"], true, "{h}: {e}");
        assert!(
            e["error"]
                .as_str()
                .unwrap_or_default()
                .contains("timed out"),
            "{h}: {e}"
        );
    }

    // Through lb: reachable, and the hosts see lb as the client.
    let (rc, via) = exec(&dir, "jump.yml", "echo $SSH_CONNECTION");
    assert_eq!(rc, 0, "{via:?}");
    for h in PG {
        let e = &via[h];
        assert_eq!(e["rc"], 0, "{h}: {e}");
        let client = e["stdout"].as_str().unwrap_or_default();
        assert!(client.starts_with(&format!("{lb} ")), "{h} saw {client}");
    }

    // A converge of a tiny play through lb.
    let o = bosun(&dir, &["converge", "-i", "jump.yml", "--output", "json"]);
    assert!(o.status.success(), "converge failed:\n{}", why(&o));
    let (rc, marks) = exec(&dir, "jump.yml", &format!("cat {MARKER}"));
    assert_eq!(rc, 0, "{marks:?}");
    for h in PG {
        assert_eq!(marks[h]["stdout"], format!("converged {h}\n"), "{h}");
    }

    // A changed key of lb is refused, naming it, and the database hosts are not touched.
    let (rc, _) = exec(&dir, "jump.yml", &format!("rm -f {MARKER}"));
    assert_eq!(rc, 0);
    for extra in [&[][..], &["--accept-new-host-keys"][..]] {
        let mut args = vec!["converge", "-i", "bad-key.yml", "--output", "json"];
        args.extend_from_slice(extra);
        let o = bosun(&dir, &args);
        assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
        let refused: Vec<String> = events(&o)
            .iter()
            .filter(|e| e["event"] == "host_unreachable")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(refused.len(), 3, "{refused:?}");
        for m in &refused {
            assert!(
                m.contains(&format!("via jump host root@{lb}")) && m.contains("CHANGED"),
                "{m}"
            );
        }
    }
    let (rc, marks) = exec(
        &dir,
        "jump.yml",
        &format!("test -e {MARKER} && echo touched || echo untouched"),
    );
    assert_eq!(rc, 0);
    for h in PG {
        assert_eq!(marks[h]["stdout"], "untouched\n", "{h}");
    }
}

#[test]
fn swap_keys_replaces_only_the_bastions_keys() {
    let kh = "10.0.0.1 ssh-ed25519 AAAlb\n10.0.0.1 ssh-rsa RRRlb\n10.0.0.2 ssh-ed25519 BBBx\n10.0.0.2 ssh-rsa SSSx\n";
    assert_eq!(
        swap_keys(kh, "10.0.0.1", "10.0.0.2"),
        "10.0.0.1 ssh-ed25519 BBBx\n10.0.0.1 ssh-rsa SSSx\n10.0.0.2 ssh-ed25519 BBBx\n10.0.0.2 ssh-rsa SSSx\n"
    );
}

#[test]
fn the_derived_inventories_load_with_the_jump_on_the_database_hosts_only() {
    let lab = Inventory::load(&repo().join("inventory/lab.yml")).expect("lab inventory");
    let jump = format!("root@{}", lab.hosts["lb"].address);
    let text = inventory(&lab, Path::new("/tmp/kh"), Some(&jump));
    let inv = Inventory::parse(Path::new("jump.yml"), &text).expect("jump.yml loads");
    assert_eq!(inv.hosts["lb"].jump, None);
    for h in PG {
        assert_eq!(
            inv.hosts[h].jump.as_ref().map(|j| j.as_str()),
            Some(jump.as_str()),
            "{h}"
        );
        assert_eq!(inv.hosts[h].address, lab.hosts[h].address);
    }
    let text = inventory(&lab, Path::new("/tmp/kh"), None);
    let inv = Inventory::parse(Path::new("direct.yml"), &text).expect("direct.yml loads");
    assert!(inv.hosts.values().all(|h| h.jump.is_none()));
}
