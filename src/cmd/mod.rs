//! One module per subcommand: each takes its parsed arguments, does the work through the
//! library crates (connections through [`bosun_transport`]), hands what it found to the
//! [`crate::printer`], and returns the exit code.

pub mod converge;
pub mod exec;
pub mod facts;
pub mod inventory;
pub mod lab;
pub mod secret;
pub mod status;

use crate::printer;
use bosun_model::diag::LoadError;
use bosun_model::inventory::Inventory;
use bosun_model::redact::Redactor;
use std::path::Path;

/// Loads an inventory and shows what it ignored (warnings, redacted).
pub fn load_inventory(path: &Path) -> Result<Inventory, LoadError> {
    let inv = Inventory::load(path)?;
    let redactor = Redactor::new(&inv.secret_values);
    for w in &inv.warnings {
        printer::warning(redactor.redact(w));
    }
    Ok(inv)
}

/// [`load_inventory`], or the load error shown and exit code 1.
pub fn inventory_or_exit(path: &Path) -> Result<Inventory, u8> {
    load_inventory(path).map_err(|e| printer::load_errors(&e.into()))
}
