//! Jump hosts end to end: the real `bosun` binary, real OpenSSH sshds on loopback.
//!
//! The targets' inventory addresses are names such as `t1.jump.invalid` that resolve only
//! inside the bastion sshd's private mount namespace (its own /etc/hosts; see
//! `SshdSpec::hosts`). The controller cannot resolve them, so a target that converges was
//! really reached through the bastion's `direct-tcpip` channel; each test also shows the
//! direct path failing where that matters.

mod common;
use common::*;
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Instant;

const SITE: &str = "- name: mark\n  hosts: targets\n  roles: [mark]\n";
const TASKS: &str = "- name: marker file\n  copy: {dest: \"{{ root }}/{{ inventory_hostname }}.txt\", content: \"converged {{ inventory_hostname }}\\n\"}\n";

/// A project directory and the directory its role writes markers into.
struct Project {
    dir: PathBuf,
    root: PathBuf,
}

impl Project {
    /// `hosts` and `groups` are the inventory's YAML blocks (indented by two).
    fn new(key: &Path, connect_timeout: u64, hosts: &str, groups: &str) -> Project {
        let dir = tempdir("jump");
        let root = tempdir("jump-root");
        let inv = format!(
            "ssh:\n  user: root\n  identity_file: {key}\n  known_hosts: known_hosts\n  connect_timeout: {connect_timeout}\n\
             vars:\n  root: {root}\nhosts:\n{hosts}groups:\n{groups}",
            key = key.display(),
            root = root.display(),
        );
        write_tree(
            &dir,
            &[
                ("inventory.yml", &inv),
                ("roles/site.yml", SITE),
                ("roles/mark/tasks.yml", TASKS),
            ],
        );
        Project { dir, root }
    }

    fn known_hosts(&self, lines: &[String]) {
        std::fs::write(self.dir.join("known_hosts"), lines.concat()).expect("known_hosts");
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        bosun(&self.dir, args)
    }

    fn converge(&self, extra: &[&str]) -> (std::process::Output, Vec<Value>) {
        let mut args = vec!["converge", "-i", "inventory.yml", "--output", "json"];
        args.extend_from_slice(extra);
        let o = self.run(&args);
        let evs = events(&o);
        (o, evs)
    }

