//! Print the port a demo service should listen on: PREFERRED if it is free on ADDR, otherwise
//! a free one (saying on stderr who holds PREFERRED), so the demo never talks to a program that
//! already listens on its default port.
//!
//! Usage: demo-port ADDR PREFERRED

use anyhow::{Context, Result};
use std::net::IpAddr;

fn main() -> Result<()> {
    const USAGE: &str = "usage: demo-port ADDR PREFERRED";
    let mut args = std::env::args().skip(1);
    let ip: IpAddr = args
        .next()
        .context(USAGE)?
        .parse()
        .context("ADDR is an IP address")?;
    let preferred: u16 = args
        .next()
        .context(USAGE)?
        .parse()
        .context("PREFERRED is a port number")?;
    let (port, note) = testkit::ports::pick(ip, preferred)?;
    if let Some(note) = note {
        eprintln!("{note}; using {ip}:{port} instead");
    }
    println!("{port}");
    Ok(())
}
