//! `bosun lab …` and the lab side of `converge`: the CLI face of [`bosun_lab`].

use crate::printer::{self, views, OutputFormat};
use bosun_lab::{self as lab, LabConfig, LabHost, LabOsExt};
use bosun_model::inventory::{Host, Inventory};
use bosun_transport::ssh::{on_hosts, ConnectOptions, Output};
use clap::Subcommand;
use futures::StreamExt;
use std::net::Ipv4Addr;
use std::time::Duration;

#[derive(Subcommand)]
pub enum LabCommand {
    /// Boot the lab (builds the release's base image once; later runs reuse it).
    Up {
        /// How many hosts: the seven of the seed first, then host08, host09, ...
        #[arg(long, default_value_t = 7)]
        hosts: usize,
        /// The Debian release of every host: debian-13 (default) or debian-12.
        #[arg(long, env = "BOSUN_LAB_OS", default_value = "debian-13", value_parser = bosun_lab::LabOs::parse)]
        os: bosun_lab::LabOs,
    },
    /// Stop every lab host and remove their disks, the bridge and NAT rules.
    Down,
    /// Like down, and also delete the cached base image.
    Destroy,
    /// Which hosts run and answer SSH.
    Status {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// A shell (or one command) on a lab host, over SSH with its key verified.
    Ssh {
        name: String,
        #[arg(trailing_var_arg = true)]
        cmd: Vec<String>,
    },
    /// Power a host off hard: every process killed, no clean shutdown (fault drills).
    Kill { name: String },
    /// Boot one host again with its disk as it was.
    Start { name: String },
    /// List anything the lab left on this machine (processes, mounts, bridge, rules).
    Leftovers,
}

pub async fn run(cmd: LabCommand) -> u8 {
    let cfg = match &cmd {
        LabCommand::Up { hosts, os } => LabConfig {
            os: *os,
            ..LabConfig::default_with_hosts(*hosts)
        },
        _ => {
            let mut cfg = LabConfig::default();
            match lab::LabOs::current(&cfg.state_dir) {
                Ok(os) => cfg.os = os,
                Err(e) => return printer::error(e),
            }
            cfg
        }
    };
    let progress = &views::lab_event;
    let r: Result<u8, String> = match cmd {
        LabCommand::Up { .. } => lab::up(&cfg, progress)
            .await
            .map(|st| {
                printer::out(format!(
                    "lab up: {} hosts; known_hosts {}",
                    st.hosts.len(),
                    lab::known_hosts_path(&cfg).display()
                ));
                0
            })
            .map_err(|e| e.to_string()),
        LabCommand::Down => lab::down(&cfg, progress)
            .await
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        LabCommand::Destroy => lab::destroy(&cfg, progress)
            .await
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        LabCommand::Status { output } => lab::status(&cfg)
            .await
            .map(|st| {
                views::lab_status(output, &st);
                u8::from(!st.all_ready())
            })
            .map_err(|e| e.to_string()),
        LabCommand::Ssh { name, cmd } => ssh(&cfg, &name, &cmd)
            .await
            .map(|rc| rc.clamp(0, 255) as u8),
        LabCommand::Kill { name } => lab::kill_host(&cfg, &name)
            .await
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        LabCommand::Start { name } => lab::start_host(&cfg, &name, progress)
            .await
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        LabCommand::Leftovers => {
            let left = lab::leftovers(&cfg);
            for x in &left {
                printer::out(x);
            }
            Ok(u8::from(!left.is_empty()))
        }
    };
    r.unwrap_or_else(printer::error)
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
    printer::note("lab: not running; bringing it up");
    lab::up(cfg, &views::lab_event)
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
    // An interactive shell, or the command's output and exit code.
    let interactive = cmd.is_empty();
    let mut done = std::pin::pin!(on_hosts([&host], &opts, 1, |_, conn| {
        let cmd = cmd.join(" ");
        async move {
            if interactive {
                Ok((conn.interactive().await?, None::<Output>))
            } else {
                let out = conn.run(&cmd).await?;
                Ok((out.rc, Some(out)))
            }
        }
    }));
    let (rc, out) = match done.next().await {
        Some((_, r)) => r.map_err(|e| e.to_string())?,
        None => return Err(format!("no connection to {name}")),
    };
    if let Some(out) = out {
        let _ = printer::out_bytes(&out.stdout);
        printer::err_bytes(&out.stderr);
    }
    Ok(rc)
}
