//! A small PostgreSQL connection pool (tokio-postgres over rustls), and the
//! dedicated LISTEN connection. Connections that saw an error are dropped,
//! not reused; every connect is bounded by a timeout.

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
    pub fn new(url: &str, ca: Option<&PemFile>) -> Result<Pool, String> {
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
        // TLS as the URL's sslmode asks (prefer, require, disable), verified
        // against the same roots as Paragon plus `paragon.ca_file`.
        let tls = MakeRustlsConnect::new(crate::net::client::tls_client_config(ca)?);
        Ok(Pool {
            config,
            tls,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(POOL_SIZE),
        })
    }

    async fn connect(&self) -> Result<Client, String> {
        let (client, connection) =
            tokio::time::timeout(CONNECT_TIMEOUT, self.config.connect(self.tls.clone()))
                .await
                .map_err(|_| "connecting to PostgreSQL timed out".to_string())?
                .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
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
                .map_err(|e| e.to_string())?;
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
        .map_err(|e| e.to_string())?;
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
