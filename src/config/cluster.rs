//! `[cluster]`: replicas sharing invalidations and limits through
//! PostgreSQL (`postgres_url` or `postgres_url_env`, `ca_file`,
//! `poll_interval`, `event_retention`, `degraded_ttl`, `strict`). It owns
//! the section's file
//! form (`RawCluster`), its defaults, the validated [`ClusterConfig`] and
//! its checks, and [`redact_url_password`], so the database password is
//! never printed (`Debug`, `check-config`, errors).
//!
//! It must not know the other sections, nor anything of credgate outside
//! `config` (`config` imports nothing of credgate's: see `src/lib.rs`).
//! Talking to PostgreSQL is the `cluster` module's.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::common::{dur, read_pem, ConfigError, Env, PemFile};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_url_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_retention: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `cluster.poll_interval` [default: 1s].
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// `cluster.event_retention` [default: 1h].
pub const DEFAULT_EVENT_RETENTION: Duration = Duration::from_secs(3600);
/// `cluster.degraded_ttl` [default: 10s].
pub const DEFAULT_DEGRADED_TTL: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct ClusterConfig {
    pub postgres_url: String,
    pub postgres_url_env: Option<String>,
    /// The roots PostgreSQL's certificate is verified against (PEM
    /// certificates: a private CA's), instead of the public roots and
    /// `paragon.ca_file`. With TLS (`sslmode=prefer`, the default, or
    /// `require`) the chain and the host name are always verified: unlike
    /// libpq, `require` does not mean "encrypt but trust anything".
    pub ca_file: Option<PemFile>,
    pub poll_interval: Duration,
    pub event_retention: Duration,
    pub degraded_ttl: Duration,
    pub strict: bool,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("postgres_url", &redact_url_password(&self.postgres_url))
            .field("ca_file", &self.ca_file)
            .field("poll_interval", &self.poll_interval)
            .field("event_retention", &self.event_retention)
            .field("degraded_ttl", &self.degraded_ttl)
            .field("strict", &self.strict)
            .finish()
    }
}

pub(super) fn validate_cluster(
    raw: RawCluster,
    base: &Path,
    env: &dyn Env,
) -> Result<ClusterConfig, ConfigError> {
    let postgres_url = match (raw.postgres_url, &raw.postgres_url_env) {
        (Some(u), None) => u,
        (None, Some(var)) => env.var(var).ok_or_else(|| {
            ConfigError::new(
                "cluster.postgres_url_env",
                format!("environment variable {var} is not set"),
            )
        })?,
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "cluster.postgres_url",
                "set either postgres_url or postgres_url_env, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                "cluster.postgres_url",
                "is required with [cluster] (or postgres_url_env)",
            ))
        }
    };
    if !(postgres_url.starts_with("postgres://") || postgres_url.starts_with("postgresql://")) {
        return Err(ConfigError::new(
            "cluster.postgres_url",
            "must be a postgres:// or postgresql:// URL",
        ));
    }
    let poll_interval = dur(
        "cluster.poll_interval",
        raw.poll_interval.as_deref(),
        DEFAULT_POLL_INTERVAL,
    )?;
    if poll_interval < Duration::from_millis(50) {
        return Err(ConfigError::new(
            "cluster.poll_interval",
            "must be at least 50ms",
        ));
    }
    let ca_file = raw
        .ca_file
        .as_deref()
        .map(|p| read_ca_file(base, p))
        .transpose()?;
    Ok(ClusterConfig {
        postgres_url,
        postgres_url_env: raw.postgres_url_env,
        ca_file,
        poll_interval,
        event_retention: dur(
            "cluster.event_retention",
            raw.event_retention.as_deref(),
            DEFAULT_EVENT_RETENTION,
        )?,
        degraded_ttl: dur(
            "cluster.degraded_ttl",
            raw.degraded_ttl.as_deref(),
            DEFAULT_DEGRADED_TTL,
        )?,
        strict: raw.strict.unwrap_or(false),
    })
}

