//! Hosts an Ansible inventory gives by DNS name (as `ansible_host`, or as the inventory name
//! itself), turned into the address promfleet registers in Consul and scrapes: resolved once,
//! at load, on the jump host: every distinct name (and login) once, in parallel, each lookup
//! under a deadline.
//!
//! Owns: the `Resolver` seam (the system's getaddrinfo; the CLI's, through ssh's config first,
//! asked with the host's login as a `Lookup`:
//! `transport::HostnameResolver`; a fake in tests), the deadline, the choice of address (the
//! first the resolver returns: the one `ssh` tries first), and the stand-in addresses of
//! `--no-resolve`. Must not touch: SSH — the connection still goes to the name, so
//! `~/.ssh/config` applies to it as it does for `ssh NAME`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::InventoryError;
use super::validate::{Draft, is_valid_name};

/// How long one name may take to resolve (measured from the start of its lookup: a large
/// inventory waits for its turn on the pool, a slow name fails the load).
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Lookups in flight at once: enough for a large inventory, few enough threads for a jump host.
const RESOLVE_THREADS: usize = 32;

/// Looks a DNS name up; the addresses in the order a client should try them.
pub trait Resolver: Send + Sync {
    fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String>;

    /// The name as SSH would connect to it for this login (user, port, `-o` options): what
    /// ssh's config makes of it can depend on them (`Match user`, `%r`/`%p` tokens). A
    /// resolver that does not read ssh's config looks the name up alone.
    fn lookup_as(&self, q: &Lookup) -> Result<Vec<IpAddr>, String> {
        self.lookup(&q.name)
    }
}

/// One name to resolve, with the login SSH would use for it: the host's effective user, port
/// and `-o` options, as the connection passes them to `ssh -G` (`-l`, `-p`, `-o`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lookup {
    pub name: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub options: Vec<(String, String)>,
}

/// The system resolver (getaddrinfo: /etc/hosts, DNS, nsswitch), as `ssh` resolves a name.
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        (name, 0u16)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .map_err(|e| e.to_string())
    }
}

/// What to do with hosts given by DNS name.
#[derive(Clone)]
pub enum Names {
    /// Resolve every name, each lookup within `timeout` of its start.
    Resolve {
        resolver: Arc<dyn Resolver>,
        timeout: Duration,
    },
    /// `--no-resolve`: no lookup; each such host gets a stand-in address (`STAND_IN_NET`).
    StandIn,
}

impl Names {
    /// The system resolver with the default timeout.
    pub fn system() -> Names {
        Names::Resolve {
            resolver: Arc::new(SystemResolver),
            timeout: RESOLVE_TIMEOUT,
        }
    }
}

/// How a host given by DNS name got its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedName {
    /// The name as the inventory gives it (what SSH connects to).
    pub name: String,
    /// True when the address is a `--no-resolve` stand-in, not the name's.
    pub stand_in: bool,
}

/// `240.0.0.0/4`, reserved (RFC 1112) and never routed: a stand-in address cannot reach or
/// register anything real, and cannot collide with a real host's.
pub const STAND_IN_NET: Ipv4Addr = Ipv4Addr::new(240, 0, 0, 0);

/// Give every draft host marked `by_name` an address: the resolver's first answer, or a
/// stand-in. Errors name the host, the name and where it is written; the first in file order.
pub(crate) fn resolve_names(draft: &mut Draft, names: &Names) -> Result<(), InventoryError> {
    let wanted: Vec<usize> = (0..draft.hosts.len())
        // An invalid hostname is reported by `validate`, not looked up.
        .filter(|&i| draft.hosts[i].by_name && is_valid_name(&draft.hosts[i].name))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let lookup = |h: &super::validate::DraftHost| -> Option<Lookup> {
        h.ip.as_ref().map(|(n, _)| Lookup {
            name: n.clone(),
            user: h.ssh.user.clone(),
            port: h.ssh.port,
            options: h.ssh.options.clone(),
        })
    };
    let answers: HashMap<Lookup, Result<IpAddr, String>> = match names {
        Names::StandIn => HashMap::new(),
        Names::Resolve { resolver, timeout } => {
            let mut distinct: Vec<Lookup> = wanted
                .iter()
                .filter_map(|&i| lookup(&draft.hosts[i]))
                .collect();
            distinct.sort();
            distinct.dedup();
            match lookup_all(resolver.clone(), distinct, *timeout) {
                Ok(answers) => answers,
                Err(slow) => {
                    // The first host (in file order) given by the name that timed out.
                    let (host, pos) = wanted
                        .iter()
                        .map(|&i| &draft.hosts[i])
                        .find_map(|h| {
                            h.ip.as_ref()
                                .filter(|_| lookup(h).as_ref() == Some(&slow))
                                .map(|(_, pos)| (h.name.clone(), pos.clone()))
                        })
                        .unwrap_or_default();
                    let slow = slow.name;
                    return Err(InventoryError::Syntax {
                        pos,
                        message: format!(
                            "host `{host}`: `{slow}` did not resolve within {}s",
                            timeout.as_secs_f64()
                        ),
                        help: Some(RESOLVE_HELP.to_owned()),
                    });
                }
            }
        }
    };
    let mut resolved = BTreeMap::new();
    for (n, &i) in wanted.iter().enumerate() {
        let key = lookup(&draft.hosts[i]);
        let h = &mut draft.hosts[i];
        let Some((name, pos)) = h.ip.as_mut() else {
            continue;
        };
        let stand_in = matches!(names, Names::StandIn);
        let ip = if stand_in {
            stand_in_address(n)?
        } else {
            match key.as_ref().and_then(|k| answers.get(k)) {
                Some(Ok(ip)) => *ip,
                Some(Err(why)) => {
                    return Err(InventoryError::Syntax {
                        pos: pos.clone(),
                        message: format!("host `{}`: cannot resolve `{name}`: {why}", h.name),
                        help: Some(RESOLVE_HELP.to_owned()),
                    });
                }
                // Only if a lookup thread died without answering.
                None => {
                    return Err(InventoryError::Syntax {
                        pos: pos.clone(),
                        message: format!("host `{}`: `{name}` was not resolved", h.name),
                        help: Some(RESOLVE_HELP.to_owned()),
                    });
                }
            }
        };
        resolved.insert(
            h.name.clone(),
            ResolvedName {
                name: std::mem::replace(name, ip.to_string()),
                stand_in,
            },
        );
    }
    draft.resolved_names = resolved;
    Ok(())
}

