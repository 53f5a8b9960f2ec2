//! `prometheus_targets`: the end-to-end proof the hand-built version never had — every
//! exporter promfleet registered in Consul is an active Prometheus target and UP.
//!
//! Owns: the module's arguments and defaults, and the comparison of Consul's managed services
//! with the targets fact (`facts::prometheus`), polled until its deadline.

use std::time::Duration;

use crate::base::poll::{self, Pace};

use serde_json::Value;

use super::{Action, Args, Done, HostCtx, Module, PlanCtx, Task, TaskError};
use crate::facts::prometheus::PromTargets;

#[derive(Debug, Clone)]
pub struct TargetsCheck {
    /// Prometheus base URL, e.g. `http://10.0.0.178:9090`.
    pub url: String,
    pub timeout: Duration,
}

/// `prometheus_targets`.
pub struct TargetsModule;

impl Module for TargetsModule {
    fn keys(&self) -> (&'static [&'static str], &'static [&'static str]) {
        (&["url"], &["timeout"])
    }

    fn plan(&self, args: &Value, _cx: &mut PlanCtx<'_>) -> Result<Action, String> {
        let a = Args(args);
        Ok(Action::PrometheusTargets(TargetsCheck {
            url: a.str("url")?,
            timeout: Duration::from_secs(a.opt_u64("timeout")?.unwrap_or(120)),
        }))
    }
}

impl Task for TargetsCheck {
    super::task_run!();
}

/// Why a probe did not pass.
enum Missed {
    /// Prometheus refused the credentials: the message names the settings to fix.
    Refused(String),
    /// Not (yet) every target UP, or Prometheus not answering.
    NotYet(String),
}

/// One registered exporter and what Prometheus says about it.
struct Expect {
    host: String,
    service: String,
    address: String,
}

impl TargetsCheck {
    async fn probe(
        &self,
        ctx: &HostCtx<'_>,
        want: &[Expect],
    ) -> Result<String, poll::Miss<Missed>> {
        let endpoints = ctx
            .service::<crate::settings::Endpoints>()
            .map_err(|e| poll::Miss::Fail(Missed::NotYet(e.to_string())))?;
        let fetched = PromTargets::fetch(&endpoints.prometheus, &self.url).await;
        let seen = match fetched.targets {
            Ok(t) => t,
            // Refused credentials stay refused: fail now, not at the deadline.
            Err(e) if fetched.refused => return Err(poll::Miss::Fail(Missed::Refused(e))),
            Err(e) => return Err(poll::Miss::Retry(Missed::NotYet(e))),
        };
        let mut problems = Vec::new();
        for w in want {
            match seen.get(&w.address).map(|t| (&t.health, &t.last_error)) {
                Some((h, _)) if h == "up" => {}
                Some((h, e)) => problems.push(format!(
                    "{} {} {} is {h}{}",
                    w.host,
                    w.service,
                    w.address,
                    if e.is_empty() {
                        String::new()
                    } else {
                        format!(": {e}")
                    }
                )),
                None => problems.push(format!(
                    "{} {} {} is not a Prometheus target",
                    w.host, w.service, w.address
                )),
            }
        }
        if problems.is_empty() {
            Ok(format!(
                "all {} registered exporters are UP in Prometheus",
                want.len()
            ))
        } else {
            Err(poll::Miss::Retry(Missed::NotYet(problems.join("; "))))
        }
    }

    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        if ctx.check {
            return Ok(Done::skipped("not checked in --check mode"));
        }
        let (services, errors) = ctx
            .service::<super::consul::ConsulClient>()?
            .managed()
            .await;
        if services.is_empty() && !errors.is_empty() {
            return Err(TaskError::transient(format!(
                "cannot list registered services: {}",
                errors.join("; ")
            )));
        }
        let want: Vec<Expect> = services
            .into_iter()
            .map(|(_, s)| Expect {
                host: s
                    .meta
                    .as_ref()
                    .and_then(|m| m.get("hostname").cloned())
                    .unwrap_or_default(),
                address: crate::base::addr::host_port(&s.address, s.port),
                service: s.service,
            })
            .collect();
        let ctx = &*ctx;
        let want = &want;
        let every = Pace::every(Duration::from_secs(2));
        let polled = poll::until(self.timeout, every, move || async move {
            self.probe(ctx, want).await
        })
        .await;
        match polled {
            Ok(d) => Ok(Done::ok().with(d)),
            Err(Missed::Refused(e)) => Err(TaskError::permanent(e)),
            Err(Missed::NotYet(e)) => Err(TaskError::transient(format!(
                "Prometheus at {} after {}s: {e}",
                self.url,
                self.timeout.as_secs()
            ))),
        }
    }
}
