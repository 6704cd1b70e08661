//! The pgbackrest role without hosts: its files rendered exactly as a converge would (the
//! site loader, the role's defaults, the lab inventory in host mode, and the lab inventory
//! turned to an S3 repository), Patroni's WAL archiving only when backups are on, the
//! timers' schedules, secrets only where they must be, and the helper
//! (roles/pgbackrest/files/bosun-pgbackrest) run against stand-ins of pgbackrest, psql,
//! runuser and systemctl. The real thing is the lab drill.

mod common;
use bosun_model::inventory::Inventory;
use bosun_model::site::Site;
use bosun_model::template::Templates;
use common::*;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const S3_KEY: &str = "AKIAtest-s3-key-id";
const S3_SECRET: &str = "s3-secret-key-not-for-anyone";
const CIPHER: &str = "cipher-passphrase-for-tests";

/// An inventory (lab.yml, or lab.yml turned to S3), the site and templates rendering with it.
struct Case {
    inv: Inventory,
    site: Site,
    _dir: Option<PathBuf>,
}

fn lab() -> Case {
    Case {
        inv: Inventory::load(&repo().join("inventory/lab.yml")).expect("the lab inventory"),
        site: bosun_engine::load_site(&repo().join("roles/site.yml")).expect("the repo's site"),
        _dir: None,
    }
}

/// The lab inventory with the repository in S3, as production has it: no backup host,
/// the S3 key and passphrase in the secrets.
fn s3() -> Case {
    let lab = std::fs::read_to_string(repo().join("inventory/lab.yml")).expect("lab.yml");
    let text = lab
        .replace(
            "  pgbackrest_repo_type: host\n",
            "  pgbackrest_repo_type: s3\n  pgbackrest_s3_bucket: test-bucket\n  pgbackrest_s3_path: /pgbackrest/test\n",
        )
        .replace(
            "secrets:\n",
            &format!(
                "secrets:\n  pgbackrest_s3_key: {S3_KEY}\n  pgbackrest_s3_key_secret: {S3_SECRET}\n  pgbackrest_cipher_pass: {CIPHER}\n"
            ),
        )
        .replace("  backup: { hosts: [etcd] }\n", "  backup: { hosts: [] }\n");
    assert_ne!(text, lab);
    let dir = tempdir("backup-s3");
    let path = dir.join("inventory.yml");
    std::fs::write(&path, text).expect("inventory");
    Case {
        inv: Inventory::load(&path).expect("the S3 inventory"),
        site: bosun_engine::load_site(&repo().join("roles/site.yml")).expect("the repo's site"),
        _dir: Some(dir),
    }
}

impl Case {
    fn templates(&self) -> Templates {
        Templates::with_secrets(bosun_model::redact::SecretSet::new(&self.inv.secret_values))
    }

    fn preflight(&self, site: &Site, extra: &Map<String, Value>) -> Result<(), String> {
        let opts = bosun_engine::RunOptions {
            extra_vars: extra.clone(),
            ..Default::default()
        };
        bosun_engine::preflight(&self.inv, site, &opts, &self.templates())
            .map_err(|e| e.to_string())
    }

    /// The variables of `host` in the first play running `role`.
    fn context(&self, role: &str, host: &str, extra: &Map<String, Value>) -> minijinja::Value {
        let t = self.templates();
        role_scope(&self.inv, &self.site, role, host, extra, &t).context()
    }

    /// `templates/NAME` rendered for `host` as the first play running `role` sees it.
    fn render(&self, role: &str, host: &str, name: &str, extra: &Map<String, Value>) -> String {
        let t = self.templates();
        let scope = role_scope(&self.inv, &self.site, role, host, extra, &t);
        t.render_file(&repo().join("templates").join(name), &scope.context())
            .unwrap_or_else(|e| panic!("{name} renders: {}", bosun_model::template::describe(&e)))
    }

