//! Faults the engine must survive (issue 11), through the real binary against a real sshd
//! on loopback: a step that cannot end, a hung guard, deadlines, Ctrl-C and SIGTERM, a
//! dropped connection, and handlers that outlive the run that notified them. Each test
//! prints how long the run took to end and what it left on the host.
//!
//! They are `#[ignore]`d only so that `tests/run.sh` runs them in a stage of their own with
//! their output shown: `cargo test --test faults -- --ignored --nocapture`.
//!
//! The tests of this file take turns (`SERIAL`): each checks that no scratch directory or
//! temp file of bosun is left on "the host", which is this machine.

mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// bosun's scratch directories (`/tmp/.bosun.*`) and temp files (`.bosun.*`) under `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir("/tmp")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(".bosun."))
                })
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    let out = Command::new("find")
        .arg(dir)
        .args(["-name", ".bosun.*"])
        .output()
        .expect("find");
    found.extend(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string),
    );
    found
}

/// bosun scripts still running here: scratch directories whose recorded shell lives.
fn live_scripts() -> Vec<String> {
    leftovers(Path::new("/nonexistent"))
        .into_iter()
        .filter(|d| {
            std::fs::read_to_string(Path::new(d).join("pg"))
                .ok()
                .and_then(|s| s.split_whitespace().nth(1).map(str::to_string))
                .is_some_and(|pid| Path::new("/proc").join(pid).exists())
        })
        .collect()
}

/// Whether a process whose command line contains `marker` runs on this machine.
fn running(marker: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", marker])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn spawn(p: &Project, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bosun"))
        .current_dir(&p.dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bosun")
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "signal {sig} to bosun");
}

fn role(tasks: &str) -> Vec<(&'static str, String)> {
    vec![("roles/every/tasks.yml", tasks.to_string())]
}

