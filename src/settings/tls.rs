//! TLS for the HTTP APIs promfleet talks to (Consul, Prometheus, Alertmanager): a private CA
//! (file or directory of PEM files), a client certificate and key, a server name other than
//! the URL's host, and verification off only when asked. Owns turning those options into a
//! `reqwest::Client`; knows nothing about where the options came from (see `consul`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::SettingsError;

/// How a client checks the server and presents itself; all unset means reqwest's defaults
/// (the public web roots, no client certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of CA certificates trusted instead of the public roots (`CONSUL_CACERT`).
    pub ca_file: Option<PathBuf>,
    /// Directory of PEM files of CA certificates (`CONSUL_CAPATH`); with `ca_file`, both.
    pub ca_path: Option<PathBuf>,
    /// PEM client certificate (`CONSUL_CLIENT_CERT`), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate (`CONSUL_CLIENT_KEY`).
    pub client_key: Option<PathBuf>,
    /// Name the server certificate must carry, instead of the URL's host
    /// (`CONSUL_TLS_SERVER_NAME`).
    pub server_name: Option<String>,
    /// `false` only when asked (`CONSUL_HTTP_SSL_VERIFY=false`): any certificate is accepted.
    pub verify: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            ca_file: None,
            ca_path: None,
            client_cert: None,
            client_key: None,
            server_name: None,
            verify: true,
        }
    }
}

impl TlsOptions {
    /// Whether anything differs from reqwest's defaults.
    pub fn is_default(&self) -> bool {
        *self == TlsOptions::default()
    }

    /// An HTTP client with these options (and promfleet's usual pool, proxy and connect
    /// timeout settings). Files are read here, once: a missing or malformed one is an error
    /// naming the file and the setting.
    pub fn http_client(&self) -> Result<reqwest::Client, SettingsError> {
        self.client_builder()?
            .build()
            .map_err(|e| SettingsError::Client(e.to_string()))
    }

    /// `http_client`'s builder, for a caller that adds to it (default headers).
    pub fn client_builder(&self) -> Result<reqwest::ClientBuilder, SettingsError> {
        let builder = base_builder();
        if self.is_default() {
            return Ok(builder);
        }
        Ok(builder.use_preconfigured_tls(self.rustls_config()?))
    }

    fn rustls_config(&self) -> Result<rustls::ClientConfig, SettingsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let custom_ca = self.ca_file.is_some() || self.ca_path.is_some();
        if let Some(f) = &self.ca_file {
            add_pem_certs(&mut roots, f, "CA file")?;
        }
        if let Some(dir) = &self.ca_path {
            let entries =
                std::fs::read_dir(dir).map_err(|e| SettingsError::file(dir, "CA directory", e))?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for f in files {
                add_pem_certs(&mut roots, &f, "CA directory file")?;
            }
            if roots.is_empty() {
                return Err(SettingsError::Invalid {
                    what: "CA directory".into(),
                    message: format!("{}: holds no PEM certificate", dir.display()),
                });
            }
        }
        if !custom_ca {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| SettingsError::Client(format!("CA certificates: {e}")))?;
        let server_name = match &self.server_name {
            Some(n) => {
                Some(
                    ServerName::try_from(n.clone()).map_err(|e| SettingsError::Invalid {
                        what: "TLS server name".into(),
                        message: format!("`{n}`: {e}"),
                    })?,
                )
            }
            None => None,
        };
        let verifier = Arc::new(Verifier {
            inner: self.verify.then_some(verifier),
            server_name,
            provider: provider.clone(),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SettingsError::Client(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let certs = read_certs(cert, "client certificate")?;
                let key_der =
                    PrivateKeyDer::from_pem_file(key).map_err(|e| SettingsError::Invalid {
                        what: "client key".into(),
                        message: format!("{}: not a PEM private key ({e})", key.display()),
                    })?;
                builder.with_client_auth_cert(certs, key_der).map_err(|e| {
                    SettingsError::Invalid {
                        what: "client certificate".into(),
                        message: format!("{} with {}: {e}", cert.display(), key.display()),
                    }
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(SettingsError::Invalid {
                    what: "client certificate".into(),
                    message: "a client certificate needs both the certificate and the key file"
                        .into(),
                });
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// promfleet's HTTP client settings (no environment proxy, a small pool, 5 s to connect):
/// the one place they are set, for every client built here and by `executor::http_client`.
pub fn base_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(4)
        .connect_timeout(std::time::Duration::from_secs(5))
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, SettingsError> {
    let bytes = std::fs::read(path).map_err(|e| SettingsError::file(path, what, e))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| SettingsError::Invalid {
            what: what.into(),
            message: format!("{}: not PEM certificates ({e})", path.display()),
        })?;
    if certs.is_empty() {
        return Err(SettingsError::Invalid {
            what: what.into(),
            message: format!("{}: holds no PEM certificate", path.display()),
        });
    }
    Ok(certs)
}

fn add_pem_certs(roots: &mut RootCertStore, path: &Path, what: &str) -> Result<(), SettingsError> {
    for c in read_certs(path, what)? {
        roots.add(c).map_err(|e| SettingsError::Invalid {
            what: what.into(),
            message: format!("{}: {e}", path.display()),
        })?;
    }
    Ok(())
}

/// WebPKI verification against the configured roots, checking `server_name` when set instead
/// of the URL's host; no verification at all when `inner` is `None` (asked for explicitly).
/// Handshake signatures are always checked (they prove the peer holds the key it showed).
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    server_name: Option<ServerName<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        let name = self.server_name.as_ref().unwrap_or(server_name);
        inner.verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
