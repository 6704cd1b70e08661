//! `serial` batches, `max_fail_percentage`, and hosts dropping out of later plays.

use super::harness::*;
use crate::event::Event;

const FAILS_ON_H1: &str = "\
- name: fails on h1
  shell: \"test {{ inventory_hostname }} != h1\"
- name: mark
  file: {path: \"{{ root }}/rolled\", state: directory}
";

const LATER: (&str, &str) = (
    "roles/later/tasks.yml",
    "- name: later\n  file: {path: \"{{ root }}/later\", state: directory}\n",
);

fn site(play_opts: &str) -> String {
    format!(
        "- name: rolling\n  hosts: web\n{play_opts}  roles: [main]\n- name: after\n  hosts: web\n  roles: [later]\n"
    )
}

#[tokio::test]
async fn serial_one_finishes_a_host_before_the_next_starts() {
    let p = Project::new(
        &["h1", "h2", "h3"],
        &[
            tasks("- name: a\n  file: {path: \"{{ root }}/a\", state: directory}\n- name: b\n  command: \"touch {{ root }}/b\"\n"),
            ("roles/site.yml", "- name: web\n  hosts: web\n  serial: 1\n  roles: [main]\n"),
        ],
    );
    let o = p.converge().await;
    let order: Vec<&str> = o.reports().iter().map(|r| r.host.as_str()).collect();
    assert_eq!(
        order,
        vec!["h1", "h1", "h2", "h2", "h3", "h3"],
        "{}",
        o.dump()
    );
}

#[tokio::test]
async fn max_fail_percentage_zero_stops_before_the_next_batch() {
    let p = Project::new(
        &["h1", "h2"],
        &[
            tasks(FAILS_ON_H1),
            LATER,
            (
                "roles/site.yml",
                &site("  serial: 1\n  max_fail_percentage: 0\n"),
            ),
        ],
    );
    let o = p.converge().await;
    assert_eq!(p.host("h2").opens(), 0, "the second batch never started");
    assert_eq!(p.host("h2").exec_count(), 0);
    assert!(!p.exists("h2", "rolled") && !p.exists("h1", "later"));
    let (aborted, reason) = o.play_end("rolling").expect("play end");
    assert!(aborted);
    let reason = reason.unwrap_or_default();
    assert!(reason.contains("max_fail_percentage 0"), "{reason}");
    assert_eq!(o.play_hosts("after"), None, "later plays do not start");
    assert!(o.summary.failed);
}

#[tokio::test]
async fn a_failure_within_max_fail_percentage_lets_the_play_go_on() {
    let p = Project::new(
        &["h1", "h2", "h3"],
        &[
            tasks(FAILS_ON_H1),
            LATER,
            (
                "roles/site.yml",
                &site("  serial: 1\n  max_fail_percentage: 50\n"),
            ),
        ],
    );
    let o = p.converge().await;
    assert!(
        p.exists("h2", "rolled") && p.exists("h3", "rolled"),
        "{}",
        o.dump()
    );
    assert_eq!(o.play_end("rolling"), Some((false, None)));
    // h1 failed: it drops out of the later play.
    assert_eq!(
        o.play_hosts("after"),
        Some(vec!["h2".to_string(), "h3".to_string()])
    );
    assert!(!p.exists("h1", "later") && p.exists("h3", "later"));
}

#[tokio::test]
async fn a_play_whose_every_host_failed_stops_the_run() {
    let p = Project::new(
        &["h1", "h2"],
        &[
            tasks("- name: fails\n  shell: \"false\"\n"),
            LATER,
            ("roles/site.yml", &site("")),
        ],
    );
    let o = p.converge().await;
    let (aborted, reason) = o.play_end("rolling").expect("play end");
    assert!(aborted, "{}", o.dump());
    assert_eq!(reason.as_deref(), Some("every host of the play failed"));
    assert_eq!(o.play_hosts("after"), None);
}

#[tokio::test]
async fn serial_percentages_make_batches_of_that_share() {
    let p = Project::new(
        &["h1", "h2", "h3", "h4"],
        &[
            tasks(FAILS_ON_H1),
            LATER,
            (
                "roles/site.yml",
                &site("  serial: \"50%\"\n  max_fail_percentage: 0\n"),
            ),
        ],
    );
    let o = p.converge().await;
    // h1 and h2 form the first batch: h2 ran; h3 and h4 never started.
    assert!(p.exists("h2", "rolled"), "{}", o.dump());
    for h in ["h3", "h4"] {
        assert_eq!(p.host(h).opens(), 0, "{h}");
    }
    let started = o
        .events
        .iter()
        .filter(|e| matches!(e, Event::HostConnected { .. }))
        .count();
    assert_eq!(started, 2);
}

#[tokio::test]
async fn an_unreachable_host_counts_against_max_fail_percentage() {
    let p = Project::new(
        &["h1", "h2"],
        &[
            tasks("- name: mark\n  file: {path: \"{{ root }}/rolled\", state: directory}\n"),
            LATER,
            (
                "roles/site.yml",
                &site("  serial: 1\n  max_fail_percentage: 0\n"),
            ),
        ],
    );
    p.host("h1").unreachable("connection timed out");
    let o = p.converge().await;
    assert!(o.recap("h1").unreachable, "{}", o.dump());
    assert_eq!(p.host("h2").opens(), 0);
    assert!(o.play_end("rolling").is_some_and(|(aborted, _)| aborted));
}

#[tokio::test]
async fn any_errors_fatal_stops_the_other_hosts_and_the_play() {
    // One host at a time (forks 1), in inventory order: h1 fails, so h2 stops before its
    // first round, and no later batch or play starts.
    let p = Project::new(
        &["h1", "h2"],
        &[
            tasks(FAILS_ON_H1),
            LATER,
            ("roles/site.yml", &site("  any_errors_fatal: true\n")),
        ],
    );
    let o = p.run(crate::RunOptions { forks: 1, ..opts() }).await;
    assert_eq!(
        o.host_failed("h1").map(|(t, _)| t),
        Some("fails on h1".to_string()),
        "{}",
        o.dump()
    );
    let (task, why) = o.host_failed("h2").expect("h2 stopped");
    assert_eq!(task, "any_errors_fatal");
    assert!(why.contains("another host of the play failed"), "{why}");
    assert_eq!(p.host("h2").exec_count(), 0, "h2 ran nothing");
    assert!(!p.exists("h2", "rolled") && !p.exists("h1", "later"));
    let (aborted, reason) = o.play_end("rolling").expect("play end");
    assert!(aborted);
    assert!(reason.unwrap_or_default().contains("any_errors_fatal"));
    assert_eq!(o.play_hosts("after"), None, "later plays do not start");
}

#[tokio::test]
async fn without_any_errors_fatal_the_other_host_finishes() {
    let p = Project::new(
        &["h1", "h2"],
        &[tasks(FAILS_ON_H1), LATER, ("roles/site.yml", &site(""))],
    );
    let o = p.run(crate::RunOptions { forks: 1, ..opts() }).await;
    assert!(o.host_failed("h2").is_none(), "{}", o.dump());
    assert!(p.exists("h2", "rolled") && p.exists("h2", "later"));
}
