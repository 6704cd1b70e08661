//! The database tier on the lab: etcd, a three-node Patroni cluster, HAProxy on 5432 and
//! the firewall — converged, checked end to end, then put through a hard failover drill.
//! Needs root and the lab; run by tests/run.sh after tests/lab.rs.

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const APP_PASSWORD: &str = "lab-saleor-db-pw";
const LB: &str = "10.20.0.11";

fn run(args: &[&str]) -> std::process::Output {
    bosun(&repo(), args)
}

/// One statement through libpq's psql: Ok(its output) or Err(its error).
fn libpq(conninfo: &str, password: &str, sql: &str) -> Result<String, String> {
    let o = Command::new("psql")
        .arg(conninfo)
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .map_err(|e| format!("psql: {e} (apt-get install postgresql-client)"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
    }
}

/// One statement as the application role.
fn psql(host: &str, sql: &str) -> Result<String, String> {
    libpq(
        &format!("host={host} port=5432 user=saleor dbname=saleor connect_timeout=2"),
        APP_PASSWORD,
        sql,
    )
}

fn cluster() -> Vec<Value> {
    let o = run(&["status", "-i", "inventory/lab.yml", "--output", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    v["patroni"].as_array().cloned().unwrap_or_default()
}

fn leader(members: &[Value]) -> Option<String> {
    members
        .iter()
        .find(|m| matches!(m["role"].as_str(), Some("leader" | "master" | "primary")))
        .and_then(|m| m["name"].as_str())
        .map(str::to_string)
}

fn is_replicating(m: &Value) -> bool {
    matches!(m["role"].as_str(), Some("replica" | "sync_standby"))
        && matches!(m["state"].as_str(), Some("running" | "streaming"))
}

/// What a client committing one row at a time through lb:5432 saw during a disruption.
struct Drill {
    acked: Vec<(Instant, i64)>,
    failures: Vec<Instant>,
    /// The longest gap between two acknowledged commits.
    outage: Duration,
    /// Acknowledged commits that are not in the table afterwards.
    lost: Vec<i64>,
}

impl Drill {
    /// Writes have resumed for `n` commits after the last failure.
    fn resumed_after_failure(&self, n: usize) -> bool {
        self.failures
            .last()
            .is_some_and(|f| self.acked.iter().filter(|(t, _)| t > f).count() >= n)
    }
}

/// Runs `disrupt` while a writer commits through lb:5432; the writer stops once `done`
/// holds after the disruption returned (or after 240 s), then every acknowledged commit
/// is looked up.
fn drill(disrupt: impl FnOnce(), done: impl Fn(&Drill) -> bool + Send + 'static) -> Drill {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    psql(LB, "CREATE TABLE IF NOT EXISTS drill (id bigserial PRIMARY KEY, note text, at timestamptz DEFAULT now())").expect("create table via lb");
    let disrupted = Arc::new(AtomicBool::new(false));
    let flag = disrupted.clone();
    let commits = Arc::new(AtomicUsize::new(0));
    let counted = commits.clone();
    let writer = std::thread::spawn(move || {
        let mut d = Drill {
            acked: Vec::new(),
            failures: Vec::new(),
            outage: Duration::ZERO,
            lost: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(240);
        while Instant::now() < deadline {
            match psql(LB, "INSERT INTO drill (note) VALUES ('drill') RETURNING id") {
                Ok(id) => {
                    if let Ok(id) = id.parse() {
                        d.acked.push((Instant::now(), id));
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Err(_) => {
                    d.failures.push(Instant::now());
                    // Pace retries while no primary is up (load pacing, not a readiness wait).
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if flag.load(Ordering::SeqCst) && done(&d) {
                break;
            }
        }
        d
    });
    // The writer has a steady state before the disruption: commits of its own.
    wait_until("the writer commits", Duration::from_secs(30), || {
        commits.load(Ordering::SeqCst) >= 5
    });
    let disrupted_at = Instant::now();
    disrupt();
    disrupted.store(true, Ordering::SeqCst);
    let mut d = writer.join().expect("writer thread");
    // The outage: the longest gap between acknowledged commits from the last one before the
    // disruption on; failures are those after the disruption began.
    let last_before = d
        .acked
        .iter()
        .rfind(|(t, _)| *t <= disrupted_at)
        .map(|(t, _)| *t)
        .expect("commits before the disruption");
    let mut times: Vec<Instant> = vec![last_before];
    times.extend(d.acked.iter().map(|(t, _)| *t).filter(|t| *t > last_before));
    d.outage = times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default();
    d.failures.retain(|t| *t > disrupted_at);
    let ids = psql(LB, "SELECT string_agg(id::text, ',') FROM drill").expect("read back");
    let have: std::collections::BTreeSet<i64> =
        ids.split(',').filter_map(|s| s.parse().ok()).collect();
    d.lost = d
        .acked
        .iter()
        .map(|(_, id)| *id)
        .filter(|id| !have.contains(id))
        .collect();
    d
}

#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn database_tier_replicates_fails_over_and_rejoins() {
    // 1. Converged (the lab tests converged the site already; this is then a no-op).
    let (o, _) = lab_converge(&[]);
    assert!(o.status.success(), "converge failed:\n{}", why(&o));

    // One leader, two replicas.
    let members = cluster();
    assert_eq!(members.len(), 3, "{members:?}");
    let first_leader = leader(&members).expect("a leader");
    assert_eq!(
        members.iter().filter(|m| is_replicating(m)).count(),
        2,
        "{members:?}"
    );
    let (rc, streaming) = lab_ssh(&first_leader, "runuser -u postgres -- psql -XAtc \"select count(*) from pg_stat_replication where state = 'streaming'\"");
    assert_eq!(
        (rc, streaming.as_str()),
        (0, "2"),
        "both replicas stream from {first_leader}"
    );

    // A row written through lb:5432 is read back on both replicas.
    psql(LB, "CREATE TABLE IF NOT EXISTS drill (id bigserial PRIMARY KEY, note text, at timestamptz DEFAULT now())").expect("create table via lb");
    let marker = format!("marker-{}", std::process::id());
    psql(LB, &format!("INSERT INTO drill (note) VALUES ('{marker}')")).expect("insert via lb");
    for m in &members {
        let name = m["name"].as_str().unwrap_or_default();
        if name == first_leader {
            continue;
        }
        let host = m["host"].as_str().unwrap_or_default().to_string();
        wait_until(
            &format!("{marker} visible on {name}"),
            Duration::from_secs(20),
            || {
                psql(
                    &host,
                    &format!("SELECT count(*) FROM drill WHERE note = '{marker}'"),
                )
                .as_deref()
                    == Ok("1")
            },
        );
    }

    // 2. Failover drill: a client commits one row at a time through lb:5432 while the
    // leader's host is powered off hard.
    let d = drill(
        || {
            let kill = run(&["lab", "kill", &first_leader]);
            assert!(kill.status.success(), "{:?}", text(&kill));
        },
        |d| d.resumed_after_failure(20),
    );
    println!(
        "FAILOVER: write outage {:.1}s (longest gap between acknowledged commits); {} commits acknowledged, {} lost",
        d.outage.as_secs_f64(),
        d.acked.len(),
        d.lost.len()
    );
    assert!(!d.failures.is_empty(), "the kill must interrupt writes");
    assert!(
        d.outage < Duration::from_secs(30),
        "write outage {:?} is not under 30 s",
        d.outage
    );
    assert!(d.lost.is_empty(), "acknowledged commits lost: {:?}", d.lost);
    let new_leader = leader(&cluster()).expect("a new leader");
    assert_ne!(new_leader, first_leader);

    // 3. The old leader boots again and rejoins as a replica (pg_rewind).
    let start = run(&["lab", "start", &first_leader]);
    assert!(start.status.success(), "{:?}", text(&start));
    let took = wait_until(
        &format!("{first_leader} rejoins as a replica"),
        Duration::from_secs(240),
        || {
            cluster()
                .iter()
                .any(|m| m["name"] == first_leader.as_str() && is_replicating(m))
        },
    );
    println!(
        "REJOIN: {first_leader} replicating again {:.0}s after boot",
        took.as_secs_f64()
    );

    // 4. A converge afterwards changes nothing.
    let (o, evs) = lab_converge(&[]);
    assert!(o.status.success(), "converge failed:\n{}", why(&o));
    assert_eq!(
        changed_tasks(&evs),
        Value::Array(vec![]),
        "converge after the drill must be a no-op"
    );
}

#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn wrong_etcd_address_or_bad_patroni_variable_fails_clearly() {
    let t0 = Instant::now();
    let (o, _) = lab_converge(&[
        "-l",
        "pg2",
        "-e",
        r#"{"patroni_etcd_hosts": ["10.20.0.99:2379"]}"#,
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        out.contains("10.20.0.99:2379"),
        "the message names the etcd address:\n{out}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(90),
        "fails in bounded time, not a hang"
    );

    let (o, _) = lab_converge(&["-l", "pg2", "-e", "patroni_loop_wait=nonsense"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        out.contains("validation failed"),
        "patroni --validate-config rejects it:\n{out}"
    );
    let (_, conf) = lab_ssh("pg2", "grep loop_wait /etc/patroni/config.yml");
    assert!(
        !conf.contains("nonsense"),
        "the live config is untouched: {conf}"
    );
}

#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn firewall_is_loaded_and_ssh_survives() {
    for h in ["lb", "pg1", "etcd"] {
        let (rc, rules) = lab_ssh(h, "nft list chain inet filter input");
        assert_eq!(rc, 0, "{h}: ruleset loaded");
        assert!(rules.contains("policy drop"), "{h}: {rules}");
        assert!(rules.contains("tcp dport 22 accept"), "{h}");
    }
    let (_, pg) = lab_ssh("pg1", "nft list chain inet filter input");
    assert!(
        pg.contains("ip saddr 10.20.0.0/24 tcp dport { 5432, 8008 }"),
        "{pg}"
    );
    let (_, lb) = lab_ssh("lb", "nft list chain inet filter input");
    assert!(lb.contains("5432") && lb.contains("8080"), "{lb}");
}

/// One libpq connection attempt through the balancer: Ok(stdout) or Err(stderr).
fn connect(user: &str, password: &str, sslmode: &str) -> Result<String, String> {
    libpq(
        &format!(
            "host={LB} port=5432 user={user} dbname=saleor connect_timeout=3 sslmode={sslmode}"
        ),
        password,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
}

/// Issue 13's access drill: through HAProxy:5432 only TLS, only application roles; the
/// stats page asks for a password.
#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn balancer_refuses_superuser_plain_tcp_and_anonymous_stats() {
    let (o, _) = lab_converge(&["--limit", "postgres,balancers"]);
    assert!(o.status.success(), "converge failed:\n{}", why(&o));

    // Patroni applies a reloaded configuration on its next cycle (loop_wait).
    let live = wait_until("TLS through the balancer", Duration::from_secs(40), || {
        connect("saleor", APP_PASSWORD, "require").as_deref() == Ok("t")
    });
    let plain = connect("saleor", APP_PASSWORD, "disable").expect_err("plain TCP refused");
    assert!(
        plain.contains("no encryption") || plain.contains("pg_hba.conf"),
        "{plain}"
    );
    let su = connect("postgres", "lab-superuser-pw", "require").expect_err("superuser refused");
    assert!(su.contains("pg_hba.conf rejects"), "{su}");
    let repl = connect("replicator", "lab-replication-pw", "require")
        .expect_err("replication role refused");
    assert!(repl.contains("pg_hba.conf rejects"), "{repl}");

    // curl reads the credentials from stdin (`-K -`), as bosun status does.
    let code = |auth: &str| {
        let o = Command::new("sh")
            .args(["-c", "printf '%s' \"$1\" | curl -s -o /dev/null -w '%{http_code}' --max-time 5 -K - \"$2\"", "sh"])
            .arg(if auth.is_empty() { String::new() } else { format!("user = \"{auth}\"\n") })
            .arg(format!("http://{LB}:8080/"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let anonymous = code("");
    let with_password = code("stats:lab-stats-pw");
    assert_eq!(anonymous, "401", "stats page without credentials");
    assert_eq!(with_password, "200", "stats page with the password");
    let status = run(&["status", "-i", "inventory/lab.yml", "--output", "json"]);
    let v: Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    assert!(
        v["haproxy"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["proxy"] == "postgres")),
        "bosun status reads the stats page with the password: {v}"
    );
    println!(
        "DRILL access: TLS live {:.1}s after the converge; superuser via lb refused ({}); plain TCP refused ({}); stats page {anonymous} without credentials, {with_password} with them",
        live.as_secs_f64(),
        su.lines().next().unwrap_or(""),
        plain.lines().next().unwrap_or("")
    );
}

/// Issue 13's DCS drills: the etcd host powered off → writes through lb:5432 go on (two
/// etcd members keep the quorum); a parameter that needs PostgreSQL restarted → a rolling
/// restart (raised: replicas, switchover, old leader; lowered: the primary first) with a
/// write outage of seconds, nothing lost.
#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn etcd_host_loss_and_rolling_restart_keep_writes_going() {
    let (o, _) = lab_converge(&[]);
    assert!(o.status.success(), "converge failed:\n{}", why(&o));

    // The etcd host killed: its two peers keep the quorum, Patroni keeps its leader.
    let before = leader(&cluster()).expect("a leader");
    let d = drill(
        || {
            let kill = run(&["lab", "kill", "etcd"]);
            assert!(kill.status.success(), "{:?}", text(&kill));
        },
        // Thirty seconds of writes after the kill: longer than Patroni's ttl.
        {
            let t0 = Instant::now();
            move |_| t0.elapsed() > Duration::from_secs(35)
        },
    );
    println!(
        "DRILL etcd host killed: longest write gap {:.1}s, {} failed attempts, {} commits, {} lost; leader {}",
        d.outage.as_secs_f64(),
        d.failures.len(),
        d.acked.len(),
        d.lost.len(),
        leader(&cluster()).unwrap_or_default()
    );
    assert!(d.lost.is_empty(), "lost: {:?}", d.lost);
    assert!(
        d.outage < Duration::from_secs(5),
        "writes stalled {:?} with one etcd member down",
        d.outage
    );
    assert_eq!(
        leader(&cluster()).as_deref(),
        Some(before.as_str()),
        "no failover for an etcd member"
    );
    let start = run(&["lab", "start", "etcd"]);
    assert!(start.status.success(), "{:?}", text(&start));
    wait_until(
        "etcd member healthy again",
        Duration::from_secs(120),
        || {
            lab_ssh(
                "etcd",
                "curl -sf http://10.20.0.31:2379/health | grep -q '\"health\":\"true\"'",
            )
            .0 == 0
        },
    );

    // A restart-requiring change: max_connections up, then back.
    for value in ["210", "200"] {
        let old_leader = leader(&cluster()).expect("a leader");
        let extra = format!("patroni_max_connections={value}");
        let converged = std::sync::Arc::new(std::sync::Mutex::new(None));
        let slot = converged.clone();
        let d = drill(
            move || {
                let (o, evs) = lab_converge(&["--limit", "postgres", "-e", &extra]);
                *slot.lock().expect("lock") = Some((o, evs));
            },
            {
                let t0 = Instant::now();
                move |d| t0.elapsed() > Duration::from_secs(3) && d.acked.len() > 5
            },
        );
        let (o, evs) = converged.lock().expect("lock").take().expect("converged");
        assert!(o.status.success(), "converge failed:\n{}", why(&o));
        let changed = changed_tasks(&evs).to_string();
        assert!(changed.contains("rolling restart"), "{changed}");
        let members = cluster();
        let new_leader = leader(&members).expect("a leader");
        assert!(
            members.iter().all(|m| m["pending_restart"] != true),
            "{members:?}"
        );
        let (_, setting) = lab_ssh(
            &new_leader,
            "runuser -u postgres -- psql -XAtc 'show max_connections'",
        );
        assert_eq!(setting, value);
        println!(
            "DRILL rolling restart (max_connections {value}): write outage {:.1}s, {} failed attempts, {} commits acknowledged, {} lost; leader {old_leader} → {new_leader}",
            d.outage.as_secs_f64(),
            d.failures.len(),
            d.acked.len(),
            d.lost.len()
        );
        assert!(d.lost.is_empty(), "lost: {:?}", d.lost);
        assert!(
            d.outage <= Duration::from_secs(5),
            "rolling restart write outage {:?} is over 5 s",
            d.outage
        );
        // Raised: replicas, then a switchover. Lowered: PostgreSQL wants the primary to have
        // it before any replica can, so the primary restarts in place first.
        if value == "210" {
            assert_ne!(
                new_leader, old_leader,
                "a raised value ends in a switchover"
            );
        } else {
            assert_eq!(
                new_leader, old_leader,
                "a lowered value restarts the primary in place"
            );
        }
    }
}
