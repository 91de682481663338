//! Why recording or flushing audit events failed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Why the audit log could not open, record or flush.
///
/// Whenever `record` returns an error, nothing was stored: the caller must
/// reuse the event's sequence number for the session's next event. The PDP
/// acknowledges the highest *contiguous* sequence of a session, so a skipped
/// number would keep every later event of that session in the spool forever.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The spool configuration cannot work.
    #[error("audit spool configuration: {0}")]
    Config(String),
    /// The spool directory could not be opened or recovered.
    #[error("the audit spool `{}` could not be opened: {source}", path.display())]
    Open {
        /// The spool directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The spool holds `max_bytes` of events the PDP has not acknowledged.
    #[error(
        "the audit spool is full ({max_bytes} bytes wait for the policy service to acknowledge them): statements cannot be audited"
    )]
    Full {
        /// The cap.
        max_bytes: u64,
    },
    /// The event is larger than the spool and the PDP take.
    #[error("the audit event is too large ({len} bytes, at most {max})")]
    TooLarge {
        /// Its encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The event lacks its `(session_id, sequence)` id.
    #[error("invalid audit event: {0}")]
    InvalidEvent(&'static str),
    /// Writing or syncing the spool failed; the write was undone.
    #[error("the audit spool could not be written: {0}")]
    Disk(#[source] Arc<std::io::Error>),
    /// A failed write could not be undone, so the spool takes nothing more.
    #[error("the audit spool is unusable after a disk error")]
    Broken,
    /// The spool's writer is gone (the agent is stopping).
    #[error("the audit spool has stopped")]
    Stopped,
    /// `flush` ran out of time.
    #[error("{events} audit events were not acknowledged within {timeout:?}")]
    FlushTimeout {
        /// Events still waiting.
        events: u64,
        /// The bound.
        timeout: Duration,
    },
}
