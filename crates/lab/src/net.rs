//! The lab network: the bridge, IPv4 forwarding, and which DNS server the hosts use.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::cmd;
use super::config::LabConfig;
use super::error::LabError;

/// Whether a network interface exists (cheap: no command needed).
pub(crate) fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Whether `name` exists and is a Linux bridge.
fn is_bridge(name: &str) -> bool {
    Path::new("/sys/class/net")
        .join(name)
        .join("bridge")
        .is_dir()
}

/// Creates the bridge if needed (reusing one a killed run left), gives it the
/// gateway address and brings it up. All three steps are idempotent.
pub(crate) async fn ensure_bridge(cfg: &LabConfig) -> Result<(), LabError> {
    let br = cfg.bridge.as_str();
    if link_exists(br) && !is_bridge(br) {
        return Err(LabError::Unsupported(format!(
            "network interface {br} exists but is not a bridge; remove it or choose another bridge name"
        )));
    }
    if !link_exists(br) {
        cmd::run("ip", &["link", "add", "name", br, "type", "bridge"]).await?;
    }
    let addr = format!("{}/{}", cfg.gateway, cfg.prefix_len);
    cmd::run("ip", &["addr", "replace", &addr, "dev", br]).await?;
    cmd::run("ip", &["link", "set", "dev", br, "up"]).await?;
    // While a host boots, the bridge's ARP request for it goes unanswered and
    // is retried only every second (the kernel default), so readiness probes
    // noticed sshd up to a second late. Retry every 100 ms on the lab bridge;
    // the setting disappears with the bridge.
    let retrans = format!("/proc/sys/net/ipv4/neigh/{br}/retrans_time_ms");
    tokio::fs::write(&retrans, "100")
        .await
        .map_err(|e| LabError::io("write", retrans, e))?;
    Ok(())
}

/// Deletes the bridge (its connected route goes with it).
pub(crate) async fn delete_bridge(bridge: &str) -> Result<(), LabError> {
    if link_exists(bridge) {
        cmd::run("ip", &["link", "del", "dev", bridge]).await?;
    }
    Ok(())
}

/// Deletes a veth nspawn left behind. nspawn refuses to start a container
/// whose `vb-NAME` already exists.
pub(crate) async fn delete_stale_veth(host: &str) -> Result<(), LabError> {
    let veth = veth_name(host);
    if link_exists(&veth) {
        cmd::run("ip", &["link", "del", "dev", &veth]).await?;
    }
    Ok(())
}

/// Host-side name nspawn gives a container's veth.
pub(crate) fn veth_name(host: &str) -> String {
    format!("vb-{host}")
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Turns on IPv4 forwarding (the hosts reach the package registries through
/// NAT). When it was off, the old value is remembered in `restore_file` so
/// that `down` can put it back.
pub(crate) async fn enable_forwarding(restore_file: &Path) -> Result<(), LabError> {
    let current = tokio::fs::read_to_string(IP_FORWARD)
        .await
        .map_err(|e| LabError::io("read", IP_FORWARD, e))?;
    if current.trim() == "1" {
        return Ok(());
    }
    tokio::fs::write(restore_file, current.trim())
        .await
        .map_err(|e| LabError::io("write", restore_file, e))?;
    tokio::fs::write(IP_FORWARD, "1")
        .await
        .map_err(|e| LabError::io("write", IP_FORWARD, e))
}

/// Puts back the forwarding setting `enable_forwarding` changed, if it did.
pub(crate) async fn restore_forwarding(restore_file: &Path) -> Result<(), LabError> {
    let old = match tokio::fs::read_to_string(restore_file).await {
        Ok(v) => v,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(LabError::io("read", restore_file, e)),
    };
    let old = old.trim();
    if old == "0" || old == "1" {
        tokio::fs::write(IP_FORWARD, old)
            .await
            .map_err(|e| LabError::io("write", IP_FORWARD, e))?;
    }
    tokio::fs::remove_file(restore_file)
        .await
        .map_err(|e| LabError::io("delete", restore_file, e))
}

/// How the hosts resolve names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DnsPlan {
    /// The machine's nameserver is routable: hosts ask it directly (via NAT).
    Direct(Ipv4Addr),
    /// The machine only has a loopback resolver (e.g. systemd-resolved's
    /// 127.0.0.53), which a container cannot reach. Hosts ask the gateway, and a
    /// DNAT rule forwards that to the loopback resolver (needs route_localnet).
    ViaGateway { loopback: Ipv4Addr },
}

impl DnsPlan {
    /// The address hosts put in resolv.conf / `DNS=`.
    pub fn server_for_hosts(&self, gateway: Ipv4Addr) -> Ipv4Addr {
        match self {
            DnsPlan::Direct(a) => *a,
            DnsPlan::ViaGateway { .. } => gateway,
        }
    }
}

/// IPv4 `nameserver` entries of a resolv.conf, in order (hosts have no IPv6).
pub(crate) fn parse_nameservers(resolv_conf: &str) -> Vec<Ipv4Addr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver")).then(|| f.next()).flatten()
        })
        .filter_map(|a| match a.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => Some(v4),
            _ => None,
        })
        .collect()
}

