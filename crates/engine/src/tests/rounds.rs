//! Rounds: one probe script and one apply script per host, no-op converges, check mode and
//! re-probes.

use super::harness::*;
use crate::event::Status;

const THREE_FILES: &str = "\
- name: a
  copy: {dest: \"{{ root }}/a.txt\", content: \"alpha\\n\"}
- name: b
  copy: {dest: \"{{ root }}/b.txt\", content: \"beta\\n\", mode: \"0600\"}
- name: dir
  file: {path: \"{{ root }}/d\", state: directory}
";

#[tokio::test]
async fn independent_tasks_are_one_probe_script_and_one_apply_script() {
    let p = Project::new(&["h1", "h2"], &[tasks(THREE_FILES)]);
    let o = p.converge().await;
    for h in ["h1", "h2"] {
        assert_eq!(o.execs(h), vec![2], "{}", o.dump());
        let execs = p.host(h).execs();
        assert_eq!(execs.len(), 2);
        // The probe script reads all three paths (and gathers facts on the way).
        for path in ["a.txt", "b.txt", "/d"] {
            assert!(execs[0].script.contains(path), "probe reads {path}");
        }
        assert!(execs[0].script.contains("memory_mb"), "facts ride along");
        assert!(!execs[0].script.contains("alpha"), "probes do not write");
        assert!(execs[1].script.contains("alpha") || execs[1].script.contains("YWxwaGEK"));
        assert_eq!(p.read(h, "a.txt"), "alpha\n");
        assert_eq!(p.read(h, "b.txt"), "beta\n");
        assert!(p.root(h).join("d").is_dir());
        assert_eq!(o.recap(h).changed, 3);
    }
    assert!(o.summary.changed && !o.summary.failed);
}

#[tokio::test]
async fn a_second_converge_is_one_exec_and_changes_nothing() {
    let p = Project::new(&["h1", "h2"], &[tasks(THREE_FILES)]);
    p.converge().await;
    let o = p.converge().await;
    assert_eq!(o.changed_tasks(), vec![], "{}", o.dump());
    for h in ["h1", "h2"] {
        assert_eq!(o.execs(h), vec![1], "{}", o.dump());
        assert_eq!(o.recap(h).ok, 3);
        assert_eq!(o.recap(h).changed, 0);
    }
    assert!(!o.summary.changed);
}

#[tokio::test]
async fn check_mode_reports_changes_and_touches_nothing() {
    let p = Project::new(&["h1"], &[tasks(THREE_FILES)]);
    let o = p
        .run(crate::RunOptions {
            check: true,
            ..opts()
        })
        .await;
    for t in ["a", "b", "dir"] {
        assert_eq!(o.status("h1", t), Status::Changed, "{}", o.dump());
    }
    assert_eq!(o.execs("h1"), vec![1], "check mode only probes");
    assert!(!p.exists("h1", "a.txt") && !p.exists("h1", "d"));
    assert!(o.summary.changed);
}

#[tokio::test]
async fn check_mode_marks_plans_that_depend_on_earlier_changes_as_predictions() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: write\n  copy: {dest: \"{{ root }}/f\", content: \"one\\n\"}\n\
             - name: append\n  lineinfile: {path: \"{{ root }}/f\", line: two, create: true}\n",
        )],
    );
    let o = p
        .run(crate::RunOptions {
            check: true,
            ..opts()
        })
        .await;
    assert!(!o.task("h1", "write").predicted);
    assert!(o.task("h1", "append").predicted, "{}", o.dump());
    assert!(!p.exists("h1", "f"));
}

#[tokio::test]
async fn a_probe_made_stale_by_an_apply_is_probed_again_in_the_next_round() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: write\n  copy: {dest: \"{{ root }}/f\", content: \"one\\n\"}\n\
             - name: append\n  lineinfile: {path: \"{{ root }}/f\", line: two}\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(p.read("h1", "f"), "one\ntwo\n", "{}", o.dump());
    // Round 1: probe both, apply the copy (the lineinfile probe saw no file: stale).
    // Round 2: probe the lineinfile again, apply it.
    assert_eq!(o.execs("h1"), vec![4]);
    assert_eq!(o.status("h1", "append"), Status::Changed);
}

#[tokio::test]
async fn a_command_makes_later_probes_stale() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: touch\n  command: \"touch {{ root }}/x\"\n\
             - name: later\n  copy: {dest: \"{{ root }}/y\", content: \"y\\n\"}\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(o.execs("h1"), vec![4], "{}", o.dump());
    assert!(p.exists("h1", "x") && p.exists("h1", "y"));
    let t = o.task("h1", "touch");
    assert!(t.always, "an unguarded command always runs");
}

