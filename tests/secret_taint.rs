//! Values derived from a secret (`| urlencode`, `| b64encode`, `| upper`, `| to_json`)
//! and a rotated secret's old value never reach the output: the real binary against the
//! loopback sshd of `tests/common`, in plan, plan JSON, converge, a failing converge and
//! `inventory list`.

mod common;
use base64::Engine;
use common::*;
use std::path::PathBuf;
use std::process::Output;

const PW: &str = "p@ss+w/rd=Zq9";
const QUOTED: &str = r#"q"uo\te-Secret9"#;
const OLD_REDIS: &str = "0ld-Redis-Pa55";
const NEW_REDIS: &str = "N3w-Redis-Pa55";

const TASKS: &str = r#"
- name: app env
  template: {src: app.env.j2, dest: "{{ root }}/app.env", mode: "0600"}
- name: redis conf
  template: {src: redis.conf.j2, dest: "{{ root }}/redis.conf", mode: "0600"}
- name: announce
  command: "echo {{ db_pw | urlencode }} {{ db_pw | b64encode }} {{ db_pw | upper }}"
- name: leaky failure
  shell: "echo {{ db_pw | b64encode }} {{ db_pw | upper }} {{ db_pw | urlencode }} >&2; printf '\\033]0;pwned\\007\\033[2J' >&2; exit 3"
  when: fail_at_end | default(false)
"#;

const APP_ENV: &str = r#"DATABASE_URL="postgres://app:{{ db_pw | urlencode }}@db:5432/app"
TOKEN={{ db_pw | b64encode }}
SHOUT={{ db_pw | upper }}
QUOTED={{ quoted | to_json }}
"#;

const REDIS_CONF: &str = "bind 127.0.0.1\nrequirepass {{ redis_password }}\n";

struct Project {
    dir: PathBuf,
    root: PathBuf,
    sshd: Sshd,
}

impl Project {
    fn new() -> Project {
        let sshd = Sshd::start(1);
        let dir = tempdir("taint");
        let root = tempdir("taint-root");
        std::fs::write(dir.join("known_hosts"), sshd.known_hosts()).expect("known_hosts");
        write_tree(
            &dir,
            &[
                (
                    "roles/site.yml",
                    "- name: app\n  hosts: all\n  roles: [app]\n",
                ),
                ("roles/app/tasks.yml", TASKS),
                ("roles/app/templates/app.env.j2", APP_ENV),
                ("roles/app/templates/redis.conf.j2", REDIS_CONF),
            ],
        );
        let p = Project { dir, root, sshd };
        p.inventory(OLD_REDIS);
        p
    }

    /// Writes the inventory with this Redis password.
    fn inventory(&self, redis: &str) {
        let quoted = QUOTED.replace('\'', "''");
        let inv = format!(
            "ssh:\n  user: root\n  port: {port}\n  identity_file: {key}\n  known_hosts: known_hosts\n\
             vars:\n  root: {root}\nsecrets:\n  db_pw: \"{PW}\"\n  quoted: '{quoted}'\n  redis_password: {redis}\n\
             hosts:\n  h1: {{address: 127.0.0.2}}\n",
            port = self.sshd.port,
            key = self.sshd.client_key.display(),
            root = self.root.display(),
        );
        std::fs::write(self.dir.join("inventory.yml"), inv).expect("inventory");
    }

