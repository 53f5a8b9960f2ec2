//! Shared fixtures of the scenario tests, one idea per file. Scenario modules import from here
//! only, never from one another; `use crate::support::*;` brings the common ones.
//!
//! - `run`: running the promfleet binary (`Run`: against a fleet, `render`; `fleet_run`,
//!   `Watched`) and reading its report (hosts, central rows)
//! - `scenario`: the fluent fleet scenario (`Scenario::fleet(3)…run(&[…])…check()`)
//! - `skip`: SKIPPED when root or a program is missing
//! - `files`: small file helpers (`write`, `secret_file`, `find`, `files_under`, `read`, `yaml`)
//! - `plan`: planning without a host (`plan_of`) and the files a plan writes (`planned_files`)
//! - `poll`: waiting until a deadline
//! - `consul`: the Consul test double on its own runtime (`Double`)
//! - `prometheus`: real Prometheus and Alertmanager started from a config (`Launch`, `Engine`);
//!   Prometheus alone or discovering a fleet through the double
//! - `rig`: the fault rig (`Rig`: a fleet, its doubles, a fast inventory)
//! - `ssh`: transport connect helpers and an sshd of the test's own (`ssh::*`, not in the glob:
//!   its names `fleet`, `target`, `opts` are too generic)
//! - `stacks`: validators of rendered stacks (promtool, docker-compose), the webhook sink
//! - `project`: a temp project and the init → exporters scenario shared with the package test

#![allow(dead_code, unused_imports)]

pub mod consul;
pub mod files;
pub mod plan;
pub mod poll;
pub mod project;
pub mod prometheus;
pub mod rig;
pub mod run;
pub mod scenario;
pub mod skip;
pub mod ssh;
pub mod stacks;

pub use consul::*;
pub use files::*;
pub use plan::*;
pub use poll::*;
pub use project::*;
pub use prometheus::*;
pub use rig::*;
pub use run::*;
pub use scenario::*;
pub use skip::*;
pub use ssh::{OwnSshd, stop_exporters};
pub use stacks::*;
