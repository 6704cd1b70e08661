//! What runs where: when, tags, --limit, loops, register, run_once, secrets.

use super::harness::*;
use crate::event::Status;

#[tokio::test]
async fn when_false_skips_without_touching_the_host() {
    let p = Project::new(
        &["h1", "h2"],
        &[tasks(
            "- name: only h2\n  file: {path: \"{{ root }}/d\", state: directory}\n  when: inventory_hostname == 'h2'\n",
        )],
    );
    let o = p.converge().await;
    let r = o.task("h1", "only h2");
    assert_eq!(r.status, Status::Skipped, "{}", o.dump());
    assert!(!p.exists("h1", "d") && p.exists("h2", "d"));
    assert_eq!(o.recap("h1").skipped, 1);
    assert!(
        !p.host("h1").execs().iter().any(|e| e.script.contains("/d")),
        "a skipped task is not probed"
    );
}

const TAGGED: &str = "\
- name: plain
  file: {path: \"{{ root }}/plain\", state: directory}
- name: extra
  file: {path: \"{{ root }}/extra\", state: directory}
  tags: [extra]
- name: always
  file: {path: \"{{ root }}/always\", state: directory}
  tags: [always]
";

#[tokio::test]
async fn tags_select_tasks_and_always_runs_with_any() {
    let p = Project::new(&["h1"], &[tasks(TAGGED)]);
    let o = p
        .run(crate::RunOptions {
            tags: vec!["extra".into()],
            ..opts()
        })
        .await;
    assert!(
        p.exists("h1", "extra") && p.exists("h1", "always"),
        "{}",
        o.dump()
    );
    assert!(!p.exists("h1", "plain"));
    assert!(
        !o.reported("h1", "plain"),
        "deselected tasks are not reported"
    );
}

#[tokio::test]
async fn skip_tags_leave_those_tasks_out() {
    let p = Project::new(&["h1"], &[tasks(TAGGED)]);
    let o = p
        .run(crate::RunOptions {
            skip_tags: vec!["extra".into()],
            ..opts()
        })
        .await;
    assert!(
        p.exists("h1", "plain") && p.exists("h1", "always"),
        "{}",
        o.dump()
    );
    assert!(!p.exists("h1", "extra"));
}

#[tokio::test]
async fn limit_leaves_the_other_hosts_alone() {
    let p = Project::new(&["h1", "h2"], &[tasks(TAGGED)]);
    let o = p
        .run(crate::RunOptions {
            limit: Some("h2".into()),
            ..opts()
        })
        .await;
    assert_eq!(p.host("h1").opens(), 0, "{}", o.dump());
    assert!(p.exists("h2", "plain"));
    assert_eq!(o.summary.recap.len(), 1);
    assert_eq!(o.play_hosts("web"), Some(vec!["h2".to_string()]));
}

#[tokio::test]
async fn a_loop_runs_each_item_in_one_round() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: dirs\n  file: {path: \"{{ root }}/{{ item }}\", state: directory}\n  loop: [a, b, c]\n",
        )],
    );
    let o = p.converge().await;
    let items: Vec<Option<String>> = o.all("h1", "dirs").iter().map(|r| r.item.clone()).collect();
    assert_eq!(
        items,
        vec![Some("a".into()), Some("b".into()), Some("c".into())],
        "{}",
        o.dump()
    );
    for d in ["a", "b", "c"] {
        assert!(p.root("h1").join(d).is_dir());
    }
    assert_eq!(o.execs("h1"), vec![2]);
    assert_eq!(o.recap("h1").changed, 3);
    assert_eq!(o.changed_tasks().len(), 3);
}

#[tokio::test]
async fn a_loop_with_when_skips_some_items() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: dirs\n  file: {path: \"{{ root }}/{{ item }}\", state: directory}\n  loop: [a, b]\n  when: item != 'b'\n",
        )],
    );
    let o = p.converge().await;
    let item = |i: &str| {
        o.all("h1", "dirs")
            .iter()
            .find(|r| r.item.as_deref() == Some(i))
            .map(|r| r.status)
    };
    assert_eq!(item("a"), Some(Status::Changed), "{}", o.dump());
    assert_eq!(item("b"), Some(Status::Skipped));
    assert!(p.exists("h1", "a") && !p.exists("h1", "b"));
}

#[tokio::test]
async fn a_registered_result_feeds_later_tasks_in_a_later_round() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: count\n  shell: \"echo 3\"\n  register: n\n  changed_when: false\n\
             - name: use it\n  file: {path: \"{{ root }}/n-{{ n.stdout | trim }}\", state: directory}\n\
             - name: when on it\n  file: {path: \"{{ root }}/never\", state: directory}\n  when: \"n.stdout | trim == '4'\"\n",
        )],
    );
    let o = p.converge().await;
    assert!(p.exists("h1", "n-3"), "{}", o.dump());
    assert_eq!(o.status("h1", "when on it"), Status::Skipped);
    assert!(!p.exists("h1", "never"));
    let execs = p.host("h1").execs();
    // The task reading `n` was not probed before `count` had run.
    let first_with = execs
        .iter()
        .position(|e| e.script.contains("n-3"))
        .expect("probed");
    let count_ran = execs
        .iter()
        .position(|e| e.script.contains("echo 3"))
        .expect("count ran");
    assert!(first_with > count_ran);
}