    fn run(&self, args: &[&str]) -> Output {
        bosun(&self.dir, args)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Every form of a secret this project prints somewhere, as the filters make them (and
/// JSON-escaped, for `--output json`).
fn forbidden() -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let json = |s: &str| serde_json::to_string(s).expect("json");
    let mut v = vec![
        PW.to_string(),
        "p%40ss%2Bw/rd%3DZq9".to_string(),
        b64(PW),
        PW.to_uppercase(),
        QUOTED.to_string(),
        json(QUOTED),
        OLD_REDIS.to_string(),
    ];
    // The inner part of a JSON-escaped form (without its quotes), as a JSON line shows it.
    let inner = json(&json(QUOTED));
    v.push(inner[3..inner.len() - 3].to_string());
    v
}

/// Neither a whole form nor any 7 characters of one appear in stdout or stderr.
fn assert_no_leak(what: &str, o: &Output) {
    let (out, err) = text(o);
    let all = format!("{out}\n{err}");
    assert!(!all.contains("panicked"), "{what}: {all}");
    for f in forbidden() {
        let chars: Vec<char> = f.chars().collect();
        for w in chars.windows(7.min(chars.len())) {
            let piece: String = w.iter().collect();
            assert!(
                !all.contains(&piece),
                "{what}: `{piece}` (of `{f}`) leaks in:\n{all}"
            );
        }
    }
    assert!(
        !all.contains('\u{1b}'),
        "{what}: a terminal escape got through:\n{all}"
    );
}

#[test]
fn derived_secrets_and_rotated_values_never_reach_the_output() {
    let p = Project::new();
    let inv = ["-i", "inventory.yml"];

    let plan = p.run(&["plan", inv[0], inv[1]]);
    assert_eq!(plan.status.code(), Some(2), "{:?}", text(&plan));
    assert_no_leak("plan", &plan);
    let (out, _) = text(&plan);
    // The diff is there, with the secret parts masked and the rest readable.
    assert!(
        out.contains("+DATABASE_URL=\"postgres://app:<redacted>@db:5432/app\""),
        "{out}"
    );
    assert!(out.contains("+SHOUT=<redacted>"), "{out}");
    assert!(out.contains("run `echo <redacted>`"), "{out}");

    let plan_json = p.run(&["plan", inv[0], inv[1], "--output", "json"]);
    assert_eq!(plan_json.status.code(), Some(2), "{:?}", text(&plan_json));
    assert_no_leak("plan --output json", &plan_json);
    assert!(events(&plan_json).iter().any(|e| e["event"] == "recap"));

    let converge = p.run(&["converge", inv[0], inv[1], "-v"]);
    assert!(converge.status.success(), "{:?}", text(&converge));
    assert_no_leak("converge", &converge);
    let env = std::fs::read_to_string(p.root.join("app.env")).expect("app.env written");
    assert!(
        env.contains(&format!("SHOUT={}", PW.to_uppercase())),
        "{env}"
    );

    let failing = p.run(&["converge", inv[0], inv[1], "-e", "fail_at_end=true"]);
    assert_eq!(failing.status.code(), Some(1), "{:?}", text(&failing));
    assert_no_leak("failing converge", &failing);
    assert!(
        text(&failing).0.contains("exit code 3"),
        "{:?}",
        text(&failing)
    );
    let failing_json = p.run(&[
        "converge",
        inv[0],
        inv[1],
        "-e",
        "fail_at_end=true",
        "--output",
        "json",
    ]);
    assert_no_leak("failing converge --output json", &failing_json);
    let raw = String::from_utf8_lossy(&failing_json.stdout).into_owned();
    assert!(!raw.contains("\\u001b"), "{raw}");

    for args in [
        &["inventory", "list", inv[0], inv[1], "--output", "json"][..],
        &["inventory", "list", inv[0], inv[1], "-v"][..],
    ] {
        let o = p.run(args);
        assert!(o.status.success(), "{:?}", text(&o));
        assert_no_leak(&args.join(" "), &o);
    }

    // Rotating the Redis password: the old value is in the host's file, not in any
    // secret any more, and the diff line is `requirepass OLD`.
    p.inventory(NEW_REDIS);
    for args in [
        &["plan", inv[0], inv[1]][..],
        &["plan", inv[0], inv[1], "--output", "json"][..],
    ] {
        let o = p.run(args);
        assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
        assert_no_leak(&args.join(" "), &o);
        let (out, _) = text(&o);
        assert!(!out.contains(NEW_REDIS), "{out}");
        assert!(out.contains("-requirepass <redacted>"), "{out}");
        assert!(out.contains("+requirepass <redacted>"), "{out}");
    }
}

/// A `pg_role` password is sent as a SCRAM verifier, which is as good as the password to
/// an offline attack: building the task (preflight does it for every host) registers the
/// verifier with the run's secrets, one per built module, and nothing without a password.
#[test]
fn pg_role_verifiers_are_registered_as_secrets() {
    let dir = tempdir("pg-verifier");
    write_tree(
        &dir,
        &[
            ("roles/site.yml", "- name: db\n  hosts: all\n  roles: [db]\n"),
            (
                "roles/db/tasks.yml",
                "- name: app role\n  pg_role: {name: app, password: \"{{ db_pw }}\"}\n\
                 - name: reader role\n  pg_role: {name: reader}\n",
            ),
            (
                "inventory.yml",
                &format!(
                    "secrets:\n  db_pw: \"{PW}\"\nhosts:\n  h1: {{address: 127.0.0.2}}\n  h2: {{address: 127.0.0.3}}\n"
                ),
            ),
        ],
    );
    let inv =
        bosun_model::inventory::Inventory::load(&dir.join("inventory.yml")).expect("inventory");
    let site = bosun_engine::load_site(&dir.join("roles/site.yml")).expect("site");
    let secrets = bosun_model::redact::SecretSet::new(&inv.secret_values);
    let templates = bosun_model::template::Templates::with_secrets(secrets.clone());
    let before = secrets.snapshot().len();
    bosun_engine::preflight(&inv, &site, &Default::default(), &templates).expect("preflight");
    // One verifier per host for the role with a password (each with its own salt).
    assert_eq!(secrets.snapshot().len(), before + 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Command lines are readable by every local user (`/proc/PID/cmdline`, `ps`): no task or
/// handler of the roles passes a password as an argument. redis-cli gets it from
/// `REDISCLI_AUTH`; the `redis answers` check is run here against a stand-in redis-cli
/// that answers PONG only when the password came in its environment and not in argv.
#[test]
fn roles_keep_passwords_off_command_lines() {
    let site = bosun_engine::load_site(&repo().join("roles/site.yml")).expect("the repo's site");
    let mut redis_check = None;
    for role in site.roles.values() {
        for t in role.tasks.iter().chain(&role.handlers) {
            let args = t.args.to_string();
            for bad in ["--password", "--pass ", "--pass=", "--askpass", "sshpass"] {
                assert!(!args.contains(bad), "{}: `{bad}` in {args}", t.name);
            }
            if args.contains("redis-cli") {
                assert!(
                    !args.contains(" -a ") && !args.contains("--user"),
                    "{}: {args}",
                    t.name
                );
                assert!(args.contains("REDISCLI_AUTH="), "{}: {args}", t.name);
            }
            if t.name == "redis answers" {
                redis_check = t.args["command"].as_str().map(str::to_string);
            }
        }
    }
    let cmd = redis_check.expect("the redis role's `redis answers` handler");
    // The role's replication helper calls redis-cli itself: the password in its
    // environment there too.
    let helper = std::fs::read_to_string(repo().join("roles/redis/files/bosun-redis"))
        .expect("roles/redis/files/bosun-redis");
    let calls: Vec<&str> = helper
        .lines()
        .filter(|l| l.contains("redis-cli ") && !l.trim_start().starts_with('#'))
        .collect();
    assert!(!calls.is_empty());
    for l in calls {
        assert!(
            l.contains("REDISCLI_AUTH=") && !l.contains(" -a ") && !l.contains("--pass"),
            "bosun-redis: {l}"
        );
    }

    let dir = tempdir("redis-auth");
    let password = "s3cret with $HOME, `x` and \"quotes\"";
    let conf = dir.join("redis.conf");
    std::fs::write(&conf, format!("bind 127.0.0.1\nrequirepass {password}\n")).expect("conf");
    write_tree(
        &dir,
        &[(
            "bin/redis-cli",
            "#!/bin/sh\n\
             for a in \"$@\"; do [ \"$a\" = \"$WANT\" ] && { echo 'password in argv' >&2; exit 9; }; done\n\
             [ \"$REDISCLI_AUTH\" = \"$WANT\" ] || { echo 'no REDISCLI_AUTH' >&2; exit 8; }\n\
             echo PONG\n",
        )],
    );
    let st = std::process::Command::new("chmod")
        .arg("+x")
        .arg(dir.join("bin/redis-cli"))
        .status();
    assert!(st.is_ok_and(|s| s.success()));
    let cmd = cmd
        .replace("{{ redis_port }}", "6379")
        .replace("/etc/redis/bosun.conf", &conf.display().to_string());
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = std::process::Command::new("/bin/sh")
        .args(["-c", &cmd])
        .env("PATH", path)
        .env("WANT", password)
        .output()
        .expect("sh");
    assert!(o.status.success(), "{cmd}: {:?}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
