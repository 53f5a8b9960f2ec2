//! `promfleet init [DIR]`: write an editable project from the built-in files; `--diff` shows
//! how an existing project's playbooks and templates differ from this version's built-in
//! ones (what an upgrade would change).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::project::builtin_files;
use crate::report::{ExitCode, Printer, Reporter};

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The project directory (created if missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Write nothing; print unified diffs from the built-in files to the project's copies.
    #[arg(long)]
    pub diff: bool,
}

/// The secrets file `init` writes (mode 0600) and `.gitignore` keeps out of git.
const SECRETS: &str = "secrets.yml";

const SECRETS_SKELETON: &str = "\
# promfleet secrets (mode 0600, kept out of git by .gitignore): pass it with
# --secrets secrets.yml (or PROMFLEET_SECRETS). PROMFLEET_SECRET_<NAME> environment
# variables take precedence. The built-in templates ask for these:
#
# consul_token: \"…\"                    # Consul ACL token (CONSUL_HTTP_TOKEN[_FILE] win; README, Consul)
# grafana_admin_password: \"…\"          # generated and stored when unset (README, Secrets)
# dingtalk_token_<group slug>: \"…\"     # DingTalk robot access token, per fleet group
# dingtalk_secret_<group slug>: \"…\"    # DingTalk robot signing secret, per fleet group
";

const GITIGNORE: &str = "\
# Secrets and promfleet's run state (last run, retry file, generated secrets) stay local.
/secrets.yml
/.promfleet/
";

/// One file `init` writes: project-relative name, content, mode.
struct Planned {
    name: String,
    content: &'static [u8],
    mode: u32,
}

/// Built-in `playbooks/` and `templates/` as they are; the example inventory as
/// `inventory.yml` (the other examples stay in `inventory/`).
fn project_files() -> Vec<Planned> {
    let mut files: Vec<Planned> = builtin_files()
        .map(|(name, content)| Planned {
            name: if name == "inventory/example.yml" {
                "inventory.yml".to_string()
            } else {
                name.to_string()
            },
            content,
            mode: 0o644,
        })
        .collect();
    files.push(Planned {
        name: SECRETS.into(),
        content: SECRETS_SKELETON.as_bytes(),
        mode: 0o600,
    });
    files.push(Planned {
        name: ".gitignore".into(),
        content: GITIGNORE.as_bytes(),
        mode: 0o644,
    });
    files
}

pub fn run(a: InitArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let reporter = printer.reporter();
    if a.diff {
        return diff(&a.dir, reporter.as_ref());
    }
    let files = project_files();
    // All or nothing: a project half-overwritten with this version's files is worse than none.
    let existing: Vec<String> = files
        .iter()
        .filter(|f| a.dir.join(&f.name).symlink_metadata().is_ok())
        .map(|f| f.name.clone())
        .collect();
    if !existing.is_empty() {
        anyhow::bail!(
            "{}: refusing to overwrite {} existing file(s): {} — move them away, or see what differs with `promfleet init --diff {}`",
            a.dir.display(),
            existing.len(),
            existing.join(", "),
            a.dir.display()
        );
    }
    for f in &files {
        let path = a.dir.join(&f.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                anyhow::anyhow!("{}: cannot create directory: {e}", parent.display())
            })?;
        }
        write_new(&path, f.content, f.mode)?;
    }
    reporter.message(&format!(
        "wrote {} file(s) into {}: inventory.yml, playbooks/, templates/, {SECRETS} (0600), .gitignore",
        files.len(),
        a.dir.display()
    ));
    reporter.message(&format!(
        "next: edit inventory.yml, then `promfleet exporters -i inventory.yml --check` from {}",
        a.dir.display()
    ));
    Ok(ExitCode::Ok)
}

/// Create `path` (never replacing a file, even one made since the check) with `mode` from the
/// start, so a secrets file is never readable by others, not even for a moment.
fn write_new(path: &Path, content: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", path.display()))?;
    // The umask may have cleared bits of `mode`; it must not be able to add any, but set the
    // exact mode so 0644 files are not left 0600 by a strict umask either.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    f.write_all(content)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

/// Unified diffs built-in → project for `playbooks/` and `templates/`; files only one side
/// has are listed. The inventory and secrets are the user's own and not compared.
fn diff(dir: &Path, reporter: &dyn Reporter) -> anyhow::Result<ExitCode> {
    if !dir.join("playbooks").is_dir() && !dir.join("templates").is_dir() {
        anyhow::bail!(
            "{}: no playbooks/ or templates/ to compare with the built-in files — create a project with `promfleet init {}`",
            dir.display(),
            dir.display()
        );
    }
    let mut out = String::new();
    let (mut changed, mut missing) = (0, 0);
    for (name, builtin) in builtin_files().filter(|(n, _)| !n.starts_with("inventory/")) {
        let path = dir.join(name);
        let Ok(local) = std::fs::read(&path) else {
            out.push_str(&format!(
                "only built-in: {name} (the built-in copy is used)\n"
            ));
            missing += 1;
            continue;
        };
        if local == builtin {
            continue;
        }
        changed += 1;
        let old = String::from_utf8_lossy(builtin);
        let new = String::from_utf8_lossy(&local);
        let d = similar::TextDiff::from_lines(old.as_ref(), new.as_ref());
        out.push_str(
            &d.unified_diff()
                .context_radius(3)
                .header(&format!("built-in/{name}"), &path.display().to_string())
                .to_string(),
        );
    }
    let mut extra = Vec::new();
    for sub in ["playbooks", "templates"] {
        collect(&dir.join(sub), dir, &mut extra);
    }
    extra.retain(|n| crate::project::builtin(n).is_none());
    extra.sort();
    for n in &extra {
        out.push_str(&format!("only in project: {n}\n"));
    }
    reporter.generated(&out);
    reporter.message(&format!(
        "{changed} file(s) differ from built-in {}, {missing} only built-in, {} only in the project",
        super::VERSION,
        extra.len()
    ));
    Ok(ExitCode::Ok)
}

fn collect(at: &Path, root: &Path, into: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(at) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, root, into);
        } else if let Some(rel) = p.strip_prefix(root).ok().and_then(Path::to_str) {
            into.push(rel.to_string());
        }
    }
}
