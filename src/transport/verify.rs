//! Host key verification at connect time, decided as ssh(1)'s check_host_key decides it: the
//! name and files OpenSSH reads (HostKeyAlias, UserKnownHostsFile, GlobalKnownHostsFile), the
//! host key algorithms it prefers, the verdict on the presented key or certificate, and the
//! recording of a new key when StrictHostKeyChecking allows it. The file format is
//! `known_hosts`'s job.
//!
//! Deliberate differences from OpenSSH, all stricter: a changed or revoked key is refused even
//! with `StrictHostKeyChecking no`; off port 22, a key revoked by a bare-host line is refused
//! (ssh records it); a plain key is never recorded for a host that a `@cert-authority` line
//! covers (ssh falls back to trust-on-first-use there).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Algorithm, HashAlg, PublicKeyOrCertificate};
use russh::{Preferred, client};

use super::known_hosts::{
    HostKeys, LockedFile, Status, certificate_problem, host_line, lookup_name,
};
use super::{ConnectOptions, StrictHostKeyChecking, Target, TransportError};

/// Everything about one host's key check that the target and the run decide.
#[derive(Debug, Clone)]
pub(super) struct HostKeyPolicy {
    /// For messages: the inventory name and the lookup name.
    label: String,
    /// Name looked up and recorded: HostKeyAlias, else `host` / `[host]:port`.
    lookup: String,
    /// Off port 22 without an alias, ssh also accepts a key known under the bare host.
    portless: Option<String>,
    /// Name a host certificate must list (HostKeyAlias, else the host).
    principal: String,
    user_files: Vec<PathBuf>,
    global_files: Vec<PathBuf>,
    strict: StrictHostKeyChecking,
    hash: bool,
    warn: super::session::Warn,
}

/// What the known_hosts lines say about the presented key.
enum Verdict {
    Trusted,
    /// Not known; `cert_problem` says why a presented certificate did not do.
    New {
        key: KeyData,
        cert_problem: Option<String>,
    },
    Refused(TransportError),
}

impl HostKeyPolicy {
    pub(super) fn new(target: &Target, opts: &ConnectOptions) -> HostKeyPolicy {
        let host = target.address.to_ascii_lowercase();
        let (lookup, portless, principal) = match &target.host_key_alias {
            // ssh lower-cases the alias too (the table's capitals row checks it).
            Some(alias) => (alias.to_ascii_lowercase(), None, alias.to_ascii_lowercase()),
            None => (
                lookup_name(&host, target.port),
                (target.port != 22).then(|| host.clone()),
                host,
            ),
        };
        let label = if target.name.is_empty() || target.name == target.address {
            lookup.clone()
        } else {
            format!("{} ({lookup})", target.name)
        };
        let or = |v: &Vec<PathBuf>, default: &Vec<PathBuf>| {
            if v.is_empty() {
                default.clone()
            } else {
                v.clone()
            }
        };
        let run_strict = if opts.accept_new_host_keys {
            StrictHostKeyChecking::AcceptNew
        } else {
            StrictHostKeyChecking::Yes
        };
        HostKeyPolicy {
            label,
            lookup,
            portless,
            principal,
            user_files: or(&target.user_known_hosts, &vec![opts.known_hosts.clone()]),
            global_files: or(&target.global_known_hosts, &opts.global_known_hosts),
            strict: if opts.record_host_keys {
                target.strict_host_key_checking.unwrap_or(run_strict)
            } else {
                StrictHostKeyChecking::Yes
            },
            hash: target.hash_known_hosts,
            warn: opts.warn.clone(),
        }
    }

    fn load(&self, name: &str) -> HostKeys {
        let files: Vec<PathBuf> = self
            .user_files
            .iter()
            .chain(&self.global_files)
            .cloned()
            .collect();
        let keys = HostKeys::load(name, &files);
        keys.warn_malformed(&|m| self.warn.warn(m));
        keys
    }

    /// The file new keys go to (ssh: the first UserKnownHostsFile).
    fn record_file(&self) -> PathBuf {
        self.user_files.first().cloned().unwrap_or_default()
    }

