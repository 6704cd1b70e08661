//! `bosun status`: asks the Patroni members (one after the other, until one describes the
//! cluster) and every balancer (in order), then shows the report (see [`crate::status`]).

use super::inventory_or_exit;
use crate::printer::{views, OutputFormat};
use crate::status::{self as st, Report};
use bosun_transport::ssh::{run_on_hosts, ConnectOptions};
use clap::Args;
use futures::StreamExt;
use std::path::PathBuf;

#[derive(Args)]
pub struct StatusArgs {
    #[arg(short, long)]
    inventory: PathBuf,
    #[arg(long, default_value = "postgres")]
    postgres_group: String,
    #[arg(long, default_value = "balancers")]
    balancer_group: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub async fn run(a: StatusArgs) -> u8 {
    let inv = match inventory_or_exit(&a.inventory) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let copts = ConnectOptions::for_inventory(&inv, false);
    let pg_hosts = inv.select(&a.postgres_group).unwrap_or_default();
    let lb_hosts = inv.select(&a.balancer_group).unwrap_or_default();
    let mut report = Report::default();
    // One host at a time, in order: any reachable member can describe the whole cluster,
    // and the stream opens no connection past the first that does.
    let mut members = std::pin::pin!(run_on_hosts(pg_hosts, &copts, 1, |h| {
        st::patroni_script(&st::patroni_rest(h))
    }));
    while let Some((h, answer)) = members.next().await {
        if report.take_patroni(&h.name, answer) {
            break;
        }
    }
    let mut balancers = std::pin::pin!(run_on_hosts(lb_hosts, &copts, 1, |_| {
        st::HAPROXY_SCRIPT.to_string()
    }));
    while let Some((h, answer)) = balancers.next().await {
        report.take_haproxy(&h.name, answer);
    }
    views::status(a.output, &report);
    report.exit_code()
}
