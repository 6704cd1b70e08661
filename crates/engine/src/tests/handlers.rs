//! Handlers: notified once, run at the end of the play in the role's order, skipped when
//! nothing changed or the host failed (unless forced), and kept on the host until they ran.

use super::harness::*;
use crate::event::{Event, Status};
use crate::fake::{Fault, On};

const NOTIFY: &str = "\
- name: one
  copy: {dest: \"{{ root }}/one\", content: \"1\\n\"}
  notify: reload
- name: two
  copy: {dest: \"{{ root }}/two\", content: \"2\\n\"}
  notify: reload
- name: last
  copy: {dest: \"{{ root }}/last\", content: \"3\\n\"}
";

const RELOAD: &str = "- name: reload\n  shell: \"echo reloaded >> {{ root }}/reloads\"\n";

#[tokio::test]
async fn a_handler_notified_twice_runs_once_after_the_last_task() {
    let p = Project::new(&["h1"], &[tasks(NOTIFY), handlers(RELOAD)]);
    let o = p.converge().await;
    assert_eq!(p.read("h1", "reloads"), "reloaded\n", "{}", o.dump());
    let names: Vec<(&str, bool)> = o
        .reports()
        .iter()
        .map(|r| (r.task.as_str(), r.handler))
        .collect();
    assert_eq!(
        names,
        vec![
            ("one", false),
            ("two", false),
            ("last", false),
            ("reload", true)
        ]
    );
    assert_eq!(o.status("h1", "reload"), Status::Changed);
    // The notification was recorded on the host, then cleared once the handler ran.
    assert!(!p.host("h1").state_dir().join("notify/main").exists());
    // Probe, apply, the handler's apply (it has nothing to probe), the clearing.
    assert_eq!(o.execs("h1"), vec![4]);
    let execs = p.host("h1").execs();
    assert!(
        execs[1].script.contains("notify/"),
        "recorded with the change"
    );
    assert!(execs[3].script.contains("rm -f --"));
}

#[tokio::test]
async fn a_connection_lost_while_clearing_leaves_the_handler_pending() {
    // Handlers run at least once: if the notification cannot be cleared after they ran,
    // the next run runs them again.
    let p = Project::new(&["h1"], &[tasks(NOTIFY), handlers(RELOAD)]);
    p.host("h1").fault(
        On::Contains("rm -f -- \"$__bs/notify/\"".into()),
        Fault::Break("connection reset".into()),
    );
    let o = p.converge().await;
    assert_eq!(o.unreachable("h1").as_deref(), Some("h1: connection reset"));
    assert_eq!(p.read("h1", "reloads"), "reloaded\n", "{}", o.dump());
    assert!(p.host("h1").state_dir().join("notify/main").exists());
    let o = p.converge().await;
    assert!(o
        .find(|e| match e {
            Event::HandlersPending { host, .. } => Some(host == "h1"),
            _ => None,
        })
        .unwrap_or(false));
    assert_eq!(p.read("h1", "reloads"), "reloaded\nreloaded\n");
    assert!(!p.host("h1").state_dir().join("notify/main").exists());
}

#[tokio::test]
async fn handlers_do_not_run_when_nothing_changed() {
    let p = Project::new(&["h1"], &[tasks(NOTIFY), handlers(RELOAD)]);
    p.converge().await;
    let o = p.converge().await;
    assert!(!o.reported("h1", "reload"), "{}", o.dump());
    assert_eq!(p.read("h1", "reloads"), "reloaded\n");
    assert_eq!(o.execs("h1"), vec![1]);
}

#[tokio::test]
async fn handlers_run_in_the_order_the_role_defines_them() {
    let p = Project::new(
        &["h1"],
        &[
            tasks("- name: t\n  copy: {dest: \"{{ root }}/t\", content: \"t\\n\"}\n  notify: [second, first]\n"),
            handlers(
                "- name: first\n  shell: \"echo first >> {{ root }}/log\"\n\
                 - name: second\n  shell: \"echo second >> {{ root }}/log\"\n\
                 - name: never\n  shell: \"echo never >> {{ root }}/log\"\n",
            ),
        ],
    );
    let o = p.converge().await;
    assert_eq!(p.read("h1", "log"), "first\nsecond\n", "{}", o.dump());
    assert!(!o.reported("h1", "never"));
}

#[tokio::test]
async fn changed_when_false_notifies_nothing() {
    let p = Project::new(
        &["h1"],
        &[
            tasks("- name: quiet\n  shell: \"true\"\n  changed_when: false\n  notify: reload\n"),
            handlers(RELOAD),
        ],
    );
    let o = p.converge().await;
    assert_eq!(o.status("h1", "quiet"), Status::Ok, "{}", o.dump());
    assert!(!p.exists("h1", "reloads"), "the handler did not run");
    // What the apply recorded on the host was cleared: no handler is left pending.
    assert!(!p.host("h1").state_dir().join("notify/main").exists());
    let o = p.converge().await;
    assert!(!o.reported("h1", "reload"), "{}", o.dump());
}

const FAILING: &str = "\
- name: change
  copy: {dest: \"{{ root }}/conf\", content: \"c\\n\"}
  notify: reload
- name: breaks
  shell: \"test -f {{ root }}/fixed\"
";

#[tokio::test]
async fn handlers_of_a_failed_host_are_skipped_and_stay_pending_on_it() {
    let p = Project::new(&["h1"], &[tasks(FAILING), handlers(RELOAD)]);
    let o = p.converge().await;
    assert_eq!(o.status("h1", "breaks"), Status::Failed, "{}", o.dump());
    assert!(!p.exists("h1", "reloads"));
    let skipped = o.find(|e| match e {
        Event::HandlersSkipped { host, handlers, .. } if host == "h1" => Some(handlers.clone()),
        _ => None,
    });
    assert_eq!(skipped, Some(vec!["reload".to_string()]));
    let pending = std::fs::read_to_string(p.host("h1").state_dir().join("notify/main"))
        .expect("the notification is recorded on the host");
    assert_eq!(pending, "reload\n");
}

#[tokio::test]
async fn a_notification_left_by_a_failed_run_is_handled_by_the_next() {
    let p = Project::new(&["h1"], &[tasks(FAILING), handlers(RELOAD)]);
    p.converge().await;
    std::fs::write(p.root("h1").join("fixed"), "").expect("fix");
    let o = p.converge().await;
    assert_eq!(o.status("h1", "change"), Status::Ok, "{}", o.dump());
    let pending = o.find(|e| match e {
        Event::HandlersPending { host, handlers, .. } if host == "h1" => Some(handlers.clone()),
        _ => None,
    });
    assert_eq!(pending, Some(vec!["reload".to_string()]));
    assert_eq!(p.read("h1", "reloads"), "reloaded\n");
    assert!(!p.host("h1").state_dir().join("notify/main").exists());
    // And only once.
    let o = p.converge().await;
    assert!(!o.reported("h1", "reload"), "{}", o.dump());
}

#[tokio::test]
async fn force_handlers_runs_them_after_a_failure() {
    let p = Project::new(&["h1"], &[tasks(FAILING), handlers(RELOAD)]);
    let o = p
        .run(crate::RunOptions {
            force_handlers: true,
            ..opts()
        })
        .await;
    assert_eq!(p.read("h1", "reloads"), "reloaded\n", "{}", o.dump());
    assert!(o.summary.failed, "the host still failed");
    assert_eq!(o.host_failed("h1").map(|f| f.0), Some("breaks".into()));
}

#[tokio::test]
async fn a_failing_handler_fails_the_host() {
    let p = Project::new(
        &["h1"],
        &[
            tasks(NOTIFY),
            handlers("- name: reload\n  shell: \"echo no >&2; exit 4\"\n"),
        ],
    );
    let o = p.converge().await;
    let r = o.task("h1", "reload");
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.message.as_deref(), Some("exit code 4: no"));
    assert!(o.summary.failed);
    // Not run: the notification stays recorded for the next run.
    assert!(p.host("h1").state_dir().join("notify/main").exists());
}

#[tokio::test]
async fn a_topic_runs_every_handler_listening_to_it_once() {
    let p = Project::new(
        &["h1"],
        &[
            tasks(
                "- name: conf\n  copy: {dest: \"{{ root }}/conf\", content: \"1\\n\"}\n  notify: web changed\n\
                 - name: more\n  copy: {dest: \"{{ root }}/more\", content: \"2\\n\"}\n  notify: [web changed, restart cache]\n",
            ),
            handlers(
                "- name: restart cache\n  shell: \"echo cache >> {{ root }}/ran\"\n  listen: web changed\n\
                 - name: reload web\n  shell: \"echo web >> {{ root }}/ran\"\n  listen: [web changed]\n\
                 - name: unrelated\n  shell: \"echo no >> {{ root }}/ran\"\n",
            ),
        ],
    );
    let o = p.converge().await;
    // Each listening handler once, in the role's order; the one nobody notified not at all.
    assert_eq!(p.read("h1", "ran"), "cache\nweb\n", "{}", o.dump());
    assert!(!o.reported("h1", "unrelated"));
    // Nothing changed the second time: no handler runs.
    let again = p.converge().await;
    assert!(!again.reported("h1", "reload web"), "{}", again.dump());
    assert_eq!(p.read("h1", "ran"), "cache\nweb\n");
}

/// The patroni shape: a first play (one host at a time) changes a config and notifies a
/// reload; a second play over the same role runs a `run_once` check that reads what every
/// host's reload did. Each host's handler must have run at the end of the first play.
#[tokio::test]
async fn a_first_plays_handlers_run_before_the_second_play_reads_their_work() {
    let p = Project::new(
        &["h1", "h2"],
        &[
            (
                "roles/site.yml",
                "- name: one\n  hosts: web\n  serial: 1\n  roles: [main]\n\
                 - name: two\n  hosts: web\n  roles: [main]\n  vars: {pass: true}\n",
            ),
            ("roles/main/defaults.yml", "pass: false\nvalue: \"2\"\n"),
            tasks(
                "- name: config\n  copy: {dest: \"{{ root }}/conf\", content: \"{{ value }}\"}\n  notify: reload\n\
                 - name: settings\n  shell:\n    cmd: \"echo {{ value }} > {{ shared }}/dcs\"\n    unless: \"test \\\"$(cat {{ shared }}/dcs 2>/dev/null)\\\" = {{ value }}\"\n  when: pass | bool\n  run_once: true\n\
                 - name: restart\n  shell:\n    cmd: \"cat {{ shared }}/loaded-* > {{ shared }}/running\"\n    unless: \"test \\\"$(cat {{ shared }}/loaded-* 2>/dev/null)\\\" = \\\"$(cat {{ shared }}/running 2>/dev/null)\\\"\"\n  when: pass | bool\n  run_once: true\n",
            ),
            handlers(
                "- name: reload\n  shell: \"cp {{ root }}/conf {{ shared }}/loaded-{{ inventory_hostname }}\"\n",
            ),
        ],
    );
    let o = p.converge().await;
    let last = |t: &str| o.all("h1", t).last().map(|r| r.status);
    assert_eq!(last("restart"), Some(Status::Changed), "{}", o.dump());
    assert_eq!(
        std::fs::read_to_string(p.shared().join("running")).unwrap_or_default(),
        "22"
    );
}

/// A guard that held when probed but no longer does once an earlier change of the same
/// round ran (a setting that leaves a restart pending) is probed again: the task runs.
#[tokio::test]
async fn a_guard_an_earlier_change_of_the_round_falsifies_is_probed_again() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: settings\n  shell:\n    cmd: \"echo 2 > {{ root }}/dcs; touch {{ root }}/pending\"\n    unless: \"test \\\"$(cat {{ root }}/dcs 2>/dev/null)\\\" = 2\"\n  run_once: true\n\
             - name: restart\n  shell:\n    cmd: \"rm {{ root }}/pending && touch {{ root }}/restarted\"\n    unless: \"! test -f {{ root }}/pending\"\n  run_once: true\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(o.status("h1", "restart"), Status::Changed, "{}", o.dump());
    assert!(p.exists("h1", "restarted") && !p.exists("h1", "pending"));
}
