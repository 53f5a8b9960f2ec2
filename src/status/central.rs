//! Central services, asked read-only from the jump host: every Consul agent of the inventory
//! (leader, alive members) and, on each monitoring host, Prometheus (healthy, last config
//! reload), Alertmanager (healthy, cluster and config; in HA the cluster must hold every
//! replica of the datacenter), Grafana, the DingTalk webhook and Karma. Several datacenters:
//! each Consul agent row names its datacenter (that of the monitoring host its URL names) and
//! that datacenter's leader, and reports the WAN members — drift when a datacenter of the
//! inventory is missing from the WAN pool.
//! A service that does not answer is down.
//!
//! URLs: the var `<service>_url` (e.g. `-e prometheus_url=http://…`) when set, else
//! `http://<monitoring ip>:<service>_port` from the host's variables (templates/defaults.yml).

use std::time::Duration;

use serde_json::Value;

use std::sync::Arc;

use super::{CentralRow, Check, State};
use crate::executor::Scheduler;
use crate::inventory::{Host, Inventory, Vars};
use crate::modules::consul::ConsulClient;
use crate::modules::http::{API_BODY_CAP, read_capped};
use crate::modules::metrics_check::short_reqwest;
use crate::settings::{Endpoint, Endpoints};

/// The central services of a monitoring host: (name, port variable, health path).
pub const SERVICES: &[(&str, &str)] = &[
    ("prometheus", "prometheus_port"),
    ("alertmanager", "alertmanager_port"),
    ("grafana", "grafana_port"),
    ("dingtalk", "dingtalk_port"),
    ("karma", "karma_port"),
];

/// A monitoring host's variables: built-in defaults < inventory (with `-e`).
pub fn host_vars(inv: &Inventory, defaults: &Vars, host: &Host) -> Vars {
    let mut v = defaults.clone();
    v.extend(inv.host_vars(host));
    v
}

fn var_str(vars: &Vars, k: &str) -> Option<String> {
    match vars.get(k)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Base URL of `service` on a monitoring host (`<service>_url`, else `<service>_scheme`
/// (the settings write Prometheus' and Alertmanager's; default http), ip and
/// `<service>_port`).
pub fn service_url(vars: &Vars, host: &Host, service: &str, port_var: &str) -> Option<String> {
    if let Some(u) = var_str(vars, &format!("{service}_url")) {
        return Some(u.trim_end_matches('/').to_string());
    }
    let port = var_str(vars, port_var)?;
    let scheme = var_str(vars, &format!("{service}_scheme")).unwrap_or_else(|| "http".into());
    Some(format!(
        "{scheme}://{}",
        crate::base::addr::host_port(&host.ip.to_string(), port)
    ))
}

/// Every central row: Consul agents first, then each monitoring host's services. Each
/// service is one item of `sched` (its forks; after Ctrl-C no new one is asked and those
/// not asked are left out of the rows). `endpoints`: Prometheus' and Alertmanager's clients
/// (TLS, basic auth); `http` the others'.
pub async fn gather(
    inv: &Inventory,
    defaults: &Vars,
    http: &reqwest::Client,
    consul_client: &Arc<ConsulClient>,
    endpoints: &Endpoints,
    sched: &Scheduler,
) -> Vec<CentralRow> {
    // HA (inventory/topology.rs): every Alertmanager of a datacenter should see all of them;
    // each job carries how many Alertmanagers its datacenter has (1 for other services).
    let topology = inv.topology();
    let wan = topology.kind == crate::inventory::TopologyKind::MultiDc;
    let replicas = |h: &Host| {
        topology
            .datacenters
            .iter()
            .find(|d| d.monitoring.iter().any(|m| m.name == h.name))
            .map_or(1, |d| d.monitoring.len())
    };
    let datacenters: Vec<String> = topology
        .datacenters
        .iter()
        .map(|d| d.name.clone())
        .collect();
    let sites = inv.agent_sites(&inv.consul.agents);
    let mut jobs = Vec::new();
    for a in &inv.consul.agents {
        let url = a.trim_end_matches('/').to_string();
        jobs.push(("consul".to_string(), url.clone(), url, 1));
    }
    let sites = &sites;
    let datacenters = &datacenters;
    for h in inv.monitoring() {
        let vars = host_vars(inv, defaults, h);
        for (svc, port_var) in SERVICES {
            if let Some(url) = service_url(&vars, h, svc, port_var) {
                jobs.push((svc.to_string(), h.name.clone(), url, replicas(h)));
            }
        }
    }
    // The datacenter of each agent's row (agents come first in `jobs`), owned: each row is
    // one scheduler item.
    let site_dcs: Vec<Option<String>> = (0..jobs.len())
        .map(|i| sites.get(i).and_then(|s| s.datacenter.clone()))
        .collect();
    let items = jobs
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, job)| (format!("{} {}", job.0, job.1), (i, job)))
        .collect();
    let (http, consul_client) = (http.clone(), consul_client.clone());
    let endpoints = endpoints.clone();
    let datacenters = Arc::new(datacenters.clone());
    let site_dcs = Arc::new(site_dcs);
    let s = sched.clone();
    let checks = sched
        .run(
            items,
            move |(i, (svc, _, url, n)): (usize, (String, String, String, usize))| {
                let (http, consul_client, s) = (http.clone(), consul_client.clone(), s.clone());
                let endpoints = endpoints.clone();
                let datacenters = datacenters.clone();
                let site_dc = site_dcs.get(i).cloned().flatten();
                async move {
                    let check = async {
                        match svc.as_str() {
                            // Consul's own client: its TLS settings and token.
                            "consul" => {
                                let wan = wan.then(|| Wan {
                                    datacenter: site_dc.as_deref(),
                                    expected: &datacenters,
                                });
                                consul(consul_client.http(), &url, consul_client.token(), wan).await
                            }
                            "prometheus" => {
                                let ep = &endpoints.prometheus;
                                explained(ep, &url, prometheus(ep.client(), &url).await)
                            }
                            "alertmanager" => {
                                let ep = &endpoints.alertmanager;
                                explained(ep, &url, alertmanager(ep.client(), &url, n).await)
                            }
                            "grafana" => grafana(&http, &url).await,
                            "dingtalk" => healthy(&http, &format!("{url}/-/healthy")).await,
                            _ => healthy(&http, &format!("{url}/health")).await,
                        }
                    };
                    // A second Ctrl-C abandons the services still being asked.
                    s.or_abort(check).await
                }
            },
        )
        .in_order()
        .await;
    jobs.into_iter()
        .zip(checks)
        .filter_map(|((service, at, url, _), check)| {
            Some(CentralRow {
                service,
                at,
                url,
                check: check.flatten()?,
            })
        })
        .collect()
}

