//! Flags shared by subcommands, and the setup they share: inventory + limit → hosts,
//! connection options, the executor, signal handling, output flags (the output itself is the
//! `report::Printer`'s, which `main` builds from `Command::output`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::executor::{
    Connector, Executor, RetryPolicy, RunOptions, http_client, listen_for_signals,
};
use crate::inventory::{self, Host, Inventory, Limit};
use crate::modules::Services;
use crate::playbook::{SecretError, Secrets};
use crate::project::Project;
use crate::report::{Format, OutputPolicy, Printer, Reporter, STATE_DIR};
use crate::settings::endpoints::Sources as EndpointSources;
use crate::settings::{Consul, Endpoints, Env, ProjectFile, consul::Sources};
use crate::transport::{
    BecomePassword, ConnectOptions, PasswordSource, SshConfig, keys::expand_home,
};

#[derive(Args, Debug, Clone)]
pub struct InventoryArgs {
    /// Inventory file (promfleet YAML, Ansible YAML or INI) or directory of Ansible
    /// inventories; repeatable (Ansible sources merge, later ones winning).
    #[arg(
        short = 'i',
        long = "inventory",
        env = "PROMFLEET_INVENTORY",
        required = true
    )]
    pub inventory: Vec<PathBuf>,
    /// Host pattern(s): host, group, glob, `!exclude`, `&intersect`, `@file`; repeatable.
    #[arg(short = 'l', long = "limit")]
    pub limit: Vec<String>,
    /// Only the hosts that failed or were unreachable in the last run (.promfleet/retry).
    #[arg(long)]
    pub retry_failed: bool,
    /// Extra variable KEY=VALUE (highest precedence, like ansible-playbook -e); repeatable.
    /// `true` and `false` are booleans, any other value a string.
    #[arg(short = 'e', long = "extra-vars", value_name = "KEY=VALUE")]
    pub extra_vars: Vec<String>,
    /// Where the run state and retry file are kept.
    #[arg(long, default_value = STATE_DIR, env = "PROMFLEET_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Project directory whose playbooks/ and templates/ override the built-in ones, file by
    /// file (default: the current directory when it holds playbooks/ or templates/).
    #[arg(long, env = "PROMFLEET_PROJECT", value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Look no host name up: hosts an Ansible inventory gives by DNS name get stand-in
    /// addresses (240.0.0.0/4), for an offline `render` or `inventory list`. Commands that
    /// deploy or check hosts refuse them.
    #[arg(long)]
    pub no_resolve: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Set by `--check`, never by a flag: record no host key (see `ConnectOptions`).
    #[arg(skip)]
    pub never_record_host_keys: bool,
    /// Hosts worked on at once.
    #[arg(short = 'f', long, default_value_t = 50)]
    pub forks: usize,
    /// Login user when neither the inventory nor ~/.ssh/config names one (default: the local
    /// user, as ssh).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// User known_hosts file, for hosts whose ssh config sets no UserKnownHostsFile; new keys
    /// are recorded in it. The global files (/etc/ssh/ssh_known_hosts{,2}) are read too.
    #[arg(long, default_value = "~/.ssh/known_hosts")]
    pub known_hosts: PathBuf,
    /// Record unknown host keys (trust on first use): StrictHostKeyChecking accept-new for hosts
    /// whose ssh config does not set it. Changed and revoked keys are always refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// OpenSSH client config, resolved by `ssh -G` (`ssh -F PATH`); the default means ssh's own
    /// lookup (~/.ssh/config, then /etc/ssh/ssh_config); a missing file means no config.
    #[arg(long, default_value = crate::transport::SSH_CONFIG_DEFAULT)]
    pub ssh_config: PathBuf,
    /// Do not use ssh-agent even when SSH_AUTH_SOCK is set.
    #[arg(long)]
    pub no_agent: bool,
    /// Seconds allowed to connect and authenticate.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Seconds one remote command may run.
    #[arg(long, default_value_t = 600)]
    pub command_timeout: u64,
    /// Seconds between SSH keepalives (a dead peer is detected after 3 missed ones).
    #[arg(long, default_value_t = 15)]
    pub keepalive: u64,
    /// Attempts for transient failures (connect refused/timeout, Consul 5xx, metrics not up).
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Base delay in milliseconds of the exponential retry backoff.
    #[arg(long, default_value_t = 500)]
    pub retry_delay_ms: u64,
    /// Ask once for the sudo password of `become` hosts (no echo). An inventory's
    /// `ansible_become_password` still wins for its hosts; without -K, the `become_password`
    /// secret is used if set.
    #[arg(short = 'K', long)]
    pub ask_become_pass: bool,
    /// SSH handshakes in flight at once (default: --forks). Keep it at or below the servers'
    /// (or a ProxyJump bastion's) MaxStartups start value (sshd default 10).
    #[arg(long)]
    pub max_handshakes: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// `json` prints the run report as JSON on stdout (progress still goes to stderr).
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// More output: -v every task (and every failure in the recap), -vv task details.
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only the recap (or JSON) and errors.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// The run's Consul settings from every source (`settings::consul` has the precedence),
/// resolved once: the token is set in `secrets` (templates read it there), the resolved TLS
/// settings are written into `inv.consul` (templates render them), and a token bound for a
/// non-loopback agent over plain http is warned about, once.
pub fn resolve_consul(
    inv: &mut Inventory,
    secrets: &mut Secrets,
    printer: &Printer,
) -> anyhow::Result<Consul> {
    let project = ProjectFile::current();
    let inventory_dir = inv.source.parent().map(Path::to_path_buf);
    let mut consul = Consul::resolve(&Sources {
        env: Env::current(),
        secrets,
        inventory: &inv.consul,
        inventory_dir: inventory_dir.as_deref(),
        project: &project.consul,
        project_dir: project.dir(),
    })?;
    secrets.set_consul_token(consul.token().map(|t| (t.value.clone(), t.origin.clone())));
    consul.apply_to(inv);
    consul.set_placement(inv.consul_placement(consul.agents()));
    secrets.set_consul_tls_files(consul.tls_files());
    if let Some(w) = consul.plain_http_warning() {
        printer.reporter().warning(&w);
    }
    Ok(consul)
}

