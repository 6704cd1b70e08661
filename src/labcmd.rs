//! `bosun lab …` and the lab side of `converge`: the CLI face of [`bosun_lab`].

use bosun_lab::{self as lab, LabConfig, LabEvent, LabHost, LabOsExt};
use bosun_model::inventory::{Host, Inventory};
use bosun_transport::ssh::{ConnectOptions, Connection};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Prints lab progress on stderr (the engine's events go to stdout).
pub fn print_event(ev: LabEvent) {
    match ev {
        LabEvent::Step {
            host: Some(h),
            message,
        } => eprintln!("lab: [{h}] {message}"),
        LabEvent::Step {
            host: None,
            message,
        } => eprintln!("lab: {message}"),
        LabEvent::Warning { host, message } => eprintln!(
            "lab: warning{}: {message}",
            host.map(|h| format!(" [{h}]")).unwrap_or_default()
        ),
        LabEvent::HostReady {
            name,
            address,
            seconds,
        } => eprintln!("lab: [{name}] up at {address} in {seconds:.1}s"),
        LabEvent::HostStopped {
            name,
            clean,
            seconds,
        } => {
            eprintln!(
                "lab: [{name}] stopped{} in {seconds:.1}s",
                if clean { "" } else { " (killed)" }
            )
        }
    }
}

/// The lab described by an inventory marked `lab: true`: its hosts and addresses.
pub fn config_for(inv: &Inventory) -> Result<LabConfig, String> {
    let mut cfg = LabConfig::default();
    // The inventory's `lab: {os: …}`, else BOSUN_LAB_OS, else the release the lab runs.
    cfg.os = match inv.lab_os {
        Some(os) => os,
        None => match bosun_lab::LabOs::from_env()? {
            Some(os) => os,
            None => bosun_lab::LabOs::current(&cfg.state_dir)?,
        },
    };
    cfg.hosts = inv
        .hosts
        .values()
        .map(|h| {
            h.address
                .parse::<Ipv4Addr>()
                .map(|address| LabHost {
                    name: h.name.clone(),
                    address,
                })
                .map_err(|_| {
                    format!(
                        "lab host {} needs an IPv4 address in {}, not `{}`",
                        h.name,
                        cfg.cidr(),
                        h.address
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

/// Boots the lab unless every host already answers.
pub async fn ensure_up(cfg: &LabConfig) -> Result<(), String> {
    if let Ok(st) = lab::status(cfg).await {
        if st.all_ready() {
            return Ok(());
        }
    }
    eprintln!("lab: not running; bringing it up");
    lab::up(cfg, &print_event)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `bosun lab ssh NAME [CMD]`: a command, or an interactive shell, over russh.
pub async fn ssh(cfg: &LabConfig, name: &str, cmd: &[String]) -> Result<i32, String> {
    let (address, port) = lab::ssh_target(cfg, name).ok_or_else(|| {
        format!(
            "no lab host `{name}`; hosts: {}",
            cfg.hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let host = Host {
        name: name.to_string(),
        address: address.to_string(),
        port,
        user: "root".into(),
        identity_file: Some(lab::identity_path(cfg)),
        become_root: false,
        jump: None,
        groups: Vec::new(),
        vars: Default::default(),
    };
    let opts = ConnectOptions {
        known_hosts: lab::known_hosts_path(cfg),
        accept_new_host_keys: false,
        connect_timeout: Duration::from_secs(10),
        keepalive: Duration::from_secs(15),
        max_channels: 4,
        tunnel_wait: Duration::from_secs(120),
        jumps: Default::default(),
    };
    let conn = Connection::open(&host, &opts)
        .await
        .map_err(|e| e.to_string())?;
    let rc = if cmd.is_empty() {
        conn.interactive().await.map_err(|e| e.to_string())?
    } else {
        let out = conn.run(&cmd.join(" ")).await.map_err(|e| e.to_string())?;
        use std::io::Write;
        let _ = std::io::stdout().write_all(&out.stdout);
        let _ = std::io::stderr().write_all(&out.stderr);
        out.rc
    };
    conn.close().await;
    Ok(rc)
}
