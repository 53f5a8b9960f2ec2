//! Host key verification at connect time: the server's key against known_hosts, recording a
//! new key only when the run allows it (`--accept-new-host-keys`).

use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::{HashAlg, PublicKeyOrCertificate};

use super::{ConnectOptions, TransportError};

/// Checks the server's host key against known_hosts; remembers why it refused.
pub(super) struct Verifier {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) opts: ConnectOptions,
    pub(super) problem: Arc<Mutex<Option<TransportError>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let label = if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        };
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            self.refuse(TransportError::Remote {
                what: label,
                message: "host certificates are not supported; list the host key in known_hosts"
                    .into(),
            });
            return Ok(false);
        };
        let fingerprint = format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256));
        let kh = &self.opts.known_hosts;
        match russh::keys::check_known_hosts_path(&self.host, self.port, key, kh) {
            Ok(true) => Ok(true),
            Err(russh::keys::Error::KeyChanged { line }) => {
                self.refuse(TransportError::HostKeyChanged {
                    host: label,
                    fingerprint,
                    known_hosts: kh.clone(),
                    line,
                });
                Ok(false)
            }
            Ok(false) if self.opts.accept_new_host_keys => {
                let _g = self
                    .opts
                    .known_hosts_lock
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                // Another connection may have recorded a different key meanwhile: re-check.
                match russh::keys::check_known_hosts_path(&self.host, self.port, key, kh) {
                    Ok(true) => return Ok(true),
                    Err(russh::keys::Error::KeyChanged { line }) => {
                        self.refuse(TransportError::HostKeyChanged {
                            host: label,
                            fingerprint,
                            known_hosts: kh.clone(),
                            line,
                        });
                        return Ok(false);
                    }
                    _ => {}
                }
                match russh::keys::known_hosts::learn_known_hosts_path(
                    &self.host, self.port, key, kh,
                ) {
                    Ok(()) => Ok(true),
                    Err(e) => {
                        self.refuse(TransportError::HostKeyRecord {
                            host: label,
                            known_hosts: kh.clone(),
                            message: e.to_string(),
                        });
                        Ok(false)
                    }
                }
            }
            Ok(false) => {
                self.refuse(TransportError::HostKeyUnknown {
                    host: label,
                    fingerprint,
                    known_hosts: kh.clone(),
                });
                Ok(false)
            }
            Err(e) => {
                self.refuse(TransportError::HostKeyRecord {
                    host: label,
                    known_hosts: kh.clone(),
                    message: format!("cannot read: {e}"),
                });
                Ok(false)
            }
        }
    }
}

impl Verifier {
    fn refuse(&self, e: TransportError) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }
}
