//! bosun: an agentless, push-based configuration orchestrator.
//!
//! The pipeline, one module per stage:
//! [`inventory`] → [`ssh`] (connect) → [`engine`] (probe → plan → apply, per host, batched)
//! → [`event`] (report; rendered by the CLI). What a task can declare lives in [`modules`];
//! roles and the site are data, loaded by [`site`].

pub mod diag;
pub mod diff;
pub mod engine;
pub mod event;
pub mod hops;
pub mod interrupt;
pub mod inventory;
pub mod jump;
pub mod known_hosts;
pub mod lab;
pub mod modules;
pub mod redact;
pub mod render;
pub mod secrets;
pub mod shell;
pub mod site;
pub mod ssh;
pub mod status;
pub mod taint;
pub mod template;
pub mod text;
pub mod yaml;
