//! The Consul agent HTTP API test double's state: registered services, their check states and
//! the single modify index. Also owns turning a registration JSON body into a service
//! definition the way Consul's decoder would (case-insensitive keys, validation messages).
//! It must not do I/O: the check runner and HTTP handlers sit on top of it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::duration::{format_go_duration, parse_go_duration};

/// Health of one check, as Consul names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    /// `passing`
    Passing,
    /// `warning`
    Warning,
    /// `critical` (Consul's initial status for a new check)
    Critical,
}

impl CheckStatus {
    /// The wire spelling Consul uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "passing" => Some(CheckStatus::Passing),
            "warning" => Some(CheckStatus::Warning),
            "critical" => Some(CheckStatus::Critical),
            _ => None,
        }
    }
}

/// What a check probes. Only the kinds the double can run (or hold, for TTL) are modelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CheckKind {
    Http { url: String, method: String },
    Tcp { addr: String },
    Ttl { ttl: Duration },
}

impl CheckKind {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Ttl { .. } => "ttl",
        }
    }
}

/// One check as registered (its definition; the live status lives in [`CheckState`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckDef {
    pub id: String,
    pub name: String,
    pub kind: CheckKind,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub initial_status: CheckStatus,
    pub notes: String,
}

/// One service as registered. Equality decides whether a re-registration is a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceDef {
    pub id: String,
    pub name: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub enable_tag_override: bool,
    pub checks: Vec<CheckDef>,
}

#[derive(Clone, Debug)]
pub(crate) struct CheckState {
    pub status: CheckStatus,
    pub output: String,
}

/// A registered service with its live check states and the runner tasks probing it.
pub(crate) struct ServiceRecord {
    pub def: ServiceDef,
    pub checks: Vec<CheckState>,
    pub create_index: u64,
    pub modify_index: u64,
    /// Distinguishes this registration from an earlier one with the same id, so a probe that
    /// finishes after a re-registration cannot write into the new record.
    pub generation: u64,
    pub runners: Vec<AbortHandle>,
}

impl Drop for ServiceRecord {
    // Replacing or removing a record is exactly when its probes must stop.
    fn drop(&mut self) {
        for runner in &self.runners {
            runner.abort();
        }
    }
}

/// Result of a registration attempt.
pub(crate) enum Upsert {
    /// Same definition as already registered: nothing changed, index untouched.
    Unchanged,
    /// New or changed registration with this generation.
    Changed { generation: u64 },
}

/// All mutable catalog state of the double, behind one lock.
pub(crate) struct Registry {
    pub services: BTreeMap<String, ServiceRecord>,
    index: u64,
    next_generation: u64,
    index_tx: watch::Sender<u64>,
}

impl Registry {
    pub(crate) fn new(index_tx: watch::Sender<u64>) -> Self {
        let index = *index_tx.borrow();
        Registry {
            services: BTreeMap::new(),
            index,
            next_generation: 1,
            index_tx,
        }
    }

    pub(crate) fn index(&self) -> u64 {
        self.index
    }

    fn bump(&mut self) -> u64 {
        self.index += 1;
        self.index_tx.send_replace(self.index);
        self.index
    }

    pub(crate) fn upsert(&mut self, def: ServiceDef) -> Upsert {
        let previous = self.services.get(&def.id);
        if previous.is_some_and(|record| record.def == def) {
            return Upsert::Unchanged;
        }
        // Consul keeps the status of a check that is re-registered unchanged; a new or changed
        // check starts from its initial status.
        let checks = def
            .checks
            .iter()
            .map(|check| {
                previous
                    .and_then(|record| {
                        record
                            .def
                            .checks
                            .iter()
                            .zip(&record.checks)
                            .find(|(old, _)| *old == check)
                            .map(|(_, state)| state.clone())
                    })
                    .unwrap_or_else(|| CheckState {
                        status: check.initial_status,
                        output: String::new(),
                    })
            })
            .collect();
        let create_index = previous.map(|record| record.create_index);
        let index = self.bump();
        let generation = self.next_generation;
        self.next_generation += 1;
        self.services.insert(
            def.id.clone(),
            ServiceRecord {
                def,
                checks,
                create_index: create_index.unwrap_or(index),
                modify_index: index,
                generation,
                runners: Vec::new(),
            },
        );
        Upsert::Changed { generation }
    }

