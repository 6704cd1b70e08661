//! The redis role without hosts: the site expands for the lab inventory, HAProxy's redis
//! block renders as intended, and the replication helper (roles/redis/files/bosun-redis)
//! picks the primary and keeps redis.conf to what it should hold — run against a stand-in
//! redis-cli that answers from files, as the Redis and Sentinel of each address would.
//! The real thing is tests/lab_redis.rs.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const PASSWORD: &str = "lab-redis-pw";

/// Renders `template` (under templates/) for `host` as the play running `role` in the
/// repo's site sees it with the lab inventory.
fn render(role: &str, host: &str, template: &str) -> String {
    let repo = repo();
    let inv = bosun_model::inventory::Inventory::load(&repo.join("inventory/lab.yml"))
        .expect("inventory");
    let site = bosun_engine::load_site(&repo.join("roles/site.yml")).expect("site");
    let templates = bosun_model::template::Templates::with_secrets(
        bosun_model::redact::SecretSet::new(&inv.secret_values),
    );
    bosun_engine::preflight(&inv, &site, &Default::default(), &templates)
        .unwrap_or_else(|e| panic!("the site expands for the lab inventory:\n{e}"));
    let scope = role_scope(&inv, &site, role, host, &Default::default(), &templates);
    templates
        .render_file(&repo.join("templates").join(template), &scope.context())
        .expect("render")
}

#[test]
fn balancer_sends_redis_clients_to_the_master_only() {
    let cfg = render("haproxy", "lb", "haproxy/haproxy.cfg.j2");
    let block = cfg
        .split("# --- redis (managed with roles/redis) ---")
        .nth(1)
        .and_then(|b| b.split("# --- end redis ---").next())
        .expect("the delimited redis block");
    for line in [
        "listen redis",
        "bind 10.20.0.11:6379",
        "mode tcp",
        "stick on dst",
        // AUTH as a RESP array: the password's length in bytes, then the password.
        r"tcp-check send *2\r\n$4\r\nAUTH\r\n$12\r\n",
        r"tcp-check send lab-redis-pw\r\n",
        "tcp-check expect string role:master",
        "default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions",
        "server saleor 10.20.0.12:6379 check",
        "server storefront 10.20.0.13:6379 check",
    ] {
        assert!(
            block.lines().any(|l| l.trim() == line),
            "`{line}` in:\n{block}"
        );
    }
    // Saleor's URLs point at the balancer, not at one cache host.
    let env = render("saleor", "saleor", "saleor/saleor.env.j2");
    assert!(
        env.contains("CACHE_URL=redis://:lab-redis-pw@10.20.0.11:6379/1"),
        "{env}"
    );
}

/// A scratch "host": the helper's settings file, its redis.conf, and a bin/ with a
/// stand-in redis-cli (answers from STATE/ADDR:PORT.{sentinel,info}; no file: the address
/// does not answer) and runuser (there is no redis user here: the command runs as is).
struct Helper {
    dir: PathBuf,
}

impl Helper {
    fn new() -> Helper {
        let dir = tempdir("redis-helper");
        write_tree(
            &dir,
            &[
                (
                    "bosun-redis.env",
                    &format!(
                        "REDIS_HOSTS=\"10.20.0.12 10.20.0.13\"\nREDIS_PORT=6379\n\
                         SENTINELS=\"10.20.0.11 10.20.0.12 10.20.0.13\"\nSENTINEL_PORT=26379\n\
                         SENTINEL_MASTER=saleor\nREDIS_PASSWORD={PASSWORD}\nSENTINEL_PASSWORD={PASSWORD}\n"
                    ),
                ),
                ("redis.conf", "# the package's own file\nbind 127.0.0.1\n"),
                (
                    "bin/redis-cli",
                    "#!/bin/sh\n\
                     for a in \"$@\"; do [ \"$a\" = \"$WANT\" ] && { echo 'password in argv' >&2; exit 9; }; done\n\
                     [ \"$REDISCLI_AUTH\" = \"$WANT\" ] || { echo 'no REDISCLI_AUTH' >&2; exit 8; }\n\
                     while [ $# -gt 0 ]; do case $1 in -h) h=$2; shift 2;; -p) p=$2; shift 2;; --raw) shift;; *) break;; esac; done\n\
                     case $1 in SENTINEL) f=$STATE/$h:$p.sentinel;; INFO) f=$STATE/$h:$p.info;; *) exit 2;; esac\n\
                     [ -f \"$f\" ] || { echo \"Could not connect to Redis at $h:$p: Connection refused\" >&2; exit 1; }\n\
                     cat \"$f\"\n",
                ),
                (
                    "bin/runuser",
                    "#!/bin/sh\nwhile [ \"$1\" != -- ]; do shift; done\nshift\nexec \"$@\"\n",
                ),
            ],
        );
        for b in ["bin/redis-cli", "bin/runuser"] {
            let st = Command::new("chmod").arg("+x").arg(dir.join(b)).status();
            assert!(st.is_ok_and(|s| s.success()));
        }
        std::fs::create_dir_all(dir.join("state")).expect("state dir");
        Helper { dir }
    }