/// Picks the DNS setup: the first routable nameserver of /etc/resolv.conf,
/// else of systemd-resolved's upstream list, else forward to the loopback one.
pub(crate) fn choose_dns(
    etc_resolv: &str,
    resolved_upstream: Option<&str>,
) -> Result<DnsPlan, LabError> {
    let local = parse_nameservers(etc_resolv);
    if let Some(a) = local.iter().find(|a| !a.is_loopback()) {
        return Ok(DnsPlan::Direct(*a));
    }
    if let Some(up) = resolved_upstream {
        if let Some(a) = parse_nameservers(up).iter().find(|a| !a.is_loopback()) {
            return Ok(DnsPlan::Direct(*a));
        }
    }
    if let Some(a) = local.iter().find(|a| a.is_loopback()) {
        return Ok(DnsPlan::ViaGateway { loopback: *a });
    }
    Err(LabError::Unsupported(
        "no IPv4 nameserver in /etc/resolv.conf; the lab hosts need one to reach package registries"
            .into(),
    ))
}

/// Reads this machine's resolver configuration and applies [`choose_dns`].
pub(crate) async fn detect_dns() -> Result<DnsPlan, LabError> {
    let etc = tokio::fs::read_to_string("/etc/resolv.conf")
        .await
        .map_err(|e| LabError::io("read", "/etc/resolv.conf", e))?;
    let upstream = tokio::fs::read_to_string("/run/systemd/resolve/resolv.conf")
        .await
        .ok();
    choose_dns(&etc, upstream.as_deref())
}

/// For [`DnsPlan::ViaGateway`]: lets the bridge route DNAT'ed packets to 127/8.
/// The setting lives on the bridge, so deleting the bridge undoes it.
pub(crate) async fn apply_dns_sysctl(cfg: &LabConfig, plan: &DnsPlan) -> Result<(), LabError> {
    if let DnsPlan::ViaGateway { .. } = plan {
        let path = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", cfg.bridge);
        tokio::fs::write(&path, "1")
            .await
            .map_err(|e| LabError::io("write", path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ipv4_nameservers_only() {
        let text = "# comment\nsearch lan\nnameserver 10.255.255.53\nnameserver fd00::1\nnameserver 1.1.1.1\n";
        assert_eq!(
            parse_nameservers(text),
            [Ipv4Addr::new(10, 255, 255, 53), Ipv4Addr::new(1, 1, 1, 1)]
        );
    }

    #[test]
    fn routable_nameserver_is_used_directly() {
        let plan = choose_dns("nameserver 10.255.255.53\n", None).expect("plan");
        assert_eq!(plan, DnsPlan::Direct(Ipv4Addr::new(10, 255, 255, 53)));
        assert_eq!(
            plan.server_for_hosts(Ipv4Addr::new(10, 20, 0, 1)),
            Ipv4Addr::new(10, 255, 255, 53)
        );
    }

    #[test]
    fn resolved_stub_uses_upstream_list() {
        let plan =
            choose_dns("nameserver 127.0.0.53\n", Some("nameserver 192.0.2.53\n")).expect("plan");
        assert_eq!(plan, DnsPlan::Direct(Ipv4Addr::new(192, 0, 2, 53)));
    }

    #[test]
    fn loopback_only_goes_through_gateway() {
        let plan = choose_dns("nameserver 127.0.0.1\n", None).expect("plan");
        assert_eq!(
            plan,
            DnsPlan::ViaGateway {
                loopback: Ipv4Addr::new(127, 0, 0, 1)
            }
        );
        assert_eq!(
            plan.server_for_hosts(Ipv4Addr::new(10, 20, 0, 1)),
            Ipv4Addr::new(10, 20, 0, 1)
        );
    }

    #[test]
    fn no_nameserver_is_an_error() {
        assert!(choose_dns("search lan\n", None).is_err());
    }

    #[test]
    fn veth_names() {
        assert_eq!(veth_name("storefront"), "vb-storefront");
    }
}