fn project(n: usize, files: &[(&'static str, String)], extra: &str) -> Project {
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    Project::with_inventory(n, &files, extra)
}

/// Runs bosun with `args`, which must fail (exit 1): its output, how long it took, stdout.
fn converge_fails(p: &Project, args: &[&str]) -> (std::process::Output, Duration, String) {
    let t0 = Instant::now();
    let o = p.run(args);
    let took = t0.elapsed();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    (o, took, out)
}

/// Prints the drill's figure and asserts that bosun left nothing on the host.
fn nothing_left(p: &Project, what: &str, took: Duration) {
    let left = leftovers(&p.root);
    report(what, took, &left);
    assert!(left.is_empty(), "{left:?}");
}

fn report(what: &str, t: Duration, left: &[String]) {
    println!(
        "FAULT {what}: the run ended after {:.2} s; left on the host: {}",
        t.as_secs_f64(),
        if left.is_empty() {
            "nothing".to_string()
        } else {
            left.join(", ")
        }
    );
}

#[test]
#[ignore = "fault drills: run by tests/run.sh, which prints their figures"]
fn a_validate_with_a_syntax_error_fails_its_task_and_the_run_ends() {
    let _s = serial();
    let p = project(
        1,
        &role(
            "- name: broken validate\n  copy: {dest: \"{{ root }}/v.conf\", content: \"x\\n\", validate: \"test -s %s'\"}\n\
             - name: after\n  file: {path: \"{{ root }}/after\", state: directory}\n",
        ),
        "",
    );
    let (o, took, out) =
        converge_fails(&p, &["converge", "-i", "inventory.yml", "--output", "json"]);
    let failed = events(&o)
        .into_iter()
        .find(|e| e["event"] == "task" && e["status"] == "failed")
        .unwrap_or_else(|| panic!("a failed task: {out}"));
    assert_eq!(failed["task"], "broken validate");
    let msg = failed["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("exit code") && (msg.contains("quote") || msg.contains("EOF")),
        "the step's stderr and status: {msg}"
    );
    assert!(!p.root.join("v.conf").exists(), "nothing half-written");
    assert!(!p.root.join("after").exists(), "later tasks did not run");
    nothing_left(&p, "validate: \"test -s %s'\"", took);
}

#[test]
#[ignore = "fault drills: run by tests/run.sh, which prints their figures"]
fn a_hung_guard_is_killed_at_its_deadline_and_the_other_host_finishes() {
    let _s = serial();
    let marker = "sleep 100123";
    let p = project(
        2,
        &role(&format!(
            "- name: hung guard\n  shell: {{cmd: \"touch {{{{ root }}}}/{{{{ inventory_hostname }}}}-ran\", unless: \"{marker}\"}}\n  when: inventory_hostname == 'h1'\n  timeout: 3\n\
             - name: after\n  file: {{path: \"{{{{ root }}}}/{{{{ inventory_hostname }}}}-after\", state: directory}}\n"
        )),
        "",
    );
    let (o, took, out) =
        converge_fails(&p, &["converge", "-i", "inventory.yml", "--output", "json"]);
    let evs = events(&o);
    let failed: Vec<_> = evs
        .iter()
        .filter(|e| e["event"] == "task" && e["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{out}");
    assert_eq!(failed[0]["host"], "h1");
    let msg = failed[0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("did not finish within 3 s"), "{msg}");
    assert!(
        p.root.join("h2-after").is_dir(),
        "the other host carried on"
    );
    assert!(!p.root.join("h1-after").exists());
    assert!(
        took < Duration::from_secs(30),
        "ended at the deadline: {took:?}"
    );
    assert!(
        !running(marker),
        "the guard's process is gone from the host"
    );
    nothing_left(&p, "unless: \"sleep 100000\" with timeout: 3", took);
}

#[test]
#[ignore = "fault drills: run by tests/run.sh, which prints their figures"]
fn probe_timeout_and_task_timeout_come_from_the_inventory() {
    let _s = serial();
    deadline_drill(
        "probe_timeout: 2 with a guard that sleeps",
        "- name: slow guard\n  shell: {cmd: \"true\", unless: \"sleep 100124\"}\n",
        "probe_timeout: 2\n",
        "sleep 100124",
    );
    deadline_drill(
        "task_timeout: 2 with a command that sleeps",
        "- name: slow step\n  command: {cmd: \"sleep 100125\"}\n",
        "task_timeout: 2\n",
        "sleep 100125",
    );
}

/// Converges `tasks` with the inventory's `extra` deadline of 2 s: the run must end
/// naming it, with nothing of `marker` left running and nothing left on the host.
fn deadline_drill(what: &str, tasks: &str, extra: &str, marker: &str) {
    let p = project(1, &role(tasks), extra);
    let (_, took, out) = converge_fails(&p, &["converge", "-i", "inventory.yml"]);
    assert!(out.contains("did not finish within 2 s"), "{out}");
    assert!(!running(marker), "the step's process is gone from the host");
    nothing_left(&p, what, took);
}

#[test]
#[ignore = "fault drills: run by tests/run.sh, which prints their figures"]
fn a_timeout_that_is_not_a_positive_number_is_a_preflight_error() {
    let _s = serial();
    for bad in ["0", "-1", "soon"] {
        let p = project(
            1,
            &role(&format!(
                "- name: ok\n  file: {{path: \"{{{{ root }}}}/made\", state: directory}}\n\
                 - name: bad\n  command: {{cmd: \"true\"}}\n  timeout: {bad}\n"
            )),
            "",
        );
        let o = p.run(&["converge", "-i", "inventory.yml"]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{out}{err}");
        assert!(
            err.contains("tasks.yml:5") && err.contains("timeout") && err.contains("positive"),
            "{err}"
        );
        assert!(!p.root.join("made").exists(), "nothing changed");
    }
    let p = project(
        1,
        &role("- name: ok\n  command: {cmd: \"true\"}\n"),
        "task_timeout: nope\n",
    );
    let o = p.run(&["plan", "-i", "inventory.yml"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("inventory.yml") && err.contains("task_timeout"),
        "{err}"
    );
}

/// A handler whose notifying change happened in a run that then failed runs in the next
/// run, even though nothing else changes then; `plan` shows it pending in between.
#[test]
#[ignore = "fault drills: run by tests/run.sh, which prints their figures"]
fn a_notification_outlives_the_run_that_made_it() {
    let _s = serial();
    let tasks = "- name: config\n  copy: {dest: \"{{ root }}/app.conf\", content: \"v2\\n\"}\n  notify: restart app\n\
                 - name: a later failure\n  command: {cmd: \"false\"}\n  when: fail | default(true)\n";
    let handlers = "- name: restart app\n  shell: \"echo restarted >> {{ root }}/restarts\"\n";
    let p = project(
        1,
        &[
            ("roles/every/tasks.yml", tasks.to_string()),
            ("roles/every/handlers.yml", handlers.to_string()),
        ],
        "",
    );
    let o = p.run(&["converge", "-i", "inventory.yml"]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(p.root.join("app.conf").is_file());
    assert!(
        !p.root.join("restarts").exists(),
        "the failure kept the handler from running"
    );

    let o = p.run(&[
        "plan",
        "-i",
        "inventory.yml",
        "-e",
        "fail=false",
        "--output",
        "json",
    ]);
    let (out, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "the pending handler is a pending change: {out}{err}"
    );
    let pending = events(&o)
        .into_iter()
        .find(|e| e["event"] == "handlers_pending")
        .unwrap_or_else(|| panic!("plan shows the pending handler: {out}"));
    assert_eq!(pending["handlers"][0], "restart app");
    assert!(!p.root.join("restarts").exists(), "plan changed nothing");

    let o = p.run(&["converge", "-i", "inventory.yml", "-e", "fail=false"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(p.root.join("restarts")).expect("the handler ran"),
        "restarted\n"
    );
    let o = p.run(&["converge", "-i", "inventory.yml", "-e", "fail=false"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(p.root.join("restarts")).expect("restarts"),
        "restarted\n",
        "once run, the notification is cleared"
    );
}

fn interrupt_project(marker: &str) -> Project {
    project(
        1,
        &role(&format!(
            "- name: config\n  copy: {{dest: \"{{{{ root }}}}/app.conf\", content: \"v1\\n\"}}\n  notify: restart app\n\
             - name: long step\n  shell: {{cmd: \"touch {{{{ root }}}}/started; {marker}; touch {{{{ root }}}}/finished\", creates: \"{{{{ root }}}}/finished\"}}\n\
             - name: never started\n  file: {{path: \"{{{{ root }}}}/later\", state: directory}}\n"
        )),
        "",
    )
}

fn with_handlers(p: &Project) {
    write_tree(
        &p.dir,
        &[(
            "roles/every/handlers.yml",
            "- name: restart app\n  shell: \"echo restarted >> {{ root }}/restarts\"\n",
        )],
    );
}

#[test]
#[ignore = "fault drills: run by tests/run.sh, which prints their figures"]
fn the_first_ctrl_c_lets_the_running_step_finish_and_starts_nothing_new() {
    let _s = serial();
    let marker = "sleep 3.0123";
    let p = interrupt_project(marker);
    with_handlers(&p);
    let child = spawn(&p, &["converge", "-i", "inventory.yml", "--output", "json"]);
    wait_until("the long step started", Duration::from_secs(60), || {
        p.root.join("started").exists()
    });
    let t0 = Instant::now();
    signal(&child, libc::SIGINT);
    let o = child.wait_with_output().expect("bosun ends");
    let took = t0.elapsed();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(130), "{out}{err}");
    assert!(
        p.root.join("finished").exists(),
        "the running step was let finish"
    );
    assert!(!p.root.join("later").exists(), "nothing new started");
    assert!(
        !p.root.join("restarts").exists(),
        "handlers wait for the next run"
    );
    let recap = events(&o)
        .into_iter()
        .find(|e| e["event"] == "recap")
        .unwrap_or_else(|| panic!("a recap: {out}"));
    assert_eq!(recap["interrupted"], true, "{recap}");
    nothing_left(&p, "Ctrl-C once during a 3 s step", took);
    // The next run finishes the job, handler included.
    let o = p.run(&["converge", "-i", "inventory.yml"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(p.root.join("later").is_dir());
    assert_eq!(
        std::fs::read_to_string(p.root.join("restarts")).expect("the handler ran"),
        "restarted\n"
    );
}

#[test]
#[ignore = "fault drills: run by tests/run.sh, which prints their figures"]
fn a_second_signal_kills_the_running_step_at_once() {
    let _s = serial();
    let marker = "sleep 100126";
    let p = interrupt_project(marker);
    with_handlers(&p);
    let child = spawn(&p, &["converge", "-i", "inventory.yml"]);
    wait_until("the long step started", Duration::from_secs(60), || {
        p.root.join("started").exists() && running(marker)
    });
    let t0 = Instant::now();
    // Two signals back to back: the first asks to finish, the second to stop now.
    signal(&child, libc::SIGTERM);
    signal(&child, libc::SIGINT);
    let o = child.wait_with_output().expect("bosun ends");
    let took = t0.elapsed();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(130), "{out}{err}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(!p.root.join("finished").exists());
    assert!(
        !running(marker),
        "the step's processes are gone from the host"
    );
    assert!(out.contains("INTERRUPTED"), "{out}");
    let left = leftovers(&p.root);
    report(
        "SIGTERM then Ctrl-C during a step that never ends",
        took,
        &left,
    );
    assert!(left.is_empty(), "{left:?}");
}

/// The connection drops while a step runs: the host is unreachable for the rest of the
/// run, and the next run converges it with nothing half-written.
#[test]
#[ignore = "fault drills: run by tests/run.sh, which prints their figures"]
fn a_connection_dropped_mid_apply_is_converged_by_the_next_run() {
    let _s = serial();
    let marker = "sleep 2.0127";
    let big: String = "0123456789abcdef\n".repeat(20_000);
    let p = project(
        1,
        &[
            (
                "roles/every/tasks.yml",
                format!(
                    "- name: before\n  copy: {{dest: \"{{{{ root }}}}/before.txt\", content: \"before\\n\"}}\n\
                     - name: long step\n  shell: {{cmd: \"touch {{{{ root }}}}/started; {marker}\", creates: \"{{{{ root }}}}/started\"}}\n\
                     - name: big file\n  copy: {{dest: \"{{{{ root }}}}/big.txt\", src: big.txt}}\n"
                ),
            ),
            ("roles/every/files/big.txt", big.clone()),
        ],
        "",
    );
    let child = spawn(&p, &["converge", "-i", "inventory.yml", "--output", "json"]);
    wait_until("the long step started", Duration::from_secs(60), || {
        p.root.join("started").exists()
    });
    // Drop the connection: kill the sshd processes that serve it (children of the
    // listener), not the listener.
    let sshd_pid = std::fs::read_to_string(p._sshd.dir.join("sshd.pid")).expect("sshd.pid");
    let st = Command::new("pkill")
        .args(["-KILL", "-P", sshd_pid.trim()])
        .status()
        .expect("pkill");
    assert!(st.success(), "a session to kill");
    let t0 = Instant::now();
    let o = child.wait_with_output().expect("bosun ends");
    let took = t0.elapsed();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        events(&o)
            .iter()
            .any(|e| e["event"] == "host_unreachable" && e["host"] == "h1"),
        "{out}"
    );
    // The orphaned script ends on its own on the host (it is not bosun's to kill any
    // more); the next run's probe sweeps what it left.
    wait_until("the orphaned script ended", Duration::from_secs(30), || {
        !running(marker) && live_scripts().is_empty()
    });
    let o = p.run(&["converge", "-i", "inventory.yml"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        std::fs::read_to_string(p.root.join("big.txt")).expect("big.txt"),
        big,
        "whole, not half-written"
    );
    let left = leftovers(&p.root);
    report(
        "SSH connection dropped mid-apply (after the re-run)",
        took,
        &left,
    );
    assert!(left.is_empty(), "{left:?}");
}