#[tokio::test]
async fn register_of_a_loop_collects_every_result() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: each\n  shell: \"echo {{ item }}\"\n  loop: [x, y]\n  register: r\n  changed_when: false\n\
             - name: joined\n  copy: {dest: \"{{ root }}/joined\", content: \"{{ r.results | map(attribute='stdout') | map('trim') | join(',') }} {{ r.changed }}\\n\"}\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(p.read("h1", "joined"), "x,y False\n", "{}", o.dump());
}

#[tokio::test]
async fn run_once_runs_on_the_first_host_only() {
    let p = Project::new(
        &["h1", "h2", "h3"],
        &[tasks(
            "- name: once\n  shell: \"echo {{ inventory_hostname }} >> {{ shared }}/once\"\n  run_once: true\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(
        std::fs::read_to_string(p.shared().join("once")).unwrap_or_default(),
        "h1\n",
        "{}",
        o.dump()
    );
    for h in ["h2", "h3"] {
        let r = o.task(h, "once");
        assert_eq!(r.status, Status::Skipped);
        assert_eq!(r.message.as_deref(), Some("run_once: runs on h1"));
    }
}

#[tokio::test]
async fn secrets_never_leave_the_engine_in_events() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: conf\n  copy: {dest: \"{{ root }}/conf\", content: \"password={{ app_password }}\\n\"}\n\
             - name: leaks\n  shell: \"echo {{ app_password }} >&2; false\"\n",
        )],
    );
    let o = p
        .run(crate::RunOptions {
            diff: true,
            ..opts()
        })
        .await;
    assert_eq!(p.read("h1", "conf"), format!("password={SECRET}\n"));
    let all = o.dump();
    assert!(!all.contains(SECRET), "{all}");
    assert!(all.contains("<redacted>"), "{all}");
    assert_eq!(o.status("h1", "leaks"), Status::Failed);
}

#[tokio::test]
async fn extra_vars_override_role_defaults() {
    let p = Project::new(
        &["h1"],
        &[
            tasks("- name: v\n  copy: {dest: \"{{ root }}/v\", content: \"{{ colour }}\\n\"}\n"),
            ("roles/main/defaults.yml", "colour: red\n"),
        ],
    );
    let mut o = opts();
    o.extra_vars
        .insert("colour".into(), serde_json::Value::String("blue".into()));
    let out = p.run(o).await;
    assert_eq!(p.read("h1", "v"), "blue\n", "{}", out.dump());
}

#[tokio::test]
async fn register_of_a_loop_keeps_item_order_when_some_are_skipped() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: each\n  shell: \"echo {{ item }}\"\n  loop: [a, b, c]\n  when: item != 'b'\n  register: r\n  changed_when: false\n\
             - name: order\n  copy: {dest: \"{{ root }}/order\", content: \"{% for x in r.results %}{{ 'skip' if x.skipped else x.stdout | trim }} {% endfor %}\\n\"}\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(p.read("h1", "order"), "a skip c \n", "{}", o.dump());
}

#[tokio::test]
async fn debug_and_assert_run_on_the_controller_and_wait_for_what_they_read() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: show\n  debug: {msg: \"{{ inventory_hostname }} has {{ facts.cpus }} cpus, password {{ app_password }}\"}\n\
             - name: probe\n  shell: \"echo 3\"\n  register: three\n  changed_when: false\n\
             - name: registered\n  debug: {var: three}\n\
             - name: holds\n  assert: {that: [\"facts.cpus > 0\", \"three.stdout == '3'\", \"three.stdout_lines == ['3']\"], success_msg: \"all good\"}\n\
             - name: fails\n  assert: {that: \"three.stdout | int == 4\", fail_msg: \"not four\"}\n\
             - name: after\n  file: {path: \"{{ root }}/after\", state: directory}\n",
        )],
    );
    let o = p.converge().await;
    let show = o.task("h1", "show");
    assert_eq!(show.status, Status::Ok, "{}", o.dump());
    assert!(show.shown, "debug is shown without -v");
    let m = show.message.clone().unwrap_or_default();
    assert!(
        m.starts_with("h1 has ") && m.ends_with("password <redacted>"),
        "{m}"
    );
    assert!(!o.dump().contains(SECRET));
    // `debug: var` waits for the register of the task before it, like a template.
    let registered = o
        .task("h1", "registered")
        .message
        .clone()
        .unwrap_or_default();
    assert!(
        registered.starts_with("three = {") && registered.contains("\"stdout\": \"3\""),
        "{registered}"
    );
    let holds = o.task("h1", "holds");
    assert_eq!(holds.status, Status::Ok, "{}", o.dump());
    assert_eq!(holds.message.as_deref(), Some("all good"));
    let fails = o.task("h1", "fails");
    assert_eq!(fails.status, Status::Failed);
    assert_eq!(fails.message.as_deref(), Some("assert: not four"));
    assert!(!p.exists("h1", "after"));
    // Nothing of debug or assert went to the host: only the command's round trips.
    assert!(
        !p.host("h1")
            .execs()
            .iter()
            .any(|e| e.script.contains("not four")),
        "{:?}",
        p.host("h1").execs()
    );
}
