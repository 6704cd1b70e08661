//! `reboot`: the host restarts, the engine reconnects until it is back on a new boot, and
//! the play goes on over the new connection.

use super::harness::*;
use crate::event::{Event, Status};
use crate::fake::{Fault, On};
use crate::modules::reboot::{BOOT_ID_PATH, REBOOT_SH};
use std::time::{Duration, Instant};

/// Before, the reboot, and two tasks after it: one that reads its result, one that reads
/// nothing (it would share the reboot's round if the reboot were no barrier).
const REBOOT_THEN_MORE: &str = "\
- name: before
  file: {path: \"{{ root }}/before\", state: directory}
- name: restart
  reboot: {}
  register: r
- name: after
  file: {path: \"{{ root }}/after\", state: directory}
- name: seen
  shell: \"cat /proc/sys/kernel/random/boot_id > {{ root }}/seen; echo {{ r.rebooted }} >> {{ root }}/seen\"
";

/// The fake's boot id of boot `n`.
fn boot(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

#[tokio::test]
async fn a_reboot_reconnects_and_the_play_goes_on_over_the_new_connection() {
    let p = Project::new(&["h1"], &[tasks(REBOOT_THEN_MORE)]);
    let o = p.converge().await;
    let r = o.task("h1", "restart");
    assert_eq!(r.status, Status::Changed, "{}", o.dump());
    assert_eq!(
        r.summary.as_deref(),
        Some(&*format!("reboot (boot {})", boot(1)))
    );
    assert!(r.always);
    let msg = r.message.clone().unwrap_or_default();
    assert!(
        msg.starts_with("rebooted in ") && msg.ends_with('s'),
        "{msg}"
    );
    assert!(r.details.contains(&msg), "{:?}", r.details);
    let h = p.host("h1");
    assert_eq!(h.boots(), 2);
    assert!(!h.reboot_pending());
    // The first connection, one refused while the host was down, the new one.
    assert_eq!(h.opens(), 3);
    // The old connection was closed at the reboot, the new one at the end of the run.
    assert_eq!(h.closes(), 2);
    assert_eq!(o.status("h1", "after"), Status::Changed);
    assert_eq!(o.status("h1", "seen"), Status::Changed);
    assert_eq!(p.read("h1", "seen"), format!("{}\nTrue\n", boot(2)));
    // Nothing after the reboot rode along in its apply script.
    let execs = h.execs();
    let apply = execs
        .iter()
        .find(|e| e.script.contains(REBOOT_SH))
        .expect("the reboot's apply");
    assert!(!apply.script.contains("/after"), "{}", apply.script);
    // The connection the run goes on with is announced.
    let connected = o
        .events
        .iter()
        .filter(|e| matches!(e, Event::HostConnected { host, .. } if host == "h1"))
        .count();
    assert_eq!(connected, 2);
    // Every script counts, on the old connection and the new one.
    assert_eq!(o.recap("h1").execs, execs.len() as u64);
    assert!(!o.summary.failed);
}

#[tokio::test]
async fn a_reboot_changes_on_every_converge() {
    let p = Project::new(&["h1"], &[tasks("- name: restart\n  reboot:\n")]);
    for n in [2, 3] {
        let o = p.converge().await;
        assert_eq!(o.status("h1", "restart"), Status::Changed, "{}", o.dump());
        assert_eq!(p.host("h1").boots(), n);
    }
}

#[tokio::test]
async fn a_host_still_on_its_old_boot_is_waited_for() {
    let p = Project::new(&["h1"], &[tasks(REBOOT_THEN_MORE)]);
    // Two connections still reach the old boot (the host has not gone down yet); the
    // third finds the new one.
    p.host("h1").reboot_takes(2, 0);
    let o = p.converge().await;
    assert_eq!(o.status("h1", "restart"), Status::Changed, "{}", o.dump());
    let h = p.host("h1");
    assert_eq!(h.opens(), 4);
    assert_eq!(h.boots(), 2);
    assert_eq!(p.read("h1", "seen"), format!("{}\nTrue\n", boot(2)));
    // Each attempt that found the old boot read it and gave up the connection.
    let reads = h
        .execs()
        .iter()
        .filter(|e| e.script.contains(BOOT_ID_PATH) && !e.script.contains(REBOOT_SH))
        .count();
    assert!(reads >= 3, "{reads}");
}

#[tokio::test]
async fn a_host_that_never_comes_back_fails_the_reboot_after_its_timeout() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: restart\n  reboot: {reboot_timeout: 1}\n\
             - name: after\n  file: {path: \"{{ root }}/after\", state: directory}\n",
        )],
    );
    p.host("h1").reboot_takes(0, u64::MAX);
    let t0 = Instant::now();
    let o = p.converge().await;
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let r = o.task("h1", "restart");
    assert_eq!(r.status, Status::Failed, "{}", o.dump());
    let msg = r.message.clone().unwrap_or_default();
    assert!(msg.contains("did not come back within 1s"), "{msg}");
    assert!(msg.contains("connection refused (rebooting)"), "{msg}");
    assert!(!o.reported("h1", "after") && !p.exists("h1", "after"));
    let (task, _) = o.host_failed("h1").expect("the host failed");
    assert_eq!(task, "restart");
    assert!(p.host("h1").opens() >= 2);
}

