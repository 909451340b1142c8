//! TLS for the listener (rustls): the certificate chain and key, and optionally the CAs a
//! client certificate must chain to (then every client must present one). Loaded at start,
//! where a bad file stops the server naming the setting, and again on SIGHUP: new connections
//! get the new certificates, connections already open keep theirs, and a bad file keeps the
//! previous ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificates are (`--tls-cert`, `--tls-key`, `--client-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CAs (PEM) that client certificates must chain to; with it, a client without a valid
    /// certificate cannot connect.
    pub client_ca: Option<PathBuf>,
}

/// The certificates in force.
pub struct Tls {
    files: TlsFiles,
    config: ArcSwap<ServerConfig>,
}

impl Tls {
    /// Loads `files`; an error names the setting and the file.
    pub fn load(files: TlsFiles) -> Result<Tls, String> {
        let config = server_config(&files)?;
        Ok(Tls { files, config: ArcSwap::from_pointee(config) })
    }

    /// Loads the files again; on an error the previous certificates stay.
    pub fn reload(&self) -> Result<(), String> {
        self.config.store(Arc::new(server_config(&self.files)?));
        Ok(())
    }

    /// The configuration a new connection is accepted with.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.files.client_ca.is_some()
    }
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{setting}: {}: {e}", path.display()))
}

fn certificates(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{setting}: {}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{setting}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display()));
    }
    Ok(certs)
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    crate::install_tls();
    let chain = certificates("tls-cert", &files.cert)?;
    let key_pem = read("tls-key", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("tls-key: {}: not a PEM private key: {e}", files.key.display()))?;
    let builder = ServerConfig::builder();
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in certificates("client-ca", path)? {
                roots.add(ca).map_err(|e| format!("client-ca: {}: {e}", path.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| format!("client-ca: {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls-key: {} does not go with the certificate in {}: {e}", files.key.display(), files.cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