    pub(crate) fn remove(&mut self, id: &str) -> bool {
        if self.services.remove(id).is_some() {
            self.bump();
            true
        } else {
            false
        }
    }

    /// Records a probe result. Only a status change moves the index: Consul syncs output-only
    /// changes lazily, so watchers are not woken for them.
    pub(crate) fn set_check_result(
        &mut self,
        service_id: &str,
        generation: u64,
        check_index: usize,
        status: CheckStatus,
        output: String,
    ) {
        let Some(record) = self.services.get_mut(service_id) else {
            return;
        };
        if record.generation != generation {
            return;
        }
        let Some(state) = record.checks.get_mut(check_index) else {
            return;
        };
        state.output = output;
        if state.status != status {
            state.status = status;
            let index = self.bump();
            if let Some(record) = self.services.get_mut(service_id) {
                record.modify_index = index;
            }
        }
    }

    /// Forces a check's status by check id; returns whether such a check exists.
    pub(crate) fn force_check_status(&mut self, check_id: &str, status: CheckStatus) -> bool {
        let found = self.services.iter_mut().find_map(|(id, record)| {
            let position = record.def.checks.iter().position(|c| c.id == check_id)?;
            let changed = record.checks[position].status != status;
            record.checks[position].status = status;
            record.checks[position].output = "status set by the test".to_owned();
            Some((id.clone(), changed))
        });
        match found {
            Some((id, true)) => {
                let index = self.bump();
                if let Some(record) = self.services.get_mut(&id) {
                    record.modify_index = index;
                }
                true
            }
            Some((_, false)) => true,
            None => false,
        }
    }

    /// Sets one service meta key; returns whether the service exists.
    pub(crate) fn set_meta(&mut self, id: &str, key: &str, value: &str) -> bool {
        let Some(record) = self.services.get_mut(id) else {
            return false;
        };
        if record.def.meta.get(key).map(String::as_str) == Some(value) {
            return true;
        }
        record.def.meta.insert(key.to_owned(), value.to_owned());
        let index = self.bump();
        if let Some(record) = self.services.get_mut(id) {
            record.modify_index = index;
        }
        true
    }
}

/// Looks a key up the way Consul's decoder does: case-insensitively, and with snake_case
/// aliases (`enable_tag_override`) treated like the CamelCase name. JSON `null` counts as absent.
fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let wanted = normalise_key(key);
    object
        .iter()
        .find(|(k, _)| normalise_key(k) == wanted)
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn normalise_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn string_field(object: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match field(object, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // Consul decodes with weak typing, so scalars become strings.
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(format!(
            "Request decode failed: {key}: expected a string, got {other}"
        )),
    }
}

fn duration_field(object: &Map<String, Value>, key: &str) -> Result<Option<Duration>, String> {
    match field(object, key) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => parse_go_duration(s)
            .map(Some)
            .ok_or_else(|| format!("Request decode failed: {key}: invalid duration {s:?}")),
        // A bare number is nanoseconds, as with Go's time.Duration.
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|nanos| Some(Duration::from_nanos(nanos)))
            .ok_or_else(|| format!("Request decode failed: {key}: invalid duration {n}")),
        Some(other) => Err(format!(
            "Request decode failed: {key}: invalid duration {other}"
        )),
    }
}