    /// Host key algorithms to negotiate, as ssh's order_hostkeyalgs: the types already known
    /// for the host first (so a server that also has an ed25519 key is checked against the
    /// known ECDSA one), the rest after (they can only end as "changed" when a key is known);
    /// certificates only when a `@cert-authority` line covers the host.
    pub(super) fn preferred(&self) -> Preferred {
        let known = self.load(&self.lookup);
        let algorithms = known.key_algorithms();
        let is_known = |a: &Algorithm| {
            algorithms.iter().any(|k| {
                k == a || (matches!(k, Algorithm::Rsa { .. }) && matches!(a, Algorithm::Rsa { .. }))
            })
        };
        let default = Preferred::DEFAULT.key;
        let key: Vec<Algorithm> = default
            .iter()
            .filter(|a| is_known(a))
            .chain(default.iter().filter(|a| !is_known(a)))
            .cloned()
            .collect();
        let certificates: Vec<Algorithm> = if known.first_authority().is_some() {
            // OpenSSH's default list has no ssh-rsa (SHA-1) certificates.
            default
                .iter()
                .filter(|a| **a != Algorithm::Rsa { hash: None })
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        Preferred {
            key: key.into(),
            host_key_certificates: certificates.into(),
            ..Preferred::DEFAULT
        }
    }

    fn judge(&self, presented: &PublicKeyOrCertificate, known: &HostKeys) -> Verdict {
        let fingerprint = fingerprint(presented.public_key().key_data());
        let mut cert_problem = None;
        let key = match presented {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.key_data().clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                let revoked = known
                    .revoked(cert.public_key())
                    .or_else(|| known.revoked(cert.signature_key()));
                if let Some(r) = revoked {
                    return Verdict::Refused(TransportError::HostKeyRevoked {
                        host: self.label.clone(),
                        fingerprint,
                        known_hosts: r.file.clone(),
                        line: r.line,
                    });
                }
                match known.authority(cert.signature_key()) {
                    Some(ca) => match certificate_problem(cert, ca, &self.principal, now()) {
                        None => return Verdict::Trusted,
                        Some(p) => cert_problem = Some(p),
                    },
                    None => {
                        cert_problem = Some(format!(
                            "its certificate is signed by a CA not listed for it ({})",
                            fingerprint_of(cert.signature_key())
                        ))
                    }
                }
                // As ssh: a certificate that does not do is judged as its plain key.
                cert.public_key().clone()
            }
        };
        match known.status(&key) {
            Status::Known(_) => Verdict::Trusted,
            Status::Revoked(r) => Verdict::Refused(TransportError::HostKeyRevoked {
                host: self.label.clone(),
                fingerprint,
                known_hosts: r.file.clone(),
                line: r.line,
            }),
            Status::Changed(e) => Verdict::Refused(TransportError::HostKeyChanged {
                host: self.lookup.clone(),
                fingerprint,
                known: e.key.algorithm().as_str().to_string(),
                known_hosts: e.file.clone(),
                line: e.line,
            }),
            Status::New => {
                let portless = self.portless.as_ref().map(|name| self.load(name));
                match portless.as_ref().map(|k| k.status(&key)) {
                    Some(Status::Known(_)) => Verdict::Trusted,
                    // ssh would go on and record a key revoked under the bare host: refuse.
                    Some(Status::Revoked(r)) => Verdict::Refused(TransportError::HostKeyRevoked {
                        host: self.label.clone(),
                        fingerprint,
                        known_hosts: r.file.clone(),
                        line: r.line,
                    }),
                    _ => Verdict::New { key, cert_problem },
                }
            }
        }
    }

    /// The whole decision for one presented key; `Ok(())` to go on.
    fn check(
        &self,
        presented: &PublicKeyOrCertificate,
        lock: &Mutex<()>,
    ) -> Result<(), TransportError> {
        let known = self.load(&self.lookup);
        let cert_problem = match self.judge(presented, &known) {
            Verdict::Trusted => return Ok(()),
            Verdict::Refused(e) => return Err(e),
            Verdict::New { cert_problem, .. } => cert_problem,
        };
        let fingerprint = fingerprint(presented.public_key().key_data());
        if let Some(ca) = known.first_authority() {
            return Err(TransportError::HostKeyNotCertified {
                host: self.label.clone(),
                fingerprint,
                principal: self.principal.clone(),
                reason: cert_problem
                    .unwrap_or_else(|| "it offered no certificate".into())
                    .into(),
                known_hosts: ca.file.clone(),
                line: ca.line,
            });
        }
        if self.strict == StrictHostKeyChecking::Yes {
            return Err(TransportError::HostKeyUnknown {
                host: self.label.clone(),
                fingerprint,
                known_hosts: self.record_file(),
            });
        }
        self.record(presented, lock)
    }

