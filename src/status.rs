//! `bosun status`: the database tier at a glance — Patroni members (role, state, lag,
//! timeline) and HAProxy backends (UP/DOWN) — read over the same SSH connections.

use serde::Serialize;
use serde_json::Value;

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
}