    fn marker(&self, host: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(format!("{host}.txt"))).ok()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A known_hosts line for `name` on `port`.
fn kh(name: &str, port: u16, key: &str) -> String {
    format!("[{name}]:{port} {key}\n")
}

/// `host → message` of every `host_unreachable` event.
fn unreachable(evs: &[Value]) -> std::collections::BTreeMap<String, String> {
    evs.iter()
        .filter(|e| e["event"] == "host_unreachable")
        .map(|e| {
            (
                e["host"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn accepted_logins(sshd: &Sshd) -> usize {
    sshd.log().matches("Accepted publickey for root").count()
}

/// A target on 127.0.0.3 that only the bastion (127.0.0.2) can resolve, as `t1.jump.invalid`.
struct OneHop {
    target: Sshd,
    bastion: Sshd,
    p: Project,
}

impl OneHop {
    /// `jump` gets the bastion's port.
    fn new(jump: impl Fn(u16) -> String) -> OneHop {
        let target = Sshd::start_with(SshdSpec {
            addrs: vec!["127.0.0.3".into()],
            ..Default::default()
        });
        let bastion = Sshd::start_with(SshdSpec {
            addrs: vec!["127.0.0.2".into()],
            client_key: Some(target.client_key.clone()),
            hosts: vec![("127.0.0.3".into(), "t1.jump.invalid".into())],
            ..Default::default()
        });
        let hosts = format!(
            "  bastion: {{address: 127.0.0.2, port: {bp}}}\n  t1: {{address: t1.jump.invalid, port: {tp}, jump: \"{jump}\"}}\n",
            bp = bastion.port,
            tp = target.port,
            jump = jump(bastion.port),
        );
        let p = Project::new(&target.client_key, 10, &hosts, "  targets: {hosts: [t1]}\n");
        let s = OneHop { target, bastion, p };
        s.p.known_hosts(&[s.bastion_line(&s.bastion.host_pub), s.target_line()]);
        s
    }

    fn bastion_line(&self, key: &str) -> String {
        kh("127.0.0.2", self.bastion.port, key)
    }

    fn target_line(&self) -> String {
        kh("t1.jump.invalid", self.target.port, &self.target.host_pub)
    }
}

#[test]
fn converge_exec_facts_plan_and_status_go_through_the_bastion() {
    let s = OneHop::new(|_| "bastion".into());
    let (o, evs) = s.p.converge(&[]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(s.p.marker("t1").as_deref(), Some("converged t1\n"));
    assert!(unreachable(&evs).is_empty());
    assert_eq!(accepted_logins(&s.bastion), 1, "{}", s.bastion.log());
    assert_eq!(accepted_logins(&s.target), 1, "{}", s.target.log());

    let o = s.p.run(&["plan", "-i", "inventory.yml"]);
    assert_eq!(o.status.code(), Some(0), "no-op plan: {:?}", text(&o));

    let o = s.p.run(&[
        "exec",
        "-i",
        "inventory.yml",
        "-l",
        "t1",
        "--output",
        "json",
        "--",
        "echo",
        "hello-from-target",
    ]);
    let ev = events(&o);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["rc"], 0);
    assert_eq!(ev[0]["stdout"], "hello-from-target\n");

    let o = s.p.run(&["facts", "-i", "inventory.yml", "t1"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let facts: Value = serde_json::from_slice(&o.stdout).expect("facts are JSON");
    assert!(facts.is_object(), "{facts}");

    // status reaches the host (there is no Patroni there to answer, but no connect error).
    let o = s.p.run(&[
        "status",
        "-i",
        "inventory.yml",
        "--postgres-group",
        "targets",
        "--balancer-group",
        "targets",
        "--output",
        "json",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    let problems = v["problems"].to_string();
    assert!(problems.contains("did not answer"), "{problems}");
    assert!(!problems.contains("cannot connect"), "{problems}");
    assert_eq!(
        accepted_logins(&s.target),
        6,
        "one login per command (status: one per group)"
    );

    // The controller cannot reach the target itself: with the jump switched off it fails.
    let inv = std::fs::read_to_string(s.p.dir.join("inventory.yml")).expect("inventory");
    std::fs::write(
        s.p.dir.join("direct.yml"),
        inv.replace("jump: \"bastion\"", "jump: none"),
    )
    .expect("direct.yml");
    let o =
        s.p.run(&["converge", "-i", "direct.yml", "--output", "json"]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let msg = unreachable(&events(&o))
        .remove("t1")
        .expect("t1 unreachable");
    assert!(msg.contains("t1.jump.invalid"), "{msg}");
    assert!(!msg.contains("jump host"), "{msg}");
}

#[test]
fn a_literal_jump_works_and_bastion_keys_are_verified() {
    let s = OneHop::new(|port| format!("root@127.0.0.2:{port}"));
    let label = format!("via jump host root@127.0.0.2:{}", s.bastion.port);

    // A changed bastion key is refused, even with --accept-new-host-keys; the target is untouched.
    s.p.known_hosts(&[s.bastion_line(&s.target.host_pub), s.target_line()]);
    for extra in [&[][..], &["--accept-new-host-keys"][..]] {
        let (o, evs) = s.p.converge(extra);
        assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
        let msg = unreachable(&evs).remove("t1").expect("t1 unreachable");
        assert!(msg.contains(&label), "{msg}");
        assert!(msg.contains("CHANGED"), "{msg}");
        assert_eq!(s.p.marker("t1"), None);
        assert_eq!(accepted_logins(&s.target), 0);
    }

    // An unknown bastion key is refused, then recorded with --accept-new-host-keys.
    s.p.known_hosts(&[s.target_line()]);
    let (o, evs) = s.p.converge(&[]);
    assert_eq!(o.status.code(), Some(1));
    let msg = unreachable(&evs).remove("t1").expect("t1 unreachable");
    assert!(msg.contains(&label) && msg.contains("is not in"), "{msg}");
    let (o, _) = s.p.converge(&["--accept-new-host-keys"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(s.p.marker("t1").as_deref(), Some("converged t1\n"));
    let (o, _) = s.p.converge(&[]);
    assert!(
        o.status.success(),
        "the recorded key is used: {:?}",
        text(&o)
    );

    // A changed target key names the target, not the bastion.
    s.p.known_hosts(&[
        s.bastion_line(&s.bastion.host_pub),
        kh("t1.jump.invalid", s.target.port, &s.bastion.host_pub),
    ]);
    let (o, evs) = s.p.converge(&[]);
    assert_eq!(o.status.code(), Some(1));
    let msg = unreachable(&evs).remove("t1").expect("t1 unreachable");
    assert!(
        msg.contains(&format!(
            "HOST KEY OF t1.jump.invalid:{} CHANGED",
            s.target.port
        )),
        "{msg}"
    );
    assert!(!msg.contains("jump host"), "{msg}");
}

#[test]
fn a_chain_of_two_hops() {
    // controller → b1 (127.0.0.2) → b2 (127.0.0.3, known to b1 only) → t1 (127.0.0.4, known to b2 only)
    let target = Sshd::start_with(SshdSpec {
        addrs: vec!["127.0.0.4".into()],
        ..Default::default()
    });
    let key = target.client_key.clone();
    let b2 = Sshd::start_with(SshdSpec {
        addrs: vec!["127.0.0.3".into()],
        client_key: Some(key.clone()),
        hosts: vec![("127.0.0.4".into(), "t1.jump.invalid".into())],
        ..Default::default()
    });
    let b1 = Sshd::start_with(SshdSpec {
        addrs: vec!["127.0.0.2".into()],
        client_key: Some(key.clone()),
        hosts: vec![("127.0.0.3".into(), "b2.jump.invalid".into())],
        ..Default::default()
    });
    let hosts = format!(
        "  t1: {{address: t1.jump.invalid, port: {tp}, jump: \"root@127.0.0.2:{p1},root@b2.jump.invalid:{p2}\"}}\n",
        tp = target.port,
        p1 = b1.port,
        p2 = b2.port,
    );
    let p = Project::new(&key, 10, &hosts, "  targets: {hosts: [t1]}\n");
    let b1_line = kh("127.0.0.2", b1.port, &b1.host_pub);
    let t_line = kh("t1.jump.invalid", target.port, &target.host_pub);
    p.known_hosts(&[
        b1_line.clone(),
        kh("b2.jump.invalid", b2.port, &b2.host_pub),
        t_line.clone(),
    ]);
    let (o, _) = p.converge(&[]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(p.marker("t1").as_deref(), Some("converged t1\n"));
    assert_eq!(
        (accepted_logins(&b1), accepted_logins(&b2)),
        (1, 1),
        "one login on each hop"
    );

    // A changed key of the second hop is refused, naming that hop.
    p.known_hosts(&[
        b1_line,
        kh("b2.jump.invalid", b2.port, &b1.host_pub),
        t_line,
    ]);
    std::fs::remove_file(p.root.join("t1.txt")).expect("remove marker");
    let (o, evs) = p.converge(&[]);
    assert_eq!(o.status.code(), Some(1));
    let msg = unreachable(&evs).remove("t1").expect("t1 unreachable");
    assert!(
        msg.contains(&format!("via jump host root@b2.jump.invalid:{}", b2.port))
            && msg.contains("CHANGED"),
        "{msg}"
    );
    assert_eq!(p.marker("t1"), None, "the target was not touched");
}

#[test]
fn a_bastion_that_is_down_fails_only_the_hosts_behind_it() {
    let direct = Sshd::start_with(SshdSpec::default());
    // Nothing listens here: connection refused.
    let refused = TcpListener::bind("127.0.0.5:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    // Accepts TCP (the kernel does) but never speaks SSH: the connect timeout.
    let silent = TcpListener::bind("127.0.0.6:0").expect("silent listener");
    let silent_port = silent.local_addr().expect("addr").port();
    // The jumped hosts point at the direct sshd: bypassing the jump would reach it.
    let mut hosts = format!("  d1: {{address: 127.0.0.2, port: {}}}\n", direct.port);
    let mut names = vec!["d1".to_string()];
    for i in 1..=6 {
        let jump = if i <= 2 {
            format!("root@127.0.0.5:{refused}")
        } else {
            format!("root@127.0.0.6:{silent_port}")
        };
        hosts.push_str(&format!(
            "  j{i}: {{address: 127.0.0.2, port: {}, jump: \"{jump}\"}}\n",
            direct.port
        ));
        names.push(format!("j{i}"));
    }
    let p = Project::new(
        &direct.client_key,
        2,
        &hosts,
        &format!("  targets: {{hosts: [{}]}}\n", names.join(", ")),
    );
    p.known_hosts(&[kh("127.0.0.2", direct.port, &direct.host_pub)]);
    let t0 = Instant::now();
    let (o, evs) = p.converge(&[]);
    let took = t0.elapsed();
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert_eq!(p.marker("d1").as_deref(), Some("converged d1\n"));
    let un = unreachable(&evs);
    assert_eq!(un.len(), 6, "{un:?}");
    for i in 1..=6 {
        let msg = &un[&format!("j{i}")];
        assert_eq!(p.marker(&format!("j{i}")), None);
        if i <= 2 {
            assert!(
                msg.contains(&format!("via jump host root@127.0.0.5:{refused}"))
                    && msg.contains("cannot connect"),
                "{msg}"
            );
        } else {
            assert!(
                msg.contains(&format!("via jump host root@127.0.0.6:{silent_port}"))
                    && msg.contains("timed out after 2s"),
                "{msg}"
            );
        }
    }
    // Four hosts behind the silent bastion share one 2 s timeout, not four in a row.
    assert!(took.as_secs_f64() < 6.0, "took {took:?}");
    drop(silent);
}

#[test]
fn twelve_hosts_behind_one_bastion_all_converge() {
    let target = Sshd::start_with(SshdSpec {
        addrs: vec!["127.0.0.3".into()],
        ..Default::default()
    });
    let names: Vec<String> = (1..=12).map(|i| format!("t{i:02}")).collect();
    let bastion = Sshd::start_with(SshdSpec {
        addrs: vec!["127.0.0.2".into()],
        client_key: Some(target.client_key.clone()),
        hosts: names
            .iter()
            .map(|n| ("127.0.0.3".to_string(), format!("{n}.jump.invalid")))
            .collect(),
        // sshd's default, stated: the bastion carries at most 10 channels per connection.
        extra_config: "MaxSessions 10".into(),
    });
    let mut hosts = format!(
        "  bastion: {{address: 127.0.0.2, port: {}}}\n",
        bastion.port
    );
    let mut kh_lines = vec![kh("127.0.0.2", bastion.port, &bastion.host_pub)];
    for n in &names {
        hosts.push_str(&format!(
            "  {n}: {{address: {n}.jump.invalid, port: {}}}\n",
            target.port
        ));
        kh_lines.push(kh(
            &format!("{n}.jump.invalid"),
            target.port,
            &target.host_pub,
        ));
    }
    // The jump is set on the group.
    let groups = format!(
        "  targets: {{hosts: [{}], jump: bastion}}\n",
        names.join(", ")
    );
    let p = Project::new(&target.client_key, 10, &hosts, &groups);
    p.known_hosts(&kh_lines);
    let (o, evs) = p.converge(&["-f", "20"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(unreachable(&evs).is_empty());
    for n in &names {
        assert_eq!(p.marker(n), Some(format!("converged {n}\n")), "{n}");
    }
    // Shared: 12 tunnels on at most 2 bastion connections (9 tunnels each).
    let logins = accepted_logins(&bastion);
    assert!((1..=2).contains(&logins), "{logins} bastion logins");
    assert_eq!(accepted_logins(&target), 12);

    // At most `max_channels` tunnels per bastion connection: 12 hosts that all hold their
    // tunnel at once (each runs `sleep 3`) with 4 per connection need exactly 3 connections.
    let inv = std::fs::read_to_string(p.dir.join("inventory.yml")).expect("inventory");
    std::fs::write(
        p.dir.join("four.yml"),
        inv.replace("ssh:\n", "ssh:\n  max_channels: 4\n"),
    )
    .expect("four.yml");
    let o = p.run(&[
        "exec", "-i", "four.yml", "-l", "targets", "-f", "20", "--output", "json", "--", "sleep",
        "3",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let ev = events(&o);
    assert_eq!(ev.len(), 12);
    assert!(ev.iter().all(|e| e["rc"] == 0), "{ev:?}");
    assert_eq!(accepted_logins(&bastion) - logins, 3, "{}", bastion.log());
}
