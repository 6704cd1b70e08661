//! Bringing hosts up: machine preparation (cgroups, image, bridge, NAT) and
//! booting a set of hosts in parallel until their sshd answers.

use std::net::Ipv4Addr;
use std::time::Instant;

use tokio::task::JoinSet;

use super::base;
use super::cgroup;
use super::cmd;
use super::config::{LabConfig, LabHost};
use super::error::LabError;
use super::files;
use super::firewall;
use super::host::{self, HostSetup};
use super::keys::{self, PubKey};
use super::mounts;
use super::net;
use super::paths::Paths;
use super::procs::Snapshot;
use super::LabEvent;

/// Shared, per-run facts every host setup needs.
#[derive(Debug, Clone)]
pub(crate) struct Infra {
    pub pubkey: String,
    pub dns: Ipv4Addr,
    pub stamp: String,
}

type Events<'a> = &'a (dyn Fn(LabEvent) + Send + Sync);

pub(crate) fn step(ev: Events<'_>, host: Option<&str>, message: impl Into<String>) {
    let message = message.into();
    tracing::info!(host = host.unwrap_or("-"), "{message}");
    ev(LabEvent::Step {
        host: host.map(str::to_string),
        message,
    });
}

pub(crate) fn warn(ev: Events<'_>, host: Option<&str>, message: impl Into<String>) {
    let message = message.into();
    tracing::warn!(host = host.unwrap_or("-"), "{message}");
    ev(LabEvent::Warning {
        host: host.map(str::to_string),
        message,
    });
}

/// Checks that fail fast with an actionable message before anything changes.
pub(crate) fn preflight(cfg: &LabConfig) -> Result<(), LabError> {
    cfg.validate()?;
    cmd::require_root()?;
    cmd::require_tools(cmd::RUNTIME_TOOLS)?;
    cmd::require_overlayfs()
}

/// Everything below the hosts, idempotently: cgroup mounts, controller key,
/// base image, bridge, forwarding and firewall rules. Leftovers of a killed
/// run (existing bridge, rules) are simply reused.
pub(crate) async fn prepare_infra(
    cfg: &LabConfig,
    p: &Paths,
    ev: Events<'_>,
) -> Result<Infra, LabError> {
    let made = cgroup::ensure_hierarchies().await?;
    if !made.is_empty() {
        step(
            ev,
            None,
            format!("mounted cgroup v1 hierarchies: {}", made.join(", ")),
        );
    }
    let pubkey = keys::ensure_identity(&p.identity).await?;
    base::ensure(p, cfg.os, &pubkey, ev).await?;
    let plan = net::detect_dns().await?;
    net::ensure_bridge(cfg).await?;
    net::apply_dns_sysctl(cfg, &plan).await?;
    net::enable_forwarding(&p.forward_restore).await?;
    firewall::ensure_rules(&firewall::lab_rules(cfg, &plan)).await?;
    let dns = plan.server_for_hosts(cfg.gateway);
    step(
        ev,
        None,
        format!(
            "network ready: bridge {} {}/{}, NAT for {}, hosts resolve via {dns}",
            cfg.bridge,
            cfg.gateway,
            cfg.prefix_len,
            cfg.cidr()
        ),
    );
    Ok(Infra {
        pubkey,
        dns,
        stamp: base::stamp(cfg.os),
    })
}

