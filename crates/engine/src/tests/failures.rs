//! Failures: a failing task stops its host and only its host; failed_when, changed_when;
//! probes that fail; until.

use super::harness::*;
use crate::event::Status;
use crate::fake::{Fault, On};

const H1_FAILS: &str = "\
- name: first
  file: {path: \"{{ root }}/first\", state: directory}
- name: fails on h1
  shell: \"echo broken on {{ inventory_hostname }} >&2; test {{ inventory_hostname }} != h1\"
- name: after
  file: {path: \"{{ root }}/after\", state: directory}
";

#[tokio::test]
async fn a_failing_task_stops_its_host_and_the_others_carry_on() {
    let p = Project::new(&["h1", "h2"], &[tasks(H1_FAILS)]);
    let o = p.converge().await;
    let r = o.task("h1", "fails on h1");
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.message.as_deref(), Some("exit code 1: broken on h1"));
    assert!(!o.reported("h1", "after"), "{}", o.dump());
    assert!(!p.exists("h1", "after"));
    assert!(p.exists("h2", "after"));
    assert_eq!(
        o.host_failed("h1"),
        Some(("fails on h1".into(), "exit code 1: broken on h1".into()))
    );
    assert_eq!(o.host_failed("h2"), None);
    assert_eq!(o.recap("h1").failed, 1);
    assert_eq!(o.recap("h2").failed, 0);
    assert!(o.summary.failed);
}

#[tokio::test]
async fn failed_when_turns_a_success_into_a_failure() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: says oops\n  shell: \"echo oops\"\n  failed_when: \"'oops' in result.stdout\"\n\
             - name: after\n  file: {path: \"{{ root }}/after\", state: directory}\n",
        )],
    );
    let o = p.converge().await;
    let r = o.task("h1", "says oops");
    assert_eq!(r.status, Status::Failed, "{}", o.dump());
    assert!(r
        .message
        .as_deref()
        .is_some_and(|m| m.contains("failed_when")));
    assert!(!p.exists("h1", "after"));
}

#[tokio::test]
async fn failed_when_false_forgives_a_nonzero_exit() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: exits 3\n  shell: \"exit 3\"\n  register: r\n  failed_when: \"result.rc > 3\"\n\
             - name: after\n  copy: {dest: \"{{ root }}/rc\", content: \"{{ r.rc }}\\n\"}\n",
        )],
    );
    let o = p.converge().await;
    assert_ne!(o.status("h1", "exits 3"), Status::Failed, "{}", o.dump());
    assert_eq!(p.read("h1", "rc"), "3\n");
    assert!(!o.summary.failed);
}

#[tokio::test]
async fn changed_when_reads_the_result() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: same\n  shell: \"echo same\"\n  changed_when: \"'new' in result.stdout\"\n\
             - name: new\n  shell: \"echo new\"\n  changed_when: \"'new' in result.stdout\"\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(o.status("h1", "same"), Status::Ok, "{}", o.dump());
    assert_eq!(o.status("h1", "new"), Status::Changed);
    assert_eq!(o.changed_tasks(), vec![("h1".into(), "new".into())]);
}

#[tokio::test]
async fn a_probe_script_that_dies_fails_the_host_with_its_exit_status() {
    let p = Project::new(&["h1", "h2"], &[tasks(H1_FAILS)]);
    p.host("h2").fault(
        On::Exec(1),
        Fault::Answer {
            rc: 255,
            stdout: String::new(),
            stderr: "sh: cannot fork".into(),
        },
    );
    let o = p.converge().await;
    let (task, msg) = o.host_failed("h2").expect("h2 failed");
    assert_eq!(task, "gather facts", "{}", o.dump());
    assert!(
        msg.contains("exit code 255: sh: cannot fork"),
        "the message says how the script ended: {msg}"
    );
    assert!(!p.exists("h2", "first"));
    assert_eq!(p.host("h2").exec_count(), 1);
    assert!(p.exists("h1", "first"), "h1 is not affected");
}

#[tokio::test]
async fn a_probe_a_module_cannot_read_fails_the_task() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: a line\n  lineinfile: {path: \"{{ root }}/missing.txt\", line: x}\n\
             - name: after\n  file: {path: \"{{ root }}/after\", state: directory}\n",
        )],
    );
    let o = p.converge().await;
    let r = o.task("h1", "a line");
    assert_eq!(r.status, Status::Failed, "{}", o.dump());
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.starts_with("lineinfile:")),
        "{r:?}"
    );
    assert!(!p.exists("h1", "after"));
    assert_eq!(o.execs("h1"), vec![1], "nothing was applied");
}

#[tokio::test]
async fn a_failed_apply_step_ends_the_apply_script() {
    // Both copies are applied in one script; the first fails (its directory is a file), so
    // the second never runs.
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: blocked\n  copy: {dest: \"{{ root }}/blocker/f\", content: \"x\\n\"}\n\
             - name: next\n  copy: {dest: \"{{ root }}/next\", content: \"y\\n\"}\n",
        )],
    );
    std::fs::write(p.root("h1").join("blocker"), "a file\n").expect("blocker");
    let o = p.converge().await;
    assert_eq!(o.status("h1", "blocked"), Status::Failed, "{}", o.dump());
    assert!(!p.exists("h1", "next"));
    assert!(
        !o.reported("h1", "next"),
        "a step that never ran is not reported"
    );
    let apply = &p.host("h1").execs()[1].script;
    assert!(apply.contains("/next"), "both were in the one apply script");
    assert_eq!(o.execs("h1"), vec![2]);
}

#[tokio::test]
async fn until_retries_until_the_condition_holds() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: third time\n  shell: \"c=$(cat {{ root }}/n 2>/dev/null || echo 0); c=$((c+1)); echo $c > {{ root }}/n; test $c -ge 3\"\n  register: t\n  until: \"t.rc == 0\"\n  retries: 5\n  delay: 0\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(p.read("h1", "n"), "3\n", "{}", o.dump());
    assert_eq!(o.all("h1", "third time").len(), 1, "reported once");
    assert_ne!(o.status("h1", "third time"), Status::Failed);
}

#[tokio::test]
async fn until_gives_up_after_its_retries() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: never\n  shell: \"echo x >> {{ root }}/tries; false\"\n  register: t\n  until: \"t.rc == 0\"\n  retries: 2\n  delay: 0\n",
        )],
    );
    let o = p.converge().await;
    let r = o.task("h1", "never");
    assert_eq!(r.status, Status::Failed, "{}", o.dump());
    assert_eq!(
        r.message.as_deref(),
        Some("until `t.rc == 0` still false after 3 attempts")
    );
    assert_eq!(p.read("h1", "tries"), "x\nx\nx\n");
}

#[tokio::test]
async fn ignore_errors_reports_the_failure_registers_it_and_goes_on() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: fails\n  shell: \"echo nope >&2; exit 4\"\n  ignore_errors: true\n  register: r\n\
             - name: after\n  file: {path: \"{{ root }}/after-{{ r.rc }}-{{ r.failed }}\", state: directory}\n",
        )],
    );
    let o = p.converge().await;
    let r = o.task("h1", "fails");
    assert_eq!(r.status, Status::Ignored, "{}", o.dump());
    assert_eq!(r.message.as_deref(), Some("exit code 4: nope"));
    assert_eq!(o.status("h1", "after"), Status::Changed, "{}", o.dump());
    assert!(p.exists("h1", "after-4-True"), "the failure is registered");
    assert_eq!(o.host_failed("h1"), None);
    assert_eq!((o.recap("h1").failed, o.recap("h1").ignored), (0, 1));
    assert!(!o.summary.failed);
}
