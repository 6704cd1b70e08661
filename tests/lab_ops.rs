//! The seed's operations half on the lab (issue 14): Prometheus scrapes every exporter,
//! alerts reach a webhook and resolve, every host's journal reaches the collector, and a
//! backup restores to a point in time. Each drill prints its figure.
//!
//! Alertmanager sends to `monitoring_notify_webhook_url`, which inventory/lab.yml points at
//! the controller's address on the lab bridge: the receiver here listens there.
//! Run by tests/run.sh after the lab tests converged the site.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The monitoring host (inventory/lab.yml's `monitoring` group).
const MONITOR: &str = "etcd";
const PROMETHEUS: &str = "http://10.20.0.31:9090";
/// Where Alertmanager sends (inventory/lab.yml's monitoring_notify_webhook_url).
const WEBHOOK_LISTEN: &str = "10.20.0.1:9099";

fn run(args: &[&str]) -> std::process::Output {
    bosun(&repo(), args)
}

/// GET `url` with curl; `query` (name, value) pairs are URL-encoded.
fn http_get(url: &str, query: &[(&str, &str)]) -> Result<String, String> {
    let mut c = std::process::Command::new("curl");
    c.args(["-fsS", "--max-time", "5", "-G", url]);
    for (k, v) in query {
        c.arg("--data-urlencode").arg(format!("{k}={v}"));
    }
    let o = c.output().map_err(|e| format!("curl: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

fn prometheus(path: &str, query: &[(&str, &str)]) -> Value {
    http_get(&format!("{PROMETHEUS}{path}"), query)
        .ok()
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or(Value::Null)
}

fn cluster() -> Vec<Value> {
    let o = run(&["status", "-i", "inventory/lab.yml", "--output", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    v["patroni"].as_array().cloned().unwrap_or_default()
}

fn member(role: &[&str]) -> Option<String> {
    cluster()
        .iter()
        .find(|m| m["role"].as_str().is_some_and(|r| role.contains(&r)))
        .and_then(|m| m["name"].as_str())
        .map(str::to_string)
}

fn leader() -> Option<String> {
    member(&["leader", "master", "primary"])
}

/// A leader and two replicas that replicate (Patroni 4 says `streaming`; 3.0.2, Debian
/// 12, says `running`).
fn all_streaming() -> bool {
    let c = cluster();
    let replicating = |m: &&Value| {
        matches!(m["role"].as_str(), Some("replica" | "sync_standby"))
            && matches!(m["state"].as_str(), Some("running" | "streaming"))
    };
    let leading = |m: &&Value| matches!(m["role"].as_str(), Some("leader" | "master" | "primary"));
    c.len() == 3 && c.iter().filter(replicating).count() == 2 && c.iter().any(|m| leading(&m))
}

/// One notification Alertmanager sent: when it arrived and one alert of it.
#[derive(Clone, Debug)]
struct Notice {
    at: Instant,
    alert: Value,
}

/// An HTTP server on the lab bridge that records every alert Alertmanager posts.
struct Receiver {
    notices: Arc<Mutex<Vec<Notice>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind(WEBHOOK_LISTEN)
            .unwrap_or_else(|e| panic!("listen on {WEBHOOK_LISTEN} (the lab bridge): {e}"));
        let notices = Arc::new(Mutex::new(Vec::new()));
        let sink = notices.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(body) = read_post(stream) {
                    let at = Instant::now();
                    let alerts = body["alerts"].as_array().cloned().unwrap_or_default();
                    let mut n = sink.lock().expect("notices");
                    n.extend(alerts.into_iter().map(|alert| Notice { at, alert }));
                }
            }
        });
        Receiver { notices }
    }

    /// Waits for a notification of `alertname` on `instance` with `status`, sent after
    /// `since`; returns when it arrived.
    fn wait(
        &self,
        alertname: &str,
        instance: &str,
        status: &str,
        since: Instant,
        limit: Duration,
    ) -> Instant {
        let t0 = Instant::now();
        loop {
            let found = self.notices.lock().expect("notices").iter().find_map(|n| {
                (n.at >= since
                    && n.alert["labels"]["alertname"] == alertname
                    && n.alert["labels"]["instance"] == instance
                    && n.alert["status"] == status)
                    .then_some(n.at)
            });
            if let Some(at) = found {
                return at;
            }
            assert!(
                t0.elapsed() < limit,
                "no {status} {alertname} for {instance} within {limit:?}; received: {:?}",
                self.notices
                    .lock()
                    .expect("notices")
                    .iter()
                    .map(|n| format!(
                        "{} {} {}",
                        n.alert["status"],
                        n.alert["labels"]["alertname"],
                        n.alert["labels"]["instance"]
                    ))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Reads one HTTP request, answers 200, returns its JSON body.
fn read_post(stream: TcpStream) -> Option<Value> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    let mut w = stream;
    let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    serde_json::from_slice(&body).ok()
}

/// Every scrape target up, every exporter on a private address and out of reach of a host
/// outside the monitoring group (this controller is on the private subnet).
#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn prometheus_scrapes_every_exporter_and_only_it_reaches_them() {
    let (o, _) = lab_converge(&[]);
    assert!(o.status.success(), "converged:\n{}", why(&o));
    let mut last = Value::Null;
    let took = wait_until("every target up", Duration::from_secs(90), || {
        last = prometheus("/api/v1/targets", &[("state", "active")]);
        let t = last["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        !t.is_empty() && t.iter().all(|t| t["health"] == "up")
    });
    let targets = last["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut jobs: std::collections::BTreeMap<String, usize> = Default::default();
    for t in &targets {
        *jobs
            .entry(t["labels"]["job"].as_str().unwrap_or("?").into())
            .or_default() += 1;
    }
    // 7 node exporters, 3 Patroni, 3 postgres_exporter, 3 etcd, 1 HAProxy, 2 Redis, 4 probes.
    for (job, n) in [
        ("node", 7),
        ("patroni", 3),
        ("postgres", 3),
        ("etcd", 3),
        ("haproxy", 1),
        ("redis", 2),
        ("blackbox", 4),
    ] {
        assert_eq!(jobs.get(job), Some(&n), "{job} targets: {jobs:?}");
    }
    println!(
        "METRICS: {} targets up {:.1}s after the converge: {jobs:?}",
        targets.len(),
        took.as_secs_f64()
    );
    // The exporters read what they should: a database member, Redis, HAProxy, a probe.
    for q in [
        "pg_up",
        "redis_up",
        r#"haproxy_backend_active_servers{proxy!="stats"}"#,
        "probe_success",
    ] {
        let v = prometheus("/api/v1/query", &[("query", &format!("min({q})"))]);
        assert_eq!(v["data"]["result"][0]["value"][1], "1", "{q}: {v}");
    }
    // Private address only, and the firewall lets only the monitoring host in.
    let (_, listen) = lab_ssh("pg1", "ss -Hltn 'sport = :9187' | awk '{print $4}'");
    assert_eq!(listen, "10.20.0.21:9187");
    let refused = TcpStream::connect_timeout(
        &"10.20.0.21:9187".parse().expect("address"),
        Duration::from_secs(2),
    );
    assert!(
        refused.is_err(),
        "postgres_exporter answered this controller"
    );
}

/// The leader's host powered off: PostgresMemberDown reaches the webhook, then resolves
/// once the host is back. A replica's Patroni stopped: the same alert for it.
#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn database_alerts_reach_the_webhook_and_resolve() {
    let (o, _) = lab_converge(&[]);
    assert!(o.status.success(), "converged:\n{}", why(&o));
    wait_until("a healthy cluster", Duration::from_secs(120), all_streaming);
    let rx = Receiver::start();

    // The leader's host killed.
    let old = leader().expect("a leader");
    let t0 = Instant::now();
    let kill = run(&["lab", "kill", &old]);
    assert!(kill.status.success(), "{:?}", text(&kill));
    let fired = rx.wait(
        "PostgresMemberDown",
        &old,
        "firing",
        t0,
        Duration::from_secs(180),
    );
    let new = wait_until_some("a new leader", Duration::from_secs(60), || {
        leader().filter(|l| *l != old)
    });
    let changed = rx.wait(
        "PostgresPrimaryChanged",
        &new,
        "firing",
        t0,
        Duration::from_secs(120),
    );
    let t1 = Instant::now();
    let start = run(&["lab", "start", &old]);
    assert!(start.status.success(), "{:?}", text(&start));
    let resolved = rx.wait(
        "PostgresMemberDown",
        &old,
        "resolved",
        t1,
        Duration::from_secs(180),
    );
    println!(
        "DRILL alert: leader {old} killed → PostgresMemberDown at the webhook in {:.1}s, \
         PostgresPrimaryChanged ({new}) in {:.1}s; {old} booted → resolved in {:.1}s",
        (fired - t0).as_secs_f64(),
        (changed - t0).as_secs_f64(),
        (resolved - t1).as_secs_f64()
    );
    wait_until(
        "the old leader rejoins",
        Duration::from_secs(180),
        all_streaming,
    );

    // A replica stopped.
    let replica = member(&["replica", "sync_standby"]).expect("a replica");
    let t2 = Instant::now();
    let (rc, _) = lab_ssh(&replica, "systemctl stop patroni");
    assert_eq!(rc, 0);
    let fired = rx.wait(
        "PostgresMemberDown",
        &replica,
        "firing",
        t2,
        Duration::from_secs(120),
    );
    let t3 = Instant::now();
    let (rc, _) = lab_ssh(&replica, "systemctl start patroni");
    assert_eq!(rc, 0);
    let resolved = rx.wait(
        "PostgresMemberDown",
        &replica,
        "resolved",
        t3,
        Duration::from_secs(120),
    );
    println!(
        "DRILL alert: replica {replica} stopped → PostgresMemberDown at the webhook in {:.1}s; \
         started → resolved in {:.1}s",
        (fired - t2).as_secs_f64(),
        (resolved - t3).as_secs_f64()
    );
    wait_until(
        "the replica streams again",
        Duration::from_secs(120),
        all_streaming,
    );
}

/// Polls until `f` returns something (bounded).
fn wait_until_some<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let mut out = None;
    wait_until(what, limit, || {
        out = f();
        out.is_some()
    });
    out.expect("set when the wait ended")
}

/// A request through lb:80 shows up in the collector's journal (roles/journal), as the
/// HAProxy access log line of the lb host.
#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn a_request_through_the_balancer_reaches_the_central_journal() {
    let (o, _) = lab_converge(&[]);
    assert!(o.status.success(), "converged:\n{}", why(&o));
    let (_, listen) = lab_ssh(MONITOR, "ss -Hltn 'sport = :19532' | awk '{print $4}'");
    assert_eq!(
        listen, "10.20.0.31:19532",
        "the collector listens on the private address only"
    );
    let id = format!(
        "drill{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let t0 = Instant::now();
    http_get("http://10.20.0.11/health/", &[("bosun-probe", &id)]).expect("lb:80 answers");
    let find = format!(
        "journalctl --directory=/var/log/journal/remote _HOSTNAME=lb SYSLOG_IDENTIFIER=haproxy \
         --since=-10min -o cat --no-pager | grep -F 'GET /health/?bosun-probe={id} HTTP/1.1'"
    );
    let mut line = String::new();
    let took = wait_until(
        "the request in the central journal",
        Duration::from_secs(60),
        || {
            let (rc, out) = lab_ssh(MONITOR, &find);
            line = out;
            rc == 0
        },
    );
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert!(
        fields.len() > 5 && fields[2] == "saleor_api" && fields[5] == "200",
        "the access log line names the frontend and the status: {line}"
    );
    println!(
        "DRILL logs: a request through lb:80 in the central journal on {MONITOR} after {:.1}s: {line}",
        t0.elapsed().as_secs_f64().max(took.as_secs_f64())
    );
}

/// `psql` as postgres on `host` (its local socket), `port`, database saleor.
fn local_sql(host: &str, port: u16, sql: &str) -> (i32, String) {
    lab_ssh(
        host,
        &format!(
            "runuser -u postgres -- psql -p {port} -d saleor -X -A -t -v ON_ERROR_STOP=1 -c {}",
            shell_quote(sql)
        ),
    )
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Rows written, a backup, a time T, more rows (their WAL archived), then
/// `bosun converge roles/restore.yml -e restore_target_time=T`: the fresh copy on the
/// restore host holds exactly the rows written before T.
#[test]
#[ignore = "needs root and the lab: run by tests/run.sh"]
fn a_backup_restores_to_a_point_in_time_into_a_fresh_cluster() {
    let (o, _) = lab_converge(&[]);
    assert!(o.status.success(), "converged:\n{}", why(&o));
    wait_until("a healthy cluster", Duration::from_secs(120), all_streaming);
    let primary = leader().expect("a leader");
    let (rc, out) = local_sql(
        &primary,
        5432,
        "drop table if exists bosun_restore_drill; \
         create table bosun_restore_drill (id int, batch text); \
         insert into bosun_restore_drill select g, 'before' from generate_series(1, 100) g",
    );
    assert_eq!(rc, 0, "{out}");
    // A differential backup (the converge made the full one), as its timer would.
    let t_backup = Instant::now();
    let (rc, out) = lab_ssh(MONITOR, "systemctl start pgbackrest-diff.service");
    assert_eq!(rc, 0, "backup: {out}");
    let backup_took = t_backup.elapsed();
    // T: the primary's clock once the first rows are committed; later commits are after it.
    let (rc, target) = local_sql(&primary, 5432, "select now()::text");
    assert_eq!(rc, 0, "{target}");
    let (rc, out) = local_sql(
        &primary,
        5432,
        "insert into bosun_restore_drill select g, 'after' from generate_series(101, 150) g",
    );
    assert_eq!(rc, 0, "{out}");
    // `check` switches to a new WAL segment and waits until it is in the repository: the
    // later rows' commits are there for recovery to stop at.
    let (rc, out) = lab_ssh(
        MONITOR,
        "runuser -u pgbackrest -- pgbackrest --stanza=main check",
    );
    assert_eq!(rc, 0, "check: {out}");

    let t0 = Instant::now();
    let extra = format!("restore_target_time={target}");
    let (o, _) = lab_converge(&["roles/restore.yml", "-e", &extra]);
    let took = t0.elapsed();
    assert!(o.status.success(), "restore:\n{}", why(&o));
    let (rc, rows) = local_sql(
        MONITOR,
        5433,
        "select batch || ':' || count(*) || ':' || min(id) || '-' || max(id) \
         from bosun_restore_drill group by batch order by batch",
    );
    assert_eq!(rc, 0, "{rows}");
    assert_eq!(
        rows, "before:100:1-100",
        "exactly the rows written before {target}"
    );
    let (rc, rec) = local_sql(MONITOR, 5433, "select pg_is_in_recovery()");
    assert_eq!((rc, rec.as_str()), (0, "f"), "the copy is promoted");
    // The cluster still has both batches: the restore touched only the copy.
    let (_, live) = local_sql(&primary, 5432, "select count(*) from bosun_restore_drill");
    assert_eq!(live, "150");
    let (_, report) = lab_ssh(MONITOR, "cat /var/lib/postgresql/restore-report.txt");
    println!(
        "DRILL restore: 100 rows, differential backup ({:.1}s), T = {target}, 50 more rows; \
         restored to T into a fresh PostgreSQL on {MONITOR}:5433 by `bosun converge roles/restore.yml` \
         in {:.1}s: exactly the 100 rows before T ({})",
        backup_took.as_secs_f64(),
        took.as_secs_f64(),
        report.split_whitespace().collect::<Vec<_>>().join(" ")
    );
}
