//! What every section shares: [`ConfigError`] (a problem, naming its key),
//! [`Env`] (where environment variables come from), [`PemFile`], and the
//! value checks more than one section makes: durations, files and PEM files
//! (relative paths resolved against the config file's directory),
//! `REPLACE-WITH-...` placeholders, UUIDs, SHA-256.
//!
//! It must not know any section, nor anything of credgate outside `config`
//! (`config` imports nothing of credgate's: see `src/lib.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::duration;

/// A config problem, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Where a config gets environment variables from. The process uses the
/// real environment; tests pass a map (tests never mutate the process env).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher> Env for std::collections::HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// PEM text read from a file, kept with its path. `Debug` never prints the
/// bytes: they may be a private key.
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    pub path: PathBuf,
    pub pem: Arc<[u8]>,
}

impl std::fmt::Debug for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PemFile({})", self.path.display())
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn dur(
    key: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => duration::parse(v).map_err(|m| ConfigError::new(key, m)),
    }
}

pub(super) fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Reads a PEM file named by `key`, checking that it exists and is PEM.
pub(super) fn read_pem(key: &str, base: &Path, p: &str) -> Result<PemFile, ConfigError> {
    let path = resolve_path(base, p);
    let bytes = std::fs::read(&path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(ConfigError::new(
            key,
            format!("{} is not a PEM file", path.display()),
        ));
    }
    Ok(PemFile {
        path,
        pem: bytes.into(),
    })
}

pub(super) fn existing_file(key: &str, base: &Path, p: &str) -> Result<PathBuf, ConfigError> {
    let path = resolve_path(base, p);
    if !path.is_file() {
        return Err(ConfigError::new(
            key,
            format!("{} does not exist or is not a file", path.display()),
        ));
    }
    Ok(path)
}

/// Values the shipped manifests leave for the operator to fill in.
const PLACEHOLDER_PREFIX: &str = "REPLACE-WITH-";

/// A value that still holds a `REPLACE-WITH-...` placeholder is an error.
pub(super) fn refuse_placeholder(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.to_ascii_uppercase().contains(PLACEHOLDER_PREFIX) {
        return Err(ConfigError::new(
            key,
            format!("`{value}` is a placeholder: replace it with your own value"),
        ));
    }
    Ok(())
}

/// Whether `s` is a UUID in canonical form (8-4-4-4-12 hex digits, any
/// case): credential, configuration and integration ids.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}
