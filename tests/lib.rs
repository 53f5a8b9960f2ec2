//! promfleet's scenario tests: one integration binary (fast to link), one module per area.
//! Tests that need root, sshd, Docker or Debian's Prometheus tools print SKIPPED when they are
//! absent; CI installs them all.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

mod ansible_inventory;
mod central;
mod cli;
mod completions;
mod consul_cluster;
mod consul_tls;
mod engine;
mod exporters;
mod faults;
mod hostile;
mod package;
mod preflight;
mod project;
mod prom_tls;
mod regression;
mod rollout;
mod site;
mod ssh_config;
mod ssh_known_hosts;
mod stacks;
mod status;
mod sudo;
mod topology;
mod transport;
