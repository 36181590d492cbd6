//! A small PostgreSQL connection pool (tokio-postgres over rustls), and the
//! dedicated LISTEN connection. Connections that saw an error are dropped,
//! not reused; every connect is bounded by a timeout.
//!
//! TLS: PostgreSQL's certificate is verified against `cluster.ca_file`
//! alone when it is set, else against the public roots plus
//! `paragon.ca_file`; the chain and the URL's host name are verified for
//! every TLS `sslmode` (`require` included, unlike libpq). A failed
//! connection's error carries its whole cause (tokio-postgres's own text is
//! only "error performing TLS handshake") and, for a certificate that is
//! not trusted, what to do about it ([`describe`]).

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore, SemaphorePermit};
use tokio_postgres::{AsyncMessage, Client};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::PemFile;

/// Connections open at once (besides the LISTEN one).
const POOL_SIZE: usize = 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Pool {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    idle: Mutex<Vec<Client>>,
    permits: Semaphore,
}

impl Pool {
    /// `cluster_ca`: `cluster.ca_file`, the only roots when set;
    /// `paragon_ca`: `paragon.ca_file`, trusted beside the public roots
    /// otherwise.
    pub fn new(
        url: &str,
        cluster_ca: Option<&PemFile>,
        paragon_ca: Option<&PemFile>,
    ) -> Result<Pool, String> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            format!(
                "cluster.postgres_url: {}",
                crate::config::redact_url_password(&e.to_string())
            )
        })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("credgate");
        }
        // TLS as the URL's sslmode asks (prefer, require, disable), always
        // verified: against `cluster.ca_file` alone, or the same roots as
        // Paragon plus `paragon.ca_file`.
        let tls = MakeRustlsConnect::new(match cluster_ca {
            Some(ca) => private_roots(ca)?,
            None => crate::net::client::tls_client_config(paragon_ca)?,
        });
        Ok(Pool {
            config,
            tls,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(POOL_SIZE),
        })
    }

    async fn connect(&self) -> Result<Client, String> {
        let (client, mut connection) =
            tokio::time::timeout(CONNECT_TIMEOUT, self.config.connect(self.tls.clone()))
                .await
                .map_err(|_| "connecting to PostgreSQL timed out".to_string())?
                .map_err(|e| describe(&e))?;
        // Driven by hand rather than awaited: tokio-postgres's own driver
        // logs every NOTICE at INFO ("relation ... already exists,
        // skipping" on each start), which is PostgreSQL chatter, not news.
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notice(n))) => log_notice(&n),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        });
        Ok(client)
    }

    /// Connects once and runs `SELECT 1`: `check-config --probe`.
    pub async fn probe(&self) -> Result<(), String> {
        let client = self.get().await?;
        tokio::time::timeout(CONNECT_TIMEOUT, client.simple_query("SELECT 1"))
            .await
            .map_err(|_| "PostgreSQL did not answer `SELECT 1` in time".to_string())?
            .map_err(|e| describe(&e))?;
        client.keep();
        Ok(())
    }

    /// A connection, idle or new. Call [`PooledClient::keep`] after using it
    /// successfully; otherwise it is dropped.
    pub async fn get(&self) -> Result<PooledClient<'_>, String> {
        let permit = tokio::time::timeout(CONNECT_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| "no database connection free in time".to_string())?
            .map_err(|_| "the pool is closed".to_string())?;
        let idle = loop {
            let next = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match next {
                Some(c) if c.is_closed() => continue,
                other => break other,
            }
        };
        let client = match idle {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(PooledClient {
            client: Some(client),
            pool: self,
            _permit: permit,
            keep: false,
        })
    }

    /// A connection that has run `LISTEN channel`.
    pub async fn listen(&self, channel: &str) -> Result<Listener, String> {
        let (client, mut connection) =
            tokio::time::timeout(CONNECT_TIMEOUT, self.config.connect(self.tls.clone()))
                .await
                .map_err(|_| "connecting to PostgreSQL timed out".to_string())?
                .map_err(|e| describe(&e))?;
        // One pending wake-up is enough: the poller re-reads everything.
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(_))) => {
                        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(()) {
                            return;
                        }
                    }
                    Some(Ok(AsyncMessage::Notice(n))) => log_notice(&n),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        });
        tokio::time::timeout(
            CONNECT_TIMEOUT,
            client.batch_execute(&format!("LISTEN {channel}")),
        )
        .await
        .map_err(|_| "LISTEN timed out".to_string())?
        .map_err(|e| describe(&e))?;
        Ok(Listener {
            _client: client,
            rx,
        })
    }
}