#[tokio::test]
async fn a_guarded_command_after_a_change_retests_its_guard_in_the_same_apply() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: make it\n  copy: {dest: \"{{ root }}/made\", content: \"x\\n\"}\n\
             - name: guarded\n  command: {cmd: \"touch {{ root }}/never\", creates: \"{{ root }}/made\"}\n\
             - name: other guard\n  command: {cmd: \"touch {{ root }}/ran\", creates: \"{{ root }}/ran\"}\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(o.execs("h1"), vec![2], "{}", o.dump());
    let g = o.task("h1", "guarded");
    assert_eq!(g.status, Status::Ok);
    assert_eq!(
        g.message.as_deref(),
        Some("guard holds (tested again on the host)")
    );
    assert!(!p.exists("h1", "never"));
    assert_eq!(o.status("h1", "other guard"), Status::Changed);
    assert!(p.exists("h1", "ran"));
}

#[tokio::test]
async fn tasks_reading_facts_wait_for_the_first_round() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: facts file\n  copy: {dest: \"{{ root }}/cpus\", content: \"{{ facts.cpus }}\\n\"}\n",
        )],
    );
    let o = p.converge().await;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    assert_eq!(p.read("h1", "cpus"), format!("{cpus}\n"), "{}", o.dump());
    // Facts alone, then the probe, then the apply.
    assert_eq!(o.execs("h1"), vec![3]);
    let execs = p.host("h1").execs();
    assert!(execs[0].script.contains("memory_mb"));
    assert!(
        !execs[0].script.contains("/cpus"),
        "the task waited for facts"
    );
    assert!(execs[1].script.contains("/cpus"));
}

#[tokio::test]
async fn a_later_play_reuses_the_facts_of_the_first() {
    let p = Project::new(
        &["h1"],
        &[
            (
                "roles/site.yml",
                "- name: one\n  hosts: web\n  roles: [main]\n- name: two\n  hosts: web\n  roles: [again]\n",
            ),
            tasks("- name: f1\n  copy: {dest: \"{{ root }}/one\", content: \"{{ facts.hostname }}\\n\"}\n"),
            (
                "roles/again/tasks.yml",
                "- name: f2\n  copy: {dest: \"{{ root }}/two\", content: \"{{ facts.hostname }}\\n\"}\n",
            ),
        ],
    );
    p.converge().await;
    let o = p.converge().await;
    assert_eq!(o.changed_tasks(), vec![], "{}", o.dump());
    assert_eq!(o.execs("h1"), vec![2, 1], "facts are gathered once per run");
    assert!(!p.read("h1", "two").is_empty());
    assert_eq!(p.read("h1", "one"), p.read("h1", "two"));
}

#[tokio::test]
async fn a_template_is_rendered_per_host_and_converges() {
    let p = Project::new(
        &["h1", "h2"],
        &[
            tasks("- name: conf\n  template: {src: app.conf.j2, dest: \"{{ root }}/app.conf\"}\n"),
            (
                "templates/main/app.conf.j2",
                "host = {{ inventory_hostname }}\n{% for w in workers %}w{{ loop.index }} = {{ w }}\n{% endfor %}",
            ),
            ("roles/main/defaults.yml", "workers: [a, b]\n"),
        ],
    );
    let o = p.converge().await;
    assert!(!o.summary.failed, "{}", o.dump());
    assert_eq!(p.read("h2", "app.conf"), "host = h2\nw1 = a\nw2 = b\n");
    // A hand edit is put back, with a diff when asked for.
    std::fs::write(p.root("h1").join("app.conf"), "host = edited\n").expect("edit");
    let o = p
        .run(crate::RunOptions {
            diff: true,
            ..opts()
        })
        .await;
    let r = o.task("h1", "conf");
    assert_eq!(r.status, Status::Changed);
    let d = r.diff.as_ref().expect("a diff");
    assert!(d.unified.contains("-host = edited"), "{}", d.unified);
    assert!(d.unified.contains("+host = h1"), "{}", d.unified);
    assert_eq!(o.status("h2", "conf"), Status::Ok);
}

#[tokio::test]
async fn wait_for_after_a_change_is_probed_again_and_holds() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: ready\n  copy: {dest: \"{{ root }}/ready\", content: \"1\\n\"}\n\
             - name: wait\n  wait_for: {command: \"test -f {{ root }}/ready\", timeout: 5}\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(o.status("h1", "wait"), Status::Ok, "{}", o.dump());
    // Probe both, apply the copy, probe the wait again: it holds, nothing to apply.
    assert_eq!(o.execs("h1"), vec![3]);
}

