//! Fixtures shared by the unit tests of the engine (executor, planner, status): a host, a
//! step and the actions of the two modules most steps use, built in code, without an
//! inventory or a playbook file.

use bytes::Bytes;

use crate::inventory::{Host, SourcePos};
use crate::modules::compose::ComposeAction;
use crate::modules::file::FileAction;
use crate::modules::{Action, ModuleKind};
use crate::playbook::Step;

/// A fleet host of group IDE on 127.0.0.1.
pub fn host(name: &str) -> Host {
    Host {
        name: name.into(),
        ip: std::net::IpAddr::from([127, 0, 0, 1]),
        group: "IDE".into(),
        groups: vec!["IDE".into()],
        ssh: Default::default(),
        vars: Default::default(),
        pos: SourcePos::default(),
    }
}

/// A planned step running `action`.
pub fn step(name: &str, module: ModuleKind, action: Action) -> Step {
    Step {
        name: name.into(),
        module,
        pos: SourcePos::default(),
        action: Some(action),
        notify: Vec::new(),
    }
}

/// `content` copied to `dest`: mode 0644, no owner asked, no secret. A test that needs
/// another mode or owner says so with struct update syntax (`FileAction { mode, ..file(..) }`).
pub fn file(dest: &str, content: &[u8]) -> FileAction {
    FileAction {
        src: "test".into(),
        dest: dest.into(),
        content: Bytes::copy_from_slice(content),
        mode: 0o644,
        secret: false,
        owner: None,
    }
}

/// The project in `dir` brought up with `docker compose` from its docker-compose.yml, which
/// defines `services` and is the one file whose change recreates them. A test that lets the
/// fact detect the command, or watches other files, says so with struct update syntax.
pub fn compose(dir: &str, services: &[&str]) -> ComposeAction {
    ComposeAction {
        project_dir: dir.into(),
        file: "docker-compose.yml".into(),
        command: Some("docker compose".into()),
        services: Some(services.iter().map(|s| s.to_string()).collect()),
        watch: vec![format!("{dir}/docker-compose.yml")],
        restart_on: Vec::new(),
    }
}

/// A `copy` step of [`file`], named after its destination.
pub fn copy_step(file: FileAction) -> Step {
    step(&file.dest.clone(), ModuleKind::Copy, Action::File(file))
}

/// A `compose` step of [`compose`].
pub fn compose_step(compose: ComposeAction) -> Step {
    step("compose up", ModuleKind::Compose, Action::Compose(compose))
}
