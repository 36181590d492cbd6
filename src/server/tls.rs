//! HTTPS serving (`server.tls`): rustls with aws-lc-rs, ALPN `h2` and
//! `http/1.1`, and a certificate that can be swapped on reload without
//! dropping connections (new handshakes use the new certificate).

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// A swappable acceptor shared by the accept loop and the reloader.
#[derive(Clone)]
pub struct TlsAcceptorHandle(Arc<ArcSwap<TlsAcceptor>>);

impl std::fmt::Debug for TlsAcceptorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsAcceptorHandle")
    }
}

impl TlsAcceptorHandle {
    pub fn new(files: &TlsFiles) -> Result<Self, String> {
        Ok(TlsAcceptorHandle(Arc::new(ArcSwap::from_pointee(
            acceptor(files)?,
        ))))
    }

    pub fn current(&self) -> Arc<TlsAcceptor> {
        self.0.load_full()
    }

    /// Re-reads the certificate and key; on error the old ones stay.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), String> {
        self.0.store(Arc::new(acceptor(files)?));
        Ok(())
    }
}

fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|e| format!("server.tls.cert_file: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server.tls.cert_file: {e}"))?;
    if certs.is_empty() {
        return Err("server.tls.cert_file: no certificate found".into());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| format!("server.tls.key_file: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.tls: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