#[tokio::test]
async fn a_failing_test_command_is_tried_again_on_the_new_boot() {
    // Fails on its first run, succeeds on the next.
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: restart\n  reboot:\n    test_command: \"n=$(cat {{ root }}/tries 2>/dev/null || echo 0); echo $((n + 1)) > {{ root }}/tries; [ $n -ge 1 ]\"\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(o.status("h1", "restart"), Status::Changed, "{}", o.dump());
    assert_eq!(p.read("h1", "tries"), "2\n");
    assert_eq!(p.host("h1").boots(), 2);
}

#[tokio::test]
async fn a_test_command_that_keeps_failing_fails_the_reboot_with_its_output() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: restart\n  reboot: {reboot_timeout: 1, test_command: \"echo not ready >&2; exit 3\"}\n",
        )],
    );
    let o = p.converge().await;
    let r = o.task("h1", "restart");
    assert_eq!(r.status, Status::Failed, "{}", o.dump());
    let msg = r.message.clone().unwrap_or_default();
    assert!(msg.contains("did not come back within 1s"), "{msg}");
    assert!(
        msg.contains("failed on the new boot (exit code 3): not ready"),
        "{msg}"
    );
}

#[tokio::test]
async fn check_mode_predicts_the_reboot_and_does_not_reconnect() {
    let p = Project::new(&["h1"], &[tasks(REBOOT_THEN_MORE)]);
    let o = p
        .run(crate::RunOptions {
            check: true,
            ..opts()
        })
        .await;
    let r = o.task("h1", "restart");
    assert_eq!(r.status, Status::Changed, "{}", o.dump());
    assert_eq!(
        r.summary.as_deref(),
        Some(&*format!("reboot (boot {})", boot(1)))
    );
    let h = p.host("h1");
    assert_eq!(h.opens(), 1);
    assert_eq!(h.boots(), 1);
    assert!(!h.reboot_pending());
    assert!(!h.execs().iter().any(|e| e.script.contains(REBOOT_SH)));
}

#[tokio::test]
async fn an_interrupt_ends_the_wait_at_once() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: restart\n  reboot: {}\n\
             - name: after\n  file: {path: \"{{ root }}/after\", state: directory}\n",
        )],
    );
    let h = p.host("h1");
    h.reboot_takes(0, u64::MAX);
    // Raised as the reboot's apply starts: the apply finishes, the wait does not begin.
    h.fault(On::Contains(REBOOT_SH.into()), Fault::Interrupt(1));
    let t0 = Instant::now();
    let o = p.converge().await;
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let r = o.task("h1", "restart");
    assert_eq!(r.status, Status::Failed, "{}", o.dump());
    assert!(r
        .message
        .as_deref()
        .is_some_and(|m| m.contains("interrupted while waiting")));
    assert!(o.recap("h1").interrupted);
    assert!(!o.reported("h1", "after"));
    assert_eq!(h.opens(), 1, "no reconnection was tried");
}

#[tokio::test]
async fn a_delegated_reboot_is_refused_before_the_run() {
    let message = the_preflight_error(
        &["h1", "h2"],
        3,
        "- name: first\n  file: {path: \"{{ root }}/d\", state: directory}\n\
         - name: restart\n  reboot: {}\n  delegate_to: h2\n",
    );
    assert!(message.contains("cannot take `delegate_to`"), "{message}");
}

#[tokio::test]
async fn a_reboot_as_another_user_is_refused_before_the_run() {
    let p = Project::new(
        &["h1"],
        &[tasks("- name: restart\n  reboot: {}\n  become_user: app\n")],
    );
    let errors = p.preflight();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].2.contains("cannot take `become_user`"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn a_reboot_handler_reconnects_and_its_notification_is_cleared_over_the_new_connection() {
    let p = Project::new(
        &["h1"],
        &[
            tasks(
                "- name: kernel\n  copy: {dest: \"{{ root }}/kernel\", content: \"6.1\\n\"}\n  notify: restart\n",
            ),
            handlers("- name: restart\n  reboot: {}\n"),
        ],
    );
    let o = p.converge().await;
    assert_eq!(o.status("h1", "restart"), Status::Changed, "{}", o.dump());
    let h = p.host("h1");
    assert_eq!(h.boots(), 2);
    assert!(!o.summary.failed);
    // The notification the kernel task recorded was cleared after the handler ran: over
    // the new connection, since the old one was closed at the reboot.
    let notes: Vec<_> = std::fs::read_dir(h.state_dir().join("notify"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(notes.is_empty(), "{notes:?}");
    assert!(h
        .execs()
        .last()
        .is_some_and(|e| e.script.contains("rm -f -- \"$__bs/notify/\"main")));
}
