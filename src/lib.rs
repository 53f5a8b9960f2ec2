//! promfleet: an agentless, Ansible-style deployer of Prometheus monitoring over SSH.
//!
//! Data flows one way: `inventory` → `settings` (flags, environment, project file, secrets:
//! resolved once) → `playbook` (plan) → `executor` → `transport` and
//! `modules` → `report`; `facts` are the read-only probes that modules and `status` share;
//! `status` reads hosts without changing them; `base` holds the small
//! helpers all of them share. Printing happens in `main.rs`, `cli/` and
//! `report::TerminalReporter`, plus one warning in `transport::known_hosts` (a malformed
//! known_hosts line).

pub mod base;
pub mod cli;
pub mod executor;
pub mod facts;
pub mod inventory;
pub mod modules;
pub mod playbook;
pub mod project;
pub mod report;
pub mod settings;
pub mod status;
pub mod transport;

#[cfg(test)]
mod fixtures;