/// The run's Prometheus and Alertmanager endpoints (`settings::endpoints` has the
/// precedence), resolved once; the resolved schemes are written into `inv`'s variables
/// (playbooks and `status` build URLs from them).
pub fn resolve_endpoints(inv: &mut Inventory, secrets: &Secrets) -> anyhow::Result<Endpoints> {
    let project = ProjectFile::current();
    let inventory_dir = inv.source.parent().map(Path::to_path_buf);
    let vars = match inv.monitoring().next() {
        Some(h) => inv.host_vars(h),
        None => inv.vars.clone(),
    };
    let endpoints = Endpoints::resolve(&EndpointSources {
        secrets,
        inventory_vars: &vars,
        inventory_dir: inventory_dir.as_deref(),
        project: &project.endpoints,
        project_dir: project.dir(),
    })?;
    endpoints.apply_to(inv);
    Ok(endpoints)
}

impl OutputFormat {
    pub fn format(self) -> Format {
        match self {
            OutputFormat::Text => Format::Text,
            OutputFormat::Json => Format::Json,
        }
    }
}

impl OutputArgs {
    /// What the `report::Printer` is built from (`show_diff`: `--diff`).
    pub fn policy(&self, show_diff: bool) -> OutputPolicy {
        OutputPolicy {
            format: self.output.format(),
            verbosity: self.verbose,
            quiet: self.quiet,
            show_diff,
        }
    }
}

/// Read the inventory, with a message that names the file on failure. Its sudo passwords
/// are registered with the masker before anything can print them. Hosts given by name are
/// resolved as `ssh NAME` resolves them through `ssh_config` (`--ssh-config`).
pub fn load_inventory(
    paths: &[PathBuf],
    ssh_config: &Path,
    printer: &Printer,
) -> anyhow::Result<Inventory> {
    load_inventory_with(paths, false, ssh_config, printer)
}

/// `load_inventory`; with `no_resolve`, hosts given by DNS name get stand-in addresses (said
/// once on stderr) instead of being looked up.
pub fn load_inventory_with(
    paths: &[PathBuf],
    no_resolve: bool,
    ssh_config: &Path,
    printer: &Printer,
) -> anyhow::Result<Inventory> {
    let names = if no_resolve {
        inventory::Names::StandIn
    } else {
        // The ssh config's HostName first (an alias known only there), then DNS.
        inventory::Names::Resolve {
            resolver: Arc::new(SshConfig::hostname_resolver(ssh_config)),
            timeout: inventory::RESOLVE_TIMEOUT,
        }
    };
    let inv = inventory::load_sources_with(paths, &names)?;
    if let Some(note) = inventory::stand_in_note(&inv) {
        printer.reporter().message(&format!("note: {note}"));
    }
    for pw in inv
        .hosts
        .iter()
        .filter_map(|h| h.ssh.become_password.as_ref())
    {
        printer.masker().add(pw.expose());
    }
    Ok(inv)
}

/// The `-i` sources as one label (messages, the run state's record).
pub fn inventory_label(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(",")
}