    /// Makes ADDR:PORT answer `what` (`sentinel` or `info`) with `text`.
    fn answer(&self, addr_port: &str, what: &str, text: &str) {
        std::fs::write(
            self.dir.join("state").join(format!("{addr_port}.{what}")),
            text,
        )
        .expect("state");
    }

    fn run(&self, args: &[&str]) -> (bool, String) {
        let path = format!(
            "{}:{}",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let o = Command::new(repo().join("roles/redis/files/bosun-redis"))
            .args(args)
            .env("PATH", path)
            .env("WANT", PASSWORD)
            .env("STATE", self.dir.join("state"))
            .env("BOSUN_REDIS_ENV", self.dir.join("bosun-redis.env"))
            .env("BOSUN_REDIS_CONF", self.dir.join("redis.conf"))
            .output()
            .expect("run bosun-redis");
        let (out, err) = text(&o);
        assert!(
            !err.contains("argv") && !err.contains("REDISCLI_AUTH"),
            "{err}"
        );
        (o.status.success(), format!("{out}{err}"))
    }

    fn conf(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.conf")).expect("redis.conf")
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn helper_asks_sentinel_then_the_servers_then_takes_the_first_host() {
    let h = Helper::new();
    // Nothing answers: a new cluster, the inventory's first cache host.
    assert_eq!(h.run(&["primary"]), (true, "10.20.0.12\n".into()));
    // A master without replicas is not followed (it may be a host just set up alone).
    h.answer(
        "10.20.0.13:6379",
        "info",
        "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n",
    );
    assert_eq!(h.run(&["primary"]).1, "10.20.0.12\n");
    // A master with a replica is.
    h.answer(
        "10.20.0.13:6379",
        "info",
        "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n",
    );
    assert_eq!(h.run(&["primary"]).1, "10.20.0.13\n");
    // Sentinel knows best; an address that is no cache host is not believed.
    h.answer("10.20.0.11:26379", "sentinel", "10.20.0.99\n6379\n");
    h.answer("10.20.0.12:26379", "sentinel", "10.20.0.12\n6379\n");
    assert_eq!(h.run(&["primary"]).1, "10.20.0.12\n");
}

#[test]
fn helper_writes_redis_conf_once_and_prunes_what_config_rewrite_appends() {
    let h = Helper::new();
    h.answer("10.20.0.12:26379", "sentinel", "10.20.0.13\n6379\n");
    let include = format!("include {}", "/etc/redis/bosun.conf");
    // A host set up after a failover replicates from the primary Sentinel names.
    let (ok, out) = h.run(&["server-conf", "10.20.0.12"]);
    assert!(ok, "{out}");
    let conf = h.conf();
    assert!(conf.lines().any(|l| l == include), "{conf}");
    assert!(
        conf.lines().any(|l| l == "replicaof 10.20.0.13 6379"),
        "{conf}"
    );
    assert!(
        !conf.contains("bind 127.0.0.1"),
        "the package's file is replaced: {conf}"
    );
    assert!(h.run(&["server-conf-pruned"]).0);
    // The primary itself gets no replicaof.
    let (ok, _) = h.run(&["server-conf", "10.20.0.13"]);
    assert!(ok);
    assert!(
        !h.conf().lines().any(|l| l.starts_with("replicaof ")),
        "{}",
        h.conf()
    );

    // What Sentinel's CONFIG REWRITE leaves (as Redis 7.0 writes it): every non-default
    // setting after the include, which would shadow a later change of bosun.conf.
    std::fs::write(
        h.path().join("redis.conf"),
        format!(
            "# Written once by bosun\n{include}\n\n# Generated by CONFIG REWRITE\nmaxmemory 256mb\n\
             requirepass \"old\"\nreplicaof 10.20.0.12 6379\nuser default on #5a8f ~* &* +@all\n"
        ),
    )
    .expect("rewritten conf");
    assert!(
        !h.run(&["server-conf-pruned"]).0,
        "a rewritten file needs pruning"
    );
    let (ok, out) = h.run(&["prune-server-conf"]);
    assert!(ok, "{out}");
    assert_eq!(
        h.conf(),
        format!("# Written once by bosun\n{include}\nreplicaof 10.20.0.12 6379\n")
    );
    assert!(h.run(&["server-conf-pruned"]).0);
}
