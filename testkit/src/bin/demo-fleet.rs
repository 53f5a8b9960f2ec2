//! Start a test fleet for a demo or manual testing, write its inventory, and keep it running
//! until Ctrl-C / SIGTERM; then tear it down (sshd, exporters, temp dir).
//!
//! Usage: demo-fleet [--hosts N] [--groups IDE,Stage,Pet] [--monitoring] [--shared]
//!                   [--consul URL]... [--inventory PATH] [--check-ports PORT,...]
//!
//! `--check-ports` (the demo passes the exporter ports 9100,9105) fails, naming the program,
//! if something already listens on one of them on a host's address or on all addresses: the
//! exporters could not start there and Prometheus would scrape that program instead.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use testkit::sshd::Fleet;

fn main() -> Result<()> {
    let mut hosts = 12usize;
    let mut groups = String::from("IDE,Stage,Pet");
    let mut monitoring = false;
    let mut shared = false;
    let mut consul = Vec::new();
    let mut inventory = PathBuf::from("inventory.yml");
    let mut check_ports: Vec<u16> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--hosts" => hosts = value()?.parse().context("--hosts takes a number")?,
            "--groups" => groups = value()?,
            "--monitoring" => monitoring = true,
            "--shared" => shared = true,
            "--consul" => consul.push(value()?),
            "--inventory" => inventory = PathBuf::from(value()?),
            "--check-ports" => {
                for p in value()?.split(',').filter(|p| !p.is_empty()) {
                    check_ports.push(p.parse().context("--check-ports takes PORT,PORT,...")?);
                }
            }
            other => bail!("unknown argument {other}"),
        }
    }
    // Block the stop signals before anything is spawned so they are only taken by sigwait below
    // (children get a clean mask from std::process); dying on SIGINT would skip the teardown.
    // SAFETY: plain sigset manipulation on a local set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let group_list: Vec<&str> = groups.split(',').filter(|g| !g.is_empty()).collect();
    let fleet = Fleet::builder()
        .hosts(hosts)
        .groups(&group_list)
        .monitoring_host(monitoring)
        .shared_sshd(shared)
        .consul_agents(consul)
        .start()?;
    // The fleet's addresses are only known now; on an error the fleet is dropped (torn down).
    for host in fleet.all_hosts() {
        for &port in &check_ports {
            let what = format!("the exporter on port {port} of {}", host.name);
            testkit::ports::ensure_free(host.ip.into(), port, &what)?;
        }
    }
    fleet.write_inventory(&inventory)?;
    println!(
        "fleet of {} hosts up (root {}, user {}, port {})",
        fleet.all_hosts().len(),
        fleet.root().display(),
        fleet.user(),
        fleet.port()
    );
    println!("inventory: {}", inventory.display());
    println!("known_hosts: {}", fleet.known_hosts().display());
    println!("press Ctrl-C to stop");
    let mut sig = 0;
    // SAFETY: waits on the set blocked above.
    unsafe { libc::sigwait(&set, &mut sig) };
    println!("stopping the fleet");
    drop(fleet);
    Ok(())
}
