//! Questions about decisions, asked on the admin listener (contract §9):
//! the listener and its guard against rebinding and cross-site requests
//! (`listener`, `guard`), the decision API (`explain`: `POST
//! /admin/decide`), the access review (`access`: `GET /admin/access`), the
//! dashboard (`dashboard`: `GET /`) and what it shows of recent traffic
//! (`recent`: the refusal ring, counter samples, the last reload).
//!
//! It owns presenting decisions, never making them: a decision comes from
//! the gateway's own entries (`gateway::judge` runs the pipeline without
//! forwarding, `gateway::list_of` loads a user's list as any request
//! would), so what the admin listener says is what traffic gets. It must
//! not know the pipeline's phases or reach Paragon by itself, and the
//! gateway does not know it: refusals reach the ring through the
//! `gateway::Refusals` port, which `app` fills with [`recent::Recent`].

pub mod access;
mod dashboard;
/// HTML text escaping (element content, quoted attributes), the one the
/// dashboard uses; the emulator's pages use it too.
pub use dashboard::esc as html_escape;
pub mod explain;
mod guard;
mod listener;
pub mod recent;

pub use listener::{serve, serve_authzen};
