//! Read views of the Consul agent HTTP API test double: the two simulated nodes, health entries
//! (`/v1/health/service`), catalog and agent JSON shapes, and the Prometheus `__meta_consul_*`
//! labels derived from them exactly as Prometheus' `discovery/consul/consul.go` derives them.
//! Pure functions over a registry snapshot; no locking, no I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::DoubleOptions;
use super::registry::{CheckStatus, Registry, check_definition_json};

/// Version the double claims in `/v1/agent/self` and member tags.
pub(crate) const CLAIMED_VERSION: &str = "1.15.4";
/// Name of the simulated server node that carries the `consul` service.
pub(crate) const SERVER_NODE: &str = "consul-server-double";
const CLIENT_NODE_ID: &str = "00000000-0000-4000-8000-00000000c11e";
const SERVER_NODE_ID: &str = "00000000-0000-4000-8000-000000005e7e";

/// A catalog node.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub id: &'static str,
    pub name: String,
    pub address: String,
    pub datacenter: String,
    pub meta: BTreeMap<String, String>,
    pub tagged_addresses: BTreeMap<String, String>,
}

impl Node {
    fn new(id: &'static str, name: String, opts: &DoubleOptions) -> Self {
        let address = opts.node_address.to_string();
        let mut meta = BTreeMap::from([("consul-network-segment".to_owned(), String::new())]);
        meta.extend(opts.node_meta.clone());
        let family = if opts.node_address.is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        };
        let tagged_addresses = [
            "lan".to_owned(),
            format!("lan_{family}"),
            "wan".to_owned(),
            format!("wan_{family}"),
        ]
        .into_iter()
        .map(|tag| (tag, address.clone()))
        .collect();
        Node {
            id,
            name,
            address,
            datacenter: opts.datacenter.clone(),
            meta,
            tagged_addresses,
        }
    }

    /// The agent the double pretends to be (a client agent).
    pub(crate) fn client(opts: &DoubleOptions) -> Self {
        Node::new(CLIENT_NODE_ID, opts.node_name.clone(), opts)
    }

    /// The one server of the simulated cluster; it carries the `consul` service.
    pub(crate) fn server(opts: &DoubleOptions) -> Self {
        Node::new(SERVER_NODE_ID, SERVER_NODE.to_owned(), opts)
    }

    fn matches_meta(&self, wanted: &[(String, String)]) -> bool {
        wanted
            .iter()
            .all(|(k, v)| self.meta.get(k).is_some_and(|have| have == v))
    }

    fn to_json(&self) -> Value {
        json!({
            "ID": self.id,
            "Node": self.name,
            "Address": self.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": self.tagged_addresses,
            "Meta": self.meta,
            "CreateIndex": 1,
            "ModifyIndex": 1,
        })
    }
}

/// One check in a health entry.
#[derive(Clone, Debug)]
pub(crate) struct CheckView {
    pub id: String,
    pub name: String,
    pub status: CheckStatus,
    pub notes: String,
    pub output: String,
    pub kind: &'static str,
    pub definition: Value,
    pub service_id: String,
    pub service_name: String,
}

/// One service instance as the health and catalog endpoints see it.
#[derive(Clone, Debug)]
pub(crate) struct Instance {
    pub node: Node,
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
    pub enable_tag_override: bool,
    pub create_index: u64,
    pub modify_index: u64,
    pub checks: Vec<CheckView>,
}

fn serf_health() -> CheckView {
    CheckView {
        id: "serfHealth".to_owned(),
        name: "Serf Health Status".to_owned(),
        status: CheckStatus::Passing,
        notes: String::new(),
        output: "Agent alive and reachable".to_owned(),
        kind: "",
        definition: json!({}),
        service_id: String::new(),
        service_name: String::new(),
    }
}

