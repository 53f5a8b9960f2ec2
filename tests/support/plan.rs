//! Planning without touching a host, as `deploy` plans: `make_plan` over an inventory, one of
//! the project's playbooks, a secrets file (real values) and `-e` variables; and the files a
//! plan writes.

use std::path::{Path, PathBuf};

use promfleet::cli::common::InventoryArgs;
use promfleet::cli::deploy::{Planned, make_plan};
use promfleet::modules::Action;
use promfleet::modules::file::FileAction;
use promfleet::playbook::{PlanOptions, SecretMode};

use super::run::repo;

/// The plan of the project's `playbook` for `inv`, with `secrets` (a 0600 file), the run
/// state in `state` and `vars` as `-e key=value`.
pub fn plan_of(
    playbook: &str,
    inv: &Path,
    secrets: Option<&Path>,
    state: &Path,
    vars: &[(&str, &str)],
) -> Planned {
    let args = InventoryArgs {
        inventory: vec![inv.to_path_buf()],
        limit: Vec::new(),
        retry_failed: false,
        extra_vars: vars.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        state_dir: state.to_path_buf(),
        project: Some(repo()),
        no_resolve: false,
    };
    make_plan(
        &promfleet::report::Printer::new(Default::default()),
        &[PathBuf::from(playbook)],
        &args,
        Path::new(promfleet::transport::SSH_CONFIG_DEFAULT),
        None,
        secrets,
        SecretMode::Real,
        &PlanOptions::default(),
        false,
    )
    .unwrap_or_else(|e| panic!("plan of {playbook} for {}: {e:#}", inv.display()))
}

/// Every file the plan writes, in plan order (every play, every host).
pub fn planned_files(planned: &Planned) -> Vec<FileAction> {
    planned
        .plan
        .plays
        .iter()
        .flat_map(|p| &p.hosts)
        .flat_map(|hp| &hp.steps)
        .filter_map(|s| match &s.action {
            Some(Action::File(f)) => Some(f.clone()),
            _ => None,
        })
        .collect()
}
