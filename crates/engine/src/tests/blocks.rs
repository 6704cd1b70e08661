//! Blocks (`block` / `rescue` / `always`), `meta: flush_handlers`, and handlers notified
//! across the roles of a play. Each task appends to `log` on the host, so the order the
//! host saw is the file's content.

use super::harness::*;
use crate::event::Status;

/// A task that appends `word` to the host's log.
fn log(name: &str, word: &str) -> String {
    format!("- name: {name}\n  shell: \"echo {word} >> {{{{ root }}}}/log\"\n")
}

/// `text` indented by `n` spaces (a task list under a section key).
fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

const FAILS: &str = "- name: fails\n  shell: \"echo boom >&2; exit 3\"\n";

fn block(main: &str, rescue: Option<&str>, always: Option<&str>) -> String {
    let mut s = format!("- name: the block\n  block:\n{}", indent(main, 4));
    if let Some(r) = rescue {
        s.push_str(&format!("  rescue:\n{}", indent(r, 4)));
    }
    if let Some(a) = always {
        s.push_str(&format!("  always:\n{}", indent(a, 4)));
    }
    s
}

#[tokio::test]
async fn a_rescue_runs_after_a_failure_and_the_host_goes_on() {
    let main = format!("{}{FAILS}{}", log("a", "a"), log("skipped", "never"));
    let rescue = "- name: rescue it\n  shell: \"echo rescued {{ ansible_failed_task.name }} {{ ansible_failed_result.rc }} >> {{ root }}/log\"\n";
    let yaml = format!(
        "{}{}",
        block(&main, Some(rescue), Some(&log("always", "always"))),
        log("after", "after")
    );
    let p = Project::new(&["h1"], &[tasks(&yaml)]);
    let o = p.converge().await;
    assert_eq!(
        p.read("h1", "log"),
        "a\nrescued fails 3\nalways\nafter\n",
        "{}",
        o.dump()
    );
    assert_eq!(o.status("h1", "fails"), Status::Failed);
    assert!(!o.reported("h1", "skipped"));
    assert!(o.task("h1", "rescue it").rescue);
    assert!(!o.task("h1", "always").rescue);
    assert_eq!(o.host_failed("h1"), None);
    assert!(!o.summary.failed);
    let recap = o.recap("h1");
    assert_eq!((recap.failed, recap.rescued), (0, 1));
}

#[tokio::test]
async fn always_runs_after_success_and_the_rescue_does_not() {
    let yaml = format!(
        "{}{}",
        block(
            &log("a", "a"),
            Some(&log("rescue", "rescue")),
            Some(&log("always", "always"))
        ),
        log("after", "after")
    );
    let p = Project::new(&["h1"], &[tasks(&yaml)]);
    let o = p.converge().await;
    assert_eq!(p.read("h1", "log"), "a\nalways\nafter\n", "{}", o.dump());
    assert!(!o.reported("h1", "rescue"));
    assert_eq!(o.recap("h1").rescued, 0);
    // Without a failure a block costs no round trip: as many scripts as the same tasks
    // written without it.
    let flat = format!(
        "{}{}{}",
        log("a", "a"),
        log("always", "always"),
        log("after", "after")
    );
    let q = Project::new(&["h1"], &[tasks(&flat)]);
    let plain = q.converge().await;
    assert_eq!(o.execs("h1"), plain.execs("h1"));
}

#[tokio::test]
async fn a_block_without_failure_batches_its_probes_with_the_tasks_around_it() {
    let dir = |name: &str| {
        format!("- name: {name}\n  file: {{path: \"{{{{ root }}}}/{name}\", state: directory}}\n")
    };
    let yaml = format!(
        "{}{}{}",
        dir("before"),
        block(&dir("inside"), Some(&dir("rescue")), Some(&dir("always"))),
        dir("after")
    );
    let p = Project::new(&["h1"], &[tasks(&yaml)]);
    let o = p.converge().await;
    assert!(p.exists("h1", "inside") && p.exists("h1", "always") && p.exists("h1", "after"));
    assert!(!p.exists("h1", "rescue"), "{}", o.dump());
    // One probe round trip, one apply.
    assert_eq!(o.execs("h1"), vec![2], "{}", o.dump());
    // Converged: one probe round trip, nothing to apply.
    let o = p.converge().await;
    assert_eq!(o.execs("h1"), vec![1], "{}", o.dump());
}

