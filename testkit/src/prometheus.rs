//! Make the Prometheus config promfleet renders runnable on this machine: Debian's Prometheus
//! 2.42 is built without Consul discovery, so the `consul_sd_configs` job is pointed at the
//! Consul test double's http_sd view instead (same `__meta_consul_*` labels, so promfleet's
//! relabels run unchanged). Only that job is kept: the others name container hostnames
//! (`alertmanager:9093`) whose DNS lookups would leave this machine. Alerting and rule files
//! are dropped; intervals shortened; `external_labels` kept.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The runnable config (JSON, which is YAML) and the name of the rewritten job.
pub fn runnable_config(rendered_yaml: &str, http_sd_url: &str) -> Result<(String, String)> {
    let mut cfg: Value =
        serde_saphyr::from_str(rendered_yaml).context("rendered prometheus.yml is not YAML")?;
    // The rendered `external_labels` (dc, replica) stay: federation tests read them.
    let external = cfg["global"]["external_labels"].take();
    cfg["global"] = json!({"scrape_interval": "1s", "evaluation_interval": "1s"});
    if !external.is_null() {
        cfg["global"]["external_labels"] = external;
    }
    if let Some(o) = cfg.as_object_mut() {
        o.remove("alerting");
        o.remove("rule_files");
    }
    let mut job = String::new();
    let configs = cfg["scrape_configs"]
        .as_array_mut()
        .context("no scrape_configs")?;
    for sc in configs {
        if let Some(o) = sc.as_object_mut()
            && o.remove("consul_sd_configs").is_some()
        {
            job = o["job_name"].as_str().unwrap_or_default().to_string();
            o.insert(
                "http_sd_configs".into(),
                json!([{"url": http_sd_url, "refresh_interval": "1s"}]),
            );
            o.insert("scrape_interval".into(), json!("1s"));
            // A token file path of the monitoring host does not exist here.
            o.remove("authorization");
        }
    }
    if job.is_empty() {
        bail!("the rendered config has no consul_sd_configs job");
    }
    if let Some(configs) = cfg["scrape_configs"].as_array_mut() {
        configs.retain(|sc| sc["job_name"] == job.as_str());
    }
    Ok((serde_json::to_string_pretty(&cfg)?, job))
}
