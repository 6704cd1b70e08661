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

/// The Ansible names of facts bosun gathers, for roles ported from Ansible: each is also
/// a variable of its own (`ansible_distribution`), and all of them, without the prefix, are
/// `ansible_facts` (`ansible_facts.distribution`). A task reading any of them waits for the
/// facts like one reading `facts`.
pub const ANSIBLE_NAMES: &[&str] = &[
    "ansible_all_ipv4_addresses",
    "ansible_all_ipv6_addresses",
    "ansible_architecture",
    "ansible_default_ipv4",
    "ansible_distribution",
    "ansible_distribution_major_version",
    "ansible_distribution_release",
    "ansible_distribution_version",
    "ansible_facts",
    "ansible_hostname",
    "ansible_kernel",
    "ansible_memtotal_mb",
    "ansible_os_family",
    "ansible_processor_vcpus",
    "ansible_python_version",
    "ansible_service_mgr",
];

/// Whether a variable name is a fact (`facts`, or one of [`ANSIBLE_NAMES`]).
pub fn is_fact_name(name: &str) -> bool {
    name == "facts" || ANSIBLE_NAMES.contains(&name)
}

/// Ansible's spelling of a distribution's `ID` (`debian` → `Debian`).
fn distribution(id: &str) -> String {
    match id {
        "rhel" => "RedHat".into(),
        "centos" => "CentOS".into(),
        "opensuse" | "opensuse-leap" => "openSUSE Leap".into(),
        "sles" => "SLES".into(),
        "amzn" => "Amazon".into(),
        "ol" => "OracleLinux".into(),
        "arch" => "Archlinux".into(),
        _ => {
            let mut c = id.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
    }
}

/// Ansible's `os_family` from `ID_LIKE` (or `ID`): the first family it knows.
fn os_family(like: &str) -> String {
    for w in like.split_whitespace() {
        match w {
            "debian" | "ubuntu" => return "Debian".into(),
            "rhel" | "fedora" | "centos" => return "RedHat".into(),
            "suse" | "opensuse" | "sles" => return "Suse".into(),
            "arch" => return "Archlinux".into(),
            "alpine" => return "Alpine".into(),
            _ => {}
        }
    }
    like.split_whitespace()
        .next()
        .map(distribution)
        .unwrap_or_default()
}

/// The [`ANSIBLE_NAMES`] variables made from bosun's facts (the output of [`parse`]).
pub fn ansible_aliases(facts: &Value) -> Map<String, Value> {
    let text = |k: &str| {
        facts
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let version = text("os_version");
    let mut all4 = Vec::new();
    let mut all6 = Vec::new();
    if let Some(Value::Object(addrs)) = facts.get("addresses") {
        for ip in addrs.values().filter_map(Value::as_array).flatten() {
            if let Some(ip) = ip.as_str() {
                if ip.contains(':') {
                    all6.push(Value::from(ip));
                } else {
                    all4.push(Value::from(ip));
                }
            }
        }
    }
    let mut short = Map::new();
    short.insert("hostname".into(), text("hostname").into());
    short.insert("distribution".into(), distribution(&text("os_id")).into());
    short.insert("distribution_version".into(), version.clone().into());
    short.insert(
        "distribution_major_version".into(),
        version.split('.').next().unwrap_or("").into(),
    );
    short.insert("distribution_release".into(), text("os_codename").into());
    short.insert("os_family".into(), os_family(&text("os_family")).into());
    short.insert("architecture".into(), text("arch").into());
    short.insert("kernel".into(), text("kernel").into());
    short.insert(
        "processor_vcpus".into(),
        facts.get("cpus").cloned().unwrap_or(Value::Null),
    );
    short.insert(
        "memtotal_mb".into(),
        facts.get("memory_mb").cloned().unwrap_or(Value::Null),
    );
    short.insert(
        "default_ipv4".into(),
        serde_json::json!({"address": text("default_ipv4"), "interface": text("default_interface")}),
    );
    short.insert("all_ipv4_addresses".into(), Value::Array(all4));
    short.insert("all_ipv6_addresses".into(), Value::Array(all6));
    short.insert("service_mgr".into(), text("init").into());
    short.insert("python_version".into(), text("python3").into());
    let mut out: Map<String, Value> = short
        .iter()
        .map(|(k, v)| (format!("ansible_{k}"), v.clone()))
        .collect();
    out.insert("ansible_facts".into(), Value::Object(short));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansible_names_come_from_the_same_facts() {
        let f = parse(
            "hostname=pg1\nos_id=debian\nos_family=debian\nos_version=13\nos_codename=trixie\n\
             arch=x86_64\ncpus=4\nmemory_mb=3900\ninit=systemd\ndefault_ipv4=10.0.0.5\n\
             default_interface=eth0\naddr=eth0 10.0.0.5\naddr=eth0 fd00::5\n",
        );
        let a = ansible_aliases(&f);
        assert_eq!(a["ansible_distribution"], "Debian");
        assert_eq!(a["ansible_os_family"], "Debian");
        assert_eq!(a["ansible_distribution_major_version"], "13");
        assert_eq!(a["ansible_distribution_release"], "trixie");
        assert_eq!(a["ansible_memtotal_mb"], 3900);
        assert_eq!(a["ansible_processor_vcpus"], 4);
        assert_eq!(a["ansible_default_ipv4"]["address"], "10.0.0.5");
        assert_eq!(
            a["ansible_all_ipv6_addresses"],
            serde_json::json!(["fd00::5"])
        );
        assert_eq!(a["ansible_facts"]["os_family"], "Debian");
        assert_eq!(a["ansible_service_mgr"], "systemd");
        // Every name the engine waits for is made, and nothing else.
        let mut made: Vec<&str> = a.keys().map(String::as_str).collect();
        made.sort_unstable();
        assert_eq!(made, ANSIBLE_NAMES);
        assert!(
            is_fact_name("ansible_os_family")
                && is_fact_name("facts")
                && !is_fact_name("ansible_x")
        );
        // Ubuntu is of the Debian family; an unknown ID keeps its own name.
        assert_eq!(os_family("ubuntu debian"), "Debian");
        assert_eq!(distribution("rocky"), "Rocky");
        assert_eq!(os_family("rhel centos fedora"), "RedHat");
    }

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