#[tokio::test]
async fn always_runs_after_a_failure_without_rescue_then_the_host_fails() {
    let yaml = format!(
        "{}{}",
        block(FAILS, None, Some(&log("always", "always"))),
        log("after", "after")
    );
    let p = Project::new(&["h1"], &[tasks(&yaml)]);
    let o = p.converge().await;
    assert_eq!(p.read("h1", "log"), "always\n", "{}", o.dump());
    assert_eq!(
        o.host_failed("h1"),
        Some(("fails".into(), "exit code 3: boom".into()))
    );
    assert_eq!(o.recap("h1").failed, 1);
    assert!(o.summary.failed);
}

#[tokio::test]
async fn a_failure_in_the_rescue_fails_the_host_after_always() {
    let rescue = "- name: rescue fails too\n  shell: \"exit 4\"\n";
    let yaml = format!(
        "{}{}",
        block(FAILS, Some(rescue), Some(&log("always", "always"))),
        log("after", "after")
    );
    let p = Project::new(&["h1"], &[tasks(&yaml)]);
    let o = p.converge().await;
    assert_eq!(p.read("h1", "log"), "always\n", "{}", o.dump());
    assert_eq!(
        o.host_failed("h1").map(|(t, _)| t),
        Some("rescue fails too".into())
    );
    let recap = o.recap("h1");
    assert_eq!((recap.failed, recap.rescued), (1, 1));
    assert!(!o.reported("h1", "after"));
}

#[tokio::test]
async fn a_failure_goes_out_through_nested_blocks() {
    // The inner block has no rescue: its always runs, then the outer rescue and always.
    let inner = format!(
        "- name: inner\n  block:\n{}  always:\n{}",
        indent(FAILS, 4),
        indent(&log("inner always", "inner-always"), 4)
    );
    let yaml = format!(
        "{}{}",
        block(
            &format!("{inner}{}", log("outer rest", "never")),
            Some(&log("outer rescue", "outer-rescue")),
            Some(&log("outer always", "outer-always"))
        ),
        log("after", "after")
    );
    let p = Project::new(&["h1"], &[tasks(&yaml)]);
    let o = p.converge().await;
    assert_eq!(
        p.read("h1", "log"),
        "inner-always\nouter-rescue\nouter-always\nafter\n",
        "{}",
        o.dump()
    );
    assert_eq!(o.host_failed("h1"), None);
    assert_eq!(o.recap("h1").rescued, 1);
}

#[tokio::test]
async fn when_on_a_block_skips_every_task_of_it() {
    let yaml = format!(
        "- name: off\n  when: \"inventory_hostname == 'nobody'\"\n  block:\n{}  always:\n{}{}",
        indent(&log("a", "a"), 4),
        indent(&log("always", "always"), 4),
        log("after", "after")
    );
    let p = Project::new(&["h1"], &[tasks(&yaml)]);
    let o = p.converge().await;
    assert_eq!(p.read("h1", "log"), "after\n", "{}", o.dump());
    assert_eq!(o.status("h1", "a"), Status::Skipped);
    assert_eq!(o.status("h1", "always"), Status::Skipped);
}

#[tokio::test]
async fn a_block_s_tags_select_its_tasks() {
    let yaml = format!(
        "- name: tagged\n  tags: [web]\n  block:\n{}{}",
        indent(&log("a", "a"), 4),
        log("untagged", "untagged")
    );
    let p = Project::new(&["h1"], &[tasks(&yaml)]);
    let mut o = opts();
    o.tags = vec!["web".into()];
    let out = p.run(o).await;
    assert_eq!(p.read("h1", "log"), "a\n", "{}", out.dump());
}

#[tokio::test]
async fn check_mode_shows_the_rescue_that_would_run() {
    let main = "- name: must hold\n  assert: {that: \"inventory_hostname == 'nobody'\"}\n";
    let yaml = format!(
        "{}{}",
        block(
            &format!("{main}{}", log("rest", "rest")),
            Some(&log("repair", "repair")),
            Some(&log("always", "always"))
        ),
        log("after", "after")
    );
    let p = Project::new(&["h1"], &[tasks(&yaml)]);
    let mut o = opts();
    o.check = true;
    let out = p.run(o).await;
    assert_eq!(
        out.status("h1", "must hold"),
        Status::Failed,
        "{}",
        out.dump()
    );
    assert!(!out.reported("h1", "rest"));
    let r = out.task("h1", "repair");
    assert!(r.rescue && r.status == Status::Changed, "{}", out.dump());
    assert_eq!(out.status("h1", "always"), Status::Changed);
    assert_eq!(out.status("h1", "after"), Status::Changed);
    assert!(!out.summary.failed);
    assert!(!p.exists("h1", "log"), "check mode changed nothing");
}

