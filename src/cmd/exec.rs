//! `bosun exec`: one ad-hoc shell command on every matching host, `--forks` at a time.

use super::inventory_or_exit;
use crate::printer::views::{self, ExecResult};
use crate::printer::{self, OutputFormat};
use bosun_model::redact::Redactor;
use bosun_model::text::strip_escapes;
use bosun_transport::ssh::{run_on_hosts, ConnectOptions};
use clap::Args;
use futures::StreamExt;
use std::path::PathBuf;

#[derive(Args)]
pub struct ExecArgs {
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
}

pub async fn run(a: ExecArgs) -> u8 {
    let inv = match inventory_or_exit(&a.inventory) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let hosts = match inv.select(&a.limit) {
        Ok(h) if !h.is_empty() => h,
        Ok(_) => return printer::error(format!("`{}` matches no host", a.limit)),
        Err(e) => return printer::error(e),
    };
    let redactor = Redactor::new(&inv.secret_values);
    let copts = ConnectOptions::for_inventory(&inv, a.accept_new_host_keys);
    let script = a.cmd.join(" ");
    // Host output loses its terminal escapes, and secrets are redacted, before it is shown.
    let clean = |bytes: &[u8]| redactor.redact(&strip_escapes(&String::from_utf8_lossy(bytes)));
    let mut answers = std::pin::pin!(run_on_hosts(hosts, &copts, a.forks, |_| script.clone()));
    let mut code = 0;
    while let Some((host, r)) = answers.next().await {
        let result = match r {
            Ok(o) => ExecResult::Ran {
                rc: o.rc,
                stdout: clean(&o.stdout),
                stderr: clean(&o.stderr),
            },
            Err(e) => ExecResult::Unreachable(redactor.redact(&e.to_string())),
        };
        if !matches!(result, ExecResult::Ran { rc: 0, .. }) {
            code = 1;
        }
        views::exec_result(a.output, &host.name, &result);
    }
    code
}