async fn get(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let mut r = http.get(url).timeout(Duration::from_secs(5));
    if let Some(t) = token {
        r = r.header("X-Consul-Token", t);
    }
    let resp = r.send().await.map_err(|e| short_reqwest(&e))?;
    let code = resp.status().as_u16();
    let body = read_capped(resp, API_BODY_CAP).await?;
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// GET that must answer 2xx; the body on success.
async fn get_ok(http: &reqwest::Client, url: &str, token: Option<&str>) -> Result<String, String> {
    let (code, body) = get(http, url, token).await?;
    if (200..300).contains(&code) {
        Ok(body)
    } else {
        let short: String = body.trim().chars().take(120).collect();
        Err(format!("HTTP {code} {short}"))
    }
}

/// A service that refused the credentials (its first request, `/-/healthy`, answered 401):
/// the detail names the settings to fix.
fn explained(ep: &Endpoint, base: &str, check: Check) -> Check {
    if check.state == State::Down && check.detail.starts_with(&format!("{base}: HTTP 401")) {
        return Check::new(State::Down, "unauthorized", ep.unauthorized(base));
    }
    check
}

fn down(url: &str, e: String) -> Check {
    Check::new(State::Down, "down", format!("{url}: {e}"))
}

async fn healthy(http: &reqwest::Client, url: &str) -> Check {
    match get_ok(http, url, None).await {
        Ok(_) => Check::new(State::Ok, "ok", format!("{url} answered")),
        Err(e) => down(url, e),
    }
}

/// Several datacenters: the agent's own (None: its URL names no monitoring host) and every
/// datacenter the inventory names, which the WAN pool must hold.
struct Wan<'a> {
    datacenter: Option<&'a str>,
    expected: &'a [String],
}

