//! Unreachable hosts and connections that break: the host drops out, the others carry on.

use super::harness::*;
use crate::event::Event;
use crate::fake::{Fault, On};

const TWO_ROUNDS: &str = "\
- name: write
  copy: {dest: \"{{ root }}/f\", content: \"one\\n\"}
- name: append
  lineinfile: {path: \"{{ root }}/f\", line: two}
";

#[tokio::test]
async fn an_unreachable_host_is_reported_and_the_others_carry_on() {
    let p = Project::new(&["h1", "h2"], &[tasks(TWO_ROUNDS)]);
    p.host("h1")
        .unreachable("cannot connect to 192.0.2.1:22: connection refused");
    let o = p.converge().await;
    assert_eq!(
        o.unreachable("h1").as_deref(),
        Some("cannot connect to 192.0.2.1:22: connection refused")
    );
    assert!(o.recap("h1").unreachable);
    assert!(!o.recap("h2").unreachable);
    assert_eq!(p.read("h2", "f"), "one\ntwo\n");
    assert_eq!(p.host("h1").exec_count(), 0);
    assert!(!o.reports().iter().any(|r| r.host == "h1"));
    assert!(o.summary.failed);
    // The unreachable host is never "connected".
    assert!(!o
        .events
        .iter()
        .any(|e| matches!(e, Event::HostConnected { host, .. } if host == "h1")));
}

#[tokio::test]
async fn an_unreachable_host_drops_out_of_later_plays() {
    let p = Project::new(
        &["h1", "h2"],
        &[
            tasks(TWO_ROUNDS),
            (
                "roles/site.yml",
                "- name: one\n  hosts: web\n  roles: [main]\n- name: two\n  hosts: web\n  roles: [main]\n",
            ),
        ],
    );
    p.host("h1").unreachable("no route to host");
    let o = p.converge().await;
    assert_eq!(o.play_hosts("two"), Some(vec!["h2".to_string()]));
    assert_eq!(p.host("h1").opens(), 1, "not tried again");
}

#[tokio::test]
async fn a_connection_that_breaks_before_the_apply_leaves_the_host_untouched() {
    let p = Project::new(&["h1", "h2"], &[tasks(TWO_ROUNDS)]);
    p.host("h1")
        .fault(On::Exec(2), Fault::Break("connection reset by peer".into()));
    let o = p.converge().await;
    assert_eq!(
        o.unreachable("h1").as_deref(),
        Some("h1: connection reset by peer"),
        "{}",
        o.dump()
    );
    assert!(o.recap("h1").unreachable);
    assert!(!p.exists("h1", "f"));
    assert_eq!(p.host("h1").exec_count(), 2, "nothing more is sent");
    assert_eq!(p.read("h2", "f"), "one\ntwo\n");
}

#[tokio::test]
async fn a_connection_lost_after_an_apply_ran_is_not_retried() {
    let p = Project::new(&["h1"], &[tasks(TWO_ROUNDS)]);
    p.host("h1")
        .fault(On::Exec(2), Fault::BreakAfter("broken pipe".into()));
    let o = p.converge().await;
    assert!(o.recap("h1").unreachable, "{}", o.dump());
    // The apply ran on the host, but its result never arrived: no report claims it, and
    // the engine sends nothing more.
    assert_eq!(p.read("h1", "f"), "one\n");
    assert!(!o.reported("h1", "write"));
    assert_eq!(p.host("h1").exec_count(), 2);
}

#[tokio::test]
async fn one_connection_per_host_for_the_whole_run_closed_at_the_end() {
    let p = Project::new(
        &["h1"],
        &[
            tasks("- name: d\n  file: {path: \"{{ root }}/d\", state: directory}\n"),
            (
                "roles/site.yml",
                "- name: one\n  hosts: web\n  roles: [main]\n- name: two\n  hosts: web\n  roles: [main]\n",
            ),
        ],
    );
    let o = p.converge().await;
    let h = p.host("h1");
    assert_eq!(h.opens(), 1);
    assert_eq!(h.closes(), 1);
    // Play two finds play one's work done: one probe script, facts already known.
    assert_eq!(o.execs("h1"), vec![2, 1], "{}", o.dump());
    assert_eq!(o.recap("h1").execs, 3);
    assert_eq!(h.exec_count(), 3);
    assert!(!h.execs()[2].script.contains("memory_mb"));
}

#[tokio::test]
async fn forks_bounds_the_hosts_converging_at_once() {
    // Each host's apply records how many hosts were inside it at once.
    let p = Project::new(
        &["h1", "h2", "h3"],
        &[tasks(
            "- name: inside\n  shell: \"mkdir {{ shared }}/lock-{{ inventory_hostname }} && ls {{ shared }} | grep -c lock- > {{ root }}/seen; rmdir {{ shared }}/lock-{{ inventory_hostname }}\"\n",
        )],
    );
    let o = p.run(crate::RunOptions { forks: 1, ..opts() }).await;
    assert!(!o.summary.failed, "{}", o.dump());
    for h in ["h1", "h2", "h3"] {
        assert_eq!(p.read(h, "seen"), "1\n", "{h} ran alone");
    }
}
