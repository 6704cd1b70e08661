//! Lab tests: real Debian 12 systemd hosts (systemd-nspawn) converged by the real binary.
//! They need root and the lab; `tests/run.sh` brings the lab up, runs them with
//! `--ignored`, then tears the lab down and checks nothing is left behind.

mod common;
use common::*;
use serde_json::Value;

const HOSTS: [&str; 7] = ["lb", "saleor", "storefront", "pg1", "pg2", "pg3", "etcd"];

fn recap(evs: &[Value]) -> Value {
    evs.iter()
        .find(|e| e["event"] == "recap")
        .cloned()
        .expect("recap")
}

#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn seven_hosts_converge_and_are_healthy() {
    let t0 = std::time::Instant::now();
    let (o, evs) = lab_converge(&[]);
    assert!(o.status.success(), "converge failed:\n{}", why(&o));
    println!(
        "first converge of the lab: {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    let r = recap(&evs);
    let hosts: Vec<&str> = r["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|h| h["host"].as_str())
        .collect();
    assert_eq!(hosts.len(), 7, "{r}");

    for h in HOSTS {
        let (rc, state) = lab_ssh(h, "systemctl is-system-running --wait");
        assert_eq!(
            (rc, state.as_str()),
            (0, "running"),
            "{h} is not cleanly running"
        );
        let (_, active) = lab_ssh(h, "systemctl is-active prometheus-node-exporter");
        assert_eq!(active, "active", "{h}: the base role's unit");
        let (_, hosts_file) = lab_ssh(h, "getent hosts pg2");
        assert!(
            hosts_file.starts_with("10.20.0.22"),
            "{h}: /etc/hosts from the template: {hosts_file}"
        );
    }

    let t0 = std::time::Instant::now();
    let (o, evs) = lab_converge(&[]);
    assert!(o.status.success(), "converge failed:\n{}", why(&o));
    println!(
        "no-op converge of the lab: {:.2}s",
        t0.elapsed().as_secs_f64()
    );
    let r = recap(&evs);
    assert_eq!(
        r["changed_tasks"],
        Value::Array(vec![]),
        "second converge changes nothing: {r}"
    );
    for h in r["hosts"].as_array().expect("hosts") {
        assert!(
            h["execs_per_play"]
                .as_array()
                .expect("per play")
                .iter()
                .all(|e| e == 1),
            "one exec per host per play: {h}"
        );
    }
}

#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn a_stopped_unit_is_started_again_and_reported() {
    let (o, _) = lab_converge(&["-l", "lb"]);
    assert!(o.status.success(), "converged first:\n{}", why(&o));
    let (rc, _) = lab_ssh("lb", "systemctl stop prometheus-node-exporter");
    assert_eq!(rc, 0);
    let (o, evs) = lab_converge(&["-l", "lb"]);
    assert!(o.status.success(), "converge failed:\n{}", why(&o));
    let changed: Vec<&Value> = evs
        .iter()
        .filter(|e| e["event"] == "task" && e["status"] == "changed")
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["task"], "node exporter runs");
    let (_, active) = lab_ssh("lb", "systemctl is-active prometheus-node-exporter");
    assert_eq!(active, "active");
}

#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn plan_on_the_lab_shows_a_hand_edit() {
    let (o, _) = lab_converge(&["-l", "lb"]);
    assert!(o.status.success(), "converged first:\n{}", why(&o));
    let (rc, _) = lab_ssh("lb", "echo 'edited by hand' > /etc/motd");
    assert_eq!(rc, 0);
    let o = bosun(&repo(), &["plan", "-i", "inventory/lab.yml", "-l", "lb"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("-edited by hand"), "{out}");
    let (_, motd) = lab_ssh("lb", "cat /etc/motd");
    assert_eq!(motd, "edited by hand", "plan changed nothing");
    let (o, _) = lab_converge(&["-l", "lb"]);
    assert!(o.status.success(), "converge failed:\n{}", why(&o));
    let (_, motd) = lab_ssh("lb", "cat /etc/motd");
    assert!(motd.contains("managed by bosun"), "{motd}");
}

/// Removes the sudo test's account, sudoers entry and file from the host when dropped.
struct BecomeCleanup {
    host: &'static str,
    dir: std::path::PathBuf,
}