/// `wan`: several datacenters, so the row names the agent's datacenter and reports the WAN
/// members, with the inventory's datacenters missing from them.
async fn consul(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    wan: Option<Wan<'_>>,
) -> Check {
    let leader = match get_ok(http, &format!("{base}/v1/status/leader"), token).await {
        Ok(b) => serde_json::from_str::<String>(&b).unwrap_or_default(),
        Err(e) => return down(base, e),
    };
    if leader.is_empty() {
        return Check::new(
            State::Down,
            "no leader",
            format!("{base}: no leader elected"),
        );
    }
    let members: Vec<Value> = match get_ok(http, &format!("{base}/v1/agent/members"), token).await {
        Ok(b) => serde_json::from_str(&b).unwrap_or_default(),
        Err(e) => return down(base, format!("members: {e}")),
    };
    let alive = members.iter().filter(|m| m["Status"] == 1).count();
    let servers = members
        .iter()
        .filter(|m| m["Status"] == 1 && m["Tags"]["role"] == "consul")
        .count();
    let mut detail = format!(
        "leader {leader}; {alive} of {} members alive ({servers} servers)",
        members.len()
    );
    let Some(wan) = wan else {
        return Check::new(State::Ok, format!("leader, {alive} alive"), detail);
    };
    let dc = wan.datacenter.unwrap_or("datacenter unknown");
    detail = format!("{dc}: {detail}");
    let mut summary = format!("{dc} leader, {alive} alive");
    let mut state = State::Ok;
    match get_ok(http, &format!("{base}/v1/agent/members?wan=1"), token).await {
        Ok(b) => {
            let members: Vec<Value> = serde_json::from_str(&b).unwrap_or_default();
            let alive = members.iter().filter(|m| m["Status"] == 1).count();
            let dcs: std::collections::BTreeSet<&str> = members
                .iter()
                .filter(|m| m["Status"] == 1)
                .filter_map(|m| m["Tags"]["dc"].as_str())
                .collect();
            let missing: Vec<&str> = wan
                .expected
                .iter()
                .map(String::as_str)
                .filter(|d| !dcs.contains(d))
                .collect();
            let dcs: Vec<&str> = dcs.into_iter().collect();
            detail.push_str(&format!(
                "; WAN: {alive} of {} alive, datacenters {}",
                members.len(),
                dcs.join(", ")
            ));
            if missing.is_empty() {
                summary.push_str(&format!(", WAN {}", dcs.join("+")));
            } else {
                state = State::Drift;
                summary.push_str(&format!(", WAN lacks {}", missing.join(", ")));
                detail.push_str(&format!(
                    "; no alive server of {} in the WAN pool (not joined, or down)",
                    missing.join(", ")
                ));
            }
        }
        Err(e) => {
            state = State::Drift;
            summary.push_str(", WAN unknown");
            detail.push_str(&format!("; WAN members: {e}"));
        }
    }
    Check::new(state, summary, detail)
}

async fn prometheus(http: &reqwest::Client, base: &str) -> Check {
    if let Err(e) = get_ok(http, &format!("{base}/-/healthy"), None).await {
        return down(base, e);
    }
    // The query API needs Prometheus to scrape itself; its own /metrics always has the value.
    let q = format!("{base}/api/v1/query?query=prometheus_config_last_reload_successful");
    let mut value = get_ok(http, &q, None)
        .await
        .ok()
        .and_then(|b| serde_json::from_str::<Value>(&b).ok())
        .and_then(|v| {
            v["data"]["result"][0]["value"][1]
                .as_str()
                .map(String::from)
        });
    if value.is_none()
        && let Ok(m) = get_ok(http, &format!("{base}/metrics"), None).await
    {
        value = m.lines().find_map(|l| {
            l.strip_prefix("prometheus_config_last_reload_successful ")
                .map(|v| v.trim().to_string())
        });
    }
    match value.as_deref() {
        Some("1") => Check::new(State::Ok, "ok", format!("{base}: healthy, config reloaded")),
        Some(v) => Check::new(
            State::Drift,
            "reload failed",
            format!(
                "{base}: healthy, but the last config reload failed (prometheus_config_last_reload_successful = {v}): it runs an older config"
            ),
        ),
        None => Check::new(
            State::Ok,
            "ok",
            format!("{base}: healthy (config reload state not readable)"),
        ),
    }
}

