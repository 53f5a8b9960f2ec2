//! `promfleet render --out DIR`: every file every host would receive, laid out as
//! `DIR/<host>/<dest path>`, without connecting. Secrets are masked, so the tree can be
//! reviewed or committed to the users' own CI.

use std::path::{Path, PathBuf};

use clap::Args;

use super::common::InventoryArgs;
use super::deploy::make_plan;
use crate::modules::Action;
use crate::playbook::SecretMode;

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// Playbooks to render (default: consul, monitoring and exporters playbooks).
    pub playbooks: Vec<PathBuf>,
    #[command(flatten)]
    pub inv: InventoryArgs,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub templates: Option<PathBuf>,
    #[arg(long, env = "PROMFLEET_SECRETS")]
    pub secrets: Option<PathBuf>,
}

pub fn run(a: RenderArgs) -> anyhow::Result<i32> {
    let books = if a.playbooks.is_empty() {
        ["consul.yml", "monitoring.yml", "exporters.yml"]
            .iter()
            .map(|p| Path::new("playbooks").join(p))
            .filter(|p| p.exists())
            .collect()
    } else {
        a.playbooks.clone()
    };
    let planned = make_plan(
        &books,
        &a.inv,
        a.templates.as_deref(),
        a.secrets.as_deref(),
        SecretMode::Masked,
        &crate::playbook::PlanOptions::default(),
    )?;
    let mut files = 0;
    for play in &planned.plan.plays {
        for hp in &play.hosts {
            for step in hp.steps.iter().chain(&hp.handlers) {
                let Some(Action::File(f)) = &step.action else {
                    continue;
                };
                let rel = f.dest.trim_start_matches("~/").trim_start_matches('/');
                let path = a.out.join(&hp.host.name).join(rel);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
                }
                std::fs::write(&path, &f.content)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                files += 1;
            }
        }
    }
    eprintln!(
        "rendered {files} file(s) for {} host(s) into {} (secrets masked)",
        planned.hosts.len(),
        a.out.display()
    );
    Ok(0)
}
