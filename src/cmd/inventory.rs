//! `bosun inventory list|graph`.

use super::inventory_or_exit;
use crate::printer::{self, views, OutputFormat};
use bosun_model::inventory::GraphFormat;
use bosun_model::redact::Redactor;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum InventoryCommand {
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

pub fn run(cmd: InventoryCommand) -> u8 {
    match cmd {
        InventoryCommand::List {
            inventory,
            output,
            verbose,
        } => match inventory_or_exit(&inventory) {
            Ok(inv) => {
                let redactor = Redactor::new(&inv.secret_values);
                views::inventory_list(output, &inv, &redactor, verbose);
                0
            }
            Err(code) => code,
        },
        InventoryCommand::Graph { inventory, format } => match inventory_or_exit(&inventory) {
            Ok(inv) => {
                printer::out_text(&inv.graph(format));
                0
            }
            Err(code) => code,
        },
    }
}
