//! `bosun status`: the database tier at a glance — Patroni members (role, state, lag,
//! timeline) and HAProxy backends (UP/DOWN) — read over the same SSH connections.
//! What to run on the hosts and how to read their answers; `cmd::status` connects.

use bosun_engine::remote::Output;
use bosun_model::inventory::Host;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Display;

/// What `bosun status` found: the cluster as one member describes it, every balancer's
/// backends, and what could not be read.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub patroni: Vec<Member>,
    pub haproxy: Vec<Backend>,
    pub problems: Vec<String>,
}

impl Report {
    /// Takes a Patroni member's answer to [`patroni_script`]; true when it described the
    /// cluster (any reachable member can, so the others need not be asked).
    pub fn take_patroni(&mut self, host: &str, answer: Result<Output, impl Display>) -> bool {
        match answer {
            Ok(o) if o.rc == 0 => match parse_cluster(&String::from_utf8_lossy(&o.stdout)) {
                Ok(m) => {
                    self.patroni = m;
                    return true;
                }
                Err(e) => self.problems.push(format!("{host}: {e}")),
            },
            Ok(o) => self.problems.push(format!(
                "{host}: Patroni REST API did not answer (exit {})",
                o.rc
            )),
            Err(e) => self.problems.push(format!("{host}: {e}")),
        }
        false
    }

    /// Takes a balancer's answer to [`HAPROXY_SCRIPT`].
    pub fn take_haproxy(&mut self, host: &str, answer: Result<Output, impl Display>) {
        match answer {
            Ok(o) if o.rc == 0 => self
                .haproxy
                .extend(parse_haproxy_csv(host, &String::from_utf8_lossy(&o.stdout))),
            Ok(o) => self.problems.push(format!(
                "{host}: HAProxy stats did not answer (exit {})",
                o.rc
            )),
            Err(e) => self.problems.push(format!("{host}: {e}")),
        }
    }

    /// 0 when the cluster was described and nothing went wrong, else 1.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.patroni.is_empty() || !self.problems.is_empty())
    }
}

/// Where a member's Patroni REST API listens: its private address, port 8008.
pub fn patroni_rest(h: &Host) -> String {
    format!(
        "{}:8008",
        h.vars
            .get("private_address")
            .and_then(Value::as_str)
            .unwrap_or(&h.address)
    )
}

/// One Patroni member as `/cluster` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub name: String,
    pub host: String,
    pub role: String,
    pub state: String,
    pub timeline: Option<u64>,
    /// Replication lag in MB; `None` for the leader or when unknown.
    pub lag_mb: Option<f64>,
}

/// One HAProxy server line from the stats CSV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backend {
    pub balancer: String,
    pub proxy: String,
    pub server: String,
    pub status: String,
}

/// The script run on a Patroni member (its REST API listens on the private address).
pub fn patroni_script(rest: &str) -> String {
    format!("curl -sf --max-time 5 http://{rest}/cluster")
}

/// The script run on a balancer: the stats page's CSV, at the address and with the
/// credentials of the live configuration, read as root on the host. curl reads them from
/// its config on stdin (`-K -`), so the password is never on a command line.
pub const HAPROXY_SCRIPT: &str = r#"cfg=/etc/haproxy/haproxy.cfg
bind=$(sed -n '/^listen stats/,/^$/s/^ *bind \([^ ]*\).*/\1/p' "$cfg" | head -n1)
auth=$(sed -n '/^listen stats/,/^$/s/^ *stats auth //p' "$cfg" | head -n1)
printf 'user = %s\n' "$auth" | curl -sf --max-time 5 -K - "http://$bind/;csv""#;

/// Parses Patroni's `/cluster` JSON.
pub fn parse_cluster(json: &str) -> Result<Vec<Member>, String> {
    let v: Value =
        serde_json::from_str(json).map_err(|e| format!("Patroni /cluster is not JSON: {e}"))?;
    let members = v["members"]
        .as_array()
        .ok_or("Patroni /cluster has no members")?;
    Ok(members
        .iter()
        .map(|m| Member {
            name: m["name"].as_str().unwrap_or("?").to_string(),
            host: m["host"].as_str().unwrap_or("?").to_string(),
            role: m["role"].as_str().unwrap_or("?").to_string(),
            state: m["state"].as_str().unwrap_or("?").to_string(),
            timeline: m["timeline"].as_u64(),
            lag_mb: m["lag"].as_f64().map(|b| b / 1_048_576.0),
        })
        .collect())
}

