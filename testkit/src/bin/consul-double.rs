//! Run the Consul HTTP API TEST DOUBLE (not Consul) for the README demo and manual testing,
//! until Ctrl-C / SIGTERM.
//!
//! Usage: consul-double [--listen 127.0.0.1:8500]

use anyhow::{Context, Result, bail};
use testkit::consul_double::{ConsulDouble, DoubleOptions};

#[tokio::main]
async fn main() -> Result<()> {
    let mut listen = String::from("127.0.0.1:8500");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().context("--listen needs ADDR:PORT")?,
            other => bail!("unknown argument {other}"),
        }
    }
    let opts = DoubleOptions {
        bind: listen.parse().context("--listen takes ADDR:PORT")?,
        ..DoubleOptions::default()
    };
    let double = ConsulDouble::start_with(opts).await?;
    println!(
        "Consul API test double (not Consul) listening on {}",
        double.url()
    );
    println!(
        "Prometheus http_sd view: {}/promfleet-double/http_sd",
        double.url()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!("stopping the Consul test double");
    Ok(())
}