/// `expected`: Alertmanagers of this host's datacenter (its cluster when more than one).
async fn alertmanager(http: &reqwest::Client, base: &str, expected: usize) -> Check {
    if let Err(e) = get_ok(http, &format!("{base}/-/healthy"), None).await {
        return down(base, e);
    }
    let status: Value = match get_ok(http, &format!("{base}/api/v2/status"), None).await {
        Ok(b) => serde_json::from_str(&b).unwrap_or_default(),
        Err(e) => return down(base, format!("/api/v2/status: {e}")),
    };
    let cluster = status["cluster"]["status"].as_str().unwrap_or("unknown");
    let peers = status["cluster"]["peers"].as_array().map_or(0, Vec::len);
    let config = status["config"]["original"].as_str().unwrap_or_default();
    if config.trim().is_empty() {
        return Check::new(
            State::Drift,
            "no config",
            format!("{base}: no config loaded"),
        );
    }
    let receivers = config
        .lines()
        .filter(|l| l.trim_start().starts_with("- name:"))
        .count();
    let detail = format!(
        "{base}: cluster {cluster}, {peers} peer(s), config loaded ({receivers} receivers)"
    );
    if expected < 2 {
        return Check::new(State::Ok, format!("cluster {cluster}"), detail);
    }
    // HA: a member that sees fewer peers than the datacenter has replicas is split off (or a
    // replica is down), and its notifications may be duplicated.
    let state = if peers >= expected && cluster == "ready" {
        State::Ok
    } else {
        State::Drift
    };
    Check::new(
        state,
        format!("cluster {cluster} {peers}/{expected} peers"),
        format!("{detail}; {expected} Alertmanagers expected in the cluster"),
    )
}

async fn grafana(http: &reqwest::Client, base: &str) -> Check {
    match get_ok(http, &format!("{base}/api/health"), None).await {
        Ok(b) => {
            let v: Value = serde_json::from_str(&b).unwrap_or_default();
            match v["database"].as_str() {
                Some("ok") | None => Check::new(State::Ok, "ok", format!("{base}: healthy")),
                Some(db) => Check::new(State::Down, "db down", format!("{base}: database {db}")),
            }
        }
        Err(e) => down(base, e),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::report::Progress;

    /// Two Consul agents and one monitoring host with only Prometheus (nothing listens on
    /// port 1 of loopback: every check is a quick "down").
    fn fixture() -> (Inventory, Vars, Arc<ConsulClient>) {
        let inv = crate::inventory::parse_str(
            "consul:\n  agents: [http://127.0.0.1:1, http://127.0.0.2:1]\nmonitoring:\n  hosts:\n    - { name: mon-01, ip: 127.0.0.1 }\ngroups:\n  IDE:\n    hosts:\n      - { name: a, ip: 127.0.0.3 }\n",
            Path::new("c.yml"),
        )
        .expect("inventory");
        let mut defaults = Vars::new();
        defaults.insert("prometheus_port".into(), 1.into());
        let http = reqwest::Client::new();
        let consul = Arc::new(ConsulClient::new(inv.consul.agents.clone(), None, http));
        (inv, defaults, consul)
    }

    /// Each central service is one item of the Scheduler: a progress event each, rows in
    /// the inventory's order.
    #[tokio::test]
    async fn central_services_are_scheduler_items() {
        let (inv, defaults, consul) = fixture();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let sched = Scheduler::new(1, CancellationToken::new(), CancellationToken::new())
            .with_progress(Arc::new(move |p: &Progress| {
                if let Progress::Started { label, .. } = p {
                    s.lock().expect("lock").push(label.clone());
                }
            }));
        let rows = gather(
            &inv,
            &defaults,
            &reqwest::Client::new(),
            &consul,
            &Endpoints::default(),
            &sched,
        )
        .await;
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.service.as_str(), r.at.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("consul", "http://127.0.0.1:1"),
                ("consul", "http://127.0.0.2:1"),
                ("prometheus", "mon-01"),
            ]
        );
        assert!(
            rows.iter().all(|r| r.check.state == State::Down),
            "{rows:?}"
        );
        assert_eq!(
            *seen.lock().expect("lock"),
            [
                "consul http://127.0.0.1:1",
                "consul http://127.0.0.2:1",
                "prometheus mon-01"
            ]
        );
    }

    /// After Ctrl-C no service is asked: no row is made up for them.
    #[tokio::test]
    async fn central_gather_after_a_cancel_asks_nothing() {
        let (inv, defaults, consul) = fixture();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let sched = Scheduler::new(4, cancel, CancellationToken::new());
        let rows = gather(
            &inv,
            &defaults,
            &reqwest::Client::new(),
            &consul,
            &Endpoints::default(),
            &sched,
        )
        .await;
        assert!(rows.is_empty(), "{rows:?}");
    }
}
