//! Fixtures shared by the unit tests of the engine (executor, planner): a host and a step
//! built in code, without an inventory or a playbook file.

use crate::inventory::{Host, SourcePos};
use crate::modules::{Action, ModuleKind};
use crate::playbook::Step;

/// A fleet host of group IDE on 127.0.0.1.
pub fn host(name: &str) -> Host {
    Host {
        name: name.into(),
        ip: std::net::IpAddr::from([127, 0, 0, 1]),
        group: "IDE".into(),
        groups: vec!["IDE".into()],
        ssh: Default::default(),
        vars: Default::default(),
        pos: SourcePos::default(),
    }
}

/// A planned step running `action`.
pub fn step(name: &str, module: ModuleKind, action: Action) -> Step {
    Step {
        name: name.into(),
        module,
        pos: SourcePos::default(),
        action: Some(action),
        notify: Vec::new(),
    }
}
