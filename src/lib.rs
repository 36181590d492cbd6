//! credgate: a credential-routing reverse proxy in front of Paragon.
//!
//! The request path (SPEC §1), one module per step:
//! 1. `gateway::path` refuses non-normalized paths;
//! 2. `auth` verifies the caller's JWT and yields an [`auth::Identity`];
//! 3. `paragon::routes` classifies the request into a product and a host;
//! 4. `paragon::directory` supplies the user's live credential list;
//! 5. `policy` decides which credential is requested and whether it is permitted;
//! 6. `gateway` rewrites the request (credential, minted token, headers);
//! 7. `gateway::upstream` forwards it, streaming, to the right Paragon host;
//! 8. `paragon::filter` narrows responses that list credentials;
//! 9. `telemetry` writes the audit record and metrics.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod emulator;
pub mod error;
pub mod gateway;
pub mod keygen;
pub mod net;
pub mod paragon;
pub mod policy;
pub mod server;
pub mod telemetry;
