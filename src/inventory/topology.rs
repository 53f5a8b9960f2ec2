//! The monitoring topology an inventory names: which datacenter every host is in, which
//! monitoring hosts serve each datacenter, and whether that makes one stack (`single`), an HA
//! set of replicas (`ha`) or several datacenters under a global tier (`multi_dc`).
//!
//! Owns only this derivation; templates read it through the `topology` template variable and
//! `host.datacenter` / `monitoring_hosts[].datacenter` (see playbook/template.rs). The engines'
//! own clustering (Alertmanager gossip, Consul WAN) is configured by the templates from it.

use serde_json::{Value, json};

use super::{Host, Inventory};
use crate::modules::consul::{AgentSite, Placement};

/// Datacenter of hosts that name none and an inventory without `consul.datacenter`.
pub const DEFAULT_DATACENTER: &str = "dc1";

/// What the monitoring hosts of an inventory add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyKind {
    /// One monitoring host (the seed's layout).
    Single,
    /// One datacenter, two or more monitoring hosts: a replica of every stack on each.
    Ha,
    /// Two or more datacenters, each with its own monitoring host(s), and a global tier in the
    /// primary datacenter.
    MultiDc,
}

impl TopologyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TopologyKind::Single => "single",
            TopologyKind::Ha => "ha",
            TopologyKind::MultiDc => "multi_dc",
        }
    }
}

/// One datacenter: its name, the monitoring hosts serving it, its fleet groups and the
/// Consul agents serving it (`Placement::serving`: the agents on its monitoring hosts).
#[derive(Debug, Clone, PartialEq)]
pub struct Datacenter<'a> {
    pub name: String,
    pub monitoring: Vec<&'a Host>,
    pub groups: Vec<String>,
    pub agents: Vec<String>,
}

/// The topology derived from an inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology<'a> {
    pub kind: TopologyKind,
    /// Datacenters in order of first appearance (monitoring hosts first).
    pub datacenters: Vec<Datacenter<'a>>,
    /// Where the Consul ACL/WAN primary and the global Prometheus tier live: the var
    /// `primary_datacenter`, else the first datacenter.
    pub primary: String,
}

impl Inventory {
    /// The datacenter of `host`: its `datacenter` variable (host > group > global), else the
    /// inventory's `consul.datacenter`, else `dc1`.
    pub fn datacenter_of(&self, host: &Host) -> String {
        self.host_vars(host)
            .get("datacenter")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| self.consul.datacenter.clone())
            .unwrap_or_else(|| DEFAULT_DATACENTER.to_owned())
    }

    /// The monitoring topology: datacenters with their monitoring hosts and groups.
    pub fn topology(&self) -> Topology<'_> {
        let mut dcs: Vec<Datacenter<'_>> = Vec::new();
        let slot = |name: String, dcs: &mut Vec<Datacenter<'_>>| -> usize {
            if let Some(i) = dcs.iter().position(|d| d.name == name) {
                return i;
            }
            dcs.push(Datacenter {
                name,
                monitoring: Vec::new(),
                groups: Vec::new(),
                agents: Vec::new(),
            });
            dcs.len() - 1
        };
        for h in self.monitoring() {
            let i = slot(self.datacenter_of(h), &mut dcs);
            dcs[i].monitoring.push(h);
        }
        for h in self.fleet() {
            let i = slot(self.datacenter_of(h), &mut dcs);
            if !dcs[i].groups.contains(&h.group) {
                dcs[i].groups.push(h.group.clone());
            }
        }
        let placement = Placement {
            sites: self.agent_sites(&self.consul.agents),
            host_datacenter: Default::default(),
        };
        for d in &mut dcs {
            d.agents = placement
                .serving(&d.name)
                .into_iter()
                .map(|i| self.consul.agents[i].clone())
                .collect();
        }
        let primary = self
            .vars
            .get("primary_datacenter")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| dcs.first().map(|d| d.name.clone()))
            .unwrap_or_else(|| DEFAULT_DATACENTER.to_owned());
        let kind = if dcs.len() > 1 {
            TopologyKind::MultiDc
        } else if self.monitoring().count() > 1 {
            TopologyKind::Ha
        } else {
            TopologyKind::Single
        };
        Topology {
            kind,
            datacenters: dcs,
            primary,
        }
    }
}

impl Inventory {
    /// Where each of `agents` (URLs) runs, for placing registrations (README "Topology",
    /// "Exporter registrations when a monitoring host is lost"): an agent runs on the
    /// monitoring host whose ip (or name) its URL names and belongs to that host's datacenter;
    /// an agent elsewhere has no known host or datacenter. With several datacenters, every
    /// host is mapped to its datacenter, whose agents alone it registers on.
    pub fn consul_placement(&self, agents: &[String]) -> Placement {
        let sites = self.agent_sites(agents);
        let several = {
            let mut dcs: Vec<String> = self
                .monitoring()
                .chain(self.fleet())
                .map(|h| self.datacenter_of(h))
                .collect();
            dcs.sort();
            dcs.dedup();
            dcs.len() > 1
        };
        let host_datacenter = if several {
            self.fleet()
                .chain(self.monitoring())
                .map(|h| (h.name.clone(), self.datacenter_of(h)))
                .collect()
        } else {
            Default::default()
        };
        Placement {
            sites,
            host_datacenter,
        }
    }

