//! The `bosun` command line: parses flags, loads input, runs the engine, renders events.

mod labcmd;
mod render;
mod secretcmd;
mod status;

use crate::render::{OutputFormat, Renderer};
use bosun_engine::{self as engine, Emitter, RunOptions};
use bosun_model::diag::LoadErrors;
use bosun_model::inventory::{GraphFormat, Inventory};
use bosun_model::redact::{Redactor, SecretSet};
use bosun_model::template::Templates;
use bosun_model::text::strip_escapes;
use bosun_transport::ssh::{ConnectOptions, Connection};
use clap::{Args, Parser, Subcommand};
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "bosun",
    version,
    about = "Agentless, push-based configuration over SSH: converge hosts to what their roles declare."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Identity that decrypts encrypted secrets: an age identity file or an SSH private key
    /// (repeatable). Beats BOSUN_IDENTITY, which beats the inventory's secrets_identity.
    #[arg(long, global = true, value_name = "FILE")]
    identity: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Converge hosts to the site's roles (changes hosts unless --check).
    Converge(ConvergeArgs),
    /// Show what converge would change, with diffs. Exit 0: nothing to do, 2: changes pending, 1: errors.
    Plan(ConvergeArgs),
    /// Inspect the inventory.
    Inventory {
        #[command(subcommand)]
        command: InventoryCommand,
    },
    /// Print the facts of one host as JSON.
    Facts {
        #[arg(short, long)]
        inventory: PathBuf,
        host: String,
        #[arg(long)]
        accept_new_host_keys: bool,
    },
    /// The database tier at a glance: Patroni members and HAProxy backends.
    Status {
        #[arg(short, long)]
        inventory: PathBuf,
        #[arg(long, default_value = "postgres")]
        postgres_group: String,
        #[arg(long, default_value = "balancers")]
        balancer_group: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// The built-in lab of Debian 12 systemd hosts (systemd-nspawn; root, Linux).
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// Encrypted vars files (age): encrypt, decrypt, edit, rekey, keygen.
    Secret {
        #[command(subcommand)]
        command: secretcmd::SecretCommand,
    },
    /// Run an ad-hoc shell command on matching hosts.
    Exec {
        #[arg(short, long)]
        inventory: PathBuf,
        /// Host pattern (names, groups, globs, `a,!b`).
        #[arg(short = 'l', long = "limit")]
        limit: String,
        #[arg(short, long, default_value_t = 20)]
        forks: usize,
        #[arg(long)]
        accept_new_host_keys: bool,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        /// The command, after `--`.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

#[derive(Subcommand)]
enum LabCommand {
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

#[derive(Subcommand)]
enum InventoryCommand {
    /// List hosts with address, groups and (with -v) variables; secrets redacted.
    List {
        #[arg(short, long)]
        inventory: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        #[arg(short, long, action = clap::ArgAction::Count)]
        verbose: u8,
    },
    /// Draw the group tree with hosts and addresses (text, or Graphviz DOT).
    Graph {
        #[arg(short, long)]
        inventory: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
}

#[derive(Args, Clone)]
struct ConvergeArgs {
    /// Inventory file.
    #[arg(short, long)]
    inventory: PathBuf,
    /// Site file (ordered plays). Default: roles/site.yml.
    site: Option<PathBuf>,
    /// Change nothing; report what would change.
    #[arg(long)]
    check: bool,
    /// Show unified diffs of file contents.
    #[arg(long)]
    diff: bool,
    /// Only these hosts (pattern: names, groups, globs, `a,!b`, `&g`).
    #[arg(short, long)]
    limit: Option<String>,
    /// Only tasks with these tags (comma-separated).
    #[arg(short, long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Skip tasks with these tags.
    #[arg(long, value_delimiter = ',')]
    skip_tags: Vec<String>,
    /// Hosts worked on at once.
    #[arg(short, long, default_value_t = 50)]
    forks: usize,
    /// Extra variables, highest precedence: k=v, @file.yml, or a YAML/JSON map.
    #[arg(short = 'e', long = "extra-vars")]
    extra_vars: Vec<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    /// Record host keys not yet in known_hosts (changed keys are still refused).
    #[arg(long)]
    accept_new_host_keys: bool,
    /// Run notified handlers even when a later task failed.
    #[arg(long)]
    force_handlers: bool,
    /// -v: ok/skipped tasks and exec counts; -vv: connection times.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    // Like other Unix filters: `bosun inventory list | head` ends quietly on a closed pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    bosun_model::secrets::set_cli_identities(cli.identity.clone());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(async {
        match cli.command {
            Command::Converge(a) => converge(a, false).await,
            Command::Plan(a) => converge(a, true).await,
            Command::Inventory {
                command:
                    InventoryCommand::List {
                        inventory,
                        output,
                        verbose,
                    },
            } => inventory_list(&inventory, output, verbose),
            Command::Inventory {
                command: InventoryCommand::Graph { inventory, format },
            } => match load_inventory(&inventory) {
                Ok(inv) => {
                    print!("{}", inv.graph(format));
                    0
                }
                Err(e) => load_errors(&e.into()),
            },
            Command::Facts {
                inventory,
                host,
                accept_new_host_keys,
            } => facts(&inventory, &host, accept_new_host_keys).await,
            Command::Lab { command } => lab(command).await,
            Command::Secret { command } => secretcmd::run(command).await,
            Command::Status {
                inventory,
                postgres_group,
                balancer_group,
                output,
            } => status(&inventory, &postgres_group, &balancer_group, output).await,
            Command::Exec {
                inventory,
                limit,
                forks,
                accept_new_host_keys,
                output,
                cmd,
            } => {
                exec(
                    &inventory,
                    &limit,
                    forks,
                    accept_new_host_keys,
                    output,
                    &cmd,
                )
                .await
            }
        }
    });
    ExitCode::from(code)
}

fn fail(msg: impl std::fmt::Display) -> u8 {
    eprintln!("{} {msg}", console::style("error:").red().bold());
    1
}

/// Preflight errors can quote a rendered value: they are redacted like events.
fn redact_errors(mut e: LoadErrors, redactor: &Redactor) -> LoadErrors {
    for err in &mut e.0 {
        err.message = redactor.redact(&err.message);
        err.hint = err.hint.as_deref().map(|h| redactor.redact(h));
    }
    e
}

fn load_errors(e: &LoadErrors) -> u8 {
    for err in &e.0 {
        eprintln!("{} {}", console::style("error:").red().bold(), err.render());
    }
    if e.0.len() > 1 {
        eprintln!("{} errors; nothing was changed on any host", e.0.len());
    } else {
        eprintln!("nothing was changed on any host");
    }
    1
}

/// Loads an inventory and prints what it ignored (warnings) to stderr.
fn load_inventory(path: &Path) -> Result<Inventory, bosun_model::diag::LoadError> {
    let inv = Inventory::load(path)?;
    let redactor = Redactor::new(&inv.secret_values);
    for w in &inv.warnings {
        eprintln!(
            "{} {}",
            console::style("warning:").yellow(),
            redactor.redact(w)
        );
    }
    Ok(inv)
}

/// `-e` values: `k=v` (v read as YAML, so numbers stay numbers), `@file.yml`, or a map.
/// An `@file` that is age-encrypted is decrypted, and its values join `secrets`.
fn parse_extra_vars(
    items: &[String],
    identity: Option<&Path>,
    secrets: &mut std::collections::BTreeSet<String>,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for it in items {
        let v: Value = if let Some(file) = it.strip_prefix('@') {
            let file = Path::new(file);
            let v: Value = bosun_model::secrets::load_yaml(file, identity).map_err(|e| {
                e.at(bosun_model::diag::Place::file(Path::new("-e")))
                    .render()
            })?;
            if bosun_model::secrets::is_encrypted_file(file) {
                if let Value::Object(m) = &v {
                    bosun_model::inventory::collect_secrets(m, secrets);
                }
            }
            v
        } else if it.trim_start().starts_with('{') {
            bosun_model::yaml::parse(Path::new("-e"), it).map_err(|e| e.render())?
        } else if let Some((k, v)) = it.split_once('=') {
            let val: Value = if v.is_empty() {
                Value::String(String::new())
            } else {
                bosun_model::yaml::parse(Path::new("-e"), v)
                    .unwrap_or_else(|_| Value::String(v.to_string()))
            };
            let val = match val {
                Value::Null => Value::String(v.to_string()),
                other => other,
            };
            serde_json::json!({ k: val })
        } else {
            return Err(format!(
                "-e `{it}`: expected key=value, @file.yml or a YAML map"
            ));
        };
        match v {
            Value::Object(m) => out.extend(m),
            _ => return Err(format!("-e `{it}`: not a map of variables")),
        }
    }
    Ok(out)
}

async fn converge(a: ConvergeArgs, plan: bool) -> u8 {
    let check = a.check || plan;
    let diff = a.diff || plan;
    let mut inv = match load_inventory(&a.inventory) {
        Ok(i) => i,
        Err(e) => return load_errors(&e.into()),
    };
    let site_path = a
        .site
        .clone()
        .unwrap_or_else(|| PathBuf::from("roles/site.yml"));
    if !site_path.is_file() {
        return fail(format!(
            "site file {} not found\n  hint: pass the site file after the inventory, or run from the project directory (the one with roles/site.yml)",
            site_path.display()
        ));
    }
    let site = match bosun_engine::load_site(&site_path) {
        Ok(s) => s,
        Err(e) => return load_errors(&e),
    };
    let extra_vars = match parse_extra_vars(
        &a.extra_vars,
        inv.secrets_identity.as_deref(),
        &mut inv.secret_values,
    ) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if a.forks == 0 {
        return fail("--forks must be at least 1");
    }
    let opts = RunOptions {
        check,
        diff,
        limit: a.limit.clone(),
        tags: a.tags.clone(),
        skip_tags: a.skip_tags.clone(),
        forks: a.forks,
        extra_vars,
        force_handlers: a.force_handlers,
        accept_new_host_keys: a.accept_new_host_keys,
        interrupt: bosun_engine::interrupt::Interrupt::new(),
    };
    // One set of secrets for the whole run: templates add what they derive from a secret
    // (in preflight and in the run), and the redactor of every event sees it.
    let secrets = SecretSet::new(&inv.secret_values);
    let templates = Templates::with_secrets(secrets.clone());
    let redactor = Redactor::shared(secrets);
    if let Err(e) = engine::preflight(&inv, &site, &opts, &templates) {
        return load_errors(&redact_errors(e, &redactor));
    }
    // The lab inventory boots its hosts first, once the input is known to be good.
    if inv.lab {
        let cfg = match labcmd::config_for(&inv) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        if let Err(e) = labcmd::ensure_up(&cfg).await {
            return fail(format!("cannot bring the lab up: {e}"));
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let emitter = Arc::new(Emitter::new(tx, redactor));
    let signals = tokio::spawn(watch_signals(opts.interrupt.clone()));
    let connector = Arc::new(bosun_transport::ssh::SshConnector::for_inventory(
        &inv,
        opts.accept_new_host_keys,
    ));
    let run = tokio::spawn(engine::run(
        Arc::new(inv),
        Arc::new(site),
        Arc::new(opts),
        Arc::new(templates),
        emitter,
        connector,
    ));
    let mut renderer = Renderer::new(a.output, a.verbose, diff);
    while let Some(ev) = rx.recv().await {
        renderer.handle(&ev);
    }
    let summary = match run.await {
        Ok(s) => s,
        Err(e) => return fail(format!("the run stopped unexpectedly: {e}")),
    };
    signals.abort();
    if summary.interrupted {
        130
    } else if summary.failed {
        1
    } else if plan && summary.changed {
        2
    } else {
        0
    }
}

/// Ctrl-C and SIGTERM: the first asks the run to finish what runs and start nothing new,
/// the second to kill what runs on the hosts now (see `bosun_engine::interrupt`).
async fn watch_signals(interrupt: bosun_engine::interrupt::Interrupt) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        let level = interrupt.raise();
        eprintln!(
            "{} {}",
            console::style("interrupted:").yellow().bold(),
            if level == 1 {
                "finishing the steps that run now (at most 60 s), starting nothing new; press Ctrl-C again to stop them at once"
            } else {
                "stopping the steps that run now and cleaning up"
            }
        );
    }
}

fn inventory_list(path: &Path, output: OutputFormat, verbose: u8) -> u8 {
    let inv = match load_inventory(path) {
        Ok(i) => i,
        Err(e) => return load_errors(&e.into()),
    };
    let redactor = Redactor::new(&inv.secret_values);
    // Values are redacted before they are serialized: in JSON text a `"` or `\` of a
    // secret is escaped, and the escaped form no longer matches the secret.
    let hosts: Vec<Value> = inv
        .hosts
        .values()
        .map(|h| {
            serde_json::json!({
                "name": h.name, "address": h.address, "port": h.port, "user": h.user,
                "identity_file": h.identity_file, "become": h.become_root, "jump": h.jump,
                "groups": h.groups, "vars": h.vars,
            })
        })
        .collect();
    match output {
        OutputFormat::Json => {
            let groups: Map<String, Value> = inv
                .groups
                .iter()
                .map(|(g, grp)| {
                    (
                        g.clone(),
                        serde_json::json!({"hosts": grp.hosts, "children": grp.children}),
                    )
                })
                .collect();
            let mut v =
                serde_json::json!({ "hosts": hosts, "groups": groups, "warnings": inv.warnings });
            redactor.json(&mut v);
            println!("{v}");
        }
        OutputFormat::Text => {
            let w = inv.hosts.keys().map(String::len).max().unwrap_or(4).max(4);
            println!("{:<w$}  {:<22}  GROUPS", "HOST", "ADDRESS");
            for h in inv.hosts.values() {
                println!(
                    "{:<w$}  {:<22}  {}",
                    h.name,
                    format!("{}@{}:{}", h.user, h.address, h.port),
                    h.groups.join(",")
                );
                if verbose > 0 {
                    for (k, v) in &h.vars {
                        let mut v = v.clone();
                        redactor.json(&mut v);
                        println!("{:<w$}    {k} = {v}", "");
                    }
                }
            }
        }
    }
    0
}

async fn facts(path: &Path, host: &str, accept_new: bool) -> u8 {
    let inv = match load_inventory(path) {
        Ok(i) => i,
        Err(e) => return load_errors(&e.into()),
    };
    let Some(h) = inv.hosts.get(host) else {
        return fail(format!("no host `{host}` in {}", path.display()));
    };
    let copts = ConnectOptions::for_inventory(&inv, accept_new);
    let conn = match Connection::open(h, &copts).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let out = match conn.run(engine::facts::SCRIPT).await {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    conn.close().await;
    let facts = engine::facts::parse(&String::from_utf8_lossy(&out.stdout));
    match serde_json::to_string_pretty(&facts) {
        Ok(s) => println!("{s}"),
        Err(e) => return fail(e),
    }
    0
}

async fn exec(
    path: &Path,
    limit: &str,
    forks: usize,
    accept_new: bool,
    output: OutputFormat,
    cmd: &[String],
) -> u8 {
    let inv = match load_inventory(path) {
        Ok(i) => i,
        Err(e) => return load_errors(&e.into()),
    };
    let hosts = match inv.select(limit) {
        Ok(h) if !h.is_empty() => h,
        Ok(_) => return fail(format!("`{limit}` matches no host")),
        Err(e) => return fail(e),
    };
    let redactor = Redactor::new(&inv.secret_values);
    let copts = ConnectOptions::for_inventory(&inv, accept_new);
    let script = cmd.join(" ");
    let sem = Arc::new(tokio::sync::Semaphore::new(forks.max(1)));
    let mut futs = FuturesUnordered::new();
    for h in hosts {
        let copts = copts.clone();
        let script = script.clone();
        let sem = sem.clone();
        futs.push(async move {
            let _p = sem.acquire().await;
            let r = match Connection::open(h, &copts).await {
                Ok(c) => {
                    let r = c.run(&script).await;
                    c.close().await;
                    r.map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            (h.name.clone(), r)
        });
    }
    let mut code = 0;
    while let Some((host, r)) = futs.next().await {
        match r {
            Ok(o) => {
                let stdout = redactor.redact(&strip_escapes(&String::from_utf8_lossy(&o.stdout)));
                let stderr = redactor.redact(&strip_escapes(&String::from_utf8_lossy(&o.stderr)));
                if o.rc != 0 {
                    code = 1;
                }
                match output {
                    OutputFormat::Json => println!(
                        "{}",
                        serde_json::json!({"host": host, "rc": o.rc, "stdout": stdout, "stderr": stderr})
                    ),
                    OutputFormat::Text => {
                        let head = format!("[{host}] rc={}", o.rc);
                        println!(
                            "{}",
                            if o.rc == 0 {
                                console::style(head).green()
                            } else {
                                console::style(head).red()
                            }
                        );
                        print!("{stdout}");
                        if !stderr.is_empty() {
                            eprint!("{stderr}");
                        }
                    }
                }
            }
            Err(e) => {
                code = 1;
                match output {
                    OutputFormat::Json => println!(
                        "{}",
                        serde_json::json!({"host": host, "unreachable": true, "error": redactor.redact(&e)})
                    ),
                    OutputFormat::Text => println!(
                        "{} {}",
                        console::style(format!("[{host}] unreachable:")).red(),
                        e
                    ),
                }
            }
        }
    }
    code
}

async fn lab(cmd: LabCommand) -> u8 {
    use bosun_lab::{self as l, LabConfig, LabOsExt};
    let cfg = match &cmd {
        LabCommand::Up { hosts, os } => LabConfig {
            os: *os,
            ..LabConfig::default_with_hosts(*hosts)
        },
        _ => {
            let mut cfg = LabConfig::default();
            match l::LabOs::current(&cfg.state_dir) {
                Ok(os) => cfg.os = os,
                Err(e) => return fail(e),
            }
            cfg
        }
    };
    let r: Result<u8, String> = match cmd {
        LabCommand::Up { .. } => l::up(&cfg, &labcmd::print_event)
            .await
            .map(|st| {
                println!(
                    "lab up: {} hosts; known_hosts {}",
                    st.hosts.len(),
                    l::known_hosts_path(&cfg).display()
                );
                0
            })
            .map_err(|e| e.to_string()),
        LabCommand::Down => l::down(&cfg, &labcmd::print_event)
            .await
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        LabCommand::Destroy => l::destroy(&cfg, &labcmd::print_event)
            .await
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        LabCommand::Status { output } => l::status(&cfg)
            .await
            .map(|st| {
                match output {
                    OutputFormat::Json => {
                        println!("{}", serde_json::to_string(&st).unwrap_or_default())
                    }
                    OutputFormat::Text => {
                        println!(
                            "bridge {} {}; base image {}",
                            st.bridge,
                            if st.bridge_up { "up" } else { "down" },
                            if st.base_ready { "built" } else { "not built" }
                        );
                        for h in &st.hosts {
                            println!(
                                "{:<12} {:<12} {:<8} sshd {}",
                                h.name,
                                h.address,
                                if h.running { "running" } else { "stopped" },
                                if h.sshd { "answers" } else { "-" }
                            );
                        }
                    }
                }
                u8::from(!st.all_ready())
            })
            .map_err(|e| e.to_string()),
        LabCommand::Ssh { name, cmd } => labcmd::ssh(&cfg, &name, &cmd)
            .await
            .map(|rc| rc.clamp(0, 255) as u8),
        LabCommand::Kill { name } => l::kill_host(&cfg, &name)
            .await
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        LabCommand::Start { name } => l::start_host(&cfg, &name, &labcmd::print_event)
            .await
            .map(|_| 0)
            .map_err(|e| e.to_string()),
        LabCommand::Leftovers => {
            let left = l::leftovers(&cfg);
            for x in &left {
                println!("{x}");
            }
            Ok(u8::from(!left.is_empty()))
        }
    };
    r.unwrap_or_else(fail)
}

async fn status(path: &Path, pg_group: &str, lb_group: &str, output: OutputFormat) -> u8 {
    use crate::status as st;
    let inv = match load_inventory(path) {
        Ok(i) => i,
        Err(e) => return load_errors(&e.into()),
    };
    let copts = ConnectOptions::for_inventory(&inv, false);
    let pg_hosts = inv.select(pg_group).unwrap_or_default();
    let lb_hosts = inv.select(lb_group).unwrap_or_default();
    let mut problems = Vec::new();
    // Any reachable member can describe the whole cluster.
    let mut members = None;
    for h in &pg_hosts {
        let rest = format!(
            "{}:8008",
            h.vars
                .get("private_address")
                .and_then(Value::as_str)
                .unwrap_or(&h.address)
        );
        match Connection::open(h, &copts).await {
            Ok(c) => {
                let r = c.run(&st::patroni_script(&rest)).await;
                c.close().await;
                match r {
                    Ok(o) if o.rc == 0 => {
                        match st::parse_cluster(&String::from_utf8_lossy(&o.stdout)) {
                            Ok(m) => {
                                members = Some(m);
                                break;
                            }
                            Err(e) => problems.push(format!("{}: {e}", h.name)),
                        }
                    }
                    Ok(o) => problems.push(format!(
                        "{}: Patroni REST API did not answer (exit {})",
                        h.name, o.rc
                    )),
                    Err(e) => problems.push(format!("{}: {e}", h.name)),
                }
            }
            Err(e) => problems.push(format!("{}: {e}", h.name)),
        }
    }
    let mut backends = Vec::new();
    for h in &lb_hosts {
        match Connection::open(h, &copts).await {
            Ok(c) => {
                let r = c.run(st::HAPROXY_SCRIPT).await;
                c.close().await;
                match r {
                    Ok(o) if o.rc == 0 => backends.extend(st::parse_haproxy_csv(
                        &h.name,
                        &String::from_utf8_lossy(&o.stdout),
                    )),
                    Ok(o) => problems.push(format!(
                        "{}: HAProxy stats did not answer (exit {})",
                        h.name, o.rc
                    )),
                    Err(e) => problems.push(format!("{}: {e}", h.name)),
                }
            }
            Err(e) => problems.push(format!("{}: {e}", h.name)),
        }
    }
    let members = members.unwrap_or_default();
    match output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({"patroni": members, "haproxy": backends, "problems": problems})
        ),
        OutputFormat::Text => {
            println!("PATRONI MEMBER  HOST          ROLE           STATE      TL   LAG(MB)");
            for m in &members {
                println!(
                    "{:<15} {:<13} {:<14} {:<10} {:<4} {}",
                    m.name,
                    m.host,
                    m.role,
                    m.state,
                    m.timeline.map(|t| t.to_string()).unwrap_or_default(),
                    m.lag_mb
                        .map(|l| format!("{l:.1}"))
                        .unwrap_or_else(|| "-".into())
                );
            }
            println!();
            println!("HAPROXY  PROXY          SERVER   STATUS");
            for b in &backends {
                let line = format!(
                    "{:<8} {:<14} {:<8} {}",
                    b.balancer, b.proxy, b.server, b.status
                );
                println!(
                    "{}",
                    if b.status.starts_with("UP") {
                        console::style(line).green()
                    } else {
                        console::style(line).red()
                    }
                );
            }
            for p in &problems {
                eprintln!("{} {p}", console::style("warning:").yellow());
            }
        }
    }
    u8::from(members.is_empty() || !problems.is_empty())
}
