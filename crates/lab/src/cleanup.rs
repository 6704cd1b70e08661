//! Tearing the lab down and checking that nothing is left.
//!
//! Teardown works from what is on the machine (processes, mounts, links,
//! tagged rules), not only from the config, so it also removes what a killed
//! earlier run or a bigger earlier config left behind.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::cgroup;
use super::cmd;
use super::config::LabConfig;
use super::error::LabError;
use super::firewall;
use super::host;
use super::lifecycle::{step, warn};
use super::mounts;
use super::net;
use super::paths::Paths;
use super::procs::{self, HostProcs, Snapshot};
use super::LabEvent;

type Events<'a> = &'a (dyn Fn(LabEvent) + Send + Sync);

/// How long a clean poweroff may take before the host is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Every host name the lab may have traces of.
fn all_host_names(cfg: &LabConfig, p: &Paths, snap: &Snapshot) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = cfg.hosts.iter().map(|h| h.name.clone()).collect();
    names.extend(p.host_dirs());
    names.extend(snap.host_names());
    names
}

/// Powers every lab host off: SIGTERM to nspawn (which sends the container
/// SIGRTMIN+4, a clean poweroff), bounded wait, then SIGKILL for the rest.
pub(crate) async fn stop_all(cfg: &LabConfig, p: &Paths, ev: Events<'_>) -> Result<(), LabError> {
    let snap = Snapshot::take(&p.state);
    let mut pending: Vec<(String, HostProcs)> = all_host_names(cfg, p, &snap)
        .into_iter()
        .map(|n| {
            let procs = snap.host(&n, &p.host(&n).root);
            (n, procs)
        })
        .filter(|(_, procs)| !procs.all_pids().is_empty())
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    // Containers whose nspawn is gone cannot be asked to power off.
    let (orphans, with_nspawn): (Vec<_>, Vec<_>) =
        pending.into_iter().partition(|(_, h)| h.orphaned());
    pending = with_nspawn;
    for (name, procs) in orphans {
        warn(
            ev,
            Some(&name),
            "killing container processes left without their systemd-nspawn",
        );
        host::kill_hard(&procs.members).await?;
        ev(LabEvent::HostStopped {
            name,
            clean: false,
            seconds: 0.0,
        });
    }
    if !pending.is_empty() {
        let nspawns: Vec<u32> = pending.iter().flat_map(|(_, h)| h.nspawn.clone()).collect();
        step(ev, None, format!("powering off {} hosts", pending.len()));
        host::signal(&nspawns, "TERM").await?;
    }
    let started = Instant::now();
    loop {
        pending.retain(|(name, procs)| {
            let alive = procs.all_pids().iter().any(|p| procs::is_alive(*p));
            if !alive {
                ev(LabEvent::HostStopped {
                    name: name.clone(),
                    clean: true,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
            alive
        });
        if pending.is_empty() || started.elapsed() > SHUTDOWN_TIMEOUT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (name, procs) in pending {
        warn(
            ev,
            Some(&name),
            format!(
                "did not power off within {} s; killing it",
                SHUTDOWN_TIMEOUT.as_secs()
            ),
        );
        host::kill_hard(&procs.all_pids()).await?;
        ev(LabEvent::HostStopped {
            name,
            clean: false,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    // Anything that appeared meanwhile or escaped the first snapshot.
    let again = Snapshot::take(&p.state);
    for n in all_host_names(cfg, p, &again) {
        let procs = again.host(&n, &p.host(&n).root);
        if !procs.all_pids().is_empty() {
            warn(
                ev,
                Some(&n),
                "processes still present after poweroff; killing them",
            );
            host::kill_hard(&procs.all_pids()).await?;
        }
    }
    Ok(())
}

/// Hard power-off of one host; no-op when it is not running.
pub(crate) async fn kill_one(p: &Paths, name: &str) -> Result<bool, LabError> {
    let hp = p.host(name);
    let procs = Snapshot::take(&p.state).host(name, &hp.root);
    let pids = procs.all_pids();
    if pids.is_empty() {
        return Ok(false);
    }
    host::kill_hard(&pids).await?;
    match tokio::fs::remove_file(&hp.pid_file).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LabError::io("delete", &hp.pid_file, e)),
    }
    Ok(true)
}

/// Everything after the hosts are stopped: overlays, host disks, known_hosts,
/// links, firewall rules, forwarding.
pub(crate) async fn remove_infra(
    cfg: &LabConfig,
    p: &Paths,
    ev: Events<'_>,
) -> Result<(), LabError> {
    let unmounted = mounts::unmount_all_under(&p.hosts).await?;
    if !unmounted.is_empty() {
        step(ev, None, format!("unmounted {} overlays", unmounted.len()));
    }
    mounts::safe_remove_dir(&p.hosts).await?;
    // Hosts get fresh keys on the next `up`; stale entries would only mislead.
    match tokio::fs::remove_file(&p.known_hosts).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LabError::io("delete", &p.known_hosts, e)),
    }
    for h in &cfg.hosts {
        net::delete_stale_veth(&h.name).await?;
    }
    net::delete_bridge(&cfg.bridge).await?;
    let n = firewall::delete_tagged_rules().await?;
    if n > 0 {
        step(
            ev,
            None,
            format!("removed {n} iptables rules tagged {}", firewall::TAG),
        );
    }
    net::restore_forwarding(&p.forward_restore).await?;
    cgroup::remove_lab_cgroups()?;
    Ok(())
}

/// Describes every trace of the lab on this machine except the cached base
/// image and the controller key; empty after a successful `down`.
pub(crate) fn leftovers(cfg: &LabConfig) -> Vec<String> {
    let p = Paths::new(cfg);
    let snap = Snapshot::take(&p.state);
    let mut out = snap.describe_all();
    match mounts::read_mounts() {
        Ok(m) => {
            out.extend(mounts::mounts_under(&m, &p.state).iter().map(|e| {
                format!(
                    "mount: {} ({}) on {}",
                    e.source,
                    e.fstype,
                    e.mountpoint.display()
                )
            }));
            out.extend(cgroup::lab_cgroup_leftovers(&m));
        }
        Err(e) => out.push(format!("could not check mounts: {e}")),
    }
    if net::link_exists(&cfg.bridge) {
        out.push(format!("network interface {}", cfg.bridge));
    }
    let names = all_host_names(cfg, &p, &snap);
    for n in &names {
        let veth = net::veth_name(n);
        if net::link_exists(&veth) {
            out.push(format!("network interface {veth}"));
        }
    }
    if let Some(routes) = cmd::run_sync("ip", &["-4", "route", "show"]) {
        let cidr = cfg.cidr();
        let dev = format!("dev {} ", cfg.bridge);
        out.extend(
            routes
                .lines()
                .filter(|l| l.starts_with(&cidr) || format!("{l} ").contains(&dev))
                .map(|l| format!("route: {l}")),
        );
    }
    out.extend(firewall::remaining_tagged_rules());
    for n in p.host_dirs() {
        out.push(format!("host directory {}", p.host(&n).dir.display()));
    }
    out
}
