//! `promfleet render --out DIR`: every file every host would receive, laid out as
//! `DIR/<host>/<dest path>`, without connecting. Secrets are masked, so the tree can be
//! reviewed or committed to the users' own CI.

use std::path::{Component, Path, PathBuf};

use clap::Args;

use super::common::{InventoryArgs, print_origins};
use super::deploy::make_plan;
use crate::inventory::{Host, Inventory};
use crate::modules::Action;
use crate::playbook::SecretMode;

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// Playbooks to render, files or names (default: consul, monitoring and exporters).
    pub playbooks: Vec<PathBuf>,
    #[command(flatten)]
    pub inv: InventoryArgs,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Templates directory overriding the built-in templates file by file (default: the
    /// project's `templates/`).
    #[arg(long)]
    pub templates: Option<PathBuf>,
    /// -v: say which playbook and template file came from where.
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[arg(long, env = "PROMFLEET_SECRETS")]
    pub secrets: Option<PathBuf>,
}

pub fn run(
    a: RenderArgs,
    printer: &crate::report::Printer,
) -> anyhow::Result<crate::report::ExitCode> {
    // Names, resolved through the project overlay (the built-in copies always exist).
    let books = if a.playbooks.is_empty() {
        ["consul.yml", "monitoring.yml", "exporters.yml"]
            .iter()
            .map(PathBuf::from)
            .collect()
    } else {
        a.playbooks.clone()
    };
    let planned = make_plan(
        printer,
        &books,
        &a.inv,
        Path::new(crate::transport::SSH_CONFIG_DEFAULT),
        a.templates.as_deref(),
        a.secrets.as_deref(),
        SecretMode::Masked,
        &crate::playbook::PlanOptions::default(),
        false,
    )?;
    planned.require_hosts()?;
    let mut files = 0;
    for play in &planned.plan.plays {
        for hp in &play.hosts {
            for step in hp.steps.iter().chain(&hp.handlers) {
                let Some(Action::File(f)) = &step.action else {
                    continue;
                };
                let path = confined(&a.out, &hp.host.name, &f.dest).map_err(|why| {
                    anyhow::anyhow!(
                        "{}: host {}, task `{}`: dest `{}` {why}{}",
                        step.pos,
                        hp.host.name,
                        step.name,
                        f.dest,
                        culprits(&planned.inventory, &hp.host, &f.dest)
                    )
                })?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
                }
                // Checked again after creating the directories: one of them may have been a
                // symlink made meanwhile.
                confined(&a.out, &hp.host.name, &f.dest)
                    .map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?;
                std::fs::write(&path, &f.content)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                files += 1;
            }
        }
    }
    if a.verbose > 0 {
        print_origins(&planned.project, printer.reporter().as_ref());
    }
    if files == 0 {
        anyhow::bail!(
            "nothing rendered: the playbooks ({}) have no template or copy task for the {} selected host(s)",
            books
                .iter()
                .map(|b| b.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            planned.hosts.len()
        );
    }
    printer.reporter().message(&format!(
        "rendered {files} file(s) for {} host(s) into {} (secrets masked)",
        planned.hosts.len(),
        a.out.display()
    ));
    Ok(crate::report::ExitCode::Ok)
}

/// `out/<host>/<dest>`, resolved lexically inside `out`: a `..` component is refused (a
/// leading `/` or `~/` only anchors the path under the host's directory), and no existing
/// component below `out` may be a symlink (it could point anywhere).
fn confined(out: &Path, host: &str, dest: &str) -> Result<PathBuf, String> {
    let rel = dest.strip_prefix("~/").unwrap_or(dest);
    let mut path = out.join(host);
    let mut parts = 0;
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => {
                path.push(p);
                parts += 1;
            }
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                return Err("would be written outside --out: it contains `..`".into());
            }
            Component::Prefix(_) => return Err("is not a POSIX path".into()),
        }
    }
    if parts == 0 {
        return Err("names no file".into());
    }
    let mut at = out.to_path_buf();
    for c in path
        .strip_prefix(out)
        .map_err(|e| e.to_string())?
        .components()
    {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "would be written through the symlink {} (render follows no symlink inside --out)",
                    at.display()
                ));
            }
            _ => {}
        }
    }
    Ok(path)
}

/// The host's variables whose value holds the offending `..` and appears in `dest`, named
/// for the error (`; from variable deploy_dir = "…"`).
fn culprits(inv: &Inventory, host: &Host, dest: &str) -> String {
    let groups = inv
        .groups
        .iter()
        .filter(|g| host.groups.contains(&g.name))
        .map(|g| &g.vars);
    let mut names: Vec<String> = Vec::new();
    for vars in std::iter::once(&host.vars).chain(groups).chain([&inv.vars]) {
        for (k, v) in vars {
            if let Some(v) = v.as_str()
                && Path::new(v).components().any(|c| c == Component::ParentDir)
                && dest.contains(v)
                && !names.iter().any(|n| n.starts_with(&format!("{k} ")))
            {
                names.push(format!("{k} = {v:?}"));
            }
        }
    }
    if names.is_empty() {
        String::new()
    } else {
        format!("; from variable {}", names.join(", "))
    }
}