/// Turns a `PUT /v1/agent/service/register` body into a definition, or the 400 text Consul
/// would answer with.
pub(crate) fn parse_registration(body: &Value) -> Result<ServiceDef, String> {
    let Value::Object(object) = body else {
        return Err("Request decode failed: body is not a JSON object".to_owned());
    };
    let name = string_field(object, "Name")?.unwrap_or_default();
    if name.is_empty() {
        return Err("Missing service name".to_owned());
    }
    let id = string_field(object, "ID")?
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| name.clone());
    let address = string_field(object, "Address")?.unwrap_or_default();
    let port = match field(object, "Port") {
        None => 0,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("Request decode failed: Port: invalid port {n}"))?,
        Some(Value::String(s)) => s
            .parse::<u16>()
            .map_err(|_| format!("Request decode failed: Port: invalid port {s:?}"))?,
        Some(other) => return Err(format!("Request decode failed: Port: invalid port {other}")),
    };
    let tags = match field(object, "Tags") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "Request decode failed: Tags: not a string: {other}"
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("Request decode failed: Tags: not a list: {other}")),
    };
    let meta = match field(object, "Meta") {
        None => BTreeMap::new(),
        Some(Value::Object(entries)) => entries
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!(
                    "Request decode failed: Meta[{k}]: not a string: {other}"
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("Request decode failed: Meta: not a map: {other}")),
    };
    validate_meta(&meta).map_err(|reason| format!("Invalid Service Meta: {reason}"))?;
    let enable_tag_override = matches!(field(object, "EnableTagOverride"), Some(Value::Bool(true)));

    let mut raw_checks = Vec::new();
    if let Some(check) = field(object, "Check") {
        raw_checks.push(check);
    }
    match field(object, "Checks") {
        None => {}
        Some(Value::Array(items)) => raw_checks.extend(items.iter()),
        Some(other) => {
            return Err(format!(
                "Request decode failed: Checks: not a list: {other}"
            ));
        }
    }
    let multiple = raw_checks.len() > 1;
    let checks = raw_checks
        .into_iter()
        .enumerate()
        .map(|(position, raw)| parse_check(raw, &id, &name, multiple.then_some(position + 1)))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(ServiceDef {
        id,
        name,
        address,
        port,
        tags,
        meta,
        enable_tag_override,
        checks,
    })
}

fn parse_check(
    raw: &Value,
    service_id: &str,
    service_name: &str,
    ordinal: Option<usize>,
) -> Result<CheckDef, String> {
    let Value::Object(object) = raw else {
        return Err(format!(
            "Request decode failed: check is not an object: {raw}"
        ));
    };
    for unsupported in [
        "Args",
        "ScriptArgs",
        "Script",
        "GRPC",
        "DockerContainerID",
        "H2PING",
        "UDP",
        "OSService",
        "AliasService",
        "AliasNode",
    ] {
        if field(object, unsupported).is_some() {
            return Err(format!(
                "Invalid check: {unsupported} checks are not supported by the promfleet Consul \
                 test double (only HTTP, TCP and TTL)"
            ));
        }
    }
    let interval = duration_field(object, "Interval")?.filter(|d| !d.is_zero());
    let timeout = duration_field(object, "Timeout")?.filter(|d| !d.is_zero());
    let http = string_field(object, "HTTP")?.filter(|s| !s.is_empty());
    let tcp = string_field(object, "TCP")?.filter(|s| !s.is_empty());
    let ttl = duration_field(object, "TTL")?.filter(|d| !d.is_zero());
    let kind = match (http, tcp, ttl) {
        (Some(url), None, None) => CheckKind::Http {
            url,
            method: string_field(object, "Method")?
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "GET".to_owned()),
        },
        (None, Some(addr), None) => CheckKind::Tcp { addr },
        (None, None, Some(ttl)) => CheckKind::Ttl { ttl },
        (None, None, None) => {
            return Err("Invalid check: TTL must be > 0 for TTL checks".to_owned());
        }
        _ => return Err("Invalid check: only one check type may be given".to_owned()),
    };
    if !matches!(kind, CheckKind::Ttl { .. }) && interval.is_none() {
        return Err(
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks"
                .to_owned(),
        );
    }
    let initial_status = match string_field(object, "Status")? {
        None => CheckStatus::Critical,
        Some(s) if s.is_empty() => CheckStatus::Critical,
        Some(s) => {
            CheckStatus::parse(&s).ok_or_else(|| format!("Invalid check: unknown status {s:?}"))?
        }
    };
    let id = string_field(object, "CheckID")?
        .or(string_field(object, "ID")?)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| match ordinal {
            Some(n) => format!("service:{service_id}:{n}"),
            None => format!("service:{service_id}"),
        });
    let name = string_field(object, "Name")?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("Service '{service_name}' check"));
    Ok(CheckDef {
        id,
        name,
        kind,
        interval,
        timeout,
        initial_status,
        notes: string_field(object, "Notes")?.unwrap_or_default(),
    })
}