#[tokio::test]
async fn a_wait_that_has_to_wait_is_ok_not_changed() {
    // The wait loop runs on the host; a background job makes the condition true a moment
    // after the wait starts.
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: wait\n  wait_for: {command: \"test -f {{ root }}/ready || { [ -f {{ root }}/started ] || { touch {{ root }}/started; (touch {{ root }}/ready) </dev/null >/dev/null 2>&1 & }; false; }\", timeout: 20, interval: 1}\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(o.status("h1", "wait"), Status::Ok, "{}", o.dump());
    assert_eq!(o.recap("h1").changed, 0);
    assert!(p.exists("h1", "ready"));
}

#[tokio::test]
async fn a_new_directory_and_a_file_in_it_share_one_apply() {
    // A freshly created empty directory makes only its own (and its parents') probes
    // stale: the file inside it was probed as missing, which is still true.
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: dir\n  file: {path: \"{{ root }}/app\", state: directory, mode: \"0750\"}\n\
             - name: conf\n  copy: {dest: \"{{ root }}/app/conf\", content: \"c\\n\", mode: \"0600\"}\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(o.execs("h1"), vec![2], "{}", o.dump());
    assert_eq!(p.read("h1", "app/conf"), "c\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = |rel: &str| {
        std::fs::metadata(p.root("h1").join(rel))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    assert_eq!(mode("app"), 0o750);
    assert_eq!(mode("app/conf"), 0o600);
    assert!(o.task("h1", "conf").diff.is_none(), "no diff unless asked");
}

#[tokio::test]
async fn an_unguarded_command_changes_on_every_converge() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: file\n  copy: {dest: \"{{ root }}/f\", content: \"f\\n\"}\n\
             - name: always\n  shell: \"echo run >> {{ root }}/runs\"\n",
        )],
    );
    p.converge().await;
    let o = p.converge().await;
    assert_eq!(
        o.changed_tasks(),
        vec![("h1".to_string(), "always".to_string())],
        "{}",
        o.dump()
    );
    assert_eq!(p.read("h1", "runs"), "run\nrun\n");
    // The copy is a no-op; the command needs its apply script.
    assert_eq!(o.execs("h1"), vec![2]);
}

#[tokio::test]
async fn check_mode_plans_handlers_without_running_or_recording_them() {
    let p = Project::new(
        &["h1"],
        &[
            tasks("- name: t\n  copy: {dest: \"{{ root }}/t\", content: \"t\\n\"}\n  notify: reload\n"),
            handlers("- name: reload\n  shell: \"echo reloaded >> {{ root }}/reloads\"\n"),
        ],
    );
    let o = p
        .run(crate::RunOptions {
            check: true,
            ..opts()
        })
        .await;
    assert!(o.reported("h1", "reload"), "{}", o.dump());
    assert!(!p.exists("h1", "reloads") && !p.exists("h1", "t"));
    assert!(!p.host("h1").state_dir().join("notify/main").exists());
    assert_eq!(o.execs("h1"), vec![1]);
}

#[tokio::test]
async fn when_reads_facts() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: has cpus\n  file: {path: \"{{ root }}/yes\", state: directory}\n  when: facts.cpus > 0\n\
             - name: no cpus\n  file: {path: \"{{ root }}/no\", state: directory}\n  when: facts.cpus == 0\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(o.status("h1", "has cpus"), Status::Changed, "{}", o.dump());
    assert_eq!(o.status("h1", "no cpus"), Status::Skipped);
    assert!(p.exists("h1", "yes") && !p.exists("h1", "no"));
}

#[tokio::test]
async fn ansible_fact_names_wait_for_the_facts_like_facts_does() {
    let p = Project::new(
        &["h1"],
        &[tasks(
            "- name: same cpus\n  file: {path: \"{{ root }}/same\", state: directory}\n  when: ansible_processor_vcpus == facts.cpus and ansible_facts.memtotal_mb == facts.memory_mb\n\
             - name: named by its distribution\n  file: {path: \"{{ root }}/{{ ansible_distribution | lower }}\", state: directory}\n",
        )],
    );
    let o = p.converge().await;
    assert_eq!(o.status("h1", "same cpus"), Status::Changed, "{}", o.dump());
    assert_eq!(
        o.status("h1", "named by its distribution"),
        Status::Changed,
        "{}",
        o.dump()
    );
    assert!(p.exists("h1", "same"));
    // This machine's own ID, as the file name the template made of it.
    let id = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("ID=")
                    .map(|v| v.trim_matches('"').to_lowercase())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    assert!(p.exists("h1", &id), "{}", o.dump());
}
