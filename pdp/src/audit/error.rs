//! Errors of the audit store.

use std::path::PathBuf;

/// Why the audit store could not do what was asked.
///
/// A damaged chain found by `verify` is not an error (it is the report's
/// `broken`); these are failures to open, read or write the store. Every one
/// of them leaves stored data as it was: an `append` that fails stored
/// nothing that was not acknowledged before, or whatever it stored is
/// reported by the next ack, so the sender simply resends.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file or directory of the embedded store cannot be read or written.
    #[error("audit store i/o on `{}`: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system reported.
        source: std::io::Error,
    },
    /// A stored record is damaged somewhere a crash cannot have left it (not
    /// at the tail of the last segment): the store refuses to open rather
    /// than drop it silently.
    #[error("audit segment `{segment}` is corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// The segment file name (`segment-000001.log`).
        segment: String,
        /// Byte offset of the damaged record in the segment.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A stored event (a database row) cannot be decoded.
    #[error(
        "stored audit event of session `{session_id}` sequence {sequence} is unreadable: {reason}"
    )]
    Unreadable {
        /// The event's session.
        session_id: String,
        /// The event's sequence.
        sequence: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process holds the embedded store's directory.
    #[error("audit directory `{}` is in use by another process", path.display())]
    Locked {
        /// The store's directory.
        path: PathBuf,
    },
    /// The embedded store's directory has segments missing between others.
    #[error("audit directory `{}` lacks segment `{missing}`", dir.display())]
    MissingSegment {
        /// The store's directory.
        dir: PathBuf,
        /// The file name expected.
        missing: String,
    },
    /// An event is larger than a record may be.
    #[error(
        "audit event of session `{session_id}` sequence {sequence} is too large ({size} bytes, at most {max})"
    )]
    EventTooLarge {
        /// The event's session.
        session_id: String,
        /// The event's sequence.
        sequence: u64,
        /// Its encoded size.
        size: usize,
        /// The largest size stored.
        max: usize,
    },
    /// An earlier write or flush failed in a way that leaves the file's state
    /// unknown; the store takes no more writes until it is reopened (opening
    /// repairs the tail).
    #[error("audit store stopped writing after a failed write; restart the pdp to recover")]
    Stopped,
    /// The PostgreSQL database failed or refused a statement.
    #[error("audit database: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// The database holds a value this store never writes (a schema made by
    /// something else, or a hand-edited row).
    #[error("audit database holds an unexpected value: {0}")]
    Schema(String),
    /// A background task of the store failed to run to completion.
    #[error("audit store task failed: {0}")]
    Task(String),
}