impl Drop for BecomeCleanup {
    fn drop(&mut self) {
        let _ = lab_ssh(
            self.host,
            "rm -f /etc/sudoers.d/bosun-op /root/bosun-become-test; userdel -r bosun-op 2>/dev/null; true",
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `become` over real SSH and a real sudo that asks a password: the inventory's
/// `become_password` secret reaches sudo (on its input, never a command line), a task's
/// `become_user` runs as that account, and the password is nowhere in the output. A wrong
/// password and a missing one fail with what to check.
#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn sudo_with_a_password_and_become_user_over_ssh() {
    use bosun_model::inventory::Inventory;
    let host = "lb";
    let lab = Inventory::load(&repo().join("inventory/lab.yml")).expect("lab inventory");
    let key = lab.hosts[host]
        .identity_file
        .clone()
        .expect("the lab inventory names its key");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("the lab's public key");
    let password = format!("pw-{}-sudo", std::process::id());
    let dir = tempdir("lab-become");
    let _cleanup = BecomeCleanup {
        host,
        dir: dir.clone(),
    };

    // An account that may sudo only with its password, and logs in with the lab's key.
    let (rc, out) = lab_ssh(
        host,
        &format!(
            "set -e; command -v sudo >/dev/null\n\
             id bosun-op >/dev/null 2>&1 || useradd -m -s /bin/sh bosun-op\n\
             echo 'bosun-op:{password}' | chpasswd\n\
             echo 'bosun-op ALL=(ALL:ALL) ALL' > /etc/sudoers.d/bosun-op; chmod 0440 /etc/sudoers.d/bosun-op\n\
             install -d -m 0700 -o bosun-op -g bosun-op ~bosun-op/.ssh\n\
             echo '{}' > ~bosun-op/.ssh/authorized_keys; chown bosun-op: ~bosun-op/.ssh/authorized_keys\n\
             rm -f /root/bosun-become-test\n\
             if runuser -u bosun-op -- sudo -n true 2>/dev/null; then echo 'sudo asks nothing'; else echo ready; fi",
            public.trim()
        ),
    );
    assert_eq!((rc, out.as_str()), (0, "ready"), "account set up");

    let inventory = |secret: &str| {
        format!(
            "ssh:\n  user: bosun-op\n  identity_file: {}\n  known_hosts: {}\n  connect_timeout: 5\n  become: true\n\
             hosts:\n  {host}:\n    address: {}\n{secret}",
            key.display(),
            lab.known_hosts.display(),
            lab.hosts[host].address,
        )
    };
    write_tree(
        &dir,
        &[
            (
                "right.yml",
                &inventory(&format!("    secrets: {{become_password: \"{password}\"}}\n")),
            ),
            (
                "wrong.yml",
                &inventory("    secrets: {become_password: \"not-the-password\"}\n"),
            ),
            ("none.yml", &inventory("")),
            (
                "roles/site.yml",
                "- name: become test\n  hosts: all\n  roles: [becometest]\n",
            ),
            (
                "roles/becometest/tasks.yml",
                "- name: a file only root may write\n  copy: {dest: /root/bosun-become-test, content: \"written as root\\n\", mode: \"0600\"}\n\
                 - name: as another account\n  command: id -un\n  become_user: nobody\n  register: who\n\
                 - name: that account ran it\n  assert: {that: [\"who.stdout == 'nobody'\"]}\n",
            ),
        ],
    );
    let converge = |inv: &str| {
        bosun(
            &dir,
            &["converge", "-i", inv, "--output", "json", "roles/site.yml"],
        )
    };

    let o = converge("right.yml");
    assert!(
        o.status.success(),
        "converge with the password:\n{}",
        why(&o)
    );
    let (out, err) = text(&o);
    assert!(
        !out.contains(&password) && !err.contains(&password),
        "the password reached the output"
    );
    let (rc, file) = lab_ssh(
        host,
        "stat -c '%U %a' /root/bosun-become-test && cat /root/bosun-become-test",
    );
    assert_eq!((rc, file.as_str()), (0, "root 600\nwritten as root"));

    for (inv, hint) in [
        ("wrong.yml", "check the host's become_password secret"),
        ("none.yml", "become_password"),
    ] {
        let o = converge(inv);
        assert!(
            !o.status.success(),
            "{inv}: converged without the right password"
        );
        let (out, err) = text(&o);
        let all = format!("{out}{err}");
        assert!(all.contains(hint), "{inv}: {}", why(&o));
        assert!(
            !all.contains("not-the-password"),
            "{inv}: the wrong password was shown"
        );
    }
}

/// The `reboot` module on a real host: the host goes down and comes back (the lab boots a
/// rebooted host again, as a machine does), bosun waits for a new boot and goes on over a
/// new connection, and a task after it sees the new boot.
#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn a_reboot_task_waits_for_the_host_and_the_play_goes_on() {
    let dir = tempdir("lab-reboot");
    write_tree(
        &dir,
        &[
            (
                "roles/site.yml",
                "- name: reboot test\n  hosts: storefront\n  roles: [rebooter]\n",
            ),
            (
                "roles/rebooter/tasks.yml",
                "- name: boot before\n  command: cat /proc/sys/kernel/random/boot_id\n  register: before\n  changed_when: false\n\
                 - name: reboot\n  reboot: {reboot_timeout: 180}\n\
                 - name: boot after\n  command: cat /proc/sys/kernel/random/boot_id\n  register: after\n  changed_when: false\n\
                 - name: a new boot\n  assert: {that: [\"before.stdout != after.stdout\"]}\n\
                 - name: written after the reboot\n  copy: {dest: /root/bosun-after-reboot, content: \"{{ after.stdout }}\\n\"}\n",
            ),
        ],
    );
    let inventory = repo().join("inventory/lab.yml");
    let o = bosun(
        &dir,
        &[
            "converge",
            "-i",
            &inventory.display().to_string(),
            "--output",
            "json",
            "roles/site.yml",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(o.status.success(), "converge with a reboot:\n{}", why(&o));
    let evs = events(&o);
    let reboot = evs
        .iter()
        .find(|e| e["event"] == "task" && e["task"] == "reboot")
        .expect("the reboot task's event");
    assert_eq!(reboot["status"], "changed", "{reboot}");
    let (rc, written) = lab_ssh(
        "storefront",
        "cat /root/bosun-after-reboot && cat /proc/sys/kernel/random/boot_id && rm -f /root/bosun-after-reboot",
    );
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(rc, 0);
    assert!(
        lines.len() == 2 && lines[0] == lines[1],
        "the file names the boot the host runs now: {written}"
    );
    println!(
        "DRILL reboot: storefront back and the play went on: {}",
        reboot["message"].as_str().unwrap_or_default()
    );
    // The host booted as a whole: systemd reached its target again.
    let (_, state) = lab_ssh(
        "storefront",
        "timeout 120 systemctl is-system-running --wait",
    );
    assert_eq!(state, "running", "storefront after the reboot");
}
