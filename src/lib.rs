//! promfleet: an agentless, Ansible-style deployer of Prometheus monitoring over SSH.
//!
//! Data flows one way: `inventory` → `settings` (flags, environment, project file, secrets:
//! resolved once) → `playbook` (plan) → `executor` → `transport` and
//! `modules` → `report`; `facts` are the read-only probes that modules and `status` share;
//! `status` reads hosts without changing them; `base` holds the small helpers all of them
//! share.
//!
//! Who prints: everything a command reports — progress, notices, warnings, results, the
//! recap, JSON — goes through the one `report::Printer` that `main` builds (its `Reporter`
//! and its masker); only `report::TerminalReporter`, `report::JsonReporter` and
//! `Printer::error` (a command's final error) write it out. Still printing on their own:
//! `main`, when the async runtime cannot start; the commands whose output is a file or a
//! listing rather than a report (`init`, `inventory`, `render`'s summary,
//! `completions`/`man`); and `--confirm`'s prompt, on /dev/tty.

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
