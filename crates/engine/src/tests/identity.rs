//! As whom and where a task runs: `become_user` on a task and on a play, `delegate_to`. The fake runs its scripts
//! as the user running the tests (root in CI), so `runuser` really switches accounts.

use super::harness::*;
use crate::event::Status;

/// The tests switch to `nobody`, which only root can do without a password.
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

const WHO: &str = "\
- name: who
  command: id -un
  register: who
  become_user: nobody
- name: root again
  command: id -un
  register: me
- name: record
  copy: {dest: \"{{ root }}/who\", content: \"{{ who.stdout | trim }} {{ me.stdout | trim }}\"}
";

#[tokio::test]
async fn become_user_runs_only_that_task_as_the_user() {
    if !is_root() {
        eprintln!("skipped: switching to nobody needs root");
        return;
    }
    let p = Project::new(&["h1"], &[tasks(WHO)]);
    let o = p.converge().await;
    assert_eq!(o.status("h1", "record"), Status::Changed, "{}", o.dump());
    assert_eq!(p.read("h1", "who"), "nobody root");
}

#[tokio::test]
async fn a_play_become_user_applies_to_tasks_without_their_own() {
    if !is_root() {
        eprintln!("skipped: switching to nobody needs root");
        return;
    }
    let p = Project::new(
        &["h1"],
        &[
            (
                "roles/site.yml",
                "- name: web\n  hosts: web\n  become_user: nobody\n  roles: [main]\n",
            ),
            tasks(
                "- name: as the play says\n  command: id -un\n  register: a\n\
                 - name: as root\n  command: id -un\n  register: b\n  become_user: root\n\
                 - name: keep\n  copy: {dest: \"{{ root }}/who\", content: \"{{ a.stdout | trim }} {{ b.stdout | trim }}\"}\n  become_user: root\n",
            ),
        ],
    );
    let o = p.converge().await;
    assert_eq!(o.status("h1", "keep"), Status::Changed, "{}", o.dump());
    assert_eq!(p.read("h1", "who"), "nobody root");
}

#[tokio::test]
async fn a_file_the_user_cannot_write_fails_as_that_user() {
    if !is_root() {
        eprintln!("skipped: switching to nobody needs root");
        return;
    }
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: write\n  copy: {dest: \"{{ root }}/x\", content: hi}\n  become_user: nobody\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(o.status("h1", "write"), Status::Failed, "{}", o.dump());
    assert!(
        !p.exists("h1", "x"),
        "nobody cannot write in root's directory"
    );
}

#[tokio::test]
async fn a_templated_become_user_is_rendered_per_item_and_checked() {
    if !is_root() {
        eprintln!("skipped: switching to nobody needs root");
        return;
    }
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: each\n  command: id -un\n  loop: [nobody, root]\n  become_user: \"{{ item }}\"\n  register: r\n\
             - name: keep\n  copy: {dest: \"{{ root }}/who\", content: \"{{ r.results | map(attribute='stdout') | map('trim') | join(' ') }}\"}\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(p.read("h1", "who"), "nobody root", "{}", o.dump());
}

#[test]
fn a_become_user_that_renders_to_no_user_name_is_a_preflight_error() {
    let message = the_preflight_error(
        &["h1"],
        3,
        "- name: fine\n  command: id -un\n- name: bad\n  command: id -un\n  become_user: \"{{ '-o' }}\"\n",
    );
    assert!(message.contains("not a user name"), "{message}");
}

#[tokio::test]
async fn delegate_to_runs_on_the_other_hosts_connection_with_this_hosts_vars() {
    let p = Project::new(
        &["h1", "h2"],
        &[tasks(
            "- name: mark\n  shell: echo {{ inventory_hostname }} >> marks\n  delegate_to: h2\n  when: inventory_hostname == 'h1'\n\
             - name: own\n  file: {path: \"{{ root }}/own\", state: directory}\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(o.status("h1", "mark"), Status::Changed, "{}", o.dump());
    // It ran in h2's directory (its "filesystem"), with h1's variables.
    assert_eq!(p.read("h2", "marks"), "h1\n");
    assert!(!p.exists("h1", "marks"));
    assert!(p.exists("h1", "own") && p.exists("h2", "own"));
    let on = |h: &str| {
        p.host(h)
            .execs()
            .iter()
            .filter(|e| e.script.contains(">> marks"))
            .count()
    };
    assert_eq!((on("h1"), on("h2")), (0, 1), "sent to h2 only");
}

#[tokio::test]
async fn delegate_to_local_runs_on_the_controller() {
    let p = Project::new(
        &["h1", "h2"],
        &[tasks(
            "- name: note on the controller\n  shell: echo from-{{ inventory_hostname }} > \"{{ shared }}/local-{{ inventory_hostname }}\"\n  delegate_to: local\n",
        )],
    );
    let o = p.converge().await;
    for h in ["h1", "h2"] {
        assert_eq!(
            o.status(h, "note on the controller"),
            Status::Changed,
            "{}",
            o.dump()
        );
        let f = p.shared().join(format!("local-{h}"));
        assert_eq!(
            std::fs::read_to_string(&f).unwrap_or_default(),
            format!("from-{h}\n")
        );
        assert!(
            !p.host(h).execs().iter().any(|e| e.script.contains("from-")),
            "nothing sent to {h}"
        );
    }
}

#[test]
fn an_unknown_delegate_is_a_preflight_error_at_its_task() {
    let message = the_preflight_error(
        &["h1"],
        3,
        "- name: ok\n  command: id\n- name: elsewhere\n  command: id\n  delegate_to: h9\n",
    );
    assert!(message.contains("delegate_to `h9`"), "{message}");
}

#[tokio::test]
async fn a_delegate_that_cannot_be_reached_fails_the_task_not_the_run() {
    let p = Project::new(
        &["h1", "h2"],
        &[tasks(
            "- name: via h2\n  command: id\n  delegate_to: h2\n  when: inventory_hostname == 'h1'\n  ignore_errors: true\n\
             - name: after\n  file: {path: \"{{ root }}/after\", state: directory}\n  when: inventory_hostname == 'h1'\n",
        )],
    );
    p.host("h2").unreachable("connection refused");
    let o = p.converge().await;
    let r = o.task("h1", "via h2");
    assert_eq!(r.status, Status::Ignored, "{}", o.dump());
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.contains("connection refused")),
        "{r:?}"
    );
    assert!(p.exists("h1", "after"), "h1 went on");
}
