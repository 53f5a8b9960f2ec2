//! Print a runnable Prometheus config made from promfleet's rendered prometheus.yml, with
//! Consul discovery served by the Consul test double (see testkit::prometheus).
//!
//! Usage: demo-prometheus-config RENDERED_PROMETHEUS_YML HTTP_SD_URL

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: demo-prometheus-config FILE HTTP_SD_URL")?;
    let url = args
        .next()
        .context("usage: demo-prometheus-config FILE HTTP_SD_URL")?;
    let text = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    let (cfg, _) = testkit::prometheus::runnable_config(&text, &url)?;
    println!("{cfg}");
    Ok(())
}