/// Starts `hosts` (a subset of `cfg.hosts`): running ones are left alone,
/// orphaned container processes are killed, the rest get their overlay and
/// files and are booted in parallel. Returns when every host's sshd answers.
pub(crate) async fn start_hosts(
    cfg: &LabConfig,
    p: &Paths,
    infra: &Infra,
    hosts: &[LabHost],
    ev: Events<'_>,
) -> Result<(), LabError> {
    let snap = Snapshot::take(&p.state);
    let mut running: Vec<(LabHost, u32)> = Vec::new();
    let mut to_boot: Vec<LabHost> = Vec::new();
    for h in hosts {
        let hp = p.host(&h.name);
        let procs = snap.host(&h.name, &hp.root);
        if let Some(pid) = procs.nspawn.first() {
            // A host booted from another release's image keeps running that release.
            if let Ok(old) = std::fs::read_to_string(&hp.base_stamp) {
                if old != infra.stamp {
                    return Err(LabError::Config(format!(
                        "lab host {} runs another image than {} asks for; run `bosun lab down` first",
                        h.name, cfg.os
                    )));
                }
            }
            step(ev, Some(&h.name), format!("already running (pid {pid})"));
            running.push((h.clone(), *pid));
            continue;
        }
        if procs.orphaned() {
            warn(
                ev,
                Some(&h.name),
                "killing container processes left without their systemd-nspawn",
            );
            host::kill_hard(&procs.members).await?;
        }
        // A disk made from a different image is meaningless on the new one.
        if let Ok(old) = std::fs::read_to_string(&hp.base_stamp) {
            if old != infra.stamp {
                step(
                    ev,
                    Some(&h.name),
                    "base image changed; recreating the host's disk",
                );
                mounts::safe_remove_dir(&hp.dir).await?;
            }
        }
        to_boot.push(h.clone());
    }

    let updates = prepare_disks(cfg, p, infra, &to_boot, &running, ev).await?;
    keys::update_known_hosts(&p.known_hosts, &updates).await?;

    let mut waits = JoinSet::new();
    let mut errors = Vec::new();
    for h in &to_boot {
        let hp = p.host(&h.name);
        step(ev, Some(&h.name), format!("booting at {}", h.address));
        let started = Instant::now();
        match host::boot(&hp, &h.name, &cfg.bridge, &p.state).await {
            Ok(pid) => {
                let (name, address) = (h.name.clone(), h.address);
                waits.spawn(async move {
                    let r = host::wait_ready(name.clone(), address, pid, hp.console, started).await;
                    r.map(|secs| (name, address, secs))
                });
            }
            Err(e) => errors.push(e),
        }
    }
    for (h, pid) in running {
        let console = p.host(&h.name).console;
        waits.spawn(async move {
            let r = host::wait_ready(h.name.clone(), h.address, pid, console, Instant::now()).await;
            r.map(|secs| (h.name, h.address, secs))
        });
    }
    while let Some(joined) = waits.join_next().await {
        match joined {
            Ok(Ok((name, address, seconds))) => ev(LabEvent::HostReady {
                name,
                address,
                seconds,
            }),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.into()),
        }
    }
    LabError::from_many(errors)
}

/// Mounts overlays and writes per-host files for the hosts to boot (in
/// parallel: host key generation dominates), and collects every host's public
/// keys for known_hosts.
async fn prepare_disks(
    cfg: &LabConfig,
    p: &Paths,
    infra: &Infra,
    to_boot: &[LabHost],
    running: &[(LabHost, u32)],
    ev: Events<'_>,
) -> Result<Vec<(Ipv4Addr, Vec<PubKey>)>, LabError> {
    let hosts_file = files::hosts_file(&cfg.hosts);
    let mut set = JoinSet::new();
    for h in to_boot {
        step(ev, Some(&h.name), "preparing disk (overlay, host keys)");
        let hp = p.host(&h.name);
        let base = p.base.clone();
        let setup = HostSetup {
            name: h.name.clone(),
            address: h.address,
            prefix_len: cfg.prefix_len,
            gateway: cfg.gateway,
            dns: infra.dns,
            hosts_file: hosts_file.clone(),
            authorized_key: infra.pubkey.clone(),
            base_stamp: infra.stamp.clone(),
        };
        set.spawn(async move {
            host::ensure_overlay(&base, &hp).await?;
            let keys = host::prepare_root(&hp, &setup).await?;
            Ok::<_, LabError>((setup.address, keys))
        });
    }
    let mut updates = Vec::new();
    let mut errors = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(u)) => updates.push(u),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.into()),
        }
    }
    LabError::from_many(errors)?;
    for (h, _) in running {
        let keys = keys::read_host_keys(&p.host(&h.name).root).await?;
        updates.push((h.address, keys));
    }
    updates.sort_by_key(|(a, _)| *a);
    Ok(updates)
}