/// Every service instance in the simulated catalog, the `consul` service first, then the
/// registered ones ordered by name and id.
pub(crate) fn instances(registry: &Registry, opts: &DoubleOptions) -> Vec<Instance> {
    let server = Node::server(opts);
    let client = Node::client(opts);
    let mut all = vec![Instance {
        node: server.clone(),
        id: "consul".to_owned(),
        name: "consul".to_owned(),
        tags: Vec::new(),
        address: String::new(),
        port: 8300,
        meta: BTreeMap::from([
            ("raft_version".to_owned(), "3".to_owned()),
            ("serf_protocol_current".to_owned(), "2".to_owned()),
            ("serf_protocol_max".to_owned(), "5".to_owned()),
            ("serf_protocol_min".to_owned(), "1".to_owned()),
            ("version".to_owned(), CLAIMED_VERSION.to_owned()),
        ]),
        enable_tag_override: false,
        create_index: 1,
        modify_index: 1,
        checks: vec![serf_health()],
    }];
    let mut registered: Vec<Instance> =
        registry
            .services
            .values()
            .map(|record| {
                let def = &record.def;
                let mut checks = vec![serf_health()];
                checks.extend(def.checks.iter().zip(&record.checks).map(|(check, state)| {
                    CheckView {
                        id: check.id.clone(),
                        name: check.name.clone(),
                        status: state.status,
                        notes: check.notes.clone(),
                        output: state.output.clone(),
                        kind: check.kind.type_name(),
                        definition: check_definition_json(check),
                        service_id: def.id.clone(),
                        service_name: def.name.clone(),
                    }
                }));
                Instance {
                    node: client.clone(),
                    id: def.id.clone(),
                    name: def.name.clone(),
                    tags: def.tags.clone(),
                    address: def.address.clone(),
                    port: def.port,
                    meta: def.meta.clone(),
                    enable_tag_override: def.enable_tag_override,
                    create_index: record.create_index,
                    modify_index: record.modify_index,
                    checks,
                }
            })
            .collect();
    registered.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    all.extend(registered);
    all
}

/// Filters shared by catalog and health queries.
#[derive(Default)]
pub(crate) struct InstanceFilter {
    pub node_meta: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub passing_only: bool,
}

impl InstanceFilter {
    pub(crate) fn keeps(&self, instance: &Instance) -> bool {
        instance.node.matches_meta(&self.node_meta)
            && self.tags.iter().all(|tag| instance.tags.contains(tag))
            && (!self.passing_only
                || instance
                    .checks
                    .iter()
                    .all(|check| check.status == CheckStatus::Passing))
    }
}

