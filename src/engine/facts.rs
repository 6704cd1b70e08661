//! Facts: what a host is (OS, CPU, memory, addresses), gathered in one remote script.

use serde_json::{Map, Value};

/// Prints `key=value` lines; `addr=` repeats once per global IPv4/IPv6 address.
pub const SCRIPT: &str = r#"
. /etc/os-release 2>/dev/null
echo "hostname=$(hostname)"
echo "fqdn=$(hostname -f 2>/dev/null || hostname)"
echo "os_id=${ID:-unknown}"
echo "os_version=${VERSION_ID:-unknown}"
echo "os_codename=${VERSION_CODENAME:-unknown}"
echo "os_pretty=${PRETTY_NAME:-unknown}"
echo "arch=$(uname -m)"
echo "kernel=$(uname -r)"
echo "cpus=$(nproc 2>/dev/null || echo 1)"
awk '/MemTotal/ {print "memory_mb=" int($2/1024)}' /proc/meminfo
echo "init=$(ps -p 1 -o comm= 2>/dev/null)"
command -v python3 >/dev/null && echo "python3=$(python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
ip -o addr show scope global 2>/dev/null | awk '{split($4, a, "/"); print "addr=" $2 " " a[1]}'
"#;

/// Parses the script's output into a JSON object (`addresses` maps interface → list).
pub fn parse(stdout: &str) -> Value {
    let mut m = Map::new();
    let mut addrs: Map<String, Value> = Map::new();
    for line in stdout.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k == "addr" {
            if let Some((iface, ip)) = v.split_once(' ') {
                let e = addrs
                    .entry(iface.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(a) = e {
                    a.push(Value::String(ip.to_string()));
                }
            }
            continue;
        }
        let val = match k {
            "cpus" | "memory_mb" => v
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or(Value::String(v.into())),
            _ => Value::String(v.to_string()),
        };
        m.insert(k.to_string(), val);
    }
    m.insert("addresses".into(), Value::Object(addrs));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_this_machine_parse() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .output()
            .unwrap();
        let f = parse(&String::from_utf8_lossy(&out.stdout));
        assert!(f["cpus"].as_u64().unwrap() >= 1);
        assert!(f["memory_mb"].as_u64().unwrap() > 0);
        assert!(!f["hostname"].as_str().unwrap().is_empty());
    }

    #[test]
    fn addresses_group_by_interface() {
        let f = parse("addr=eth0 10.0.0.5\naddr=eth0 fe80::1\naddr=br0 10.20.0.1\ncpus=2\n");
        assert_eq!(
            f["addresses"]["eth0"],
            serde_json::json!(["10.0.0.5", "fe80::1"])
        );
        assert_eq!(f["cpus"], 2);
    }
}
