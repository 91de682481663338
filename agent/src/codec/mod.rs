//! PostgreSQL v3 wire codec: framing, typed views and builders. No I/O.
//!
//! Data flows through it in three layers, cheapest first:
//!
//! 1. **Framing.** [`StartupCodec`] reads the untagged packets that open a
//!    connection ([`StartupPacket`]); [`FrameCodec`] then cuts every later
//!    message, in both directions, into a [`Frame`]: the tag plus the wire
//!    bytes split off the read buffer. Relaying a frame copies nothing but
//!    into the write buffer, which is what keeps the proxy near pgbouncer.
//! 2. **Views.** Only when the proxy must look inside a message does it
//!    parse one: [`FrontendMessage::from_frame`] / [`BackendMessage::from_frame`]
//!    or a single view such as [`Query::from_frame`]. Views borrow from the
//!    frame (strings are `&str`, values `&[u8]`), check every length and
//!    count before allocating, and read exactly as PostgreSQL does, trailing
//!    bytes included, so the gateway and the server never see different
//!    messages in the same bytes.
//! 3. **Builders.** [`write`](mod@write) appends the messages the proxy
//!    makes up itself (errors, authentication, its own startup and queries)
//!    to a `BytesMut`, with no allocation per message.
//!
//! Errors are one [`CodecError`], which knows its SQLSTATE and how to tell
//! the client. Hostile input never panics: see the fuzz tests.
//!
//! Backend messages are parsed here rather than with
//! `postgres_protocol::message::backend`: that parser takes ownership of the
//! read buffer (so it cannot view a [`Frame`] that is also being relayed),
//! reserves whatever length a peer declares, knows only 4-byte cancel keys
//! and no NegotiateProtocolVersion, CopyBothResponse or FunctionCallResponse,
//! and reports `io::Error`. Its frontend builders likewise speak only
//! protocol 3.0 and `io::Error`, so [`write`](mod@write) has its own.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

/// Adds `TAG` and `from_frame` to a view that has `from_body`; the `owned`
/// form is for views that borrow nothing from the frame.
macro_rules! view {
    ($ty:ident, $tag:expr) => {
        impl<'a> $ty<'a> {
            /// The message type byte this view parses.
            pub const TAG: u8 = $tag;

            /// Parses `frame`, which must carry [`Self::TAG`]; see `from_body`.
            pub fn from_frame(
                frame: &'a $crate::codec::Frame,
            ) -> Result<Self, $crate::codec::CodecError> {
                $crate::codec::frame::expect_tag(frame, Self::TAG)?;
                Self::from_body(frame.body())
            }
        }
    };
    (owned $ty:ident, $tag:expr) => {
        impl $ty {
            /// The message type byte this view parses.
            pub const TAG: u8 = $tag;

            /// Parses `frame`, which must carry [`Self::TAG`]; see `from_body`.
            pub fn from_frame(
                frame: &$crate::codec::Frame,
            ) -> Result<Self, $crate::codec::CodecError> {
                $crate::codec::frame::expect_tag(frame, Self::TAG)?;
                Self::from_body(frame.body())
            }
        }
    };
}

pub mod backend;
mod copy;
mod error;
mod frame;
pub mod frontend;
mod read;
mod startup;
mod values;
pub mod write;

/// Fuzzing entry points (the `fuzz/` targets and property tests use them
/// with the `fuzzing` feature; the unit tests always).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod test_support;

pub use backend::{
    Authentication, BackendKeyData, BackendMessage, BackendTag, CommandComplete, CopyResponse,
    DataRow, ErrorResponse, FieldDescription, FunctionCallResponse, NegotiateProtocolVersion,
    NoticeResponse, NotificationResponse, ParameterDescription, ParameterStatus, ReadyForQuery,
    RowDescription, Severity, TransactionStatus,
};
pub use copy::{CopyData, CopyFail};
pub use error::{CodecError, sqlstate};
pub use frame::{Frame, FrameCodec, HEADER_LEN, POSTGRES_MAX_MESSAGE_LEN};
pub use frontend::{
    Bind, Close, Describe, Execute, FrontendMessage, FrontendTag, FunctionCall, Parse,
    PasswordMessage, Query, SaslInitialResponse, Target,
};
pub use startup::{
    CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, LATEST_PROTOCOL_MINOR, MAX_CANCEL_KEY_LEN,
    MAX_STARTUP_PACKET_LEN, PROTOCOL_3_0, SSL_REQUEST_CODE, StartupCodec, StartupPacket,
};
pub use values::{FormatCodes, Values, ValuesIter};
