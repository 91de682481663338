//! The database side: opening an authenticated upstream connection, and
//! cancelling a query on it.

mod connect;

pub use connect::{BackendError, BackendKey, Upstream, UpstreamParams, cancel, connect};