/// Read the inventory and apply `-e KEY=VALUE` over every host's variables.
pub fn load_inventory_args(
    args: &InventoryArgs,
    ssh_config: &Path,
    printer: &Printer,
) -> anyhow::Result<Inventory> {
    let mut inv = load_inventory_with(&args.inventory, args.no_resolve, ssh_config, printer)?;
    for kv in &args.extra_vars {
        let Some((k, v)) = kv.split_once('=') else {
            anyhow::bail!("-e {kv}: expected KEY=VALUE");
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            anyhow::bail!("-e {kv}: variable names are letters, digits and _");
        }
        let value = extra_var_value(v);
        for h in &mut inv.hosts {
            h.vars.insert(k.to_string(), value.clone());
        }
    }
    Ok(inv)
}

/// An `-e` value: `true` and `false` are booleans, everything else the string as given.
/// (ansible-playbook keeps `key=false` a string; in promfleet's templates a non-empty string
/// is true, so `-e consul_acl=false` would have turned ACLs on.)
fn extra_var_value(v: &str) -> serde_json::Value {
    match v {
        "true" | "True" => serde_json::Value::Bool(true),
        "false" | "False" => serde_json::Value::Bool(false),
        _ => serde_json::Value::String(v.to_string()),
    }
}

/// Hosts selected by --limit / --retry-failed (all hosts when neither is given).
pub fn select(inv: &Inventory, args: &InventoryArgs) -> anyhow::Result<Vec<Host>> {
    let mut patterns = args.limit.clone();
    if args.retry_failed {
        let retry = crate::report::RunState::retry_path(&args.state_dir);
        if !retry.exists() {
            anyhow::bail!(
                "--retry-failed: no failed hosts recorded ({} does not exist: the last run had no failures)",
                retry.display()
            );
        }
        patterns.push(format!("@{}", retry.display()));
    }
    if patterns.is_empty() {
        return Ok(inv.hosts.clone());
    }
    // Each --limit narrows the previous ones (like Ansible's repeated patterns joined by &).
    let mut hosts: Vec<Host> = inv.hosts.clone();
    for p in &patterns {
        let limit = Limit::parse(p)?;
        let chosen: Vec<String> = inv
            .select(Some(&limit))?
            .into_iter()
            .map(|h| h.name.clone())
            .collect();
        hosts.retain(|h| chosen.contains(&h.name));
    }
    Ok(hosts)
}

/// Connection options from flags.
pub fn connect_options(c: &ConnArgs) -> ConnectOptions {
    let mut o = ConnectOptions::new(expand_home(&c.known_hosts));
    o.accept_new_host_keys = c.accept_new_host_keys;
    o.record_host_keys = !c.never_record_host_keys;
    o.connect_timeout = Duration::from_secs(c.connect_timeout.max(1));
    o.command_timeout = Duration::from_secs(c.command_timeout.max(1));
    o.keepalive = Duration::from_secs(c.keepalive.max(1));
    if c.no_agent {
        o.agent = None;
    }
    o
}

pub fn retry_policy(c: &ConnArgs) -> RetryPolicy {
    RetryPolicy {
        attempts: c.retries.max(1),
        base: Duration::from_millis(c.retry_delay_ms),
        ..RetryPolicy::default()
    }
}

/// The client config named by `--ssh-config`; says once (a warning) when it cannot be read.
pub fn ssh_config(c: &ConnArgs, reporter: &dyn Reporter) -> SshConfig {
    let config = SshConfig::new(&c.ssh_config);
    if let Some(w) = config.warning() {
        reporter.warning(&w.to_string());
    }
    config
}