pub struct PooledClient<'a> {
    client: Option<Client>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
    keep: bool,
}

impl PooledClient<'_> {
    /// Returns the connection to the pool (it was used without error).
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Deref for PooledClient<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl DerefMut for PooledClient<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for PooledClient<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if self.keep && !c.is_closed() {
                self.pool
                    .idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(c);
            }
        }
    }
}

/// The LISTEN connection: yields on each notification, ends when the
/// connection does.
pub struct Listener {
    _client: Client,
    rx: mpsc::Receiver<()>,
}

impl Listener {
    pub async fn next_notification(&mut self) -> bool {
        self.rx.recv().await.is_some()
    }
}

/// A NOTICE from PostgreSQL, at DEBUG.
fn log_notice(n: &tokio_postgres::error::DbError) {
    tracing::debug!(
        severity = n.severity(),
        code = n.code().code(),
        notice = n.message(),
        "PostgreSQL notice"
    );
}

/// rustls's client config trusting `cluster.ca_file`'s certificates only
/// (checked by `config` to parse and to hold at least one).
fn private_roots(ca: &PemFile) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca.pem) {
        let cert = cert.map_err(|e| format!("cluster.ca_file: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("cluster.ca_file: {e}"))?;
    }
    if roots.is_empty() {
        return Err("cluster.ca_file: no certificate found".into());
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An error and its causes in one line ("error performing TLS handshake:
/// invalid peer certificate: UnknownIssuer"), and for a certificate
/// PostgreSQL presented that credgate cannot trust, what to do. Neither
/// tokio-postgres nor rustls put the URL or its password in an error.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut certificate = None;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        // An `io::Error` wrapping another shows that one's text but hides
        // it from `source()`: look inside for rustls's error.
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        for candidate in std::iter::once(err).chain(inner) {
            if let Some(rustls::Error::InvalidCertificate(c)) =
                candidate.downcast_ref::<rustls::Error>()
            {
                certificate.get_or_insert_with(|| c.clone());
            }
        }
        if !std::ptr::addr_eq(err, e) {
            let part = err.to_string();
            if !text.ends_with(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
        }
        next = err.source();
    }
    if let Some(c) = certificate {
        text.push_str(" (");
        text.push_str(&certificate_hint(&c));
        text.push(')');
    }
    text
}

/// What to do about a certificate PostgreSQL presented that is refused.
fn certificate_hint(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    const WORKS: &str = "what works: a private CA issues PostgreSQL's certificate (CA:FALSE, the URL's host in its subjectAltName) and [cluster] ca_file holds that CA's PEM certificate";
    match c {
        E::UnknownIssuer => format!(
            "PostgreSQL's certificate is not issued by a CA credgate trusts: with TLS credgate verifies it for every sslmode, require included (unlike libpq); set [cluster] ca_file to the CA that issued it; {WORKS}"
        ),
        E::NotValidForName | E::NotValidForNameContext { .. } => "PostgreSQL's certificate does not name the host of cluster.postgres_url: credgate verifies the host name for every sslmode, require included (unlike libpq); connect by a name in the certificate's subjectAltName, or reissue it with that name".into(),
        E::Expired | E::ExpiredContext { .. } => "PostgreSQL's certificate has expired".into(),
        E::NotValidYet | E::NotValidYetContext { .. } => {
            "PostgreSQL's certificate is not valid yet (check the clocks)".into()
        }
        other if format!("{other:?}").contains("CaUsedAsEndEntity") => format!(
            "PostgreSQL presents a CA certificate (CA:TRUE) as its own, as a self-signed one made with `openssl req -x509` is: rustls/webpki never accept that, not even through ca_file; {WORKS}"
        ),
        _ => format!("PostgreSQL's certificate is refused; {WORKS}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    use super::*;

    fn pem_file(pem: &str) -> PemFile {
        PemFile {
            path: "ca.pem".into(),
            pem: pem.as_bytes().into(),
        }
    }

    fn params(names: &[&str], ca: bool) -> rcgen::CertificateParams {
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        let mut p = rcgen::CertificateParams::new(names).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "credgate test");
        if ca {
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        p
    }

    /// A certificate for `localhost` and its key (DER).
    struct Leaf {
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
        pem: String,
    }

    fn leaf(cert: rcgen::Certificate, key: &rcgen::KeyPair) -> Leaf {
        Leaf {
            pem: cert.pem(),
            cert: cert.der().clone(),
            key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        }
    }

    /// A private CA's certificate (PEM) and a `localhost` certificate it issued.
    fn private_ca() -> (String, Leaf) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_params = params(&[], true);
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params(&["localhost"], false)
            .signed_by(&key, &issuer)
            .unwrap();
        (ca_pem, leaf(cert, &key))
    }

    /// A TLS handshake to a server presenting `server`, as PostgreSQL's
    /// client would make it with `client`: the error as the log shows it.
    async fn handshake(client: rustls::ClientConfig, server: Leaf) -> Result<(), String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![server.cert], server.key)
            .unwrap();
        let (c, s) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let accepting = tokio::spawn(async move { acceptor.accept(s).await.map(drop) });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from("localhost").unwrap();
        let result = connector
            .connect(name, c)
            .await
            .map(drop)
            .map_err(|e| describe(&e));
        accepting.abort();
        result
    }

    /// What works: a private CA issues the server's certificate and
    /// `cluster.ca_file` holds the CA.
    #[tokio::test]
    async fn a_certificate_issued_by_the_ca_in_ca_file_is_trusted() {
        let (ca, server) = private_ca();
        let client = private_roots(&pem_file(&ca)).unwrap();
        handshake(client, server).await.unwrap();
    }

    /// Without `ca_file` the private CA is unknown: the error names the
    /// certificate error and says what to set.
    #[tokio::test]
    async fn an_unknown_issuer_is_named_with_what_to_do() {
        let (_, server) = private_ca();
        let client = crate::net::client::tls_client_config(None).unwrap();
        let e = handshake(client, server).await.unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
        assert!(e.contains("set [cluster] ca_file"), "{e}");
        assert!(e.contains("unlike libpq"), "{e}");
    }

    /// A self-signed server certificate marked CA:TRUE (`openssl req
    /// -x509`'s default) is refused even from `ca_file`, and the error says
    /// so and what works instead.
    #[tokio::test]
    async fn a_ca_true_self_signed_server_certificate_is_refused_with_what_works() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params(&["localhost"], true).self_signed(&key).unwrap();
        let server = leaf(cert, &key);
        let client = private_roots(&pem_file(&server.pem)).unwrap();
        let e = handshake(client, server).await.unwrap_err();
        assert!(e.contains("CaUsedAsEndEntity"), "{e}");
        assert!(e.contains("CA:TRUE"), "{e}");
        assert!(e.contains("a private CA issues"), "{e}");
    }

    /// A certificate that does not name the host is refused, also where
    /// libpq's `require` would not look.
    #[tokio::test]
    async fn a_certificate_for_another_host_is_refused() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_params = params(&[], true);
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params(&["db.example"], false)
            .signed_by(&key, &issuer)
            .unwrap();
        let client = private_roots(&pem_file(&ca_pem)).unwrap();
        let e = handshake(client, leaf(cert, &key)).await.unwrap_err();
        assert!(e.contains("not valid for name \"localhost\""), "{e}");
        assert!(e.contains("host name"), "{e}");
    }
}
