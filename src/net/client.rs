//! The one HTTP client credgate makes requests with (JWKS fetches,
//! Paragon's `/sdk/me` and lookups, HTTP/2 callers' forwarding), and the
//! TLS trust it uses: webpki roots plus an optional extra CA, aws-lc-rs as
//! the one crypto provider.

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::Body;
use crate::config::{PemFile, ServerConfig};

pub type HttpsConn = HttpsConnector<HttpConnector>;
pub type HttpClient = Client<HttpsConn, Body>;

/// rustls client config: webpki roots plus an optional extra CA (on-premise
/// Paragon), aws-lc-rs as the one crypto provider.
pub fn tls_client_config(ca: Option<&PemFile>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&ca.pem) {
            let cert = cert.map_err(|e| format!("paragon.ca_file: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("paragon.ca_file: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("paragon.ca_file: no certificate found".into());
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Settings of the pooled client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle_per_host: usize,
}

impl ClientSettings {
    pub fn from_server(s: &ServerConfig) -> Self {
        ClientSettings {
            connect_timeout: s.upstream_connect_timeout,
            idle_timeout: s.upstream_idle_timeout,
            max_idle_per_host: s.upstream_max_idle_per_host,
        }
    }
}

/// Builds a pooled HTTP/1.1 + HTTP/2 (by ALPN) client. `TCP_NODELAY`, a
/// connect timeout, and an idle timeout driven by a pool timer (without the
/// timer hyper-util would never reap idle connections).
pub fn build_client(ca: Option<&PemFile>, s: &ClientSettings) -> Result<HttpClient, String> {
    let tls = tls_client_config(ca)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(s.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(s.idle_timeout)
        .pool_max_idle_per_host(s.max_idle_per_host)
        .build(connector))
}
