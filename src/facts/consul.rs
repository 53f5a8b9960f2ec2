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
    /// Held, as wanted, by exactly the agents registration designates (one, or two on two
    /// monitoring hosts; `agent` lists them, comma-separated).
    Ok { agent: String },
    /// Held by the designated agent(s), with other values (`field: held → wanted`) or too few
    /// copies.
    Differs { agent: String, what: Vec<String> },
    /// Held by an agent registration would not use too: Prometheus would see the target
    /// more than once.
    Duplicate { agents: Vec<String> },
    /// On none of the agents that answered (`unanswered` lists those that did not).
    Missing { unanswered: Vec<String> },
    /// No agent answered.
    Unknown { errors: Vec<String> },
}

/// Compare `def` with what the agents hold, without changing anything. The designated
/// copies are those of `ConsulClient::keepers` for the service's `hostname`.
pub async fn registration(consul: &ConsulClient, def: &ServiceDef) -> Registration {
    let mut held = Vec::new();
    let mut answered = Vec::new();
    let mut errors = Vec::new();
    for i in 0..consul.agents().len() {
        match consul.services(i).await {
            Ok(s) => {
                answered.push(consul.agents()[i].as_str());
                if let Some(x) = s.get(&def.id) {
                    held.push((consul.agents()[i].clone(), x.clone()));
                }
            }
            Err(e) => errors.push(format!("{}: {e}", consul.agents()[i])),
        }
    }
    if held.is_empty() {
        return if !consul.agents().is_empty() && errors.len() == consul.agents().len() {
            Registration::Unknown { errors }
        } else {
            Registration::Missing { unanswered: errors }
        };
    }
    let key = def
        .meta
        .get("hostname")
        .map(String::as_str)
        .unwrap_or_default();
    let holders: Vec<&str> = held.iter().map(|(a, _)| a.as_str()).collect();
    let keep = consul.keepers(key, &holders);
    // A lone copy outside the designated agents (e.g. another datacenter's) is still the
    // registration: only a second copy is a duplicate.
    if held.len() > 1 && keep.len() < held.len() {
        return Registration::Duplicate {
            agents: held.into_iter().map(|(a, _)| a).collect(),
        };
    }
    let agent = holders.join(", ");
    let mut what: Vec<String> = Vec::new();
    for (_, x) in &held {
        for d in x.differences(def) {
            if !what.contains(&d) {
                what.push(d);
            }
        }
    }
    // Copies the answering agents should hold and do not (an agent that did not answer may
    // hold its copy: it is not counted missing).
    let should = consul.keepers(key, &answered);
    let missing: Vec<&str> = should
        .iter()
        .filter(|a| !holders.contains(a))
        .copied()
        .collect();
    if held.len() < should.len() && !missing.is_empty() {
        what.push(format!(
            "copies: {} → {} (not on {})",
            held.len(),
            should.len(),
            missing.join(", ")
        ));
    }
    if what.is_empty() {
        Registration::Ok { agent }
    } else {
        Registration::Differs { agent, what }
    }
}
