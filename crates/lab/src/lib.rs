//! The lab: real Debian 12 hosts with systemd as PID 1, booted with
//! systemd-nspawn on one machine and attached to a Linux bridge, for testing
//! bosun against real sshd, systemctl, apt, PostgreSQL failover and the like.
//!
//! Design in short:
//! * one cached debootstrap image (`<state>/base`), one overlayfs per host, so
//!   a host is created in well under a second and its disk is its upper dir;
//! * each host gets its own machine id and SSH host keys before first boot,
//!   and the keys are recorded in `<state>/known_hosts`, so bosun verifies
//!   host keys against the lab like it would in production;
//! * static addresses on the bridge, NAT (tagged iptables rules) for package
//!   registries, the machine's CA certificates inside for TLS proxies;
//! * everything is found again from the machine's state (processes, mounts,
//!   links, tagged rules), so a killed run is recovered by `up` and cleaned by
//!   `down`, and [`leftovers`] can prove that `down` left nothing behind.
//!
//! Progress is reported through a callback instead of being printed; the CLI
//! decides how to render [`LabEvent`]s.

mod base;
mod cgroup;
mod cleanup;
mod cmd;
mod config;
mod error;
mod files;
mod firewall;
mod host;
mod keys;
mod lifecycle;
mod lock;
mod mounts;
mod net;
mod paths;
mod procs;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

pub use config::{
    LabConfig, LabHost, LabOs, LabOsExt, DEFAULT_BRIDGE, DEFAULT_GATEWAY, DEFAULT_PREFIX_LEN,
    DEFAULT_STATE_DIR, SEED_HOSTS,
};
pub use error::LabError;

use lock::LabLock;
use paths::Paths;
use procs::Snapshot;

/// Progress of a lab operation, for the CLI to render.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum LabEvent {
    /// Something is being done (`host` is `None` for lab-wide steps).
    Step {
        host: Option<String>,
        message: String,
    },
    /// Something unexpected was repaired or forced; the operation continues.
    Warning {
        host: Option<String>,
        message: String,
    },
    /// A host's sshd answered; `seconds` since its nspawn was started.
    HostReady {
        name: String,
        address: Ipv4Addr,
        seconds: f64,
    },
    /// A host is off; `clean` is false when it had to be killed.
    HostStopped {
        name: String,
        clean: bool,
        seconds: f64,
    },
}

/// State of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostStatus {
    pub name: String,
    pub address: Ipv4Addr,
    /// Its systemd-nspawn process is alive.
    pub running: bool,
    /// Pid of that systemd-nspawn process.
    pub pid: Option<u32>,
    /// Port 22 answered with an SSH banner within a short timeout.
    pub sshd: bool,
}

/// State of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabStatus {
    pub state_dir: PathBuf,
    pub bridge: String,
    pub bridge_up: bool,
    /// A complete base image built by the current recipe is cached.
    pub base_ready: bool,
    pub hosts: Vec<HostStatus>,
}

impl LabStatus {
    /// Every configured host runs and answers on SSH.
    pub fn all_ready(&self) -> bool {
        self.hosts.iter().all(|h| h.running && h.sshd)
    }