/// Consul's service meta rules (structs.ValidateServiceMetadata): a bad key here is a real
/// registration failure, so the double refuses it too.
fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > 64 {
        return Err("Node metadata cannot contain more than 64 key/value pairs".to_owned());
    }
    for (key, value) in meta {
        if key.is_empty() {
            return Err("Key cannot be blank".to_owned());
        }
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("Key contains invalid characters: {key:?}"));
        }
        if key.len() > 128 {
            return Err(format!("Key is too long (limit: 128 characters): {key:?}"));
        }
        if key.starts_with("consul-") {
            return Err(format!(
                "Key prefix 'consul-' is reserved for internal use: {key:?}"
            ));
        }
        if value.len() > 512 {
            return Err(format!(
                "Value is too long (limit: 512 characters): {key:?}"
            ));
        }
    }
    Ok(())
}

/// The check's `Definition`-ish JSON fields, for responses.
pub(crate) fn check_definition_json(check: &CheckDef) -> Value {
    let mut definition = Map::new();
    match &check.kind {
        CheckKind::Http { url, method } => {
            definition.insert("HTTP".into(), Value::String(url.clone()));
            definition.insert("Method".into(), Value::String(method.clone()));
        }
        CheckKind::Tcp { addr } => {
            definition.insert("TCP".into(), Value::String(addr.clone()));
        }
        CheckKind::Ttl { ttl } => {
            definition.insert("TTL".into(), Value::String(format_go_duration(*ttl)));
        }
    }
    if let Some(interval) = check.interval {
        definition.insert(
            "Interval".into(),
            Value::String(format_go_duration(interval)),
        );
    }
    if let Some(timeout) = check.timeout {
        definition.insert("Timeout".into(), Value::String(format_go_duration(timeout)));
    }
    Value::Object(definition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_case_insensitive_and_id_defaults_to_name() {
        let def = parse_registration(&json!({
            "name": "node-exporter", "address": "10.0.0.1", "port": 9100,
            "meta": {"hostname": "h1", "group": "IDE"},
            "checks": [{"http": "http://10.0.0.1:9100/metrics", "interval": "5s"}]
        }))
        .expect("valid body");
        assert_eq!(def.id, "node-exporter");
        assert_eq!(def.port, 9100);
        assert_eq!(def.checks[0].id, "service:node-exporter");
        assert_eq!(def.checks[0].interval, Some(Duration::from_secs(5)));
        assert_eq!(def.checks[0].initial_status, CheckStatus::Critical);
    }

    #[test]
    fn rejects_what_consul_rejects() {
        assert_eq!(
            parse_registration(&json!({"ID": "x"})).err().as_deref(),
            Some("Missing service name")
        );
        assert!(parse_registration(&json!({"Name": "x", "Meta": {"a b": "c"}})).is_err());
        assert!(parse_registration(&json!({"Name": "x", "Check": {"HTTP": "http://h/"}})).is_err());
    }

    #[test]
    fn several_checks_get_numbered_ids() {
        let def = parse_registration(&json!({
            "Name": "svc",
            "Checks": [{"TCP": "127.0.0.1:1", "Interval": "1s"}, {"TTL": "30s"}]
        }))
        .expect("valid body");
        assert_eq!(def.checks[0].id, "service:svc:1");
        assert_eq!(def.checks[1].id, "service:svc:2");
    }
}
