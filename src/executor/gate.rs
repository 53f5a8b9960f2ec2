//! The health gate after a stage (read-only): polls each Prometheus' `/api/v1/targets` and
//! `/api/v1/alerts` until every target the stage's hosts registered has been UP for N
//! consecutive scrapes and no alert fires for their instances, or the deadline passes.
//! A host passes once all of its targets have; its result is final.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::modules::Want;
use crate::modules::http::api_json;
use crate::playbook::HealthGate;
use crate::settings::Endpoint;
use crate::status::targets::PromTargets;

/// How often Prometheus is asked (its scrape interval is usually longer: a poll that sees no
/// new scrape just waits for the next one).
const POLL: Duration = Duration::from_secs(1);

/// One host's targets: (service, `ip:port`).
pub struct GateHost {
    pub host: String,
    pub targets: Vec<(String, String)>,
}

impl GateHost {
    /// The services the host's plan registers are what Prometheus discovers.
    pub fn from_plan(hp: &crate::playbook::HostPlan) -> GateHost {
        let targets = hp
            .steps
            .iter()
            .filter_map(|s| s.action.as_ref())
            .flat_map(|a| a.wants())
            .filter_map(|w| match w {
                Want::Service(def) => Some((
                    def.name.clone(),
                    crate::base::addr::host_port(&def.address, def.port),
                )),
                _ => None,
            })
            .collect();
        GateHost {
            host: hp.host.name.clone(),
            targets,
        }
    }
}

/// Host → `Ok(detail)` (passed) or `Err(why)` (still failing at the deadline); `None` when
/// cancelled.
pub async fn wait(
    prom: &Endpoint,
    proms: &[String],
    gate: &HealthGate,
    hosts: &[GateHost],
    cancel: &CancellationToken,
) -> Option<BTreeMap<String, Result<String, String>>> {
    let mut results: BTreeMap<String, Result<String, String>> = BTreeMap::new();
    if proms.is_empty() {
        for h in hosts {
            results.insert(
                h.host.clone(),
                Err("no Prometheus to ask (no monitoring host in the inventory; or set prometheus_url)".into()),
            );
        }
        return Some(results);
    }
    let deadline = Instant::now() + gate.timeout;
    // (prometheus, address) → (consecutive UP scrapes seen, last scrape seen)
    let mut streak: HashMap<(usize, String), (u32, String)> = HashMap::new();
    loop {
        let mut views = Vec::with_capacity(proms.len());
        for url in proms {
            let targets = PromTargets::fetch(prom, url).await;
            let alerts = if gate.no_alerts {
                firing(prom, &targets.url).await
            } else {
                Ok(Vec::new())
            };
            views.push((targets, alerts));
        }
        for h in hosts {
            if matches!(results.get(&h.host), Some(Ok(_))) {
                continue;
            }
            let mut why = Vec::new();
            for (pi, (prom, alerts)) in views.iter().enumerate() {
                let targets = match &prom.targets {
                    Ok(t) => t,
                    Err(e) => {
                        why.push(format!("Prometheus {} not answering: {e}", prom.url));
                        continue;
                    }
                };
                for (service, addr) in &h.targets {
                    let s = streak.entry((pi, addr.clone())).or_default();
                    match targets.get(addr) {
                        Some(t) if t.health == "up" => {
                            if t.last_scrape != s.1 {
                                s.0 += 1;
                                s.1 = t.last_scrape.clone();
                            }
                            if s.0 < gate.scrapes {
                                why.push(format!(
                                    "{service} {addr} up for {} of {} scrapes",
                                    s.0, gate.scrapes
                                ));
                            }
                        }
                        Some(t) => {
                            *s = (0, String::new());
                            let err = if t.last_error.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", t.last_error)
                            };
                            let health = if t.health.is_empty() {
                                "unknown"
                            } else {
                                &t.health
                            };
                            why.push(format!("{service} {addr} is {health}{err}"));
                        }
                        None => {
                            *s = (0, String::new());
                            why.push(format!("{service} {addr} is not a target of {}", prom.url));
                        }
                    }
                }
                match alerts {
                    Ok(alerts) => {
                        for (name, instance) in alerts {
                            let mine =
                                *instance == h.host || h.targets.iter().any(|(_, a)| a == instance);
                            if mine {
                                why.push(format!("alert {name} firing for {instance}"));
                            }
                        }
                    }
                    Err(e) => why.push(format!("alerts of {} unreadable: {e}", prom.url)),
                }
            }
            let verdict = if why.is_empty() {
                Ok(format!(
                    "{} target(s) up for {} scrapes{}",
                    h.targets.len(),
                    gate.scrapes,
                    if gate.no_alerts {
                        ", no alert firing"
                    } else {
                        ""
                    }
                ))
            } else {
                Err(why.join("; "))
            };
            results.insert(h.host.clone(), verdict);
        }
        if results.values().all(Result::is_ok) || Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))) => {}
            _ = cancel.cancelled() => return None,
        }
    }
    for r in results.values_mut() {
        if let Err(why) = r {
            *why = format!("not healthy after {}s: {why}", gate.timeout.as_secs());
        }
    }
    Some(results)
}

/// Firing alerts as (alertname, instance label).
async fn firing(prom: &Endpoint, base: &str) -> Result<Vec<(String, String)>, String> {
    let v: Value = api_json(
        prom.client()
            .get(format!("{base}/api/v1/alerts"))
            .timeout(Duration::from_secs(10)),
        "/api/v1/alerts",
        Some(prom),
    )
    .await?;
    Ok(v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing")
        .map(|a| {
            let l = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_string();
            (l("alertname"), l("instance"))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{host, step};
    use crate::modules::command::CommandAction;
    use crate::modules::consul::{Register, ServiceDef};
    use crate::modules::{Action, ModuleKind};
    use crate::playbook::HostPlan;

    fn register(name: &str, address: &str, port: u16) -> crate::playbook::Step {
        let def = ServiceDef {
            id: format!("{name}-{address}"),
            name: name.into(),
            address: address.into(),
            port,
            tags: Vec::new(),
            meta: Default::default(),
            checks: Vec::new(),
        };
        step(
            name,
            ModuleKind::ConsulRegister,
            Action::ConsulRegister(Register { def }),
        )
    }

    /// The gate waits for exactly the services the host's plan registers (asked through
    /// `Task::wants`), each at the address Prometheus scrapes; other steps add nothing.
    #[test]
    fn the_gate_waits_for_the_services_the_plan_registers() {
        let cmd = CommandAction {
            cmd: "true".into(),
            creates: None,
            chdir: None,
            changed_if_output: None,
        };
        let hp = HostPlan {
            host: host("web1"),
            steps: vec![
                register("node_exporter", "10.0.0.5", 9100),
                step("cmd", ModuleKind::Command, Action::Command(cmd)),
                register("cadvisor", "fd00::5", 8080),
            ],
            handlers: Vec::new(),
        };
        let g = GateHost::from_plan(&hp);
        assert_eq!(g.host, "web1");
        assert_eq!(
            g.targets,
            [
                ("node_exporter".to_string(), "10.0.0.5:9100".to_string()),
                ("cadvisor".to_string(), "[fd00::5]:8080".to_string()),
            ]
        );
    }
}
