//! `bosun converge` and `bosun plan`: load and check the input, boot the lab when the
//! inventory is the lab's, run the engine, and render its events.

use super::{lab, load_inventory};
use crate::printer::{self, views, OutputFormat, Renderer};
use bosun_engine::{self as engine, Emitter, RunOptions};
use bosun_model::diag::LoadErrors;
use bosun_model::redact::{Redactor, SecretSet};
use bosun_model::template::Templates;
use clap::Args;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args, Clone)]
pub struct ConvergeArgs {
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

/// Preflight errors can quote a rendered value: they are redacted like events.
fn redact_errors(mut e: LoadErrors, redactor: &Redactor) -> LoadErrors {
    for err in &mut e.0 {
        err.message = redactor.redact(&err.message);
        err.hint = err.hint.as_deref().map(|h| redactor.redact(h));
    }
    e
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

/// `converge` (`plan` = `converge --check --diff`, exit 2 when changes are pending).
pub async fn run(a: ConvergeArgs, plan: bool) -> u8 {
    let check = a.check || plan;
    let diff = a.diff || plan;
    let mut inv = match load_inventory(&a.inventory) {
        Ok(i) => i,
        Err(e) => return printer::load_errors(&e.into()),
    };
    let site_path = a
        .site
        .clone()
        .unwrap_or_else(|| PathBuf::from("roles/site.yml"));
    if !site_path.is_file() {
        return printer::error(format!(
            "site file {} not found\n  hint: pass the site file after the inventory, or run from the project directory (the one with roles/site.yml)",
            site_path.display()
        ));
    }
    let site = match engine::load_site(&site_path) {
        Ok(s) => s,
        Err(e) => return printer::load_errors(&e),
    };
    let extra_vars = match parse_extra_vars(
        &a.extra_vars,
        inv.secrets_identity.as_deref(),
        &mut inv.secret_values,
    ) {
        Ok(v) => v,
        Err(e) => return printer::error(e),
    };
    if a.forks == 0 {
        return printer::error("--forks must be at least 1");
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
        interrupt: engine::interrupt::Interrupt::new(),
    };
    // One set of secrets for the whole run: templates add what they derive from a secret
    // (in preflight and in the run), and the redactor of every event sees it.
    let secrets = SecretSet::new(&inv.secret_values);
    let templates = Templates::with_secrets(secrets.clone());
    let redactor = Redactor::shared(secrets);
    if let Err(e) = engine::preflight(&inv, &site, &opts, &templates) {
        return printer::load_errors(&redact_errors(e, &redactor));
    }
    // The lab inventory boots its hosts first, once the input is known to be good.
    if inv.lab {
        let cfg = match lab::config_for(&inv) {
            Ok(c) => c,
            Err(e) => return printer::error(e),
        };
        if let Err(e) = lab::ensure_up(&cfg).await {
            return printer::error(format!("cannot bring the lab up: {e}"));
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
        Err(e) => return printer::error(format!("the run stopped unexpectedly: {e}")),
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
async fn watch_signals(interrupt: engine::interrupt::Interrupt) {
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
        views::interrupted(interrupt.raise());
    }
}
