//! Run last by tests/run.sh: `bosun lab down` must leave no nspawn process, overlay mount,
//! bridge, route or NAT rule behind — checked here against the machine itself, not only
//! against the lab's own bookkeeping.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[ignore = "needs root and the lab: run by tests/run.sh after the lab tests"]
fn lab_down_leaves_nothing_behind() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let o = bosun(&repo, &["lab", "down"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = bosun(&repo, &["lab", "leftovers"]);
    assert!(
        o.status.success(),
        "the lab reports leftovers: {:?}",
        text(&o)
    );

    // Zombies (state Z) hold no resources: PID 1 of this machine reaps them a moment later.
    assert_eq!(
        sh("ps -eo stat=,args= | awk '$1 !~ /^Z/ && /systemd-nspawn/ && !/awk/' || true").trim(),
        "",
        "no nspawn process"
    );
    assert_eq!(
        sh("grep ' /var/lib/bosun/lab' /proc/mounts || true").trim(),
        "",
        "no overlay mount"
    );
    assert_eq!(
        sh("ip -o link show bosun0 2>/dev/null || true").trim(),
        "",
        "no bridge"
    );
    assert_eq!(
        sh("ip route show 10.20.0.0/24 || true").trim(),
        "",
        "no route"
    );
    assert_eq!(
        sh("iptables -S 2>/dev/null | grep bosun-lab || true").trim(),
        "",
        "no filter rule"
    );
    assert_eq!(
        sh("iptables -t nat -S 2>/dev/null | grep bosun-lab || true").trim(),
        "",
        "no NAT rule"
    );
}
