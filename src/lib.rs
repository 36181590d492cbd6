//! credgate: a credential-routing reverse proxy in front of Paragon.
//!
//! For every request it proves who is calling, works out which Paragon
//! credential the request targets, refuses anything outside the caller's
//! permitted accounts, and forwards the rest to the right Paragon host with
//! the credential where that product expects it and a token narrowed to
//! it. A refused request never reaches Paragon. The behaviour contract is
//! `docs/contract.md`; comments cite its clauses as "contract §N".
//!
//! # Bird's-eye view
//!
//! One request (`gateway::pipeline`, contract §1): hygiene → authenticate
//! (`auth`) → classify (`paragon::routes`) → check the operation → read the
//! inputs → load the credential list (`paragon::directory`) → decide
//! (`policy`) → rewrite (minted token from `paragon::mint`) → forward
//! (`gateway::upstream`) → respond (narrowed by `paragon::filter`) → one
//! audit record and metrics (`telemetry`).
//!
//! Agents (`mcp`, contract §12): the listener hands `/mcp` to the agents'
//! room (`gateway::handle_local`), which the pipeline's front has
//! authenticated and classified like any route; each tool call is made as
//! an ActionKit or Proxy API request of its own through the same pipeline
//! (`gateway::run_internal`), so it is decided, shadowed, limited and
//! audited exactly as a direct call.
//!
//! Questions about decisions (`admin`, contract §9): the admin listener's
//! decision API, access review and dashboard ask the gateway
//! (`gateway::judge`, `gateway::list_of`) instead of deciding themselves.
//!
//! # Where is ...
//!
//! | what | where |
//! | --- | --- |
//! | the phases of one request | `gateway::pipeline` and one file per phase |
//! | who may use which credential | `policy` (grants, rules, limits) |
//! | the route table | `paragon::routes` |
//! | a config key, its default and its checks | `config::<section>` |
//! | MCP | `mcp` (transport, sessions, tools) |
//! | `/admin/*`, the dashboard | `admin` |
//! | listeners, TLS, workers | `server` |
//!
//! # Layers
//!
//! Each module may use only modules of a lower rank; modules of one rank do
//! not use each other. `tests/architecture.rs` reads this table and fails
//! on any `crate::` path (or `super::` out of a module root) that points
//! sideways or up, naming the file and the path.
//!
//! ```text
//! rank  modules                    what they are
//!  0    clock config               the wall clock; validated configuration, plain data (no credgate imports)
//!  1    keygen telemetry audit     randomness and throwaway keys; logs and metrics; the audit sink
//!  2    net                        the body type, the one HTTP client and its TLS trust, one timer per connection
//!  3    paragon                    what Paragon is: routes, credential lists and their cache, tokens, filters, owners, the store ports
//!  4    auth                       who is calling: caller JWTs, key sources, the verified-token cache
//!  5    error                      the one per-request error and its response
//!  6    policy                     who may use which credential, and which one a request names
//!  7    gateway                    the pipeline that composes them, its state, and its entries for the rooms above
//!  8    mcp authzen                agents: MCP's transport, sessions and tool catalogue; each tool call made through the gateway; AuthZEN questions, each decided by the gateway's dry run
//!  9    admin                      questions about decisions: the admin listener, decide, access review, dashboard
//! 10    server cluster emulator    adapters: listeners; PostgreSQL replicas; the Paragon stand-in
//! 11    app                        wiring: building state, starting listeners, reload, shutdown
//! 12    demo                       the `credgate demo` command
//! ```
//!
//! # Invariants
//!
//! * `config` imports nothing of credgate's: it is validated data, and
//!   everything else may read it.
//! * Nothing below `gateway` names `gateway` or anything above it, and
//!   `gateway` names none of the rooms above it: `mcp` reaches it through
//!   `gateway::{handle_local, Endpoint, Caller, run_internal, Delegated}`,
//!   `admin` through `gateway::{judge, list_of}`. Where a lower layer
//!   needs something of a higher one it defines the port:
//!   `paragon::replicas::{Replicas, SyncRecords}` (implemented by
//!   `cluster`), `auth::Slot` (filled by `gateway` with its per-caller
//!   memos), `gateway::Endpoint` (implemented by `mcp`),
//!   `gateway::Refusals` (implemented by `admin`).
//! * No source file is over 1,000 lines.
//! * The files of a module directory do not import each other in a
//!   circle (its `mod.rs` aside); the emulator's product files and the
//!   gateway's phase files are leaves under their router.
//! * The emulator shares none of credgate's decisions: it uses only
//!   `net`'s body type and the data formats of `paragon` (credential ids,
//!   the permissions claim), so it stays credgate's test oracle.
//! * Errors become responses in one place (`error`), and one audit record
//!   is written per request whatever the client does (`gateway::run`'s
//!   guard writes it when a client that hung up drops the request).
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod authzen;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod emulator;
pub mod error;
pub mod gateway;
pub mod keygen;
pub mod mcp;
pub mod net;
pub mod paragon;
pub mod policy;
pub mod server;
pub mod telemetry;
