//! Agents (contract §12): MCP's Streamable HTTP transport at `/mcp`
//! (`transport`, the session revisions; `stateless`, 2026-07-28; `rpc`,
//! what both answer alike), the sessions bound to a principal (`session`), and the
//! tool catalogue and tool calls (`tools`).
//!
//! It owns speaking MCP, never deciding: the listener hands `/mcp` and its
//! metadata paths to it (`gateway::handle_local`, through the
//! `gateway::Endpoint` it implements), after the gateway's front has
//! authenticated the caller and checked its product; each tool call goes
//! back through the whole pipeline as a request of its own
//! (`gateway::run_internal`, marked `gateway::Delegated`), so it is decided,
//! shadowed, limited and audited as a direct call. It must not know the
//! pipeline's phases or decide who may use which account itself: the
//! accounts it lists come from `gateway::Caller::usable`, the same test
//! every call meets. The gateway does not know it.

mod message;
mod result;
mod rpc;
mod session;
mod stateless;
mod tools;
mod transport;

pub use tools::{dry_run_request, DRY_RUN_ONLY};

use http::header::HeaderMap;
use http::request::Parts;
use http::Response;

use crate::config::Config;
use crate::gateway::{Answer, Caller, ConnInfo, Endpoint, Note};
use crate::net::body::Body;

/// What `/mcp` keeps across requests on this replica: its sessions, and
/// the tools listed per caller.
pub struct Agents {
    sessions: session::Sessions,
    tools: tools::Tools,
}

impl Agents {
    pub fn new(cfg: &Config) -> Agents {
        Agents {
            sessions: session::Sessions::default(),
            tools: tools::Tools::new(cfg.cache.credentials_ttl, cfg.cache.max_users),
        }
    }

    /// Whether a request to `path` is this room's to answer (`/mcp`, and
    /// RFC 9728's metadata paths), whether or not `/mcp` is on: off, the
    /// gateway answers it as it answers any route credgate does not serve.
    pub fn claims(path: &str) -> bool {
        path == "/mcp" || transport::METADATA_PATHS.contains(&path)
    }

    /// The sessions this replica holds.
    pub fn open_sessions(&self) -> usize {
        self.sessions.open_count()
    }
}

impl Endpoint for Agents {
    fn enabled(&self, cfg: &Config) -> bool {
        cfg.mcp.enabled
    }

    fn public(&self, cfg: &Config, conn: &ConnInfo, parts: &Parts) -> Option<Response<Body>> {
        transport::metadata(cfg, conn, parts)
    }

    fn serve<'a>(
        &'a self,
        caller: Caller<'a>,
        parts: Parts,
        body: Body,
        note: Note<'a>,
    ) -> Answer<'a> {
        Box::pin(transport::serve(self, caller, parts, body, note))
    }

    fn unauthenticated(
        &self,
        cfg: &Config,
        conn: &ConnInfo,
        headers: &HeaderMap,
        resp: &mut Response<Body>,
    ) {
        transport::challenge(cfg, conn, headers, resp);
    }

    fn before_scrape(&self, metrics: &crate::telemetry::Metrics) {
        metrics.mcp_sessions.set(self.open_sessions() as i64);
    }
}
