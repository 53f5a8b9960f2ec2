//! A certificate authority made in the test (rcgen): CA, server and client certificates as
//! PEM, written to files for the programs under test, plus a rustls server config for the
//! test doubles that serve TLS. Nothing here is trusted outside the test that made it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA whose certificates only this test trusts.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
}

/// A certificate and its key, PEM encoded.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Paths of PEM files written by `TestCa::write`.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(TestCa { cert, key })
    }

    pub fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf certificate for these names (DNS names or IP addresses) signed by the CA.
    pub fn issue(&self, names: &[&str]) -> anyhow::Result<Issued> {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Write the CA, a server certificate for `server_names` and a client certificate into
    /// `dir` (keys 0600).
    pub fn write(&self, dir: &Path, server_names: &[&str]) -> anyhow::Result<(TlsFiles, Issued)> {
        let server = self.issue(server_names)?;
        let client = self.issue(&["promfleet-client"])?;
        let put = |name: &str, text: &str, mode: u32| -> anyhow::Result<PathBuf> {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.join(name);
            std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
            Ok(p)
        };
        let files = TlsFiles {
            ca: put("ca.pem", &self.ca_pem(), 0o644)?,
            server_cert: put("server.pem", &server.cert_pem, 0o644)?,
            server_key: put("server-key.pem", &server.key_pem, 0o600)?,
            client_cert: put("client.pem", &client.cert_pem, 0o644)?,
            client_key: put("client-key.pem", &client.key_pem, 0o600)?,
        };
        Ok((files, server))
    }
}

/// How a test double serves TLS: its certificate, and optionally a CA whose client
/// certificates it requires (Consul's `verify_incoming`).
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub server: Issued,
    pub require_client_cert_from: Option<String>,
}

impl ServerTls {
    /// The rustls server config (HTTP/1.1 only, like the doubles).
    pub fn config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.server.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .context("server certificate PEM")?;
        let key = PrivateKeyDer::from_pem_slice(self.server.key_pem.as_bytes())
            .context("server key PEM")?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match &self.require_client_cert_from {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(c.context("client CA PEM")?)?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
