//! Facts: what a host is (OS, CPU, memory, addresses, interpreters), gathered in one
//! remote script.
//!
//! The engine runs this script as one more step of a host's first probe round (no extra
//! round trip) and exposes the result to `when:` and templates as `facts.*`; tasks that
//! read `facts` (directly or through a variable) wait for that round. `bosun facts HOST`
//! prints the same object. Mostly shell builtins reading /proc, so it costs the host a
//! few processes, not a dozen.

use serde_json::{Map, Value};

/// Prints `key=value` lines; `addr=` repeats once per global IPv4/IPv6 address.
pub const SCRIPT: &str = r#"
[ ! -r /etc/os-release ] || . /etc/os-release
read -r h < /proc/sys/kernel/hostname 2>/dev/null || h=$(hostname)
echo "hostname=$h"
echo "os_id=${ID:-unknown}"
echo "os_family=${ID_LIKE:-${ID:-unknown}}"
echo "os_version=${VERSION_ID:-unknown}"
echo "os_codename=${VERSION_CODENAME:-unknown}"
echo "os_pretty=${PRETTY_NAME:-unknown}"
if read -r a < /proc/sys/kernel/arch 2>/dev/null; then echo "arch=$a"; else echo "arch=$(uname -m)"; fi
read -r k < /proc/sys/kernel/osrelease 2>/dev/null && echo "kernel=$k"
n=0; while IFS= read -r l; do case $l in processor*) n=$((n+1));; esac; done < /proc/cpuinfo
echo "cpus=$n"
while read -r key val _; do [ "$key" = MemTotal: ] && { echo "memory_mb=$((val / 1024))"; break; }; done < /proc/meminfo
read -r i < /proc/1/comm 2>/dev/null && echo "init=$i"
v=$(python3 -V 2>&1) && echo "python3=${v#Python }"
ip -4 route get 1.1.1.1 2>/dev/null | { read -r l; set -- $l; while [ $# -gt 1 ]; do [ "$1" = src ] && echo "default_ipv4=$2"; [ "$1" = dev ] && echo "default_interface=$2"; shift; done; }
ip -o addr show scope global 2>/dev/null | while read -r _ dev fam a _; do echo "addr=$dev ${a%/*}"; done
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
        assert_eq!(f["init"].as_str().map(str::is_empty), Some(false));
        assert!(f["os_id"].as_str().is_some_and(|o| o != "unknown"));
        assert!(f["python3"].as_str().is_some_and(|v| v.starts_with("3.")));
        // This machine has a default route: its source address is an IPv4 address.
        let ip = f["default_ipv4"].as_str().unwrap_or_default();
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{f}");
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