const RESOLVE_HELP: &str = "check the name (DNS or /etc/hosts on this machine), give the \
    address as ansible_host=10.0.1.12 (or `ip`), or pass --no-resolve to render offline";

/// The n-th stand-in address (n from 0).
fn stand_in_address(n: usize) -> Result<IpAddr, InventoryError> {
    let base = u32::from(STAND_IN_NET);
    u32::try_from(n)
        .ok()
        .filter(|&n| n < (1 << 28) - 2)
        .map(|n| IpAddr::V4(Ipv4Addr::from(base + n + 1)))
        .ok_or_else(|| InventoryError::Other {
            file: Default::default(),
            message: "more hosts by name than stand-in addresses".to_owned(),
        })
}

/// Every name looked up on a pool of threads, each lookup allowed `timeout` from its start
/// (so a large inventory is not failed by its size, only by a slow name). `Err(name)`: that
/// lookup outlived its timeout; the others are abandoned (their threads are left to finish:
/// getaddrinfo cannot be cancelled, and the answers are no longer wanted).
fn lookup_all(
    resolver: Arc<dyn Resolver>,
    names: Vec<Lookup>,
    timeout: Duration,
) -> Result<HashMap<Lookup, Result<IpAddr, String>>, Lookup> {
    let total = names.len();
    let queue = Arc::new(Mutex::new(names));
    let in_flight: Arc<Mutex<HashMap<Lookup, Instant>>> = Arc::default();
    let (tx, rx) = mpsc::channel();
    for _ in 0..total.min(RESOLVE_THREADS) {
        let (queue, in_flight, tx, resolver) = (
            queue.clone(),
            in_flight.clone(),
            tx.clone(),
            resolver.clone(),
        );
        std::thread::spawn(move || {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(name) = next else { break };
                in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.clone(), Instant::now());
                let answer = resolver
                    .lookup_as(&name)
                    .and_then(|ips| ips.first().copied().ok_or_else(|| "no address".to_owned()));
                in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&name);
                if tx.send((name, answer)).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut out = HashMap::with_capacity(total);
    while out.len() < total {
        // Wait until an answer comes or the oldest lookup in flight reaches its timeout.
        let oldest = in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .min_by_key(|(_, started)| **started)
            .map(|(name, started)| (name.clone(), *started));
        let wait = match &oldest {
            Some((name, started)) => {
                let left = (*started + timeout).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(name.clone());
                }
                left
            }
            None => timeout,
        };
        match rx.recv_timeout(wait) {
            Ok((name, answer)) => {
                out.insert(name, answer);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(out)
}

/// Hosts with a `--no-resolve` stand-in address, by name (the DNS name they stand for).
fn stand_ins(inv: &super::Inventory) -> Vec<(&str, &str, IpAddr)> {
    inv.hosts
        .iter()
        .filter_map(|h| {
            let r = inv.resolved_names.get(&h.name)?;
            r.stand_in
                .then_some((h.name.as_str(), r.name.as_str(), h.ip))
        })
        .collect()
}

/// What `--no-resolve` did, for the terminal: how many hosts got stand-ins, the first few.
pub fn stand_in_note(inv: &super::Inventory) -> Option<String> {
    let all = stand_ins(inv);
    if all.is_empty() {
        return None;
    }
    let shown: Vec<String> = all
        .iter()
        .take(3)
        .map(|(host, name, ip)| {
            if host == name {
                format!("{host} → {ip}")
            } else {
                format!("{host} ({name}) → {ip}")
            }
        })
        .collect();
    let more = if all.len() > shown.len() { ", …" } else { "" };
    Some(format!(
        "--no-resolve: {} host(s) given by DNS name have stand-in addresses from {STAND_IN_NET}/4 \
         (never routed) where their address is used: {}{more}",
        all.len(),
        shown.join(", ")
    ))
}

/// Refuse an inventory with stand-in addresses where addresses are used for real (deploy,
/// rollback, status, alert test): they would be registered in Consul, scraped, checked.
pub fn refuse_stand_ins(inv: &super::Inventory) -> Result<(), InventoryError> {
    let Some((host, name, _)) = stand_ins(inv).into_iter().next() else {
        return Ok(());
    };
    let pos = inv.host(host).map(|h| h.pos.clone()).unwrap_or_default();
    Err(InventoryError::Syntax {
        pos,
        message: format!(
            "host `{host}` has a --no-resolve stand-in address instead of `{name}`'s: \
             --no-resolve is for offline `render` and `inventory list`/`ssh-config`"
        ),
        help: Some("run without --no-resolve, so names are resolved".to_owned()),
    })
}