    /// Append the new key to the first user file, re-judging under the locks: another
    /// connection of this run, or another process, may have recorded the host meanwhile.
    fn record(
        &self,
        presented: &PublicKeyOrCertificate,
        lock: &Mutex<()>,
    ) -> Result<(), TransportError> {
        let file = self.record_file();
        let failed = |message: String| TransportError::HostKeyRecord {
            host: self.label.clone(),
            known_hosts: file.clone(),
            message,
        };
        let _in_process = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut locked = LockedFile::open(&file).map_err(|e| failed(e.to_string()))?;
        let key = match self.judge(presented, &self.load(&self.lookup)) {
            Verdict::Trusted => return Ok(()),
            Verdict::Refused(e) => return Err(e),
            Verdict::New { key, .. } => key,
        };
        let line = host_line(&self.lookup, &key, self.hash).map_err(failed)?;
        locked.append(&line).map_err(|e| failed(e.to_string()))
    }
}

fn fingerprint(key: &KeyData) -> String {
    format!("{} {}", key.algorithm().as_str(), fingerprint_of(key))
}

fn fingerprint_of(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The russh handler: checks the server's host key; remembers why it refused.
pub(super) struct Verifier {
    pub(super) policy: HostKeyPolicy,
    pub(super) known_hosts_lock: Arc<Mutex<()>>,
    pub(super) problem: Arc<Mutex<Option<TransportError>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match self.policy.check(key, &self.known_hosts_lock) {
            Ok(()) => Ok(true),
            Err(e) => {
                *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::known_hosts::test_keys::{ED_A, ED_B};
    use super::*;
    use std::path::Path;

    fn presented(line: &str) -> PublicKeyOrCertificate {
        let key = russh::keys::PublicKey::from_openssh(line).expect("key");
        PublicKeyOrCertificate::from(key)
    }

    struct Case {
        dir: tempfile::TempDir,
        target: Target,
        opts: ConnectOptions,
    }

    impl Case {
        fn new(user: &str, global: &str) -> Case {
            let dir = tempfile::tempdir().expect("tmp");
            std::fs::write(dir.path().join("user"), user).expect("user");
            std::fs::write(dir.path().join("global"), global).expect("global");
            let mut opts = ConnectOptions::new(dir.path().join("run_kh"));
            opts.global_known_hosts = vec![dir.path().join("none")];
            let target = Target {
                name: "web1".into(),
                address: "10.0.0.5".into(),
                port: 2222,
                user_known_hosts: vec![dir.path().join("user")],
                global_known_hosts: vec![dir.path().join("global")],
                ..Target::default()
            };
            Case { dir, target, opts }
        }
        fn check(&self, key: &str) -> Result<(), TransportError> {
            HostKeyPolicy::new(&self.target, &self.opts).check(&presented(key), &Mutex::new(()))
        }
        fn file(&self, name: &str) -> String {
            std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
        }
        fn path(&self, name: &str) -> std::path::PathBuf {
            self.dir.path().join(name)
        }
    }

    #[test]
    fn global_file_from_the_target_is_read() {
        let c = Case::new("", &format!("[10.0.0.5]:2222 {ED_A}\n"));
        assert!(c.check(ED_A).is_ok());
        match c.check(ED_B) {
            Err(TransportError::HostKeyChanged {
                known_hosts, line, ..
            }) => {
                assert_eq!(known_hosts, c.path("global"));
                assert_eq!(line, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn host_key_alias_is_the_lookup_and_recorded_name() {
        let mut c = Case::new(&format!("web1-alias {ED_A}\n"), "");
        c.target.host_key_alias = Some("WEB1-alias".into());
        assert!(c.check(ED_A).is_ok());
        c.target.strict_host_key_checking = Some(StrictHostKeyChecking::AcceptNew);
        c.target.host_key_alias = Some("other".into());
        assert!(c.check(ED_B).is_ok());
        assert!(
            c.file("user").ends_with(&format!("other {ED_B}\n")),
            "{}",
            c.file("user")
        );
    }

    #[test]
    fn user_known_hosts_from_the_target_wins_over_the_run_file() {
        let mut c = Case::new("", "");
        std::fs::write(c.path("run_kh"), format!("[10.0.0.5]:2222 {ED_A}\n")).expect("w");
        assert!(matches!(
            c.check(ED_A),
            Err(TransportError::HostKeyUnknown { .. })
        ));
        c.target.user_known_hosts.clear();
        c.target.global_known_hosts.clear();
        assert!(c.check(ED_A).is_ok());
    }

    #[test]
    fn strictness_of_the_target_overrides_the_run() {
        let mut c = Case::new("", "");
        c.opts.accept_new_host_keys = true;
        c.target.strict_host_key_checking = Some(StrictHostKeyChecking::Yes);
        assert!(matches!(
            c.check(ED_A),
            Err(TransportError::HostKeyUnknown { .. })
        ));
        assert_eq!(c.file("user"), "");
        c.opts.accept_new_host_keys = false;
        c.target.strict_host_key_checking = Some(StrictHostKeyChecking::No);
        assert!(c.check(ED_A).is_ok());
        assert_eq!(c.file("user"), format!("[10.0.0.5]:2222 {ED_A}\n"));
        // `no` records unknown keys but never accepts a changed one (unlike ssh).
        assert!(matches!(
            c.check(ED_B),
            Err(TransportError::HostKeyChanged { line: 1, .. })
        ));
    }

    #[test]
    fn hash_known_hosts_records_a_hashed_line() {
        let mut c = Case::new("", "");
        c.target.strict_host_key_checking = Some(StrictHostKeyChecking::AcceptNew);
        c.target.hash_known_hosts = true;
        assert!(c.check(ED_A).is_ok());
        let text = c.file("user");
        assert!(text.starts_with("|1|"), "{text}");
        assert!(!text.contains("10.0.0.5"), "{text}");
        let mut keys = HostKeys::default();
        keys.parse("[10.0.0.5]:2222", Path::new("user"), &text);
        assert_eq!(keys.entries().len(), 1);
        // And it is then known.
        c.target.strict_host_key_checking = Some(StrictHostKeyChecking::Yes);
        assert!(c.check(ED_A).is_ok());
    }

    #[test]
    fn a_key_known_without_the_port_is_accepted_off_port_22() {
        let c = Case::new(&format!("10.0.0.5 {ED_A}\n"), "");
        assert!(c.check(ED_A).is_ok());
        // …but a different key there is not "changed" for [host]:port: just unknown.
        assert!(matches!(
            c.check(ED_B),
            Err(TransportError::HostKeyUnknown { .. })
        ));
    }

    #[test]
    fn revoked_key_is_refused_and_never_recorded() {
        let mut c = Case::new(&format!("@revoked * {ED_A}\n"), "");
        c.target.strict_host_key_checking = Some(StrictHostKeyChecking::No);
        let e = c.check(ED_A).expect_err("revoked");
        assert!(
            matches!(e, TransportError::HostKeyRevoked { line: 1, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("REVOKED"), "{e}");
        assert_eq!(c.file("user"), format!("@revoked * {ED_A}\n"));
    }

    #[test]
    fn no_plain_key_is_recorded_under_a_ca() {
        let mut c = Case::new(
            &format!("@cert-authority *.lan,[10.0.0.*]:2222 {ED_B}\n"),
            "",
        );
        c.target.strict_host_key_checking = Some(StrictHostKeyChecking::AcceptNew);
        let e = c.check(ED_A).expect_err("not certified");
        assert!(
            matches!(e, TransportError::HostKeyNotCertified { line: 1, .. }),
            "{e:?}"
        );
        assert_eq!(c.file("user").lines().count(), 1);
    }

    /// Recording re-reads the file under the lock: a line another connection or process
    /// wrote since the first check is not duplicated, and a different key recorded meanwhile
    /// makes this one "changed".
    #[test]
    fn recording_rechecks_under_the_lock() {
        let mut c = Case::new("", "");
        c.target.strict_host_key_checking = Some(StrictHostKeyChecking::AcceptNew);
        let policy = HostKeyPolicy::new(&c.target, &c.opts);
        let line = format!("[10.0.0.5]:2222 {ED_A}\n");
        std::fs::write(c.path("user"), &line).expect("w");
        assert!(policy.record(&presented(ED_A), &Mutex::new(())).is_ok());
        assert_eq!(c.file("user"), line);
        assert!(matches!(
            policy.record(&presented(ED_B), &Mutex::new(())),
            Err(TransportError::HostKeyChanged { line: 1, .. })
        ));
        assert_eq!(c.file("user"), line);
    }

    #[test]
    fn preferred_puts_known_types_first_and_certificates_only_under_a_ca() {
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAP2897aPrZOE6awDVArufbw1SBLukElZsmol1FcX+HvRFJywxQ5sf1MPYke2xQ2y3x8EBHzRUzQW7f6tCnE9JQ=";
        let c = Case::new(&format!("[10.0.0.5]:2222 {ecdsa}\n"), "");
        let p = HostKeyPolicy::new(&c.target, &c.opts).preferred();
        assert_eq!(
            p.key.first(),
            Some(&Algorithm::Ecdsa {
                curve: russh::keys::EcdsaCurve::NistP256
            })
        );
        assert!(p.host_key_certificates.is_empty());
        let c = Case::new(&format!("@cert-authority * {ED_A}\n"), "");
        let p = HostKeyPolicy::new(&c.target, &c.opts).preferred();
        assert_eq!(p.key.first(), Some(&Algorithm::Ed25519));
        assert_eq!(p.host_key_certificates.first(), Some(&Algorithm::Ed25519));
    }
}
