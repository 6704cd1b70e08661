//! Deadlines: a step that overstays `timeout`, `task_timeout` or `probe_timeout` is killed
//! with its process group, and its task fails saying why.

use super::harness::*;
use crate::event::Status;
use crate::fake::{Fault, On};
use crate::remote::Killed;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_task_over_its_timeout_is_killed_and_fails() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: slow\n  shell: \"sleep 30; touch {{ root }}/late\"\n  timeout: 0.5\n\
             - name: after\n  file: {path: \"{{ root }}/after\", state: directory}\n",
        )],
    );
    let t0 = Instant::now();
    let o = p.converge().await;
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    let r = o.task("h1", "slow");
    assert_eq!(r.status, Status::Failed, "{}", o.dump());
    let msg = r.message.clone().unwrap_or_default();
    assert!(msg.contains("did not finish within 0.5 s"), "{msg}");
    assert!(msg.contains("`task_timeout`"), "{msg}");
    let execs = p.host("h1").execs();
    assert_eq!(
        execs.last().and_then(|e| e.killed()),
        Some(Killed::Deadline)
    );
    assert!(!p.exists("h1", "late") && !p.exists("h1", "after"));
    // The killed script's scratch directory was cleaned up.
    assert_eq!(p.host("h1").cleanups().len(), 1);
    let left: Vec<_> = std::fs::read_dir(p.root("h1").join(".fake/scratch"))
        .expect("tmp")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_play_task_timeout_applies_to_tasks_without_their_own() {
    let p = Project::new(
        &["h1"],
        &[
            tasks(
                "- name: slow\n  shell: \"sleep 30\"\n\
                 - name: own timeout\n  shell: \"true\"\n  timeout: 60\n",
            ),
            (
                "roles/site.yml",
                "- name: web\n  hosts: web\n  task_timeout: 0.5\n  roles: [main]\n",
            ),
        ],
    );
    let o = p.converge().await;
    let r = o.task("h1", "slow");
    assert_eq!(r.status, Status::Failed, "{}", o.dump());
    assert!(r
        .message
        .as_deref()
        .is_some_and(|m| m.contains("within 0.5 s")));
}

#[tokio::test]
async fn a_probe_over_probe_timeout_is_killed() {
    let p = Project::with_inventory(
        &["h1", "h2"],
        "probe_timeout: 2",
        &[tasks(
            "- name: hung guard\n  shell: {cmd: \"touch {{ root }}/ran\", unless: \"test {{ inventory_hostname }} = h2 || sleep 30\"}\n",
        )],
    );
    let o = p.converge().await;
    let r = o.task("h1", "hung guard");
    assert_eq!(r.status, Status::Failed, "{}", o.dump());
    let msg = r.message.clone().unwrap_or_default();
    assert!(
        msg.starts_with("the probe did not finish within 2 s"),
        "{msg}"
    );
    assert!(msg.contains("`probe_timeout`"), "{msg}");
    assert!(!p.exists("h1", "ran"));
    assert_eq!(p.host("h1").execs()[0].killed(), Some(Killed::Deadline));
    assert_eq!(o.status("h2", "hung guard"), Status::Ok, "h2's guard held");
}

#[tokio::test]
async fn a_task_timeout_shorter_than_probe_timeout_bounds_the_probe() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: hung guard\n  shell: {cmd: \"true\", unless: \"sleep 30\"}\n  timeout: 0.5\n",
        )],
    );
    let o = p.converge().await;
    let msg = o
        .task("h1", "hung guard")
        .message
        .clone()
        .unwrap_or_default();
    assert!(msg.contains("within 0.5 s"), "{msg}\n{}", o.dump());
}

#[tokio::test]
async fn a_host_stalling_its_first_script_overstays_the_facts_deadline() {
    // Facts run in the background of the first probe script, timed from its start: a host
    // that stalls before the script's first line overstays their deadline.
    let p = Project::with_inventory(
        &["h1", "h2"],
        "probe_timeout: 2",
        &[tasks(
            "- name: guarded\n  command: {cmd: \"touch {{ root }}/ran\", creates: \"{{ root }}/ran\"}\n",
        )],
    );
    p.host("h1")
        .fault(On::Exec(1), Fault::Stall(Duration::from_secs(30)));
    let t0 = Instant::now();
    let o = p.converge().await;
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(p.host("h1").execs()[0].killed(), Some(Killed::Deadline));
    let r = o.task("h1", "guarded");
    assert_eq!(r.status, Status::Failed, "{}", o.dump());
    assert_eq!(
        r.message.as_deref(),
        Some("the probe was stopped with a step that overstayed its deadline")
    );
    assert_eq!(p.host("h1").exec_count(), 1);
    assert!(!p.exists("h1", "ran"));
    assert!(p.exists("h2", "ran"));
}

#[tokio::test]
async fn path_probes_lost_with_a_killed_script_are_probed_again_one_by_one() {
    let p = Project::with_inventory(
        &["h1"],
        "probe_timeout: 2",
        &[tasks(
            "- name: d\n  file: {path: \"{{ root }}/d\", state: directory}\n",
        )],
    );
    p.host("h1")
        .fault(On::Exec(1), Fault::Stall(Duration::from_secs(30)));
    let o = p.converge().await;
    let execs = p.host("h1").execs();
    assert_eq!(execs[0].killed(), Some(Killed::Deadline));
    // Read-only path probes are simply run again; the change goes through.
    assert_eq!(o.status("h1", "d"), Status::Changed, "{}", o.dump());
    assert_eq!(execs.len(), 3);
    assert!(p.exists("h1", "d"));
}
