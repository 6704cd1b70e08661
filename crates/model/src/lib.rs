//! What an operator writes, parsed and checked: inventories in every format bosun reads,
//! the site and its roles, templates with secret tracking, encrypted secrets, and the
//! diagnostics (file:line, hint) that bad input gets. Nothing here touches a host.

pub mod diag;
pub mod digest;
pub mod hops;
pub mod inventory;
pub mod lab_os;
pub mod redact;
pub mod secrets;
pub mod shell;
pub mod site;
pub mod taint;
pub mod template;
pub mod text;
pub mod yaml;
