//! The engine through [`crate::run`] against the scripted fake transport ([`crate::fake`]):
//! rounds, re-probes, handlers, failures, serial batches, unreachable hosts, deadlines and
//! interrupts, without an sshd. Each fake host runs its scripts with the local `/bin/sh` in
//! its own temporary directory, which the inventory gives the host as `root`.

mod harness;

mod blocks;
mod compose;
mod connection;
mod control;
mod deadlines;
mod facts_and_files;
mod failures;
mod handlers;
mod identity;
mod interrupt;
mod reboot;
mod rounds;
mod serial;