/// Parses HAProxy's stats CSV into server and backend lines (frontends left out).
pub fn parse_haproxy_csv(balancer: &str, csv: &str) -> Vec<Backend> {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let idx = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(st)) = (idx("pxname"), idx("svname"), idx("status")) else {
        return Vec::new();
    };
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let server = *f.get(sv)?;
            if server == "FRONTEND" {
                return None;
            }
            Some(Backend {
                balancer: balancer.to_string(),
                proxy: f.get(px)?.to_string(),
                server: server.to_string(),
                status: f.get(st)?.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_json() {
        let j = r#"{"members": [{"name": "pg1", "role": "leader", "state": "running", "api_url": "http://10.20.0.21:8008/patroni", "host": "10.20.0.21", "port": 5432, "timeline": 2},
                                {"name": "pg2", "role": "sync_standby", "state": "streaming", "host": "10.20.0.22", "port": 5432, "timeline": 2, "lag": 0}]}"#;
        let m = parse_cluster(j).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].role, "leader");
        assert_eq!(m[0].lag_mb, None);
        assert_eq!(m[1].lag_mb, Some(0.0));
        assert_eq!(m[1].timeline, Some(2));
        assert!(parse_cluster("nope").is_err());
    }

    #[test]
    fn haproxy_csv() {
        let csv = "# pxname,svname,qcur,status,x\nstats,FRONTEND,,OPEN,\npostgres,pg1,0,UP,\npostgres,pg2,0,DOWN,\npostgres,BACKEND,0,UP,\n";
        let b = parse_haproxy_csv("lb", csv);
        assert_eq!(b.len(), 3);
        assert_eq!(
            b[0],
            Backend {
                balancer: "lb".into(),
                proxy: "postgres".into(),
                server: "pg1".into(),
                status: "UP".into()
            }
        );
        assert_eq!(b[1].status, "DOWN");
    }

    fn answer(rc: i32, stdout: &str) -> Result<Output, String> {
        Ok(Output {
            rc,
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
            killed: None,
            pgid: None,
        })
    }

    #[test]
    fn report_takes_answers_and_says_what_went_wrong() {
        let mut r = Report::default();
        assert!(!r.take_patroni("pg1", Err::<Output, _>("cannot connect")));
        assert!(!r.take_patroni("pg2", answer(7, "")));
        assert!(!r.take_patroni("pg3", answer(0, "nope")));
        assert_eq!(r.exit_code(), 1);
        assert!(r.take_patroni(
            "pg4",
            answer(0, r#"{"members": [{"name": "pg4", "role": "leader"}]}"#)
        ));
        r.take_haproxy("lb", answer(0, "# pxname,svname,status\npostgres,pg4,UP\n"));
        r.take_haproxy("lb2", answer(22, ""));
        assert_eq!(
            r.problems,
            [
                "pg1: cannot connect",
                "pg2: Patroni REST API did not answer (exit 7)",
                "pg3: Patroni /cluster is not JSON: expected ident at line 1 column 2",
                "lb2: HAProxy stats did not answer (exit 22)",
            ]
        );
        assert_eq!(r.patroni.len(), 1);
        assert_eq!(r.haproxy[0].status, "UP");
        assert_eq!(r.exit_code(), 1);
        r.problems.clear();
        assert_eq!(r.exit_code(), 0);
        let v = serde_json::to_value(&r).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["patroni", "haproxy", "problems"]);
    }

    #[test]
    fn rest_api_on_the_private_address() {
        let mut h = Host {
            name: "pg1".into(),
            address: "203.0.113.5".into(),
            port: 22,
            user: "root".into(),
            identity_file: None,
            become_root: false,
            groups: Vec::new(),
            vars: Default::default(),
            jump: None,
        };
        assert_eq!(patroni_rest(&h), "203.0.113.5:8008");
        h.vars.insert("private_address".into(), "10.20.0.21".into());
        assert_eq!(patroni_rest(&h), "10.20.0.21:8008");
    }
}
