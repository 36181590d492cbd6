//! `[audit]`: where the audit trail goes (`enabled`, `file`). It owns the
//! section's file form (`RawAudit`), the validated [`AuditConfig`] and its
//! checks (the file's directory exists; the file is not a directory).
//!
//! It must not know the other sections, nor anything of credgate outside
//! `config` (`config` imports nothing of credgate's: see `src/lib.rs`).
//! Writing records is the `audit` module's.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::common::{resolve_path, ConfigError};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// `[audit]`: where the audit trail goes. It is its own sink, not a log
/// target, so no `RUST_LOG` filter can switch it off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Off only when `[audit] enabled = false` is written.
    pub enabled: bool,
    /// Appended to (created if missing); `None`: standard output.
    pub file: Option<PathBuf>,
}

pub(super) fn validate_audit(
    raw: RawAudit,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<AuditConfig, ConfigError> {
    let enabled = raw.enabled.unwrap_or(true);
    let file = match raw.file.as_deref() {
        None => None,
        Some("") => return Err(ConfigError::new("audit.file", "must not be empty")),
        Some(p) => {
            let path = resolve_path(base, p);
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(ConfigError::new(
                    "audit.file",
                    format!("the directory {} does not exist", dir.display()),
                ));
            }
            if path.is_dir() {
                return Err(ConfigError::new(
                    "audit.file",
                    format!("{} is a directory", path.display()),
                ));
            }
            Some(path)
        }
    };
    if !enabled {
        warnings.push("audit.enabled = false: no audit record is written for any request".into());
    }
    Ok(AuditConfig { enabled, file })
}
