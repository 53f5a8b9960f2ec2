//! Text renderings of the commands' typed results (status tables, `exec` host blocks,
//! `alert test` lines, `consul prune` lines, `inventory list` and `ssh-config`): what the
//! terminal reporter prints (and the JSON reporter, for the resolved SSH targets). Pure
//! functions from data to text; masking is the reporter's.

use super::{ExecResult, ExecSummary, HostListing, PruneAction, Pruned};
use crate::status::alert::AlertOutcome;
use crate::status::{CentralRow, HostRow, State, StatusReport};
use crate::transport::{StrictHostKeyChecking, Target};

/// One `exec` host: `host | CHANGED | rc=0`, its stdout, its stderr lines prefixed.
pub fn exec_host(r: &ExecResult) -> String {
    let head = match (&r.error, r.rc) {
        (Some(e), _) if r.unreachable => format!("{} | UNREACHABLE: {e}", r.host),
        (Some(e), _) => format!("{} | FAILED: {e}", r.host),
        (None, Some(0)) => format!("{} | CHANGED | rc=0", r.host),
        (None, Some(c)) => format!("{} | FAILED | rc={c}", r.host),
        (None, None) => format!("{} | FAILED | killed by a signal", r.host),
    };
    let mut s = head;
    s.push('\n');
    s.push_str(&r.stdout);
    if !r.stdout.is_empty() && !r.stdout.ends_with('\n') {
        s.push('\n');
    }
    for l in r.stderr.lines() {
        s.push_str("stderr: ");
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// `3 host(s): 2 ok, 1 failed, 0 unreachable in 1.2s` (and how many a Ctrl-C left).
pub fn exec_summary(s: &ExecSummary) -> String {
    let mut line = format!(
        "{} host(s): {} ok, {} failed, {} unreachable",
        s.hosts, s.ok, s.failed, s.unreachable
    );
    if s.not_run > 0 {
        line.push_str(&format!(", {} not run (interrupted)", s.not_run));
    }
    line.push_str(&format!(" in {:.1}s", s.duration_ms as f64 / 1000.0));
    line
}

/// `http://am:9093: alert PromfleetTest for group IDE → receiver webhook-ide: ok; resolved`.
pub fn alert_outcome(o: &AlertOutcome, group: &str) -> String {
    let routed = if o.receivers.is_empty() {
        "no receiver".to_string()
    } else {
        format!("receiver {}", o.receivers.join(", "))
    };
    let verdict = if o.routed_right() {
        "ok".to_string()
    } else if o.error.is_some() {
        "FAILED".to_string()
    } else {
        format!("WRONG ROUTE (expected {})", o.expected)
    };
    let mut s = format!(
        "{}: alert {} for group {group} → {routed}: {verdict}{}{}",
        o.alertmanager,
        crate::status::alert::ALERTNAME,
        o.notifications
            .map(|n| format!("; {n} notification(s) sent"))
            .unwrap_or_default(),
        if o.resolved { "; resolved" } else { "" }
    );
    if let Some(e) = &o.error {
        s.push_str(&format!(" ({e})"));
    }
    s
}

/// One `consul prune` line, and whether it is an error (stderr) or a result (stdout).
pub fn pruned(p: &Pruned) -> (String, bool) {
    match &p.action {
        PruneAction::WouldDeregister => (
            format!(
                "would deregister {} from {} ({})",
                p.service, p.agent, p.reason
            ),
            false,
        ),
        PruneAction::Deregistered => (
            format!("deregistered {} from {} ({})", p.service, p.agent, p.reason),
            false,
        ),
        PruneAction::Failed(e) => (
            format!("failed to deregister {} from {}: {e}", p.service, p.agent),
            true,
        ),
    }
}

/// `4 hosts: 3 ok, 1 drift, 0 down; central: 2 ok, 0 drift, 4 down → exit 6 (down)`.
pub fn status_summary(r: &StatusReport) -> String {
    let s = &r.summary;
    let verdict = match r.state {
        State::Down => "down",
        State::Drift => "drift",
        _ => "all good",
    };
    let mut parts = Vec::new();
    if s.hosts > 0 {
        parts.push(format!(
            "{} hosts: {} ok, {} drift, {} down",
            s.hosts, s.hosts_ok, s.hosts_drift, s.hosts_down
        ));
    }
    if s.central > 0 {
        parts.push(format!(
            "central services: {} ok, {} drift, {} down",
            s.central_ok, s.central_drift, s.central_down
        ));
    }
    format!(
        "{} → exit {} ({verdict})",
        parts.join("; "),
        r.exit_code.code()
    )
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The `status` text report: host table, problems, central table, summary line.
pub fn status(r: &StatusReport, verbose: bool) -> String {
    let mut out = String::new();
    if !r.hosts.is_empty() {
        out.push_str(&hosts_table(&r.hosts));
        let problems: Vec<String> = r
            .hosts
            .iter()
            .flat_map(|h| {
                h.checks
                    .0
                    .iter()
                    .filter(|(_, c)| verbose || matches!(c.state, State::Drift | State::Down))
                    .filter(|(_, c)| !c.detail.is_empty())
                    .map(move |(n, c)| {
                        format!("  {} {n} [{}]: {}", h.host, c.state.as_str(), c.detail)
                    })
            })
            .collect();
        if !problems.is_empty() {
            out.push('\n');
            out.push_str(&problems.join("\n"));
            out.push('\n');
        }
    }
    if !r.central.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&central_table(&r.central));
    }
    out.push('\n');
    out.push_str(&status_summary(r));
    out.push('\n');
    out
}

fn hosts_table(hosts: &[HostRow]) -> String {
    let mut names: Vec<String> = Vec::new();
    for h in hosts {
        for (n, _) in &h.checks.0 {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let mut rows = vec![
        ["HOST", "GROUP", "STATE"]
            .iter()
            .map(|s| s.to_string())
            .chain(names.iter().map(|n| n.to_uppercase()))
            .collect::<Vec<_>>(),
    ];
    for h in hosts {
        let mut row = vec![
            h.host.clone(),
            h.group.clone(),
            h.state.as_str().to_string(),
        ];
        for n in &names {
            row.push(h.checks.get(n).map_or("-".into(), |c| c.summary.clone()));
        }
        rows.push(row);
    }
    table(&rows)
}

fn central_table(central: &[CentralRow]) -> String {
    let mut rows = vec![
        ["SERVICE", "AT", "STATE", "DETAIL"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    ];
    for c in central {
        rows.push(vec![
            c.service.clone(),
            c.at.clone(),
            c.check.state.as_str().to_string(),
            c.check.detail.clone(),
        ]);
    }
    table(&rows)
}

/// `inventory list`: HOST IP GROUP SSH, then the counts and the Consul agents.
pub fn host_listing(l: &HostListing) -> String {
    let w = l
        .hosts
        .iter()
        .map(|h| h.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!("{:<w$}  {:<15}  {:<12}  SSH\n", "HOST", "IP", "GROUP");
    for h in &l.hosts {
        let user = h
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let ssh = format!("{user}{}:{}", h.address, h.port.unwrap_or(22));
        out.push_str(&format!(
            "{:<w$}  {:<15}  {:<12}  {ssh}\n",
            h.name, h.shown_ip, h.group
        ));
    }
    let groups: std::collections::BTreeSet<&str> =
        l.hosts.iter().map(|h| h.group.as_str()).collect();
    out.push_str(&format!(
        "\n{} host(s) in {} group(s); Consul agents: {}\n",
        l.hosts.len(),
        groups.len(),
        if l.agents.is_empty() {
            "none".to_string()
        } else {
            l.agents.join(", ")
        }
    ));
    out
}

fn strict_name(s: Option<StrictHostKeyChecking>) -> Option<&'static str> {
    s.map(|s| match s {
        StrictHostKeyChecking::Yes => "yes",
        StrictHostKeyChecking::AcceptNew => "accept-new",
        StrictHostKeyChecking::No => "no",
    })
}

/// A resolved target as JSON; `null` = not set by the config (promfleet's flag applies).
pub fn ssh_target_json(t: &Target) -> serde_json::Value {
    let paths = |v: &[std::path::PathBuf]| -> Vec<String> {
        v.iter().map(|p| p.display().to_string()).collect()
    };
    serde_json::json!({
        "name": t.name,
        "hostname": t.address,
        "user": t.user,
        "port": t.port,
        "identityfile": paths(&t.keys),
        "identityfile_explicit": t.keys_explicit,
        "identitiesonly": t.identities_only,
        "proxyjump": t.jump.as_deref().map(ssh_target_json),
        "hostkeyalias": t.host_key_alias,
        "userknownhostsfile": paths(&t.user_known_hosts),
        "globalknownhostsfile": paths(&t.global_known_hosts),
        "stricthostkeychecking": strict_name(t.strict_host_key_checking),
        "hashknownhosts": t.hash_known_hosts,
        "connecttimeout": t.connect_timeout.map(|d| d.as_secs()),
        "serveraliveinterval": t.server_alive_interval.map(|d| d.as_secs()),
        "serveralivecountmax": t.server_alive_count_max,
        "become": t.become_root,
    })
}

/// `ssh -G`-style lines; a bastion's lines follow, indented, under `proxyjump`.
pub fn ssh_target_text(t: &Target, indent: &str) -> String {
    let mut out = format!("{indent}{}\n", t.name);
    let mut line = |k: &str, v: &str| out.push_str(&format!("{indent}  {k} {v}\n"));
    let yes = |b: bool| if b { "yes" } else { "no" };
    let unset = "(not set: promfleet's flag applies)";
    line("hostname", &t.address);
    line("user", &t.user);
    line("port", &t.port.to_string());
    for k in &t.keys {
        line("identityfile", &k.display().to_string());
    }
    line("identitiesonly", yes(t.identities_only));
    line(
        "hostkeyalias",
        t.host_key_alias.as_deref().unwrap_or("none"),
    );
    let files = |v: &[std::path::PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    line(
        "userknownhostsfile",
        &Some(files(&t.user_known_hosts))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| unset.into()),
    );
    line("globalknownhostsfile", &files(&t.global_known_hosts));
    line(
        "stricthostkeychecking",
        strict_name(t.strict_host_key_checking).unwrap_or(unset),
    );
    line("hashknownhosts", yes(t.hash_known_hosts));
    let secs = |d: Option<std::time::Duration>| {
        d.map_or_else(|| unset.to_string(), |d| d.as_secs().to_string())
    };
    line("connecttimeout", &secs(t.connect_timeout));
    line("serveraliveinterval", &secs(t.server_alive_interval));
    line(
        "serveralivecountmax",
        &t.server_alive_count_max
            .map_or_else(|| unset.to_string(), |n| n.to_string()),
    );
    match &t.jump {
        None => line("proxyjump", "none"),
        Some(j) => {
            line("proxyjump", "");
            out.push_str(&ssh_target_text(j, &format!("{indent}    ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rc: Option<u32>, error: Option<&str>, unreachable: bool) -> ExecResult {
        ExecResult {
            host: "h1".into(),
            rc,
            stdout: "out".into(),
            stderr: "e1\ne2\n".into(),
            error: error.map(String::from),
            unreachable,
            duration_ms: 0,
        }
    }

    #[test]
    fn exec_blocks_say_how_each_host_ended() {
        assert_eq!(
            exec_host(&result(Some(0), None, false)),
            "h1 | CHANGED | rc=0\nout\nstderr: e1\nstderr: e2\n"
        );
        assert!(exec_host(&result(Some(3), None, false)).starts_with("h1 | FAILED | rc=3\n"));
        assert!(exec_host(&result(None, None, false)).contains("killed by a signal"));
        assert!(
            exec_host(&result(None, Some("refused"), true))
                .starts_with("h1 | UNREACHABLE: refused")
        );
    }

    #[test]
    fn exec_summary_counts_hosts_an_interrupt_kept_from_running() {
        let mut s = ExecSummary {
            hosts: 3,
            ok: 2,
            failed: 1,
            unreachable: 0,
            not_run: 0,
            duration_ms: 1500,
        };
        assert_eq!(
            exec_summary(&s),
            "3 host(s): 2 ok, 1 failed, 0 unreachable in 1.5s"
        );
        s.not_run = 2;
        s.hosts = 5;
        assert!(exec_summary(&s).contains(", 2 not run (interrupted) in"));
    }

    fn listed(name: &str, ip: &str, stand_in: bool) -> super::super::ListedHost {
        super::super::ListedHost {
            name: name.into(),
            shown_ip: ip.into(),
            ip: (!stand_in).then(|| ip.to_string()),
            group: "IDE".into(),
            resolved_from: stand_in.then(|| format!("{name}.example")),
            groups: vec!["IDE".into()],
            user: Some("ops".into()),
            port: None,
            address: ip.into(),
            become_root: Some(true),
            become_password_from: Some("env SUDO_PW".into()),
        }
    }

    /// `inventory list`: the table people read, and the JSON programs read (a stand-in
    /// address is shown in the table but is `null` in JSON; `become`, never the password).
    #[test]
    fn inventory_list_as_a_table_and_as_json() {
        let l = HostListing {
            hosts: vec![
                listed("web1", "10.0.0.1", false),
                listed("db", "192.0.2.7", true),
            ],
            agents: vec![],
        };
        assert_eq!(
            host_listing(&l),
            "HOST  IP               GROUP         SSH\n\
             web1  10.0.0.1         IDE           ops@10.0.0.1:22\n\
             db    192.0.2.7        IDE           ops@192.0.2.7:22\n\
             \n2 host(s) in 1 group(s); Consul agents: none\n"
        );
        let v = serde_json::to_value(&l.hosts).expect("json");
        assert_eq!(v[0]["ip"], "10.0.0.1");
        assert!(v[1]["ip"].is_null());
        assert_eq!(v[1]["resolved_from"], "db.example");
        assert_eq!(v[0]["become"], true);
        assert_eq!(v[0]["become_password_from"], "env SUDO_PW");
        assert!(v[0].get("shown_ip").is_none());
    }
}