#[tokio::test]
async fn flush_handlers_runs_what_was_notified_so_far_then_later_ones_at_the_end() {
    let notify = |name: &str, word: &str| format!("{}  notify: h\n", log(name, word));
    let yaml = format!(
        "{}- meta: flush_handlers\n{}{}",
        notify("t1", "t1"),
        log("t2", "t2"),
        notify("t3", "t3")
    );
    let p = Project::new(&["h1"], &[tasks(&yaml), handlers(&log("h", "handler"))]);
    let o = p.converge().await;
    assert_eq!(
        p.read("h1", "log"),
        "t1\nhandler\nt2\nt3\nhandler\n",
        "{}",
        o.dump()
    );
    assert!(!p.host("h1").state_dir().join("notify/main").exists());
}

#[tokio::test]
async fn flush_handlers_with_nothing_notified_runs_nothing() {
    let yaml = format!("{}- meta: flush_handlers\n", log("t1", "t1"));
    let p = Project::new(&["h1"], &[tasks(&yaml), handlers(&log("h", "handler"))]);
    let o = p.converge().await;
    assert_eq!(p.read("h1", "log"), "t1\n", "{}", o.dump());
    assert!(!o.reported("h1", "h"));
}

#[tokio::test]
async fn a_handler_notified_from_two_roles_runs_once() {
    let p = Project::new(
        &["h1"],
        &[
            ("roles/site.yml", "- name: web\n  hosts: web\n  roles: [main, other]\n"),
            tasks(&format!("{}  notify: reload other\n", log("from main", "main"))),
            (
                "roles/other/tasks.yml",
                &format!("{}  notify: other topic\n", log("from other", "other")),
            ),
            (
                "roles/other/handlers.yml",
                "- name: reload other\n  listen: other topic\n  shell: \"echo reloaded >> {{ root }}/log\"\n",
            ),
        ],
    );
    let o = p.converge().await;
    assert_eq!(
        p.read("h1", "log"),
        "main\nother\nreloaded\n",
        "{}",
        o.dump()
    );
    assert_eq!(o.all("h1", "reload other").len(), 1);
    assert!(o.task("h1", "reload other").handler);
}

#[tokio::test]
async fn a_cross_role_notification_left_pending_runs_on_the_next_converge() {
    use crate::fake::{Fault, On};
    let p = Project::new(
        &["h1"],
        &[
            ("roles/site.yml", "- name: web\n  hosts: web\n  roles: [main, other]\n"),
            tasks(
                "- name: conf\n  copy: {dest: \"{{ root }}/conf\", content: \"1\\n\"}\n  notify: reload other\n",
            ),
            (
                "roles/other/tasks.yml",
                "- name: other\n  file: {path: \"{{ root }}/d\", state: directory}\n",
            ),
            (
                "roles/other/handlers.yml",
                "- name: reload other\n  shell: \"echo reloaded >> {{ root }}/log\"\n",
            ),
        ],
    );
    // The run dies before the handler: the notification stays recorded on the host.
    p.host("h1").fault(
        On::Contains("echo reloaded".into()),
        Fault::Break("connection reset".into()),
    );
    let o = p.converge().await;
    assert!(o.unreachable("h1").is_some(), "{}", o.dump());
    assert_eq!(p.read("h1", "log"), "");
    // Nothing changes now: the handler runs because the earlier run notified it.
    let o = p.converge().await;
    assert_eq!(o.status("h1", "conf"), Status::Ok);
    assert_eq!(p.read("h1", "log"), "reloaded\n", "{}", o.dump());
    assert_eq!(o.all("h1", "reload other").len(), 1);
    assert!(!p.host("h1").state_dir().join("notify/main").exists());
}

#[tokio::test]
async fn a_failure_in_an_included_file_goes_to_the_enclosing_blocks_rescue() {
    let main = "- include_tasks: steps.yml\n";
    let steps = format!("{}{FAILS}{}", log("a", "a"), log("skipped", "never"));
    let rescue = "- name: rescue it\n  shell: \"echo rescued {{ ansible_failed_task.name }} >> {{ root }}/log\"\n";
    let yaml = format!(
        "{}{}",
        block(main, Some(rescue), None),
        log("after", "after")
    );
    let p = Project::new(&["h1"], &[tasks(&yaml), ("roles/main/steps.yml", &steps)]);
    let o = p.converge().await;
    assert_eq!(
        p.read("h1", "log"),
        "a\nrescued fails\nafter\n",
        "{}",
        o.dump()
    );
    assert!(o.task("h1", "rescue it").rescue);
    assert_eq!(o.host_failed("h1"), None);
    assert_eq!(o.recap("h1").rescued, 1);
}
