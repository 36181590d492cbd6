//! The network plumbing every layer above shares: the one body type and
//! its helpers (`body`), the one HTTP client with its TLS trust
//! (`client`), and one timer per connection for its deadlines
//! (`deadline`). It knows nothing of Paragon or of requests' meaning.

pub mod body;
pub mod client;
pub mod deadline;
pub mod otlp;

/// `X-Request-Id`: on every request credgate forwards or makes, and on
/// every response it gives.
pub const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
