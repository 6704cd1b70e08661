//! The engine: converges hosts to what their roles declare.
//!
//! Per host, in rounds ([`host`] schedules them, [`round`] decides what each does): [`expand`]
//! the queued tasks, [`batch`] their probes into one remote script, plan each with its
//! [`modules`] entry (a pure function of what was observed), apply the changes in one more
//! script, re-probe what asks for it. [`run`] orders plays and hosts
//! (serial, forks, max_fail_percentage). A host is reached only through the [`remote::Remote`]
//! trait; everything the engine has to say leaves as an [`event::Event`], redacted.

pub mod batch;
pub mod blocks;
pub mod diff;
pub mod event;
pub mod expand;
pub mod facts;
#[cfg(test)]
pub mod fake;
pub mod host;
pub mod interrupt;
pub mod local;
pub mod modules;
mod reconnect;
pub mod remote;
pub mod round;
mod run;
#[cfg(test)]
mod tests;

pub use run::*;

/// Loads a site, checking each task's module against the registry.
pub fn load_site(
    path: &std::path::Path,
) -> Result<bosun_model::site::Site, bosun_model::diag::LoadErrors> {
    bosun_model::site::Site::load(path, modules::NAMES)
}
