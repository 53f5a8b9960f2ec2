//! `promfleet alert test --group G`: send a synthetic alert for one fleet group through
//! Alertmanager, report the receiver it was routed to, then resolve it — the smoke test that
//! an alert of group X reaches X's chat (seed defect 10). With several Alertmanagers (HA) it
//! goes to every Alertmanager of the group's datacenter, as Prometheus sends it, and exactly
//! one notification must go out (status/alert.rs counts them). Exit 0 routed as the inventory
//! says and notified once, 5 routed elsewhere or notified 0 or several times, 6 an
//! Alertmanager did not answer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use super::common::{
    InventoryArgs, OutputFormat, load_inventory_args, project_for, resolve_endpoints, signals,
};
use crate::executor::Scheduler;
use crate::playbook::{self, Secrets, slug};
use crate::report::{ExitCode, Printer};
use crate::status::alert::{AlertOutcome, notifications_total, run_test};
use crate::status::central;

#[derive(Subcommand, Debug)]
pub enum AlertCmd {
    /// Post a synthetic alert (alertname=PromfleetTest) for a group, show its receiver, resolve it.
    Test(AlertTestArgs),
}

#[derive(Args, Debug)]
pub struct AlertTestArgs {
    /// The fleet group whose route is tested (e.g. IDE).
    #[arg(long)]
    pub group: String,
    #[command(flatten)]
    pub inv: InventoryArgs,
    /// Alertmanager base URL; repeatable. Default: every monitoring host's Alertmanager
    /// (var `alertmanager_url`, else `<alertmanager_scheme>://<ip>:<alertmanager_port>`).
    #[arg(long)]
    pub alertmanager: Vec<String>,
    /// How long the alert stays firing before it is resolved (default: the route's
    /// group_wait + 2s, so the notification goes out first).
    #[arg(long, value_parser = crate::base::clock::parse_cli_duration)]
    pub hold: Option<Duration>,
    /// YAML secrets file (mode 0600): Alertmanager's basic-auth password
    /// (`alertmanager_basic_auth_password`) and TLS settings, if it needs them.
    #[arg(long, env = "PROMFLEET_SECRETS")]
    pub secrets: Option<PathBuf>,
    /// Templates directory holding defaults.yml (default: `templates/`).
    #[arg(long)]
    pub templates: Option<PathBuf>,
    /// `json` prints the outcome per Alertmanager as JSON on stdout.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub async fn run(cmd: AlertCmd, printer: &Printer) -> anyhow::Result<ExitCode> {
    let AlertCmd::Test(a) = cmd;
    let reporter = printer.reporter();
    let mut inv = load_inventory_args(
        &a.inv,
        Path::new(crate::transport::SSH_CONFIG_DEFAULT),
        printer,
    )?;
    let secrets = Secrets::load(a.secrets.as_deref(), printer.masker().clone())?;
    // Alertmanager's client (TLS, basic auth) and the scheme of the URLs built below.
    let endpoints = resolve_endpoints(&mut inv, &secrets)?;
    let am = &endpoints.alertmanager;
    crate::inventory::refuse_stand_ins(&inv)?;
    if !inv.groups.iter().any(|g| g.name == a.group) {
        let names: Vec<&str> = inv.groups.iter().map(|g| g.name.as_str()).collect();
        anyhow::bail!(
            "--group {}: no such fleet group in {}; groups are: {}",
            a.group,
            inv.source.display(),
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    let project = project_for(&a.inv, a.templates.as_deref(), None)?;
    let defaults = playbook::load_defaults(&project)?;
    // The group's datacenter (that of its first host): its Alertmanagers are the ones its
    // Prometheus replicas alert.
    let dc = inv
        .fleet()
        .find(|h| h.group == a.group)
        .map(|h| inv.datacenter_of(h));
    let dc_monitoring: Vec<_> = inv
        .monitoring()
        .filter(|h| dc.is_none() || dc.as_deref() == Some(inv.datacenter_of(h).as_str()))
        .collect();
    let urls = if a.alertmanager.is_empty() {
        dc_monitoring
            .iter()
            .filter_map(|h| {
                let vars = central::host_vars(&inv, &defaults, h);
                central::service_url(&vars, h, "alertmanager", "alertmanager_port")
            })
            .collect::<Vec<_>>()
    } else {
        a.alertmanager.clone()
    };
    // Cluster member k sends only after waiting k × peer timeout and finding no notification
    // in the shared log: hold until the last one has decided.
    let settle = match (urls.len(), dc_monitoring.first()) {
        (n, Some(h)) if n > 1 => {
            let vars = central::host_vars(&inv, &defaults, h);
            let peer_timeout = vars
                .get("alertmanager_peer_timeout")
                .and_then(|v| v.as_str())
                .and_then(crate::base::clock::parse_duration)
                .unwrap_or(ALERTMANAGER_PEER_TIMEOUT);
            peer_timeout * (n as u32 - 1)
        }
        (n, None) if n > 1 => ALERTMANAGER_PEER_TIMEOUT * (n as u32 - 1),
        _ => std::time::Duration::ZERO,
    };
    if urls.is_empty() {
        anyhow::bail!(
            "no Alertmanager to test: the inventory has no monitoring hosts; pass --alertmanager URL"
        );
    }
    let expected = format!("webhook-{}", slug(&a.group));
    let (cancel, abort) = signals(&reporter);
    let sched = Scheduler::new(urls.len(), cancel, abort).reporting_to(reporter.clone());
    let mut outcomes = run_test(
        am.client(),
        &urls,
        &a.group,
        &expected,
        a.hold,
        settle,
        &sched,
    )
    .await;
    for o in &mut outcomes {
        // Refused credentials: name the settings to fix instead of the bare status.
        if o.error
            .as_deref()
            .is_some_and(|e| e.starts_with("posting the alert: HTTP 401"))
        {
            o.error = Some(am.unauthorized(&o.alertmanager));
        }
    }
    reporter.alert_tested(&a.group, &outcomes);
    let sent = notifications_total(&outcomes);
    let judged = outcomes.iter().all(|o| o.error.is_none());
    match sent {
        Some(1) if judged => reporter.notice(&format!(
            "exactly one notification went out from {} Alertmanager(s) for the test alert",
            urls.len()
        )),
        Some(n) if judged => reporter.warning(&format!(
            "{n} notifications went out from {} Alertmanager(s) for one alert (expected exactly one): {}",
            urls.len(),
            if n == 0 {
                "none reached a receiver within the hold (raise --hold?)"
            } else {
                "the Alertmanagers do not de-duplicate: are they one cluster? (other alerts notified meanwhile count too)"
            }
        )),
        _ => {}
    }
    Ok(if sched.is_cancelled() {
        ExitCode::Interrupted
    } else {
        exit_code(&outcomes, sent)
    })
}

/// Alertmanager's default `--cluster.peer-timeout`.
const ALERTMANAGER_PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// `sent`: the notifications counted for the alert (None: a counter could not be read,
/// which is not judged).
fn exit_code(outcomes: &[AlertOutcome], sent: Option<u64>) -> ExitCode {
    if outcomes.iter().any(|o| o.error.is_some()) {
        ExitCode::Down
    } else if outcomes.iter().all(AlertOutcome::routed_right) && sent.is_none_or(|n| n == 1) {
        ExitCode::Ok
    } else {
        ExitCode::Drift
    }
}
