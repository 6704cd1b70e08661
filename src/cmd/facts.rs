//! `bosun facts`: what the engine's facts script finds on one host.

use super::inventory_or_exit;
use crate::printer::{self, views};
use bosun_engine::facts;
use bosun_transport::ssh::{run_on_hosts, ConnectOptions};
use clap::Args;
use futures::StreamExt;
use std::path::PathBuf;

#[derive(Args)]
pub struct FactsArgs {
    #[arg(short, long)]
    inventory: PathBuf,
    host: String,
    #[arg(long)]
    accept_new_host_keys: bool,
}

pub async fn run(a: FactsArgs) -> u8 {
    let inv = match inventory_or_exit(&a.inventory) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let Some(h) = inv.hosts.get(&a.host) else {
        return printer::error(format!("no host `{}` in {}", a.host, a.inventory.display()));
    };
    let copts = ConnectOptions::for_inventory(&inv, a.accept_new_host_keys);
    let mut answers = std::pin::pin!(run_on_hosts([h], &copts, 1, |_| facts::SCRIPT.into()));
    let out = match answers.next().await {
        Some((_, Ok(o))) => o,
        Some((_, Err(e))) => return printer::error(e),
        None => return printer::error(format!("no answer from {}", a.host)),
    };
    let found = facts::parse(&String::from_utf8_lossy(&out.stdout));
    match views::facts(&found) {
        Ok(()) => 0,
        Err(e) => printer::error(e),
    }
}
