//! What credgate knows of Paragon: its routes, its credential lists, its
//! permissions claim, its tokens and the responses it filters.

pub mod credentials;
pub mod directory;
pub mod filter;
pub mod jsonbody;
pub mod mint;
pub mod permissions;
pub mod replicas;
pub mod routes;
pub mod subscriptions;
pub mod syncs;