impl Instance {
    /// Consul's `HealthChecks.AggregatedStatus()`: critical beats warning beats passing, and
    /// no checks at all counts as passing.
    pub(crate) fn aggregated_status(&self) -> &'static str {
        let statuses = self.checks.iter().map(|check| check.status);
        if statuses.clone().any(|s| s == CheckStatus::Critical) {
            "critical"
        } else if statuses.clone().any(|s| s == CheckStatus::Warning) {
            "warning"
        } else {
            "passing"
        }
    }

    fn service_tagged_addresses(&self) -> Map<String, Value> {
        let mut tagged = Map::new();
        let family = match self.address.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => "ipv4",
            Ok(IpAddr::V6(_)) => "ipv6",
            Err(_) => return tagged,
        };
        for scope in ["lan", "wan"] {
            tagged.insert(
                format!("{scope}_{family}"),
                json!({"Address": self.address, "Port": self.port}),
            );
        }
        tagged
    }

    fn service_json(&self) -> Value {
        json!({
            "ID": self.id,
            "Service": self.name,
            "Tags": self.tags,
            "Address": self.address,
            "TaggedAddresses": self.service_tagged_addresses(),
            "Meta": self.meta,
            "Port": self.port,
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": self.enable_tag_override,
            "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
            "Connect": {},
            "PeerName": "",
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }

    /// One element of `GET /v1/health/service/<name>`.
    pub(crate) fn health_json(&self) -> Value {
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|check| {
                let service_tags = if check.service_id.is_empty() {
                    Vec::new()
                } else {
                    self.tags.clone()
                };
                json!({
                    "Node": self.node.name,
                    "CheckID": check.id,
                    "Name": check.name,
                    "Status": check.status.as_str(),
                    "Notes": check.notes,
                    "Output": check.output,
                    "ServiceID": check.service_id,
                    "ServiceName": check.service_name,
                    "ServiceTags": service_tags,
                    "Type": check.kind,
                    "Interval": check.definition.get("Interval").cloned().unwrap_or(json!("")),
                    "Timeout": check.definition.get("Timeout").cloned().unwrap_or(json!("")),
                    "ExposedPort": 0,
                    "Definition": check.definition,
                    "CreateIndex": self.create_index,
                    "ModifyIndex": self.modify_index,
                })
            })
            .collect();
        json!({
            "Node": self.node.to_json(),
            "Service": self.service_json(),
            "Checks": checks,
        })
    }

    /// One element of `GET /v1/catalog/service/<name>`.
    pub(crate) fn catalog_json(&self) -> Value {
        json!({
            "ID": self.node.id,
            "Node": self.node.name,
            "Address": self.node.address,
            "Datacenter": self.node.datacenter,
            "TaggedAddresses": self.node.tagged_addresses,
            "NodeMeta": self.node.meta,
            "ServiceID": self.id,
            "ServiceName": self.name,
            "ServiceTags": self.tags,
            "ServiceAddress": self.address,
            "ServiceTaggedAddresses": self.service_tagged_addresses(),
            "ServiceMeta": self.meta,
            "ServicePort": self.port,
            "ServiceWeights": {"Passing": 1, "Warning": 1},
            "ServiceEnableTagOverride": self.enable_tag_override,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }

    /// One value of `GET /v1/agent/services`.
    pub(crate) fn agent_json(&self) -> Value {
        json!({
            "ID": self.id,
            "Service": self.name,
            "Tags": self.tags,
            "Meta": self.meta,
            "Port": self.port,
            "Address": self.address,
            "TaggedAddresses": self.service_tagged_addresses(),
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": self.enable_tag_override,
            "Datacenter": self.node.datacenter,
        })
    }

    /// The target address and `__meta_consul_*` labels Prometheus' Consul SD builds for this
    /// instance (consul.go `watch` plus the group's `__meta_consul_service`/`__meta_consul_dc`).
    pub(crate) fn sd_target(&self, tag_separator: &str) -> (String, BTreeMap<String, String>) {
        // Service.Address wins over Node.Address: the service may be registered remotely.
        let host = if self.address.is_empty() {
            &self.node.address
        } else {
            &self.address
        };
        let target = join_host_port(host, self.port);
        let tags = format!(
            "{tag_separator}{}{tag_separator}",
            self.tags.join(tag_separator)
        );
        let mut labels = BTreeMap::from([
            (
                "__meta_consul_address".to_owned(),
                self.node.address.clone(),
            ),
            ("__meta_consul_dc".to_owned(), self.node.datacenter.clone()),
            (
                "__meta_consul_health".to_owned(),
                self.aggregated_status().to_owned(),
            ),
            ("__meta_consul_namespace".to_owned(), String::new()),
            ("__meta_consul_node".to_owned(), self.node.name.clone()),
            ("__meta_consul_partition".to_owned(), String::new()),
            ("__meta_consul_service".to_owned(), self.name.clone()),
            (
                "__meta_consul_service_address".to_owned(),
                self.address.clone(),
            ),
            ("__meta_consul_service_id".to_owned(), self.id.clone()),
            (
                "__meta_consul_service_port".to_owned(),
                self.port.to_string(),
            ),
            ("__meta_consul_tags".to_owned(), tags),
        ]);
        for (key, value) in &self.node.meta {
            labels.insert(
                format!("__meta_consul_metadata_{}", sanitize_label_name(key)),
                value.clone(),
            );
        }
        for (key, value) in &self.meta {
            labels.insert(
                format!(
                    "__meta_consul_service_metadata_{}",
                    sanitize_label_name(key)
                ),
                value.clone(),
            );
        }
        for (key, value) in &self.node.tagged_addresses {
            labels.insert(
                format!("__meta_consul_tagged_address_{}", sanitize_label_name(key)),
                value.clone(),
            );
        }
        (target, labels)
    }
}

/// Go's `net.JoinHostPort`: brackets around IPv6 literals.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Prometheus' `strutil.SanitizeLabelName`: every character outside `[a-zA-Z0-9_]` becomes `_`.
pub(crate) fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `GET /v1/catalog/services` body: service name → distinct tags.
pub(crate) fn services_map(instances: &[Instance]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for instance in instances {
        let tags = map.entry(instance.name.clone()).or_default();
        for tag in &instance.tags {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
    }
    map
}

/// `Member` object of `/v1/agent/members` and `/v1/agent/self`.
pub(crate) fn member_json(node: &Node, server: bool, wan: bool) -> Value {
    let mut tags = json!({
        "dc": node.datacenter,
        "id": node.id,
        "role": if server { "consul" } else { "node" },
        "segment": "",
        "vsn": "2",
        "vsn_min": "2",
        "vsn_max": "3",
        "build": format!("{CLAIMED_VERSION}:promfleet-test-double"),
    });
    if server && let Value::Object(map) = &mut tags {
        map.insert("port".into(), json!("8300"));
        map.insert("raft_vsn".into(), json!("3"));
        map.insert("bootstrap".into(), json!("1"));
    }
    let name = if wan {
        format!("{}.{}", node.name, node.datacenter)
    } else {
        node.name.clone()
    };
    json!({
        "Name": name,
        "Addr": node.address,
        "Port": if wan { 8302 } else { 8301 },
        "Tags": tags,
        "Status": 1,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_sanitized_like_prometheus() {
        assert_eq!(
            sanitize_label_name("consul-network-segment"),
            "consul_network_segment"
        );
        assert_eq!(sanitize_label_name("a.b/c"), "a_b_c");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("::1", 9100), "[::1]:9100");
        assert_eq!(join_host_port("10.0.0.1", 9100), "10.0.0.1:9100");
    }
}
