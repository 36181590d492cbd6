//! The serde mirror of the config file, composed of the sections' file
//! forms (each defined beside its validation, in the section's file, and
//! re-exported here). Every field is optional so that validation can name
//! the key that is missing or wrong and can fill defaults from named
//! constants. `deny_unknown_fields` everywhere: a misspelt key in a security
//! proxy's config must fail, never be ignored. The same structs, filled
//! with effective values, print `check-config`.

use serde::{Deserialize, Serialize};

pub use super::audit::RawAudit;
pub use super::auth::{OneOrMany, RawAuth, RawKey};
pub use super::authzen::RawAuthzen;
pub use super::cache::RawCache;
pub use super::cluster::RawCluster;
pub use super::cors::RawCors;
pub use super::limits::RawLimits;
pub use super::mcp::RawMcp;
pub use super::paragon::RawParagon;
pub use super::policy::RawPolicy;
pub use super::server::{RawServer, RawTls};
pub use super::telemetry::RawTelemetry;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub paragon: Option<RawParagon>,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub mcp: RawMcp,
    #[serde(default)]
    pub cors: RawCors,
    #[serde(default)]
    pub authzen: RawAuthzen,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<RawCluster>,
}