    /// Where each of `agents` runs: the monitoring host its URL names (by ip or name) and
    /// that host's datacenter; unknown for an agent on no monitoring host.
    pub fn agent_sites(&self, agents: &[String]) -> Vec<AgentSite> {
        agents
            .iter()
            .map(|a| {
                let Ok(url) = super::AgentUrl::parse(a) else {
                    return AgentSite::default();
                };
                let name = url.host.trim_start_matches('[').trim_end_matches(']');
                let ip = name.parse::<std::net::IpAddr>().ok();
                match self
                    .monitoring()
                    .find(|m| Some(m.ip) == ip || m.name == name)
                {
                    Some(m) => AgentSite {
                        host: Some(m.name.clone()),
                        datacenter: Some(self.datacenter_of(m)),
                    },
                    None => AgentSite::default(),
                }
            })
            .collect()
    }
}

impl Topology<'_> {
    /// The `topology` template variable.
    pub fn to_json(&self) -> Value {
        let dcs: Vec<Value> = self
            .datacenters
            .iter()
            .map(|d| {
                let mon: Vec<Value> = d
                    .monitoring
                    .iter()
                    .map(|h| json!({"name": h.name, "ip": h.ip.to_string()}))
                    .collect();
                json!({"name": d.name, "monitoring": mon, "groups": d.groups, "agents": d.agents})
            })
            .collect();
        json!({
            "kind": self.kind.as_str(),
            "primary_datacenter": self.primary,
            "datacenters": dcs,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn inv(text: &str) -> Inventory {
        crate::inventory::parse_str(text, Path::new("t.yml")).unwrap()
    }

    #[test]
    fn one_monitoring_host_is_single_two_are_ha() {
        let single = inv("groups: {IDE: {hosts: [{name: a, ip: 10.0.0.1}]}}\n\
             monitoring: {hosts: [{name: m1, ip: 10.0.0.9}]}\n");
        let t = single.topology();
        assert_eq!(t.kind, TopologyKind::Single);
        assert_eq!(t.primary, "dc1");
        let ha = inv("groups: {IDE: {hosts: [{name: a, ip: 10.0.0.1}]}}\n\
             monitoring: {hosts: [{name: m1, ip: 10.0.0.9}, {name: m2, ip: 10.0.0.10}]}\n");
        let t = ha.topology();
        assert_eq!(t.kind, TopologyKind::Ha);
        assert_eq!(t.datacenters.len(), 1);
        assert_eq!(t.datacenters[0].monitoring.len(), 2);
    }

    #[test]
    fn datacenters_come_from_group_and_host_vars_and_name_a_primary() {
        let i = inv(r#"
consul: {agents: [http://10.0.0.9:8500], datacenter: east}
vars: {primary_datacenter: west}
groups:
  IDE: {hosts: [{name: a, ip: 10.0.0.1}]}
  Stage: {vars: {datacenter: west}, hosts: [{name: b, ip: 10.1.0.1}]}
monitoring:
  hosts:
    - {name: m1, ip: 10.0.0.9}
    - {name: m2, ip: 10.1.0.9, vars: {datacenter: west}}
"#);
        let t = i.topology();
        assert_eq!(t.kind, TopologyKind::MultiDc);
        let names: Vec<(&str, Vec<&str>, Vec<&str>)> = t
            .datacenters
            .iter()
            .map(|d| {
                (
                    d.name.as_str(),
                    d.monitoring.iter().map(|h| h.name.as_str()).collect(),
                    d.groups.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("east", vec!["m1"], vec!["IDE"]),
                ("west", vec!["m2"], vec!["Stage"])
            ]
        );
        assert_eq!(t.primary, "west");
        assert_eq!(t.to_json()["kind"], "multi_dc");
    }

    #[test]
    fn agents_belong_to_the_monitoring_host_their_url_names_and_its_datacenter() {
        let i = inv(r#"
consul:
  agents: [http://10.0.0.9:8500, "http://mon-2:8501", http://10.1.0.9:8500, http://consul.example:8500]
groups:
  IDE: {hosts: [{name: a, ip: 10.0.0.1}]}
  Stage: {vars: {datacenter: west}, hosts: [{name: b, ip: 10.1.0.1}]}
monitoring:
  hosts:
    - {name: m1, ip: 10.0.0.9}
    - {name: mon-2, ip: 10.0.0.10}
    - {name: m3, ip: 10.1.0.9, vars: {datacenter: west}}
"#);
        let p = i.consul_placement(&i.consul.agents);
        let sites: Vec<(Option<&str>, Option<&str>)> = p
            .sites
            .iter()
            .map(|s| (s.host.as_deref(), s.datacenter.as_deref()))
            .collect();
        assert_eq!(
            sites,
            [
                (Some("m1"), Some("dc1")),
                (Some("mon-2"), Some("dc1")),
                (Some("m3"), Some("west")),
                (None, None),
            ]
        );
        // Several datacenters: every host is mapped to its datacenter.
        assert_eq!(p.host_datacenter.get("b").map(String::as_str), Some("west"));
        assert_eq!(p.host_datacenter.get("a").map(String::as_str), Some("dc1"));

        // One datacenter: no per-datacenter restriction.
        let ha = inv(
            "consul: {agents: [http://10.0.0.9:8500, http://10.0.0.10:8501]}\n\
             groups: {IDE: {hosts: [{name: a, ip: 10.0.0.1}]}}\n\
             monitoring: {hosts: [{name: m1, ip: 10.0.0.9}, {name: m2, ip: 10.0.0.10}]}\n",
        );
        let p = ha.consul_placement(&ha.consul.agents);
        assert!(p.host_datacenter.is_empty());
        assert_eq!(p.sites[1].host.as_deref(), Some("m2"));
    }
}
