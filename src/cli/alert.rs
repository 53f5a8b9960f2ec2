//! `promfleet alert test --group G`: send a synthetic alert for one fleet group through
//! Alertmanager, report the receiver it was routed to, then resolve it — the smoke test that
//! an alert of group X reaches X's chat (seed defect 10). Exit 0 routed as the inventory
//! says, 5 routed elsewhere, 6 an Alertmanager did not answer.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::common::{
    InventoryArgs, OutputFormat, load_inventory_args, project_for, resolve_endpoints, signals,
};
use crate::executor::Scheduler;
use crate::playbook::{self, Secrets, slug};
use crate::report::{ExitCode, Printer};
use crate::status::alert::{AlertOutcome, run_test};
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
    let mut inv = load_inventory_args(&a.inv, printer)?;
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
    let urls = if a.alertmanager.is_empty() {
        let project = project_for(&a.inv, a.templates.as_deref(), None)?;
        let defaults = playbook::load_defaults(&project)?;
        inv.monitoring()
            .filter_map(|h| {
                let vars = central::host_vars(&inv, &defaults, h);
                central::service_url(&vars, h, "alertmanager", "alertmanager_port")
            })
            .collect::<Vec<_>>()
    } else {
        a.alertmanager.clone()
    };
    if urls.is_empty() {
        anyhow::bail!(
            "no Alertmanager to test: the inventory has no monitoring hosts; pass --alertmanager URL"
        );
    }
    let expected = format!("webhook-{}", slug(&a.group));
    let (cancel, abort) = signals(&reporter);
    let sched = Scheduler::new(urls.len(), cancel, abort).reporting_to(reporter.clone());
    let mut outcomes = run_test(am.client(), &urls, &a.group, &expected, a.hold, &sched).await;
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
    Ok(if sched.is_cancelled() {
        ExitCode::Interrupted
    } else {
        exit_code(&outcomes)
    })
}

fn exit_code(outcomes: &[AlertOutcome]) -> ExitCode {
    if outcomes.iter().any(|o| o.error.is_some()) {
        ExitCode::Down
    } else if outcomes.iter().all(AlertOutcome::routed_right) {
        ExitCode::Ok
    } else {
        ExitCode::Drift
    }
}
