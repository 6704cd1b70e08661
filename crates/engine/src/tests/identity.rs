//! As whom a task runs: `become_user` on a task and on a play. The fake runs its scripts
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
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: fine\n  command: id -un\n- name: bad\n  command: id -un\n  become_user: \"{{ '-o' }}\"\n",
        )],
    );
    let errors = p.preflight();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (file, line, message) = &errors[0];
    assert!(
        file.ends_with("roles/main/tasks.yml") && *line == 3,
        "{errors:?}"
    );
    assert!(message.contains("not a user name"), "{message}");
}