    pub fn host(&self, name: &str) -> Option<&HostStatus> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// The lab's known_hosts file (`ADDRESS TYPE BASE64` per host key).
pub fn known_hosts_path(cfg: &LabConfig) -> PathBuf {
    cfg.state_dir.join("known_hosts")
}

/// The controller's private key; the public half is authorised on every host.
pub fn identity_path(cfg: &LabConfig) -> PathBuf {
    cfg.state_dir.join("id_ed25519")
}

/// Where to SSH to reach `name`.
pub fn ssh_target(cfg: &LabConfig, name: &str) -> Option<(Ipv4Addr, u16)> {
    cfg.hosts
        .iter()
        .find(|h| h.name == name)
        .map(|h| (h.address, 22))
}

/// Creates the state dir and takes the lab lock.
fn open_state(cfg: &LabConfig) -> Result<(Paths, LabLock), LabError> {
    std::fs::create_dir_all(&cfg.state_dir)
        .map_err(|e| LabError::io("create", &cfg.state_dir, e))?;
    let p = Paths::new(cfg);
    let lock = LabLock::acquire(&p.lock)?;
    Ok((p, lock))
}

/// Builds what is missing and boots every configured host that is not
/// running, then waits until all answer on SSH. Running hosts are left alone,
/// so calling it twice is harmless; leftovers of a killed run (mounts, bridge,
/// rules, stray processes, stale pid files) are reused or cleaned.
pub async fn up(
    cfg: &LabConfig,
    ev: &(dyn Fn(LabEvent) + Send + Sync),
) -> Result<LabStatus, LabError> {
    lifecycle::preflight(cfg)?;
    if cfg.hosts.is_empty() {
        return Err(LabError::Config("the lab has no hosts".into()));
    }
    let started = Instant::now();
    let (p, _lock) = open_state(cfg)?;
    let infra = lifecycle::prepare_infra(cfg, &p, ev).await?;
    lifecycle::start_hosts(cfg, &p, &infra, &cfg.hosts, ev).await?;
    lifecycle::step(
        ev,
        None,
        format!(
            "{} hosts up in {:.1} s",
            cfg.hosts.len(),
            started.elapsed().as_secs_f64()
        ),
    );
    status(cfg).await
}

/// Powers every lab host off (cleanly, then by force), unmounts and deletes
/// the host disks, and removes the bridge, the tagged iptables rules and the
/// forwarding change. Keeps the cached base image and the controller key.
/// Fails with [`LabError::Leftovers`] if anything of the lab remains.
pub async fn down(cfg: &LabConfig, ev: &(dyn Fn(LabEvent) + Send + Sync)) -> Result<(), LabError> {
    cfg.validate()?;
    cmd::require_root()?;
    let (p, _lock) = open_state(cfg)?;
    cleanup::stop_all(cfg, &p, ev).await?;
    cleanup::remove_infra(cfg, &p, ev).await?;
    let left = cleanup::leftovers(cfg);
    if left.is_empty() {
        lifecycle::step(ev, None, "lab is down; nothing left behind");
        Ok(())
    } else {
        Err(LabError::Leftovers(left))
    }
}

/// [`down`], then also deletes the cached base image.
pub async fn destroy(
    cfg: &LabConfig,
    ev: &(dyn Fn(LabEvent) + Send + Sync),
) -> Result<(), LabError> {
    down(cfg, ev).await?;
    let (p, _lock) = open_state(cfg)?;
    base::remove(&p).await?;
    lifecycle::step(ev, None, format!("removed base image {}", p.base.display()));
    Ok(())
}

/// Per host: running, nspawn pid, address and whether sshd answers.
pub async fn status(cfg: &LabConfig) -> Result<LabStatus, LabError> {
    cfg.validate()?;
    let p = Paths::new(cfg);
    let snap = Snapshot::take(&p.state);
    let mut probes = JoinSet::new();
    for (i, h) in cfg.hosts.iter().enumerate() {
        let address = h.address;
        probes.spawn(async move {
            let ok = host::probe_ssh_async(address, Duration::from_millis(500)).await;
            (i, ok)
        });
    }
    let mut sshd = vec![false; cfg.hosts.len()];
    while let Some(joined) = probes.join_next().await {
        let (i, ok) = joined?;
        sshd[i] = ok;
    }
    let hosts = cfg
        .hosts
        .iter()
        .zip(sshd)
        .map(|(h, sshd)| {
            let procs = snap.host(&h.name, &p.host(&h.name).root);
            HostStatus {
                name: h.name.clone(),
                address: h.address,
                running: procs.running(),
                pid: procs.nspawn.first().copied(),
                sshd,
            }
        })
        .collect();
    Ok(LabStatus {
        bridge_up: net::link_exists(&cfg.bridge),
        base_ready: base::is_current(&p.base, cfg.os),
        state_dir: p.state,
        bridge: cfg.bridge.clone(),
        hosts,
    })
}

/// Hard power-off of one host, like pulling its plug: SIGKILL to its nspawn
/// and every process of the container at once, no shutdown. Its disk (overlay
/// upper dir) stays, so [`start_host`] boots it again with its data.
/// Not running is not an error.
pub async fn kill_host(cfg: &LabConfig, name: &str) -> Result<(), LabError> {
    cfg.validate()?;
    cfg.host(name)?;
    cmd::require_root()?;
    cmd::require_tools(&[("kill", "procps")])?;
    let (p, _lock) = open_state(cfg)?;
    cleanup::kill_one(&p, name).await?;
    Ok(())
}

/// Boots one host again (keeping its disk) and waits until its sshd answers.
/// A running host is left alone. Repairs the lab's network first, so it also
/// works after the machine lost the bridge or rules.
pub async fn start_host(
    cfg: &LabConfig,
    name: &str,
    ev: &(dyn Fn(LabEvent) + Send + Sync),
) -> Result<(), LabError> {
    lifecycle::preflight(cfg)?;
    let h = cfg.host(name)?.clone();
    let (p, _lock) = open_state(cfg)?;
    let infra = lifecycle::prepare_infra(cfg, &p, ev).await?;
    lifecycle::start_hosts(cfg, &p, &infra, &[h], ev).await
}

/// Describes every trace of the lab left on this machine: nspawn, container
/// and image-build processes, mounts under the state dir, the per-host
/// cgroups, the bridge and veths, its routes, iptables rules tagged
/// `bosun-lab`, host directories. Empty after a successful [`down`]. The
/// cached base image, the controller key and the machine-wide cgroup v1
/// hierarchy mounts (needed by nspawn, harmless) are not leftovers.
pub fn leftovers(cfg: &LabConfig) -> Vec<String> {
    cleanup::leftovers(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_targets() {
        let cfg = LabConfig::default();
        assert_eq!(
            known_hosts_path(&cfg),
            PathBuf::from("/var/lib/bosun/lab/known_hosts")
        );
        assert_eq!(
            identity_path(&cfg),
            PathBuf::from("/var/lib/bosun/lab/id_ed25519")
        );
        assert_eq!(
            ssh_target(&cfg, "pg1"),
            Some((Ipv4Addr::new(10, 20, 0, 21), 22))
        );
        assert_eq!(ssh_target(&cfg, "nope"), None);
    }

    #[test]
    fn status_readiness() {
        let mut s = LabStatus {
            state_dir: PathBuf::from("/s"),
            bridge: "bosun0".into(),
            bridge_up: true,
            base_ready: true,
            hosts: vec![HostStatus {
                name: "lb".into(),
                address: Ipv4Addr::new(10, 20, 0, 11),
                running: true,
                pid: Some(1),
                sshd: true,
            }],
        };
        assert!(s.all_ready());
        s.hosts[0].sshd = false;
        assert!(!s.all_ready());
        assert!(s.host("lb").is_some());
    }

    #[test]
    fn events_serialize() {
        let e = LabEvent::HostReady {
            name: "lb".into(),
            address: Ipv4Addr::new(10, 20, 0, 11),
            seconds: 1.5,
        };
        let json = serde_json::to_string(&e).expect("serializable");
        assert!(json.contains("HostReady"), "{json}");
    }
}