    /// Every task of the pgbackrest role that runs on `host` (its `when` holds), per loop
    /// item, with its arguments rendered: (task name, arguments).
    fn tasks(&self, host: &str, extra: &Map<String, Value>) -> Vec<(String, Value)> {
        let t = self.templates();
        let scope = role_scope(&self.inv, &self.site, "pgbackrest", host, extra, &t);
        let role = &self.site.roles["pgbackrest"];
        let mut out = Vec::new();
        for task in &role.tasks {
            let items = bosun_engine::expand::loop_items(task, &t, &scope.context())
                .unwrap_or_else(|e| panic!("{}: {}", task.name, e.message));
            let ctxs: Vec<minijinja::Value> = match items {
                None => vec![scope.context()],
                Some(items) => items
                    .iter()
                    .map(|it| scope.with(&task.loop_var, bosun_model::template::jv(it)))
                    .collect(),
            };
            for ctx in ctxs {
                let runs = task.when.iter().all(|w| {
                    t.test(w, &ctx)
                        .unwrap_or_else(|e| panic!("{}: when {w}: {e}", task.name))
                });
                if runs {
                    let args = t.render_value(&task.args, &ctx).unwrap_or_else(|e| {
                        panic!("{}: {}", task.name, bosun_model::template::describe(&e))
                    });
                    out.push((task.name.clone(), args));
                }
            }
        }
        out
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().map(str::trim_end).collect()
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[test]
fn lab_site_and_restore_expand() {
    let c = lab();
    c.preflight(&c.site, &Map::new())
        .unwrap_or_else(|e| panic!("the site expands for the lab:\n{e}"));
    let restore =
        bosun_engine::load_site(&repo().join("roles/restore.yml")).expect("roles/restore.yml");
    for e in [
        json!({}),
        json!({ "restore_target_time": "2026-11-30 15:00:00+00" }),
        json!({ "restore_set": "20261130-150000F" }),
    ] {
        c.preflight(&restore, &vars(e.clone()))
            .unwrap_or_else(|err| panic!("the restore expands for the lab with {e}:\n{err}"));
    }
    let s = s3();
    s.preflight(&s.site, &Map::new())
        .unwrap_or_else(|e| panic!("the site expands for S3:\n{e}"));
    s.preflight(&restore, &Map::new())
        .unwrap_or_else(|e| panic!("the restore expands for S3:\n{e}"));
}

#[test]
fn lab_repository_host_backs_up_every_database_host_over_ssh() {
    let c = lab();
    let conf = c.render(
        "pgbackrest",
        "etcd",
        "pgbackrest/pgbackrest.conf.j2",
        &Map::new(),
    );
    for line in [
        "[global]",
        "repo1-path=/var/lib/pgbackrest",
        "repo1-retention-full-type=count",
        "repo1-retention-full=2",
        "repo1-retention-diff=7",
        "start-fast=y",
        "[main]",
        "pg1-host=10.20.0.21",
        "pg1-host-user=postgres",
        "pg1-path=/var/lib/postgresql/17/patroni",
        "pg1-port=5432",
        "pg1-socket-path=/var/run/postgresql",
        "pg2-host=10.20.0.22",
        "pg3-host=10.20.0.23",
        "pg3-path=/var/lib/postgresql/17/patroni",
    ] {
        assert!(has(&conf, line), "`{line}` in:\n{conf}");
    }
    for absent in [
        "repo1-host=",
        "repo1-type=",
        "pg4-host",
        "backup-standby",
        "cipher",
    ] {
        assert!(!conf.contains(absent), "no `{absent}` in:\n{conf}");
    }
    assert!(!conf.contains("\n\n\n"), "{conf}");
    let standby = c.render(
        "pgbackrest",
        "etcd",
        "pgbackrest/pgbackrest.conf.j2",
        &vars(json!({ "pgbackrest_backup_standby": true })),
    );
    assert!(has(&standby, "backup-standby=y"), "{standby}");

    let db = c.render(
        "pgbackrest",
        "pg2",
        "pgbackrest/pgbackrest.conf.j2",
        &Map::new(),
    );
    for line in [
        "repo1-host=10.20.0.31",
        "repo1-host-user=pgbackrest",
        "[main]",
        "pg1-path=/var/lib/postgresql/17/patroni",
        "pg1-socket-path=/var/run/postgresql",
    ] {
        assert!(has(&db, line), "`{line}` in:\n{db}");
    }
    for absent in ["repo1-path", "pg1-host", "pg2-", "retention"] {
        assert!(!db.contains(absent), "no `{absent}` in:\n{db}");
    }

    // Who does what: the repository host runs the timers, the database hosts only push WAL.
    let names = |host: &str| -> Vec<String> {
        c.tasks(host, &Map::new())
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    let etcd = names("etcd");
    let pg1 = names("pg1");
    for t in [
        "repository user",
        "backup timers",
        "ssh key (the secret pgbackrest_ssh_private_key)",
    ] {
        assert!(etcd.iter().any(|n| n == t), "{t} on etcd: {etcd:?}");
    }
    assert!(!pg1.iter().any(|n| n == "backup timers"), "{pg1:?}");
    assert!(pg1
        .iter()
        .any(|n| n == "ssh key (the secret pgbackrest_ssh_private_key)"));
    // The play runs on the database and backup hosts; nothing at all with backups off.
    let play: Vec<&str> = c
        .inv
        .select("postgres,backup")
        .unwrap()
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(play, ["pg1", "pg2", "pg3", "etcd"]);
    let off = c.tasks("etcd", &vars(json!({ "pgbackrest_enabled": false })));
    assert!(off.is_empty(), "{off:?}");

    // SSH: authorized_keys from the database and backup hosts only; accept-new.
    let env = c.render(
        "pgbackrest",
        "etcd",
        "pgbackrest/bosun-pgbackrest.env.j2",
        &Map::new(),
    );
    for line in [
        "STANZA=main",
        "MODE=host",
        "RUN_AS=pgbackrest",
        "SSH_HOME=/home/pgbackrest",
        "SSH_FROM=10.20.0.21,10.20.0.22,10.20.0.23,10.20.0.31",
        "TEXTFILE_DIR=/var/lib/prometheus/node-exporter",
    ] {
        assert!(has(&env, line), "`{line}` in:\n{env}");
    }
    let ssh = c
        .tasks("pg1", &Map::new())
        .into_iter()
        .find(|(n, _)| n == "ssh client settings")
        .expect("ssh client settings on pg1")
        .1;
    let cfg = ssh["content"].as_str().expect("content");
    assert!(
        cfg.contains("Host 10.20.0.21 10.20.0.22 10.20.0.23 10.20.0.31\n"),
        "{cfg}"
    );
    assert!(cfg.contains("StrictHostKeyChecking accept-new\n"), "{cfg}");
    assert_eq!(ssh["dest"], "/var/lib/postgresql/.ssh/config");
}

#[test]
fn s3_repository_on_every_database_host_and_secrets_only_in_its_file() {
    let c = s3();
    let conf = c.render(
        "pgbackrest",
        "pg1",
        "pgbackrest/pgbackrest.conf.j2",
        &Map::new(),
    );
    for line in [
        "repo1-type=s3",
        "repo1-path=/pgbackrest/test",
        "repo1-s3-endpoint=storage.yandexcloud.net",
        "repo1-s3-region=ru-central1",
        "repo1-s3-bucket=test-bucket",
        "repo1-s3-uri-style=host",
        &format!("repo1-s3-key={S3_KEY}"),
        &format!("repo1-s3-key-secret={S3_SECRET}"),
        "repo1-cipher-type=aes-256-cbc",
        &format!("repo1-cipher-pass={CIPHER}"),
        "repo1-retention-full=2",
        "[main]",
        "pg1-path=/var/lib/postgresql/17/patroni",
    ] {
        assert!(has(&conf, line), "`{line}` in:\n{conf}");
    }
    for absent in ["repo1-host", "pg1-host", "pg2-"] {
        assert!(!conf.contains(absent), "no `{absent}` in:\n{conf}");
    }

    let secrets = [S3_KEY, S3_SECRET, CIPHER];
    for host in ["pg1", "pg2", "pg3"] {
        let tasks = c.tasks(host, &Map::new());
        let names: Vec<&str> = tasks.iter().map(|(n, _)| n.as_str()).collect();
        // Every database host has the timers; no SSH in s3 mode.
        assert!(names.contains(&"backup timers"), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("ssh")), "{names:?}");
        for (name, args) in &tasks {
            let text = args.to_string();
            for s in secrets {
                assert!(!text.contains(s), "{name} carries a secret: {text}");
            }
            if name == "pgbackrest configuration" {
                assert_eq!(args["mode"], "0640", "{args}");
                assert_eq!(args["group"], "postgres", "{args}");
                assert_eq!(args["dest"], "/etc/pgbackrest.conf", "{args}");
            }
        }
        let env = c.render(
            "pgbackrest",
            host,
            "pgbackrest/bosun-pgbackrest.env.j2",
            &Map::new(),
        );
        assert!(
            has(&env, "MODE=s3") && has(&env, "RUN_AS=postgres"),
            "{env}"
        );
        for s in secrets {
            assert!(!env.contains(s), "{env}");
        }
        // Patroni's configuration has no pgBackRest secret either.
        let patroni = c.render("patroni", host, "patroni/patroni.yml.j2", &Map::new());
        for s in secrets {
            assert!(!patroni.contains(s), "{patroni}");
        }
    }
    // No backup host: the play runs on the database hosts only.
    assert_eq!(c.inv.select("postgres,backup").unwrap().len(), 3);

    // The restore copy reads the bucket with the same secrets, in its own 0640 file.
    let restore = vars(json!({ "pgbackrest_restore": true, "pgbackrest_conf_for": "restore" }));
    let rconf = c.render(
        "pgbackrest",
        "etcd",
        "pgbackrest/pgbackrest.conf.j2",
        &restore,
    );
    for line in [
        "repo1-type=s3",
        "repo1-s3-bucket=test-bucket",
        &format!("repo1-s3-key-secret={S3_SECRET}"),
        "log-path=/var/log/pgbackrest-restore",
        "pg1-path=/var/lib/postgresql/17/restore",
        "pg1-port=5433",
    ] {
        assert!(has(&rconf, line), "`{line}` in:\n{rconf}");
    }
    assert!(!rconf.contains("retention"), "{rconf}");
}

/// Bad input stops before anything changes, naming the variable: an S3 repository without
/// its secrets at preflight (the configuration reads them), an unknown repository type or
/// an empty bucket by the role's first tasks.
#[test]
fn bad_input_is_named() {
    let lab_text = std::fs::read_to_string(repo().join("inventory/lab.yml")).expect("lab.yml");
    let dir = tempdir("backup-bad");
    let path = dir.join("inventory.yml");
    std::fs::write(
        &path,
        lab_text.replace(
            "  pgbackrest_repo_type: host\n",
            "  pgbackrest_repo_type: s3\n  pgbackrest_s3_bucket: b\n",
        ),
    )
    .expect("inventory");
    let c = Case {
        inv: Inventory::load(&path).expect("inventory"),
        site: bosun_engine::load_site(&repo().join("roles/site.yml")).expect("site"),
        _dir: Some(dir),
    };
    let err = c
        .preflight(&c.site, &Map::new())
        .expect_err("s3 without its secrets");
    assert!(err.contains("pgbackrest_s3_key"), "{err}");

    let lab = lab();
    let first = |e: Value| -> Vec<(String, Value)> {
        lab.tasks("pg1", &vars(e))
            .into_iter()
            .take_while(|(n, _)| n != "pgbackrest package")
            .collect()
    };
    assert!(first(json!({})).is_empty());
    let bad = first(json!({ "pgbackrest_repo_type": "nfs" }));
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].0, "pgbackrest_repo_type is host or s3");
    assert!(bad[0].1.to_string().contains("nfs"), "{:?}", bad[0]);
    let bad = first(
        json!({ "pgbackrest_repo_type": "s3", "pgbackrest_s3_key": "k", "pgbackrest_s3_key_secret": "s" }),
    );
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].0, "s3 mode needs pgbackrest_s3_bucket");
    let bad = first(
        json!({ "pgbackrest_repo_type": "s3", "pgbackrest_s3_bucket": "b", "pgbackrest_s3_key": "", "pgbackrest_s3_key_secret": "s" }),
    );
    assert_eq!(
        bad[0].0,
        "s3 mode needs the secrets pgbackrest_s3_key and pgbackrest_s3_key_secret"
    );
}

