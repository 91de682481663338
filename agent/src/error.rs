//! The agent's errors, and the one place that decides how each reaches the
//! client (SQLSTATE, message). Details beyond the message go to logs only.

use crate::backend::BackendError;
use crate::codec::CodecError;

/// Everything that can end or refuse a client's request.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The client broke the protocol (malformed, truncated, oversized).
    #[error("protocol violation: {0}")]
    Codec(#[from] CodecError),
    /// The client sent a message that makes no sense in this state.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A socket failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The client went away.
    #[error("the client closed the connection")]
    ClientGone,
    /// A token over plaintext on a listener not marked insecure.
    #[error("tokens are accepted only over TLS: connect with sslmode=require")]
    PlaintextToken,
    /// Direct TLS without a certificate configured.
    #[error("this listener has no TLS certificate")]
    TlsUnavailable,
    /// The password message was empty.
    #[error("send your OIDC token as the password")]
    NoToken,
    /// The PDP refused the session (bad token, connect denied, no role).
    #[error("{0}")]
    SessionRefused(String),
    /// The database name names no configured target.
    #[error("unknown database `{0}`: this agent serves {1}")]
    UnknownTarget(String, String),
    /// The PDP could not be reached within the bound (the text says so).
    #[error("{0}")]
    PdpUnavailable(String),
    /// The upstream database could not be reached or refused the agent.
    #[error("{0}")]
    Upstream(#[from] BackendError),
    /// A feature that would bypass policy.
    #[error("{0}")]
    Unsupported(String),
    /// Startup did not finish in time.
    #[error("startup did not complete in time")]
    StartupTimeout,
    /// No message for too long.
    #[error("the session was idle for too long")]
    IdleTimeout,
    /// The agent is shutting down.
    #[error("the agent is shutting down")]
    ShuttingDown,
}

/// SQLSTATE codes the agent sends.
pub mod sqlstate {
    /// A statement refused by policy.
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    /// A session refused at connect.
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// A bad token.
    pub const INVALID_PASSWORD: &str = "28P01";
    /// Malformed input.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// Upstream unreachable.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// Could not connect upstream.
    pub const CANNOT_CONNECT: &str = "08001";
    /// Not supported (it would bypass policy).
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// The PDP is down (system error).
    pub const SYSTEM_ERROR: &str = "58000";
    /// Unknown database.
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    /// Timeouts and shutdown.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// Idle session timeout.
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    /// Anything else.
    pub const INTERNAL_ERROR: &str = "XX000";
}

impl AgentError {
    /// The SQLSTATE the client sees. One exhaustive match: a new variant
    /// must choose its code here.
    pub fn sqlstate(&self) -> &'static str {
        use sqlstate::*;
        match self {
            AgentError::Codec(_) | AgentError::Protocol(_) => PROTOCOL_VIOLATION,
            AgentError::Io(_) | AgentError::ClientGone => CONNECTION_FAILURE,
            AgentError::PlaintextToken | AgentError::SessionRefused(_) => INVALID_AUTHORIZATION,
            AgentError::NoToken => INVALID_PASSWORD,
            AgentError::TlsUnavailable | AgentError::Unsupported(_) => FEATURE_NOT_SUPPORTED,
            AgentError::UnknownTarget(..) => INVALID_CATALOG_NAME,
            AgentError::PdpUnavailable(_) => SYSTEM_ERROR,
            AgentError::Upstream(_) => CANNOT_CONNECT,
            AgentError::StartupTimeout | AgentError::ShuttingDown => ADMIN_SHUTDOWN,
            AgentError::IdleTimeout => IDLE_SESSION_TIMEOUT,
        }
    }

    /// The message the client sees.
    pub fn client_message(&self) -> String {
        format!("palisade: {self}")
    }

    /// A hint for the client, where one helps.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            AgentError::PlaintextToken => {
                Some("use sslmode=require (the agent presents its own certificate)")
            }
            AgentError::NoToken => Some("set PGPASSWORD to the token, e.g. $(palisade token ...)"),
            _ => None,
        }
    }
}
