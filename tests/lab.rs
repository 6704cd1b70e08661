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
