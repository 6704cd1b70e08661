//! Ctrl-C and SIGTERM: the first finishes what runs and starts nothing new, the second (or
//! the end of the grace period) kills what runs.

use super::harness::*;
use crate::event::{Event, Status};
use crate::fake::{Fault, On};
use crate::remote::Killed;
use std::time::Duration;

const QUICK_THEN_MORE: &str = "\
- name: quick
  command: \"touch {{ root }}/quick\"
- name: more
  file: {path: \"{{ root }}/more\", state: directory}
";

fn two_plays() -> (&'static str, &'static str) {
    (
        "roles/site.yml",
        "- name: one\n  hosts: web\n  roles: [main]\n- name: two\n  hosts: web\n  roles: [later]\n",
    )
}

const LATER: (&str, &str) = (
    "roles/later/tasks.yml",
    "- name: later\n  file: {path: \"{{ root }}/later\", state: directory}\n",
);

fn interrupted(o: &Outcome) -> bool {
    o.events.iter().any(|e| {
        matches!(
            e,
            Event::Recap {
                interrupted: true,
                ..
            }
        )
    })
}

#[tokio::test]
async fn a_first_interrupt_lets_the_running_script_finish_and_starts_nothing_new() {
    let p = Project::new(&["h1"], &[tasks(QUICK_THEN_MORE), LATER, two_plays()]);
    // Raised as the apply of `quick` starts.
    p.host("h1").fault(On::Exec(2), Fault::Interrupt(1));
    let o = p.converge().await;
    assert_eq!(o.status("h1", "quick"), Status::Changed, "{}", o.dump());
    assert!(p.exists("h1", "quick"), "the running script finished");
    assert!(!o.reported("h1", "more") && !p.exists("h1", "more"));
    assert_eq!(p.host("h1").exec_count(), 2, "nothing new was started");
    let (aborted, reason) = o.play_end("one").expect("play end");
    assert!(aborted && reason.is_some_and(|r| r.contains("interrupted")));
    assert_eq!(o.play_hosts("two"), None);
    assert!(o.summary.interrupted && interrupted(&o));
    assert!(o.recap("h1").interrupted);
}

#[tokio::test]
async fn a_second_interrupt_kills_the_running_script() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: long\n  shell: \"sleep 30; touch {{ root }}/late\"\n",
        )],
    );
    p.host("h1").fault(On::Exec(2), Fault::Interrupt(2));
    let o = p.converge().await;
    let execs = p.host("h1").execs();
    assert_eq!(execs[1].killed(), Some(Killed::Interrupted));
    let r = o.task("h1", "long");
    assert_eq!(r.status, Status::Failed, "{}", o.dump());
    assert_eq!(
        r.message.as_deref(),
        Some("the change was stopped: the run was interrupted")
    );
    assert!(!p.exists("h1", "late"));
    assert!(o.summary.interrupted);
    assert!(o.recap("h1").interrupted, "interrupted, not failed");
    assert!(o.host_failed("h1").is_none());
}

#[tokio::test]
async fn a_script_still_running_after_the_grace_period_is_killed() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: long\n  shell: \"sleep 30; touch {{ root }}/late\"\n",
        )],
    );
    let h = p.host("h1");
    h.set_grace(Duration::from_millis(300));
    h.fault(On::Exec(2), Fault::Interrupt(1));
    let o = p.converge().await;
    assert_eq!(
        h.execs()[1].killed(),
        Some(Killed::Interrupted),
        "{}",
        o.dump()
    );
    assert!(!p.exists("h1", "late"));
    assert!(o.summary.interrupted);
}

#[tokio::test]
async fn an_interrupt_before_the_run_contacts_no_host() {
    let p = Project::new(&["h1", "h2"], &[tasks(QUICK_THEN_MORE)]);
    let opts = opts();
    opts.interrupt.raise();
    let o = p.run(opts).await;
    for h in ["h1", "h2"] {
        assert_eq!(p.host(h).opens(), 0, "{}", o.dump());
        assert!(o.recap(h).interrupted);
    }
    assert!(o.summary.interrupted);
}

#[tokio::test]
async fn the_interrupt_reaches_every_script() {
    let p = Project::new(&["h1"], &[tasks(QUICK_THEN_MORE)]);
    p.converge().await;
    for e in p.host("h1").execs() {
        assert_eq!(e.interrupt_level, Some(0), "{}", e.n);
    }
}

#[tokio::test]
async fn an_interrupt_in_one_serial_batch_starts_no_other() {
    let p = Project::new(
        &["h1", "h2"],
        &[
            tasks(QUICK_THEN_MORE),
            (
                "roles/site.yml",
                "- name: one\n  hosts: web\n  serial: 1\n  roles: [main]\n",
            ),
        ],
    );
    p.host("h1").fault(On::Exec(1), Fault::Interrupt(1));
    let o = p.converge().await;
    assert_eq!(p.host("h1").exec_count(), 1, "{}", o.dump());
    assert_eq!(p.host("h2").opens(), 0);
    assert!(o.recap("h1").interrupted);
    assert!(!p.exists("h1", "quick"));
}