#[test]
fn timers_follow_their_schedules() {
    let c = lab();
    let timers = |e: Value| -> Vec<(String, String)> {
        c.tasks("etcd", &vars(e))
            .into_iter()
            .filter(|(n, _)| n == "backup timers")
            .map(|(_, a)| {
                (
                    a["name"].as_str().unwrap().to_string(),
                    a["content"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let t = timers(json!({}));
    assert_eq!(
        t.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["pgbackrest-full.timer", "pgbackrest-diff.timer"]
    );
    assert!(has(&t[0].1, "OnCalendar=Sun *-*-* 01:00:00"), "{}", t[0].1);
    assert!(has(&t[0].1, "Unit=pgbackrest-full.service"), "{}", t[0].1);
    assert!(has(&t[0].1, "Persistent=true"), "{}", t[0].1);
    assert!(
        has(&t[1].1, "OnCalendar=Mon..Sat *-*-* 01:00:00"),
        "{}",
        t[1].1
    );
    assert!(has(&t[1].1, "Unit=pgbackrest-diff.service"), "{}", t[1].1);

    let t = timers(
        json!({ "pgbackrest_full_calendar": "*-*-01 03:00:00", "pgbackrest_incr_calendar": "hourly" }),
    );
    assert_eq!(t.len(), 3);
    assert!(has(&t[0].1, "OnCalendar=*-*-01 03:00:00"), "{}", t[0].1);
    assert!(has(&t[2].1, "OnCalendar=hourly"), "{}", t[2].1);
    assert!(has(&t[2].1, "Unit=pgbackrest-incr.service"), "{}", t[2].1);

    // A type without a schedule loses its timer.
    let removed: Vec<String> = c
        .tasks("etcd", &Map::new())
        .into_iter()
        .filter(|(n, _)| n == "no timer for a type without a schedule")
        .map(|(_, a)| a["removes"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(removed, ["/etc/systemd/system/pgbackrest-incr.timer"]);

    // One service per type with a schedule (and the full one always: the first backup at
    // converge starts it).
    let services: Vec<(String, String)> = c
        .tasks("etcd", &Map::new())
        .into_iter()
        .filter(|(n, _)| n.starts_with("backup services"))
        .map(|(_, a)| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["content"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        services.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["pgbackrest-full.service", "pgbackrest-diff.service"]
    );
    let diff = &services[1].1;
    assert!(
        has(
            diff,
            "ExecStart=/usr/local/sbin/bosun-pgbackrest backup diff"
        ),
        "{diff}"
    );
    assert!(has(diff, "Type=oneshot"), "{diff}");
}

/// Patroni archives into pgBackRest only when backups are on: the bootstrap DCS block and
/// the cluster pass's settings; off, both are what they were before the role existed.
#[test]
fn patroni_archives_only_when_backups_are_on() {
    let c = lab();
    let on = c.render("patroni", "pg1", "patroni/patroni.yml.j2", &Map::new());
    let off_vars = vars(json!({ "pgbackrest_enabled": false }));
    let off = c.render("patroni", "pg1", "patroni/patroni.yml.j2", &off_vars);
    let dcs_params = "        ssl_min_protocol_version: TLSv1.2\n";
    assert!(
        on.contains(&format!(
            "{dcs_params}        archive_mode: \"on\"\n        archive_command: \"pgbackrest --stanza=main archive-push %p\"\n        archive_timeout: 60\n      recovery_conf:\n        restore_command: \"pgbackrest --stanza=main archive-get %f \\\"%p\\\"\"\n  initdb:\n"
        )),
        "{on}"
    );
    assert!(off.contains(&format!("{dcs_params}  initdb:\n")), "{off}");
    for w in ["archive", "recovery_conf", "pgbackrest"] {
        assert!(!off.contains(w), "no {w} with backups off:\n{off}");
    }
    let parsed: Value = bosun_model::yaml::parse(Path::new("patroni.yml"), &on).expect("YAML");
    let dcs = &parsed["bootstrap"]["dcs"]["postgresql"];
    assert_eq!(dcs["parameters"]["archive_mode"], "on");
    assert_eq!(
        dcs["recovery_conf"]["restore_command"],
        "pgbackrest --stanza=main archive-get %f \"%p\""
    );
    // Only the DCS holds them: the local parameters stay as they were.
    assert!(parsed["postgresql"]["parameters"]
        .get("archive_mode")
        .is_none());

    // The cluster pass: the JSON the settings task sends.
    let settings = |e: &Map<String, Value>| -> String {
        let ctx = c.context("patroni", "pg1", e);
        Templates::new()
            .render_str("{{ patroni_cluster_settings | to_json }}", &ctx)
            .expect("settings render")
    };
    assert_eq!(
        settings(&off_vars),
        r#"{"loop_wait":5,"maximum_lag_on_failover":1048576,"postgresql":{"parameters":{"max_connections":200}},"retry_timeout":5,"synchronous_mode":true,"ttl":20}"#
    );
    let on_settings: Value = serde_json::from_str(&settings(&Map::new())).expect("JSON");
    assert_eq!(
        on_settings["postgresql"],
        json!({
            "parameters": {
                "max_connections": 200,
                "archive_mode": "on",
                "archive_command": "pgbackrest --stanza=main archive-push %p",
                "archive_timeout": 60
            },
            "recovery_conf": { "restore_command": "pgbackrest --stanza=main archive-get %f \"%p\"" }
        })
    );
    // Another stanza reaches both.
    let other = vars(json!({ "pgbackrest_stanza": "saleor" }));
    assert!(c
        .render("patroni", "pg1", "patroni/patroni.yml.j2", &other)
        .contains("pgbackrest --stanza=saleor archive-push %p"));
}

/// pgbackrest's fallback for the PostgreSQL versions is patroni's default.
#[test]
fn postgres_versions_agree_with_patroni() {
    let c = lab();
    let patroni = &c.site.roles["patroni"].defaults["patroni_pg_versions"];
    let ctx = c.context("pgbackrest", "etcd", &Map::new());
    let ours = Templates::new()
        .render_str("{{ pgbackrest_pg_versions | to_json }}", &ctx)
        .expect("renders");
    assert_eq!(serde_json::from_str::<Value>(&ours).unwrap(), *patroni);
}

#[test]
fn restored_copy_never_archives_and_has_its_own_port() {
    let c = lab();
    let restore = bosun_engine::load_site(&repo().join("roles/restore.yml")).expect("restore.yml");
    let rc = Case {
        inv: c.inv,
        site: restore,
        _dir: None,
    };
    let e = vars(json!({ "restore_target_time": "2026-11-30 15:00:00+00" }));
    let pgconf = rc.render(
        "pgbackrest",
        "etcd",
        "pgbackrest/restore-postgresql.conf.j2",
        &e,
    );
    for line in [
        "archive_mode = off",
        "archive_command = ''",
        "port = 5433",
        "listen_addresses = '127.0.0.1,10.20.0.31'",
        "data_directory = '/var/lib/postgresql/17/restore'",
        "hba_file = '/etc/bosun-restore/pg_hba.conf'",
        "hot_standby = off",
    ] {
        assert!(lines(&pgconf).contains(&line), "`{line}` in:\n{pgconf}");
    }
    let conf = rc.render("pgbackrest", "etcd", "pgbackrest/pgbackrest.conf.j2", &e);
    for line in [
        "repo1-path=/var/lib/pgbackrest",
        "pg1-path=/var/lib/postgresql/17/restore",
        "pg1-port=5433",
    ] {
        assert!(has(&conf, line), "`{line}` in:\n{conf}");
    }
    assert!(
        !conf.contains("pg1-host") && !conf.contains("pg2-"),
        "{conf}"
    );
    let tasks = rc.tasks("etcd", &e);
    let names: Vec<&str> = tasks.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!names.contains(&"backup timers"), "{names:?}");
    let run = &tasks
        .iter()
        .find(|(n, _)| n.starts_with("restore: stop and remove"))
        .expect("the restore task")
        .1;
    assert_eq!(
        run["cmd"],
        "BOSUN_PGBACKREST_ENV=/etc/bosun-restore/bosun-pgbackrest.env /usr/local/sbin/bosun-pgbackrest restore time '2026-11-30 15:00:00+00' ''"
    );
    let latest = rc.tasks("etcd", &Map::new());
    let run = &latest
        .iter()
        .find(|(n, _)| n.starts_with("restore: stop and remove"))
        .expect("the restore task")
        .1;
    assert!(
        run["cmd"]
            .as_str()
            .unwrap()
            .ends_with(" restore default '' ''"),
        "{run}"
    );
    let unit = &tasks
        .iter()
        .find(|(n, _)| n == "restore: unit of the copy")
        .expect("unit")
        .1;
    assert!(
        has(
            unit["content"].as_str().unwrap(),
            "ExecStart=/usr/lib/postgresql/17/bin/postgres -D /etc/bosun-restore"
        ),
        "{unit}"
    );
    // In host mode the restore runs on the repository host only.
    let elsewhere = rc.tasks("pg1", &e);
    assert_eq!(
        elsewhere
            .iter()
            .filter(|(n, _)| n == "restore: the host keeps the repository (host mode)")
            .count(),
        1
    );
}

// --- The helper, against stand-ins ---

/// A scratch host for roles/pgbackrest/files/bosun-pgbackrest: its settings, a textfile
/// directory, and bin/ with stand-ins: pgbackrest (logs its arguments, answers `info`
/// from STATE/info.json, fails when STATE/fail exists), psql (answers STATE/recovery, or
/// nothing), runuser and systemctl (log and run / succeed).
struct Helper {
    dir: PathBuf,
}

impl Helper {
    fn new(mode: &str) -> Helper {
        let dir = tempdir("pgbackrest-helper");
        let env = format!(
            "STANZA=main\nMODE={mode}\nRUN_AS=pgbackrest\nPG_PORT=5432\nPG_SOCKET=/var/run/postgresql\n\
             TEXTFILE_DIR={d}/textfile\nSSH_HOME={d}/home\nSSH_FROM=10.20.0.21,10.20.0.31\n\
             RESTORE_CONFIG=/etc/bosun-restore/pgbackrest.conf\nRESTORE_DATA={d}/restore\nRESTORE_UNIT=postgresql-restore\n\
             RESTORE_PORT=5433\nRESTORE_TIMEOUT=5\nRESTORE_REPORT={d}/report\n",
            d = dir.display()
        );
        write_tree(
            &dir,
            &[
                ("env", &env),
                (
                    "bin/pgbackrest",
                    "#!/bin/sh\necho \"pgbackrest $*\" >>\"$STATE/log\"\n\
                     [ -f \"$STATE/fail\" ] && { echo 'ERROR: [056]: boom' >&2; exit 56; }\n\
                     for a in \"$@\"; do case $a in info) cat \"$STATE/info.json\"; exit 0;; esac; done\nexit 0\n",
                ),
                (
                    "bin/psql",
                    "#!/bin/sh\necho \"psql $*\" >>\"$STATE/log\"\n[ -f \"$STATE/recovery\" ] || exit 2\ncat \"$STATE/recovery\"\n",
                ),
                (
                    "bin/runuser",
                    "#!/bin/sh\necho \"runuser $*\" >>\"$STATE/log\"\nwhile [ \"$1\" != -- ]; do shift; done\nshift\nexec \"$@\"\n",
                ),
                ("bin/systemctl", "#!/bin/sh\necho \"systemctl $*\" >>\"$STATE/log\"\nfor a; do [ \"$a\" = is-failed ] && exit 1; done\nexit 0\n"),
                ("bin/install", "#!/bin/sh\necho \"install $*\" >>\"$STATE/log\"\nfor a; do d=$a; done\nmkdir -p \"$d\"\n"),
            ],
        );
        for b in ["pgbackrest", "psql", "runuser", "systemctl", "install"] {
            let st = Command::new("chmod")
                .arg("+x")
                .arg(dir.join("bin").join(b))
                .status();
            assert!(st.is_ok_and(|s| s.success()));
        }
        for d in ["state", "textfile", "home/.ssh"] {
            std::fs::create_dir_all(dir.join(d)).expect("dir");
        }
        Helper { dir }
    }

    fn state(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join("state").join(name), text).expect("state");
    }

    fn run(&self, args: &[&str]) -> (bool, String) {
        let path = format!(
            "{}:{}",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let o = Command::new(repo().join("roles/pgbackrest/files/bosun-pgbackrest"))
            .args(args)
            .env("PATH", path)
            .env("STATE", self.dir.join("state"))
            .env("BOSUN_PGBACKREST_ENV", self.dir.join("env"))
            .output()
            .expect("run bosun-pgbackrest");
        let (out, err) = text(&o);
        (o.status.success(), format!("{out}{err}"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("state/log")).unwrap_or_default()
    }

    fn prom(&self) -> String {
        std::fs::read_to_string(self.dir.join("textfile/pgbackrest.prom")).unwrap_or_default()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn helper_backs_up_then_records_the_metric_the_alert_reads() {
    let h = Helper::new("host");
    let (ok, out) = h.run(&["backup", "full"]);
    assert!(ok, "{out}");
    assert!(
        h.log()
            .contains("runuser -u pgbackrest -- pgbackrest --stanza=main --type=full backup"),
        "{}",
        h.log()
    );
    let prom = h.prom();
    let full: Vec<&str> = prom
        .lines()
        .filter(|l| {
            l.starts_with(
                "pgbackrest_last_backup_timestamp_seconds{stanza=\"main\",type=\"full\"} ",
            )
        })
        .collect();
    assert_eq!(full.len(), 1, "{prom}");
    assert!(
        prom.contains("# TYPE pgbackrest_last_backup_timestamp_seconds gauge\n"),
        "{prom}"
    );

    // Another type adds its line; the same type replaces its own.
    assert!(h.run(&["metric", "diff", "1700000000"]).0);
    assert!(h.run(&["metric", "full", "1700000100"]).0);
    assert_eq!(
        h.prom(),
        "# HELP pgbackrest_last_backup_timestamp_seconds Unix time the last successful pgBackRest backup of the stanza and type finished.\n\
         # TYPE pgbackrest_last_backup_timestamp_seconds gauge\n\
         pgbackrest_last_backup_timestamp_seconds{stanza=\"main\",type=\"diff\"} 1700000000\n\
         pgbackrest_last_backup_timestamp_seconds{stanza=\"main\",type=\"full\"} 1700000100\n"
    );
    // The alert's metric and labels.
    let alerts =
        std::fs::read_to_string(repo().join("templates/monitoring/alerts.yml.j2")).unwrap();
    assert!(alerts.contains("max by (stanza) (pgbackrest_last_backup_timestamp_seconds)"));
    // No temp file left beside it.
    let names: Vec<String> = std::fs::read_dir(h.dir.join("textfile"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".prom") || n.contains(".prom."))
        .collect();
    assert_eq!(names, ["pgbackrest.prom"]);

    // A failed backup records nothing and fails the unit.
    h.state("fail", "");
    let before = h.prom();
    let (ok, out) = h.run(&["backup", "diff"]);
    assert!(!ok, "{out}");
    assert_eq!(h.prom(), before);
    assert!(!h.run(&["backup", "weekly"]).0);
}

#[test]
fn helper_in_s3_mode_acts_on_the_primary_only() {
    let h = Helper::new("s3");
    h.state("recovery", "t\n");
    let (ok, out) = h.run(&["backup", "full"]);
    assert!(ok, "{out}");
    assert!(out.contains("replica"), "{out}");
    assert!(!h.log().contains("pgbackrest --stanza"), "{}", h.log());
    assert!(h.prom().is_empty());
    assert!(
        h.run(&["stanza-exists"]).0,
        "nothing to create on a replica"
    );
    assert!(h.run(&["has-backup"]).0);
    // PostgreSQL not answering: not the primary either.
    std::fs::remove_file(h.dir.join("state/recovery")).unwrap();
    let (ok, out) = h.run(&["backup", "full"]);
    assert!(ok && out.contains("does not answer"), "{out}");

    h.state("recovery", "f\n");
    assert!(h.run(&["primary"]).0);
    let (ok, out) = h.run(&["backup", "diff"]);
    assert!(ok, "{out}");
    assert!(
        h.log()
            .contains("pgbackrest --stanza=main --type=diff backup"),
        "{}",
        h.log()
    );
    assert!(h.prom().contains("type=\"diff\"}"), "{}", h.prom());
}

#[test]
fn helper_creates_the_stanza_only_when_info_says_it_is_missing() {
    let h = Helper::new("host");
    let info = |code: u32, msg: &str| {
        format!(
            r#"[{{"archive":[],"backup":[],"name":"main","status":{{"code":{code},"lock":{{"backup":{{"held":false}}}},"message":"{msg}"}}}}]"#
        )
    };
    h.state("info.json", &info(1, "missing stanza path"));
    assert_eq!(h.run(&["status"]), (true, "1\n".into()));
    assert!(!h.run(&["stanza-exists"]).0);
    let (ok, out) = h.run(&["stanza-create"]);
    assert!(ok, "{out}");
    let log = h.log();
    let create = log
        .find("--stanza=main stanza-create")
        .expect("stanza-create ran");
    let check = log.find("--stanza=main check").expect("check ran");
    assert!(create < check, "{log}");
    h.state("info.json", &info(2, "no valid backups"));
    assert!(h.run(&["stanza-exists"]).0);
    assert!(!h.run(&["has-backup"]).0);
    h.state("info.json", &info(0, "ok"));
    assert!(h.run(&["has-backup"]).0);
}

#[test]
fn helper_authorizes_the_key_from_the_cluster_hosts_for_pgbackrest_only() {
    let h = Helper::new("host");
    let key = h.dir.join("home/.ssh/id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(st.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().collect();
    assert!(!h.run(&["authorized-keys", "--check"]).0);
    let (ok, out) = h.run(&["authorized-keys"]);
    assert!(ok, "{out}");
    let ak = std::fs::read_to_string(h.dir.join("home/.ssh/authorized_keys")).unwrap();
    assert_eq!(
        ak,
        format!(
            "from=\"10.20.0.21,10.20.0.31\",restrict,command=\"/usr/bin/pgbackrest ${{SSH_ORIGINAL_COMMAND#* }}\" {}\n",
            public.join(" ")
        )
    );
    assert!(h.run(&["authorized-keys", "--check"]).0);
}

#[test]
fn helper_restores_into_a_fresh_directory_and_reports_the_time() {
    let h = Helper::new("host");
    std::fs::create_dir_all(h.dir.join("restore/old")).unwrap();
    h.state("recovery", "f\n");
    let (ok, out) = h.run(&["restore", "time", "2026-11-30 15:00:00+00", ""]);
    assert!(ok, "{out}");
    assert!(
        !h.dir.join("restore/old").exists(),
        "the earlier copy is removed"
    );
    let log = h.log();
    assert!(
        log.contains(
            "pgbackrest --config=/etc/bosun-restore/pgbackrest.conf --stanza=main --pg1-path="
        ),
        "{log}"
    );
    assert!(
        log.contains("--archive-mode=off --type=time --target=2026-11-30 15:00:00+00 --target-action=promote restore"),
        "{log}"
    );
    let stop = log
        .find("systemctl stop postgresql-restore")
        .expect("stopped first");
    let start = log
        .find("systemctl start --no-block postgresql-restore")
        .expect("started");
    assert!(stop < start, "{log}");
    assert!(log.contains("-p 5433"), "{log}");
    let report = std::fs::read_to_string(h.dir.join("report")).unwrap();
    assert!(
        report.contains("type=time\ntarget=2026-11-30 15:00:00+00\n"),
        "{report}"
    );
    assert!(report.contains("total_seconds="), "{report}");

    // To the end of the archive, from a named backup: no target options.
    std::fs::remove_file(h.dir.join("state/log")).unwrap();
    let (ok, out) = h.run(&["restore", "default", "", "20261130-150000F"]);
    assert!(ok, "{out}");
    let log = h.log();
    assert!(
        log.contains("--archive-mode=off --set=20261130-150000F restore"),
        "{log}"
    );
    assert!(!log.contains("--target"), "{log}");
    // A copy that never promotes fails the run, after the timeout.
    h.state("recovery", "t\n");
    let (ok, out) = h.run(&["restore", "default", "", ""]);
    assert!(!ok && out.contains("not promoted"), "{out}");
}
