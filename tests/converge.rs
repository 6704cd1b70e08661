//! The engine end to end: the real `bosun` binary against real OpenSSH sshd processes on
//! loopback. Two inventory hosts (127.0.0.2 and 127.0.0.3) are the same machine, so every
//! path and name a role touches carries the host's name.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

/// A role with every module that can run on a plain (non-systemd) machine; `systemd` is
/// exercised on real systemd hosts by the lab tests.
const EVERY_TASKS: &str = r#"
- name: base directory
  file: {path: "{{ base }}", state: directory, mode: "0755"}
- name: group
  group: {name: "bsn_{{ inventory_hostname }}", state: present}
- name: user
  user: {name: "bsn_{{ inventory_hostname }}", group: "bsn_{{ inventory_hostname }}", create_home: false, shell: /usr/sbin/nologin}
- name: inline file
  copy: {dest: "{{ base }}/inline.txt", content: "hello {{ inventory_hostname }}\n", mode: "0640"}
- name: config from template
  template: {src: app.conf.j2, dest: "{{ base }}/app.conf", mode: "0600"}
  notify: record reload
- name: a line
  lineinfile: {path: "{{ base }}/lines.txt", line: "managed=yes", create: true}
- name: an ini key
  ini: {path: "{{ base }}/settings.ini", section: main, option: port, value: "8000", create: true}
- name: a sysctl setting (persisted only)
  sysctl: {name: vm.bosun_test_key, value: "1", file: "{{ base }}/sysctl.conf", reload: false}
- name: a package that is already there
  apt: {name: coreutils, state: present}
- name: a guarded command
  command: {cmd: "touch {{ base }}/created-by-command", creates: "{{ base }}/created-by-command"}
- name: a guarded shell
  shell: {cmd: "echo ran >> {{ base }}/shell.log", unless: "test -s {{ base }}/shell.log"}
- name: wait for sshd
  wait_for: {port: "{{ ssh_port }}", host: "{{ address }}", timeout: 60}
- name: a python package in a venv
  pip: {name: ["six==1.16.0"], virtualenv: "{{ base }}/venv"}
- name: an npm package
  npm: {name: ["is-number@7.0.0"], path: "{{ base }}/node"}
- name: node project dir
  file: {path: "{{ base }}/node", state: directory}
- name: links and cleanup
  file: {path: "{{ base }}/current", state: link, src: "{{ base }}/app.conf"}
"#;

const EVERY_DEFAULTS: &str =
    "base: \"{{ root }}/{{ inventory_hostname }}\"\nworkers: [a, b, c]\nssh_port: 22\n";

const EVERY_TEMPLATE: &str = "# managed by bosun\nhost = {{ inventory_hostname }}\npassword = {{ app_password }}\n{% for w in workers %}worker.{{ loop.index }} = {{ w }}\n{% endfor %}";

const EVERY_HANDLERS: &str =
    "- name: record reload\n  shell: \"date +%s%N >> {{ base }}/reloads\"\n";

fn every_project() -> Project {
    let p = Project::new(
        2,
        &[
            ("roles/every/tasks.yml", EVERY_TASKS),
            ("roles/every/defaults.yml", EVERY_DEFAULTS),
            ("roles/every/handlers.yml", EVERY_HANDLERS),
            ("templates/every/app.conf.j2", EVERY_TEMPLATE),
        ],
    );
    // npm installs into an existing project directory: make it first, as an operator would.
    for h in ["h1", "h2"] {
        std::fs::create_dir_all(p.root.join(h).join("node")).expect("node dir");
    }
    p
}

fn recap(evs: &[Value]) -> &Value {
    evs.iter()
        .find(|e| e["event"] == "recap")
        .expect("a recap event")
}

fn cleanup_users() {
    for h in ["h1", "h2"] {
        let _ = std::process::Command::new("userdel")
            .arg(format!("bsn_{h}"))
            .output();
        let _ = std::process::Command::new("groupdel")
            .arg(format!("bsn_{h}"))
            .output();
    }
}