/// The run's sudo password: typed at `-K` (asked once, on the terminal, without echo), else
/// the `become_password` secret; registered with the secrets' masker.
pub fn become_password(c: &ConnArgs, secrets: &Secrets) -> anyhow::Result<Option<BecomePassword>> {
    let (value, source) = if c.ask_become_pass {
        // rpassword reads the terminal (/dev/tty), not stdin, which may be a pipe.
        let v = rpassword::prompt_password("BECOME password: ").map_err(|e| {
            anyhow::anyhow!(
                "--ask-become-pass: cannot read the password from the terminal ({e}) — without \
                 a terminal, set the become_password secret (PROMFLEET_SECRET_BECOME_PASSWORD \
                 or --secrets FILE)"
            )
        })?;
        (v, PasswordSource::AskBecomePass)
    } else {
        let name = "become_password";
        match secrets.get(name) {
            Ok(v) => (
                v,
                PasswordSource::Secret {
                    from: secrets.origin(name),
                },
            ),
            Err(SecretError::Missing { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    };
    secrets.masker().add(&value);
    Ok(Some(
        BecomePassword::new(&value, source).map_err(anyhow::Error::msg)?,
    ))
}

/// The connector; `secrets` may hold the run's sudo password (`become_password`); the
/// transport's warnings go to `reporter`.
pub fn connector(
    c: &ConnArgs,
    secrets: &Secrets,
    reporter: &Arc<dyn Reporter>,
) -> anyhow::Result<Connector> {
    let mut opts = connect_options(c);
    opts.become_password = become_password(c, secrets)?;
    let r = reporter.clone();
    opts.warn = crate::transport::Warn::new(move |m| r.warning(m));
    Ok(Connector::new(
        opts,
        ssh_config(c, reporter.as_ref()),
        c.user.clone(),
        retry_policy(c),
        c.max_handshakes.unwrap_or(c.forks),
    ))
}

pub struct Setup {
    pub executor: Arc<Executor>,
    pub reporter: Arc<dyn Reporter>,
}

/// The executor reporting through the printer's reporter; `interrupts` (from `signals`,
/// installed when the command started) cancel it. `opts` carries the command's own
/// settings; forks and retries come from the connection flags, the Consul client and the
/// Prometheus/Alertmanager clients (`Endpoints`) from the run's settings, as services.
pub fn executor(
    printer: &Printer,
    consul: &Consul,
    endpoints: &Endpoints,
    secrets: &Secrets,
    conn: &ConnArgs,
    opts: RunOptions,
    interrupts: &Interrupts,
) -> anyhow::Result<Setup> {
    let masker = printer.masker().clone();
    let reporter = printer.reporter();
    let http = http_client();
    let consul = consul.client()?;
    let (cancel, abort) = (interrupts.cancel.clone(), interrupts.abort.clone());
    // `--check` writes nothing, known_hosts included: an unknown host key is reported (the
    // host is unreachable, "host key … is not known"), never recorded.
    let mut conn = conn.clone();
    conn.never_record_host_keys = opts.check;
    if opts.check && conn.accept_new_host_keys {
        conn.accept_new_host_keys = false;
        reporter.notice(
            "--check records no host keys: a host whose key is unknown is shown unreachable (record it with a run without --check, or ssh-keyscan)",
        );
    }
    let conn = &conn;
    let executor = Arc::new(Executor {
        connector: Arc::new(connector(conn, secrets, &reporter)?),
        http,
        services: Services::new()
            .with(consul)
            .with(Arc::new(endpoints.clone())),
        masker,
        reporter: reporter.clone(),
        opts: RunOptions {
            forks: conn.forks.max(1),
            retry: retry_policy(conn),
            ..opts
        },
        cancel,
        abort,
    });
    Ok(Setup { executor, reporter })
}

/// Signal handling for a command that works on many hosts: Ctrl-C / SIGTERM cancel it (see
/// `executor::listen_for_signals`); returns the (cancel, abort) tokens for its `Scheduler`.
pub fn signals(reporter: &Arc<dyn Reporter>) -> (CancellationToken, CancellationToken) {
    let (cancel, abort) = (CancellationToken::new(), CancellationToken::new());
    listen_for_signals(cancel.clone(), abort.clone(), reporter.clone());
    (cancel, abort)
}

/// The interrupts of a command that changes things (deploy, exporters, rollback), installed
/// first thing: a signal while it plans is then an interrupt like one during the run.
pub struct Interrupts {
    pub cancel: CancellationToken,
    pub abort: CancellationToken,
    reporter: Arc<dyn Reporter>,
}

impl Interrupts {
    pub fn install(printer: &Printer) -> Interrupts {
        let reporter = printer.reporter();
        let (cancel, abort) = signals(&reporter);
        Interrupts {
            cancel,
            abort,
            reporter,
        }
    }

    /// Interrupted before anything was changed: said, and the exit code to end with (no
    /// host touched, no run state written).
    pub fn before_run(&self, stage: &str) -> Option<crate::report::ExitCode> {
        self.cancel.is_cancelled().then(|| {
            self.reporter.notice(&format!(
                "interrupted while {stage}: nothing was changed, no run state written"
            ));
            crate::report::ExitCode::Interrupted
        })
    }
}

/// The project overlay for a command: `--project`/`PROMFLEET_PROJECT`, `--templates`, and
/// the first playbook argument (see `Project::discover`).
pub fn project_for(
    inv: &InventoryArgs,
    templates: Option<&Path>,
    playbook: Option<&Path>,
) -> anyhow::Result<Project> {
    Ok(Project::discover(
        inv.project.as_deref(),
        templates,
        playbook,
    )?)
}

/// `-v`: which playbook, template and defaults file came from where.
pub fn print_origins(project: &Project, reporter: &dyn Reporter) {
    match project.root() {
        Some(r) => reporter.message(&format!("project directory: {}", r.display())),
        None => reporter.message("project directory: none (built-in files only)"),
    }
    for (name, origin) in project.origins() {
        reporter.message(&format!("  {name}: {origin}"));
    }
}
