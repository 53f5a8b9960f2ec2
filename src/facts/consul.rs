//! Consul registrations, as a fact of the inventory's Consul agents (HTTP, from the jump
//! host): where the agents hold a wanted service and whether it is as wanted. Read by the
//! `consul_register` module in `--check` and by `status`. Each agent's service list is asked
//! once per run and kept current by the client (`modules::consul::ConsulClient::services`,
//! the per-run cache of this fact), so N registrations cost one GET per agent.
//!
//! Owns: the comparison of a wanted registration with the agents' lists. Must not: register,
//! deregister, or print.

use crate::modules::consul::{ConsulClient, ServiceDef};

/// Where the agents hold a wanted registration (read-only comparison, for `status`).
#[derive(Debug, Clone, PartialEq)]
pub enum Registration {
    /// Held by exactly one agent, as wanted.
    Ok { agent: String },
    /// Held by one agent, with other values (`field: held → wanted`).
    Differs { agent: String, what: Vec<String> },
    /// Held by several agents: Prometheus would see the target more than once.
    Duplicate { agents: Vec<String> },
    /// On none of the agents that answered (`unanswered` lists those that did not).
    Missing { unanswered: Vec<String> },
    /// No agent answered.
    Unknown { errors: Vec<String> },
}

/// Compare `def` with what the agents hold, without changing anything.
pub async fn registration(consul: &ConsulClient, def: &ServiceDef) -> Registration {
    let mut held = Vec::new();
    let mut errors = Vec::new();
    for i in 0..consul.agents().len() {
        match consul.services(i).await {
            Ok(s) => {
                if let Some(x) = s.get(&def.id) {
                    held.push((consul.agents()[i].clone(), x.clone()));
                }
            }
            Err(e) => errors.push(format!("{}: {e}", consul.agents()[i])),
        }
    }
    match held.len() {
        0 if !consul.agents().is_empty() && errors.len() == consul.agents().len() => {
            Registration::Unknown { errors }
        }
        0 => Registration::Missing { unanswered: errors },
        1 => {
            let (agent, x) = held.remove(0);
            let what = x.differences(def);
            if what.is_empty() {
                Registration::Ok { agent }
            } else {
                Registration::Differs { agent, what }
            }
        }
        _ => Registration::Duplicate {
            agents: held.into_iter().map(|(a, _)| a).collect(),
        },
    }
}