#[test]
fn every_module_converges_then_is_a_one_exec_noop() {
    cleanup_users();
    let p = every_project();
    let port = p._sshd.port.to_string();
    let ev = format!("ssh_port={port}");
    let first = p.run(&[
        "converge",
        "-i",
        "inventory.yml",
        "-e",
        &ev,
        "--output",
        "json",
    ]);
    let (out, err) = text(&first);
    assert!(
        first.status.success(),
        "first converge failed:\n{out}\n{err}"
    );
    let evs = events(&first);
    let r = recap(&evs);
    for h in r["hosts"].as_array().expect("hosts") {
        assert!(
            h["changed"].as_u64().unwrap_or(0) >= 10,
            "first run changes things: {h}"
        );
        assert_eq!(h["failed"], 0, "{h}");
    }
    // The handler ran once per host.
    for h in ["h1", "h2"] {
        let reloads = std::fs::read_to_string(p.root.join(h).join("reloads")).expect("handler ran");
        assert_eq!(reloads.lines().count(), 1);
        let conf =
            std::fs::read_to_string(p.root.join(h).join("app.conf")).expect("template written");
        assert!(conf.contains(&format!("host = {h}")));
        assert!(conf.contains("worker.3 = c"));
    }

    let second = p.run(&[
        "converge",
        "-i",
        "inventory.yml",
        "-e",
        &ev,
        "--output",
        "json",
    ]);
    let (out, err) = text(&second);
    assert!(
        second.status.success(),
        "second converge failed:\n{out}\n{err}"
    );
    let evs = events(&second);
    let r = recap(&evs);
    assert_eq!(
        r["changed_tasks"],
        Value::Array(vec![]),
        "second run must change nothing"
    );
    for h in r["hosts"].as_array().expect("hosts") {
        assert_eq!(h["changed"], 0, "{h}");
        assert_eq!(
            h["execs_per_play"],
            serde_json::json!([1]),
            "a no-op play is one exec per host: {h}"
        );
    }
    for h in ["h1", "h2"] {
        let reloads = std::fs::read_to_string(p.root.join(h).join("reloads")).expect("reloads");
        assert_eq!(
            reloads.lines().count(),
            1,
            "handler must not run on a no-op converge"
        );
    }
    // The text recap shows the exec count with -v.
    let third = p.run(&["converge", "-i", "inventory.yml", "-e", &ev, "-v"]);
    let (out, _) = text(&third);
    assert!(out.contains("EXECS"), "{out}");

    // No secret anywhere in any output.
    for o in [&first, &second, &third] {
        let (out, err) = text(o);
        assert!(
            !out.contains(SECRET) && !err.contains(SECRET),
            "secret leaked"
        );
    }
    cleanup_users();
}

