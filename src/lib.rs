//! promfleet: an agentless, Ansible-style deployer of Prometheus monitoring over SSH.
//!
//! Data flows one way: `inventory` → `playbook` (plan) → `executor` → `transport` and
//! `modules` → `report`. The binary (`main.rs`, `cli/`) is the only place that prints.

pub mod base;
pub mod cli;
pub mod executor;
pub mod inventory;
pub mod modules;
pub mod playbook;
pub mod report;
pub mod status;
pub mod transport;