/// `cluster.ca_file`: PEM certificates, each one that parses as a trust
/// anchor, and no private key (a file meant for the CA's certificate that
/// holds a key is a key in the wrong place).
fn read_ca_file(base: &Path, p: &str) -> Result<PemFile, ConfigError> {
    use rustls_pki_types::pem::{PemObject, SectionKind};
    const KEY: &str = "cluster.ca_file";
    let pem = read_pem(KEY, base, p)?;
    let shown = pem.path.display().to_string();
    let mut roots = rustls::RootCertStore::empty();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&pem.pem) {
        let (kind, der) = section
            .map_err(|e| ConfigError::new(KEY, format!("{shown} does not parse as PEM: {e}")))?;
        match kind {
            SectionKind::Certificate => roots.add(der.into()).map_err(|e| {
                ConfigError::new(KEY, format!("{shown}: a certificate does not parse: {e}"))
            })?,
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => {
                return Err(ConfigError::new(
                    KEY,
                    format!("{shown} holds a private key: it takes only the certificate of the CA that issued PostgreSQL's certificate"),
                ))
            }
            _ => {}
        }
    }
    if roots.is_empty() {
        return Err(ConfigError::new(
            KEY,
            format!("{shown} holds no certificate (it takes the PEM certificate of the CA that issued PostgreSQL's certificate)"),
        ));
    }
    Ok(pem)
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, and
/// `?password=secret` (which tokio-postgres also reads) → `?password=***`.
pub fn redact_url_password(u: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(u) else {
        return "(unparseable URL)".to_string();
    };
    let mut redacted = false;
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
        redacted = true;
    }
    let is_password = |k: &str| k.eq_ignore_ascii_case("password");
    if parsed.query_pairs().any(|(k, _)| is_password(&k)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_password(&k) {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        redacted = true;
    }
    if redacted {
        parsed.to_string()
    } else {
        u.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `files` written in a directory of its own, and `[cluster]` read
    /// with `ca_file` relative to it.
    fn cluster_with_ca(
        files: &[(&str, &str)],
        ca_file: &str,
    ) -> Result<ClusterConfig, ConfigError> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("credgate-cluster-ca-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let raw = RawCluster {
            postgres_url: Some("postgres://credgate@db/credgate?sslmode=require".into()),
            ca_file: Some(ca_file.into()),
            ..RawCluster::default()
        };
        let env = std::collections::HashMap::<String, String>::new();
        let result = validate_cluster(raw, &dir, &env);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&key).unwrap().pem()
    }

    /// A CA certificate is read, relative to the config's directory.
    #[test]
    fn ca_file_takes_a_pem_certificate() {
        let ca = ca_pem();
        let c = cluster_with_ca(&[("pg-ca.pem", &ca)], "pg-ca.pem").unwrap();
        let file = c.ca_file.expect("ca_file is kept");
        assert!(file.path.ends_with("pg-ca.pem"));
        assert_eq!(&*file.pem, ca.as_bytes());
    }

    /// A missing file, a file without a certificate, a certificate that
    /// does not parse and a private key are each refused naming the key.
    #[test]
    fn ca_file_refuses_what_is_not_a_ca_certificate() {
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let with_key = format!("{}{key}", ca_pem());
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        for (files, what) in [
            (vec![], "cannot read"),
            (vec![("pg-ca.pem", "not pem")], "is not a PEM file"),
            (vec![("pg-ca.pem", key.as_str())], "holds a private key"),
            (
                vec![("pg-ca.pem", with_key.as_str())],
                "holds a private key",
            ),
            (vec![("pg-ca.pem", garbage)], "does not parse"),
        ] {
            let e = cluster_with_ca(&files, "pg-ca.pem").unwrap_err();
            assert_eq!(e.key, "cluster.ca_file", "{what}");
            assert!(e.message.contains(what), "{what}: {}", e.message);
        }
    }
}