#[test]
fn plan_shows_hand_edit_as_diff_exits_2_and_changes_nothing() {
    let p = Project::new(
        1,
        &[
            (
                "roles/every/tasks.yml",
                "- name: conf\n  template: {src: app.conf.j2, dest: \"{{ root }}/app.conf\"}\n",
            ),
            (
                "templates/every/app.conf.j2",
                "port = 8000\npassword = {{ app_password }}\n",
            ),
        ],
    );
    let o = p.run(&["converge", "-i", "inventory.yml"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = p.run(&["plan", "-i", "inventory.yml"]);
    assert_eq!(o.status.code(), Some(0), "nothing pending: {:?}", text(&o));

    let file = p.root.join("app.conf");
    let edited = format!("port = 9999\npassword = {SECRET}\n");
    std::fs::write(&file, &edited).expect("hand edit");
    let o = p.run(&["plan", "-i", "inventory.yml"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "changes pending:\n{out}\n{err}");
    assert!(
        out.contains("-port = 9999") && out.contains("+port = 8000"),
        "diff shown:\n{out}"
    );
    assert!(
        out.contains("password = <redacted>"),
        "secret line redacted:\n{out}"
    );
    assert!(!out.contains(SECRET) && !err.contains(SECRET));
    assert_eq!(
        std::fs::read_to_string(&file).expect("file"),
        edited,
        "plan must not touch the file"
    );

    // JSON events carry the diff, redacted too.
    let o = p.run(&["plan", "-i", "inventory.yml", "--output", "json"]);
    let raw = String::from_utf8_lossy(&o.stdout);
    assert!(!raw.contains(SECRET));
    assert!(events(&o).iter().any(|e| e["event"] == "task"
        && e["diff"]["unified"]
            .as_str()
            .is_some_and(|d| d.contains("+port = 8000"))));
}

#[test]
fn unknown_host_key_is_refused() {
    let p = Project::new(
        1,
        &[(
            "roles/every/tasks.yml",
            "- name: d\n  file: {path: \"{{ root }}/x\", state: directory}\n",
        )],
    );
    std::fs::write(p.dir.join("known_hosts"), "").expect("empty known_hosts");
    let o = p.run(&["converge", "-i", "inventory.yml"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("not in") && out.contains("refusing"), "{out}");
    assert!(!p.root.join("x").exists(), "nothing changed on the host");

    // A changed key is refused even with --accept-new-host-keys.
    let wrong = "[127.0.0.2]:1 x\n".replace(
        ":1 x",
        &format!(
            ":{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            p._sshd.port
        ),
    );
    std::fs::write(p.dir.join("known_hosts"), wrong).expect("wrong key");
    let o = p.run(&["converge", "-i", "inventory.yml", "--accept-new-host-keys"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(out.contains("CHANGED"), "{out}");

    // --accept-new-host-keys learns an unknown key, then verifies it.
    std::fs::write(p.dir.join("known_hosts"), "").expect("empty");
    let o = p.run(&["converge", "-i", "inventory.yml", "--accept-new-host-keys"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let kh = std::fs::read_to_string(p.dir.join("known_hosts")).expect("known_hosts");
    assert!(kh.contains("127.0.0.2"), "{kh}");
    assert!(p.root.join("x").is_dir());
}

fn assert_load_error(p: &Project, args: &[&str], file: &str, line: u64, what: &str) {
    let o = p.run(args);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    let needle = format!("{file}:{line}:");
    assert!(err.contains(&needle), "expected {needle} in:\n{err}");
    assert!(err.contains(what), "expected `{what}` in:\n{err}");
    assert!(err.contains("hint:"), "a hint in:\n{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn bad_input_names_file_and_line_and_changes_nothing() {
    let p = Project::new(1, &[("roles/every/tasks.yml", "- name: ok\n  file: {path: \"{{ root }}/made\", state: directory}\n- name: broken\n  copy: [\n")]);
    assert_load_error(
        &p,
        &["converge", "-i", "inventory.yml"],
        "roles/every/tasks.yml",
        4,
        "unclosed",
    );
    assert!(!p.root.join("made").exists());

    write_tree(&p.dir, &[("roles/every/tasks.yml", "- name: ok\n  file: {path: \"{{ root }}/made\", state: directory}\n- name: typo\n  tempalte: {src: x, dest: /tmp/x}\n")]);
    assert_load_error(
        &p,
        &["converge", "-i", "inventory.yml"],
        "roles/every/tasks.yml",
        4,
        "tempalte",
    );

    write_tree(&p.dir, &[("roles/every/tasks.yml", "- name: ok\n  file: {path: \"{{ root }}/made\", state: directory}\n- name: param\n  file: {path: /tmp/x, state: directory, mdoe: \"0644\"}\n")]);
    assert_load_error(
        &p,
        &["converge", "-i", "inventory.yml"],
        "roles/every/tasks.yml",
        3,
        "mdoe",
    );

    write_tree(&p.dir, &[("roles/every/tasks.yml", "- name: ok\n  file: {path: \"{{ root }}/made\", state: directory}\n- name: var\n  file: {path: \"{{ root }}/{{ no_such_var }}\", state: directory}\n")]);
    assert_load_error(
        &p,
        &["converge", "-i", "inventory.yml"],
        "roles/every/tasks.yml",
        3,
        "no_such_var",
    );
    assert!(!p.root.join("made").exists(), "nothing changed on any host");

    write_tree(
        &p.dir,
        &[(
            "bad-inventory.yml",
            "hosts:\n  a: {address: 127.0.0.2}\ngroups:\n  g:\n    hosts: [a, b]\n",
        )],
    );
    assert_load_error(
        &p,
        &["converge", "-i", "bad-inventory.yml"],
        "bad-inventory.yml",
        5,
        "unknown host `b`",
    );
}

#[test]
fn inventory_list_and_exec() {
    let p = Project::new(
        2,
        &[(
            "roles/every/tasks.yml",
            "- name: d\n  file: {path: \"{{ root }}/x\", state: directory}\n",
        )],
    );
    let o = p.run(&["inventory", "list", "-i", "inventory.yml", "-v"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(
        out.contains("h1") && out.contains("127.0.0.2") && out.contains("web"),
        "{out}"
    );
    assert!(out.contains("<redacted>") && !out.contains(SECRET), "{out}");

    let o = p.run(&[
        "exec",
        "-i",
        "inventory.yml",
        "-l",
        "web",
        "--output",
        "json",
        "--",
        "echo",
        "hi-$(hostname)",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let evs = events(&o);
    assert_eq!(evs.len(), 2);
    assert!(evs
        .iter()
        .all(|e| e["rc"] == 0 && e["stdout"].as_str().is_some_and(|s| s.starts_with("hi-"))));
    let o = p.run(&["exec", "-i", "inventory.yml", "-l", "h1", "--", "exit 3"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn failed_host_does_not_stop_the_others_and_handlers_wait() {
    let p = Project::new(
        2,
        &[(
            "roles/every/tasks.yml",
            "- name: make dir\n  file: {path: \"{{ root }}/{{ inventory_hostname }}\", state: directory}\n  notify: mark\n\
             - name: fails on h1\n  shell: \"test {{ inventory_hostname }} != h1\"\n\
             - name: after\n  file: {path: \"{{ root }}/{{ inventory_hostname }}/after\", state: directory}\n",
        ), ("roles/every/handlers.yml", "- name: mark\n  shell: \"touch {{ root }}/{{ inventory_hostname }}/handled\"\n")],
    );
    let o = p.run(&["converge", "-i", "inventory.yml", "--output", "json"]);
    assert_eq!(o.status.code(), Some(1), "a failed host fails the run");
    let root: &Path = &p.root;
    assert!(!root.join("h1/after").exists(), "h1 stopped at its failure");
    assert!(
        !root.join("h1/handled").exists(),
        "handlers of a failed host do not run"
    );
    assert!(root.join("h2/after").is_dir(), "h2 carried on");
    assert!(root.join("h2/handled").exists());
    let evs = events(&o);
    assert!(evs
        .iter()
        .any(|e| e["event"] == "handlers_skipped" && e["host"] == "h1"));
}

const CONTROL_TASKS: &str = r#"
- name: count
  shell: "echo 3"
  register: n
  changed_when: false
- name: uses the registered value
  file: {path: "{{ root }}/{{ inventory_hostname }}-{{ n.stdout | trim }}", state: directory}
- name: loop
  file: {path: "{{ root }}/{{ inventory_hostname }}-{{ item }}", state: directory}
  loop: [a, b]
- name: skipped by when
  file: {path: "{{ root }}/{{ inventory_hostname }}-never", state: directory}
  when: "n.stdout | trim == '4'"
- name: once
  shell: "echo {{ inventory_hostname }} >> {{ root }}/once"
  run_once: true
- name: tagged
  file: {path: "{{ root }}/{{ inventory_hostname }}-tagged", state: directory}
  tags: [extra]
- name: retried until it succeeds
  shell: "c=$(cat {{ root }}/{{ inventory_hostname }}-tries 2>/dev/null || echo 0); c=$((c+1)); echo $c > {{ root }}/{{ inventory_hostname }}-tries; test $c -ge 3"
  register: t
  until: "t.rc == 0"
  retries: 5
  delay: 0
"#;

#[test]
fn register_loop_when_run_once_tags_limit_and_until() {
    let p = Project::new(2, &[("roles/every/tasks.yml", CONTROL_TASKS)]);
    let o = p.run(&["converge", "-i", "inventory.yml", "--skip-tags", "extra"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    for h in ["h1", "h2"] {
        assert!(
            p.root.join(format!("{h}-3")).is_dir(),
            "registered stdout used: {out}"
        );
        assert!(p.root.join(format!("{h}-a")).is_dir() && p.root.join(format!("{h}-b")).is_dir());
        assert!(!p.root.join(format!("{h}-never")).exists());
        assert!(!p.root.join(format!("{h}-tagged")).exists(), "--skip-tags");
        let tries = std::fs::read_to_string(p.root.join(format!("{h}-tries"))).expect("tries");
        assert_eq!(tries.trim(), "3", "until retried twice then succeeded");
    }
    let once = std::fs::read_to_string(p.root.join("once")).expect("once");
    assert_eq!(once, "h1\n", "run_once ran on the first host only");

    let o = p.run(&[
        "converge",
        "-i",
        "inventory.yml",
        "--tags",
        "extra",
        "-l",
        "h1",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(p.root.join("h1-tagged").is_dir());
    assert!(!p.root.join("h2-tagged").exists(), "--limit h1");
    assert_eq!(
        std::fs::read_to_string(p.root.join("once")).expect("once"),
        "h1\n",
        "--tags extra ran only tagged tasks"
    );
}

#[test]
fn max_fail_percentage_stops_the_run_between_serial_batches() {
    let p = Project::new(
        2,
        &[
            ("roles/site.yml", "- name: rolling\n  hosts: web\n  serial: 1\n  max_fail_percentage: 0\n  roles: [every]\n- name: later\n  hosts: web\n  roles: [later]\n"),
            ("roles/every/tasks.yml", "- name: fails on h1\n  shell: \"test {{ inventory_hostname }} != h1\"\n- name: mark\n  file: {path: \"{{ root }}/{{ inventory_hostname }}-rolled\", state: directory}\n"),
            ("roles/later/tasks.yml", "- name: later\n  file: {path: \"{{ root }}/{{ inventory_hostname }}-later\", state: directory}\n"),
        ],
    );
    let o = p.run(&["converge", "-i", "inventory.yml", "--output", "json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        !p.root.join("h2-rolled").exists(),
        "the second batch never started"
    );
    assert!(
        !p.root.join("h2-later").exists(),
        "later plays do not run after an abort"
    );
    let evs = events(&o);
    assert!(evs
        .iter()
        .any(|e| e["event"] == "play_end" && e["aborted"] == true));
}

/// Writes into a directory a non-root user owns run as that user, end to end: a symlink
/// they planted at the destination is replaced, never followed.
#[test]
fn writes_in_a_users_directory_never_follow_a_planted_link() {
    use std::os::unix::fs::{chown, lchown, symlink, MetadataExt, PermissionsExt};
    const NOBODY: u32 = 65534;
    let tasks = "- name: config\n  copy: {dest: \"{{ root }}/home/app.conf\", content: \"managed\\n\", mode: \"0644\"}\n\
                 - name: cache\n  file: {path: \"{{ root }}/home/cache\", state: directory}\n\
                 - name: env\n  lineinfile: {path: \"{{ root }}/home/env\", line: \"A=1\", create: true}\n";
    let p = Project::new(1, &[("roles/every/tasks.yml", tasks)]);
    let home = p.root.join("home");
    std::fs::create_dir_all(&home).expect("home");
    chown(&home, Some(NOBODY), Some(NOBODY)).expect("chown home");
    let victim = p.root.join("victim");
    std::fs::write(&victim, "precious\n").expect("victim");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    symlink(&victim, home.join("app.conf")).expect("plant");
    lchown(home.join("app.conf"), Some(NOBODY), Some(NOBODY)).expect("lchown");

    let o = p.run(&["converge", "-i", "inventory.yml", "--output", "json"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let evs = events(&o);
    let config = evs
        .iter()
        .find(|e| e["event"] == "task" && e["task"] == "config")
        .expect("config task");
    assert!(
        config["details"].as_array().is_some_and(|d| d
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.starts_with("done as nobody")))),
        "{config}"
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious\n"
    );
    assert_eq!(
        std::fs::metadata(&victim).expect("victim").mode() & 0o777,
        0o600
    );
    let conf = std::fs::symlink_metadata(home.join("app.conf")).expect("conf");
    assert!(conf.is_file());
    for made in ["app.conf", "cache", "env"] {
        let m = std::fs::metadata(home.join(made)).expect(made);
        assert_eq!(m.uid(), NOBODY, "{made} is the user's");
    }
    let o = p.run(&["converge", "-i", "inventory.yml", "--output", "json"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(
        recap(&events(&o))["changed_tasks"],
        Value::Array(vec![]),
        "converged"
    );
}

/// Facts arrive with a host's first probe round, are visible to `when` and templates as
/// `facts.*`, and are kept for the host's later plays (which then cost no round trip for
/// them).
#[test]
fn facts_reach_when_and_templates_and_later_plays() {
    let p = Project::new(
        1,
        &[
            (
                "roles/every/tasks.yml",
                "- name: facts file\n  copy: {dest: \"{{ root }}/facts.txt\", content: \"{{ facts.os_id }} {{ facts.cpus }} {{ facts.memory_mb > 0 }}\\n\"}\n\
                 - name: only on debian\n  file: {path: \"{{ root }}/debian\", state: directory}\n  when: facts.os_id == 'debian'\n\
                 - name: never\n  file: {path: \"{{ root }}/never\", state: directory}\n  when: facts.cpus == 0\n",
            ),
            ("roles/again/tasks.yml", "- name: again\n  copy: {dest: \"{{ root }}/again.txt\", content: \"codename={{ facts.os_codename }}\\n\"}\n"),
            (
                "roles/site.yml",
                "- name: web\n  hosts: web\n  roles: [every]\n- name: later\n  hosts: web\n  roles: [again]\n",
            ),
        ],
    );
    let o = p.run(&["converge", "-i", "inventory.yml", "--output", "json"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let os = std::fs::read_to_string("/etc/os-release").expect("os-release");
    let field = |k: &str| {
        os.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    assert_eq!(
        std::fs::read_to_string(p.root.join("facts.txt")).expect("facts.txt"),
        format!("{} {cpus} True\n", field("ID"))
    );
    assert_eq!(
        std::fs::read_to_string(p.root.join("again.txt")).expect("again.txt"),
        format!("codename={}\n", field("VERSION_CODENAME"))
    );
    assert_eq!(p.root.join("debian").is_dir(), field("ID") == "debian");
    assert!(!p.root.join("never").exists());
    // The no-op: facts and the first task's probe share the first round trip of play 1
    // only when a task needs no facts; here every task reads them, so play 1 takes one
    // round for facts and one for its probes, and play 2 one.
    let o = p.run(&["converge", "-i", "inventory.yml", "--output", "json"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let evs = events(&o);
    let r = recap(&evs);
    assert_eq!(r["changed_tasks"], Value::Array(vec![]), "{r}");
    assert_eq!(
        r["hosts"][0]["execs_per_play"],
        serde_json::json!([2, 1]),
        "{r}"
    );
    let f = p.run(&["facts", "-i", "inventory.yml", "h1"]);
    let facts: Value = serde_json::from_slice(&f.stdout).expect("facts JSON");
    assert_eq!(facts["os_id"], field("ID"));
    assert!(facts["default_ipv4"].is_string(), "{facts}");
}

/// A play needs no round of its own for facts when nothing it will run reads them: a task
/// whose `when` is already false, or a template whose file reads only known variables, does
/// not wait for a variable that reads facts.
#[test]
fn tasks_that_cannot_read_facts_do_not_wait_for_them() {
    let p = Project::new(
        1,
        &[
            ("roles/lean/defaults.yml", "by_release: \"{{ facts.os_id }}\"\nplain: hello\n"),
            (
                "roles/lean/tasks.yml",
                "- name: only elsewhere\n  template: {src: release.j2, dest: \"{{ root }}/release.txt\"}\n  when: inventory_hostname == 'nowhere'\n\
                 - name: plain template\n  template: {src: plain.j2, dest: \"{{ root }}/plain.txt\"}\n",
            ),
            ("templates/lean/release.j2", "{{ by_release }}\n"),
            ("templates/lean/plain.j2", "{{ plain }} {{ inventory_hostname }}\n"),
            ("roles/site.yml", "- name: web\n  hosts: web\n  roles: [lean]\n"),
        ],
    );
    for run in ["first", "no-op"] {
        let o = p.run(&["converge", "-i", "inventory.yml", "--output", "json"]);
        assert!(o.status.success(), "{run}: {:?}", text(&o));
        let evs = events(&o);
        let r = recap(&evs);
        if run == "no-op" {
            assert_eq!(r["changed_tasks"], Value::Array(vec![]), "{r}");
            assert_eq!(
                r["hosts"][0]["execs_per_play"],
                serde_json::json!([1]),
                "{r}"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(p.root.join("plain.txt")).expect("plain.txt"),
        "hello h1\n"
    );
    assert!(!p.root.join("release.txt").exists());
}

/// Which connection a script came over: the sshd address in `SSH_CONNECTION` (h1 is
/// 127.0.0.2, h2 127.0.0.3), or none at all on the controller.
const WHERE_TASKS: &str = r#"
- name: over the delegate's connection
  shell: |
    case "$SSH_CONNECTION" in *" 127.0.0.3 "*) s=h2;; *" 127.0.0.2 "*) s=h1;; *) s=controller;; esac
    echo "{{ inventory_hostname }} ran on $s" >> {{ root }}/delegated
  delegate_to: h2
  when: inventory_hostname == 'h1'
- name: on the controller
  shell: |
    case "$SSH_CONNECTION" in *" 127.0.0.3 "*) s=h2;; *" 127.0.0.2 "*) s=h1;; *) s=controller;; esac
    echo "{{ inventory_hostname }} ran on $s" > {{ root }}/local-{{ inventory_hostname }}
  delegate_to: local
- name: as another account
  command: id -un
  become_user: nobody
  register: who
- name: what that account was
  copy: {dest: "{{ root }}/who-{{ inventory_hostname }}", content: "{{ who.stdout }}\n"}
"#;

/// `delegate_to` and `become_user` over real SSH: a delegated task runs over the other
/// host's connection (with this host's variables), `delegate_to: local` on the controller,
/// and `become_user` as that account on the host.
#[test]
fn delegate_to_and_become_user_cross_the_wire() {
    let p = Project::new(2, &[("roles/every/tasks.yml", WHERE_TASKS)]);
    let o = p.run(&["converge", "-i", "inventory.yml", "--output", "json"]);
    assert!(o.status.success(), "{}", why(&o));
    let read = |f: &str| std::fs::read_to_string(p.root.join(f)).unwrap_or_default();
    assert_eq!(read("delegated"), "h1 ran on h2\n");
    assert_eq!(read("local-h1"), "h1 ran on controller\n");
    assert_eq!(read("local-h2"), "h2 ran on controller\n");
    assert_eq!(read("who-h1"), "nobody\n");
    assert_eq!(read("who-h2"), "nobody\n");
}
