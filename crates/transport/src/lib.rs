//! How bosun reaches hosts: SSH with russh (host keys always verified), through jump
//! hosts when the inventory asks. [`ssh::Connection`] implements the engine's
//! [`bosun_engine::remote::Remote`]; [`ssh::SshConnector`] opens them for a run.

pub mod jump;
pub mod known_hosts;
pub mod ssh;
