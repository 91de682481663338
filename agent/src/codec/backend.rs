//! Views of the messages a PostgreSQL server sends.
//!
//! The proxy relays most of these as frames; it parses Authentication,
//! BackendKeyData, ParameterStatus and ReadyForQuery to run its side of the
//! session, ErrorResponse and CommandComplete for audit, and RowDescription
//! and DataRow when a decision asks for masking.

mod auth;
mod copy;
mod error_response;
mod results;
mod session;

pub use auth::Authentication;
pub use copy::{CopyResponse, NotificationResponse};
pub use error_response::{ErrorResponse, NoticeResponse, Severity};
pub use results::{
    CommandComplete, DataRow, FieldDescription, FunctionCallResponse, ParameterDescription,
    RowDescription,
};
pub use session::{
    BackendKeyData, NegotiateProtocolVersion, ParameterStatus, ReadyForQuery, TransactionStatus,
};

use super::copy::CopyData;
use super::error::CodecError;
use super::frame::{Frame, expect_empty};

/// Type byte of each message a server may send.
///
/// Exists so the proxy's dispatch is an exhaustive `match`; several bytes
/// mean something else coming from the client ([`FrontendTag`](super::FrontendTag)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendTag {
    /// `R`
    Authentication,
    /// `K`
    BackendKeyData,
    /// `2`
    BindComplete,
    /// `3`
    CloseComplete,
    /// `C`
    CommandComplete,
    /// `d`
    CopyData,
    /// `c`
    CopyDone,
    /// `G`
    CopyInResponse,
    /// `H`
    CopyOutResponse,
    /// `W`
    CopyBothResponse,
    /// `D`
    DataRow,
    /// `I`
    EmptyQueryResponse,
    /// `E`
    ErrorResponse,
    /// `V`
    FunctionCallResponse,
    /// `v`
    NegotiateProtocolVersion,
    /// `n`
    NoData,
    /// `N`
    NoticeResponse,
    /// `A`
    NotificationResponse,
    /// `t`
    ParameterDescription,
    /// `S`
    ParameterStatus,
    /// `1`
    ParseComplete,
    /// `s`
    PortalSuspended,
    /// `Z`
    ReadyForQuery,
    /// `T`
    RowDescription,
}

impl BackendTag {
    /// The tag for a type byte, or `None` if servers never send it.
    pub const fn from_u8(tag: u8) -> Option<Self> {
        Some(match tag {
            b'R' => Self::Authentication,
            b'K' => Self::BackendKeyData,
            b'2' => Self::BindComplete,
            b'3' => Self::CloseComplete,
            b'C' => Self::CommandComplete,
            b'd' => Self::CopyData,
            b'c' => Self::CopyDone,
            b'G' => Self::CopyInResponse,
            b'H' => Self::CopyOutResponse,
            b'W' => Self::CopyBothResponse,
            b'D' => Self::DataRow,
            b'I' => Self::EmptyQueryResponse,
            b'E' => Self::ErrorResponse,
            b'V' => Self::FunctionCallResponse,
            b'v' => Self::NegotiateProtocolVersion,
            b'n' => Self::NoData,
            b'N' => Self::NoticeResponse,
            b'A' => Self::NotificationResponse,
            b't' => Self::ParameterDescription,
            b'S' => Self::ParameterStatus,
            b'1' => Self::ParseComplete,
            b's' => Self::PortalSuspended,
            b'Z' => Self::ReadyForQuery,
            b'T' => Self::RowDescription,
            _ => return None,
        })
    }

    /// The type byte on the wire.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Authentication => b'R',
            Self::BackendKeyData => b'K',
            Self::BindComplete => b'2',
            Self::CloseComplete => b'3',
            Self::CommandComplete => b'C',
            Self::CopyData => b'd',
            Self::CopyDone => b'c',
            Self::CopyInResponse => b'G',
            Self::CopyOutResponse => b'H',
            Self::CopyBothResponse => b'W',
            Self::DataRow => b'D',
            Self::EmptyQueryResponse => b'I',
            Self::ErrorResponse => b'E',
            Self::FunctionCallResponse => b'V',
            Self::NegotiateProtocolVersion => b'v',
            Self::NoData => b'n',
            Self::NoticeResponse => b'N',
            Self::NotificationResponse => b'A',
            Self::ParameterDescription => b't',
            Self::ParameterStatus => b'S',
            Self::ParseComplete => b'1',
            Self::PortalSuspended => b's',
            Self::ReadyForQuery => b'Z',
            Self::RowDescription => b'T',
        }
    }
}

/// Any message a server sends, parsed and borrowing its frame.
///
/// Exists for code that wants every field checked at once; relay paths
/// match on [`BackendTag`] and parse only what they need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendMessage<'a> {
    /// `R`
    Authentication(Authentication<'a>),
    /// `K`
    BackendKeyData(BackendKeyData<'a>),
    /// `2`
    BindComplete,
    /// `3`
    CloseComplete,
    /// `C`
    CommandComplete(CommandComplete<'a>),
    /// `d`
    CopyData(CopyData<'a>),
    /// `c`
    CopyDone,
    /// `G`
    CopyInResponse(CopyResponse<'a>),
    /// `H`
    CopyOutResponse(CopyResponse<'a>),
    /// `W`
    CopyBothResponse(CopyResponse<'a>),
    /// `D`
    DataRow(DataRow<'a>),
    /// `I`
    EmptyQueryResponse,
    /// `E`
    ErrorResponse(ErrorResponse<'a>),
    /// `V`
    FunctionCallResponse(FunctionCallResponse<'a>),
    /// `v`
    NegotiateProtocolVersion(NegotiateProtocolVersion<'a>),
    /// `n`
    NoData,
    /// `N`
    NoticeResponse(NoticeResponse<'a>),
    /// `A`
    NotificationResponse(NotificationResponse<'a>),
    /// `t`
    ParameterDescription(ParameterDescription),
    /// `S`
    ParameterStatus(ParameterStatus<'a>),
    /// `1`
    ParseComplete,
    /// `s`
    PortalSuspended,
    /// `Z`
    ReadyForQuery(ReadyForQuery),
    /// `T`
    RowDescription(RowDescription<'a>),
}

impl<'a> BackendMessage<'a> {
    /// Parses any backend frame; an unknown tag is a protocol violation.
    pub fn from_frame(frame: &'a Frame) -> Result<Self, CodecError> {
        use BackendTag as T;
        let tag =
            BackendTag::from_u8(frame.tag()).ok_or(CodecError::UnknownTag { tag: frame.tag() })?;
        let body = frame.body();
        Ok(match tag {
            T::Authentication => Self::Authentication(Authentication::from_frame(frame)?),
            T::BackendKeyData => Self::BackendKeyData(BackendKeyData::from_frame(frame)?),
            T::BindComplete => empty(frame, "BindComplete message", Self::BindComplete)?,
            T::CloseComplete => empty(frame, "CloseComplete message", Self::CloseComplete)?,
            T::CommandComplete => Self::CommandComplete(CommandComplete::from_frame(frame)?),
            T::CopyData => Self::CopyData(CopyData::from_frame(frame)?),
            T::CopyDone => empty(frame, "CopyDone message", Self::CopyDone)?,
            T::CopyInResponse => Self::CopyInResponse(CopyResponse::from_body(body)?),
            T::CopyOutResponse => Self::CopyOutResponse(CopyResponse::from_body(body)?),
            T::CopyBothResponse => Self::CopyBothResponse(CopyResponse::from_body(body)?),
            T::DataRow => Self::DataRow(DataRow::from_frame(frame)?),
            T::EmptyQueryResponse => empty(
                frame,
                "EmptyQueryResponse message",
                Self::EmptyQueryResponse,
            )?,
            T::ErrorResponse => Self::ErrorResponse(ErrorResponse::from_frame(frame)?),
            T::FunctionCallResponse => {
                Self::FunctionCallResponse(FunctionCallResponse::from_frame(frame)?)
            }
            T::NegotiateProtocolVersion => {
                Self::NegotiateProtocolVersion(NegotiateProtocolVersion::from_frame(frame)?)
            }
            T::NoData => empty(frame, "NoData message", Self::NoData)?,
            T::NoticeResponse => Self::NoticeResponse(NoticeResponse::from_frame(frame)?),
            T::NotificationResponse => {
                Self::NotificationResponse(NotificationResponse::from_frame(frame)?)
            }
            T::ParameterDescription => {
                Self::ParameterDescription(ParameterDescription::from_frame(frame)?)
            }
            T::ParameterStatus => Self::ParameterStatus(ParameterStatus::from_frame(frame)?),
            T::ParseComplete => empty(frame, "ParseComplete message", Self::ParseComplete)?,
            T::PortalSuspended => empty(frame, "PortalSuspended message", Self::PortalSuspended)?,
            T::ReadyForQuery => Self::ReadyForQuery(ReadyForQuery::from_frame(frame)?),
            T::RowDescription => Self::RowDescription(RowDescription::from_frame(frame)?),
        })
    }

    /// Which message this is.
    pub fn tag(&self) -> BackendTag {
        use BackendTag as T;
        match self {
            Self::Authentication(_) => T::Authentication,
            Self::BackendKeyData(_) => T::BackendKeyData,
            Self::BindComplete => T::BindComplete,
            Self::CloseComplete => T::CloseComplete,
            Self::CommandComplete(_) => T::CommandComplete,
            Self::CopyData(_) => T::CopyData,
            Self::CopyDone => T::CopyDone,
            Self::CopyInResponse(_) => T::CopyInResponse,
            Self::CopyOutResponse(_) => T::CopyOutResponse,
            Self::CopyBothResponse(_) => T::CopyBothResponse,
            Self::DataRow(_) => T::DataRow,
            Self::EmptyQueryResponse => T::EmptyQueryResponse,
            Self::ErrorResponse(_) => T::ErrorResponse,
            Self::FunctionCallResponse(_) => T::FunctionCallResponse,
            Self::NegotiateProtocolVersion(_) => T::NegotiateProtocolVersion,
            Self::NoData => T::NoData,
            Self::NoticeResponse(_) => T::NoticeResponse,
            Self::NotificationResponse(_) => T::NotificationResponse,
            Self::ParameterDescription(_) => T::ParameterDescription,
            Self::ParameterStatus(_) => T::ParameterStatus,
            Self::ParseComplete => T::ParseComplete,
            Self::PortalSuspended => T::PortalSuspended,
            Self::ReadyForQuery(_) => T::ReadyForQuery,
            Self::RowDescription(_) => T::RowDescription,
        }
    }
}

/// `msg` if the frame's body is empty, as it must be for tag-only messages.
fn empty<'a>(
    frame: &Frame,
    name: &'static str,
    msg: BackendMessage<'a>,
) -> Result<BackendMessage<'a>, CodecError> {
    expect_empty(frame, msg.tag().as_u8(), name)?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::{built, built_infallible};
    use crate::codec::write;

    #[test]
    fn tags_round_trip() {
        for b in 0..=u8::MAX {
            if let Some(tag) = BackendTag::from_u8(b) {
                assert_eq!(tag.as_u8(), b);
            }
        }
        assert_eq!(BackendTag::from_u8(b'Q'), None);
    }

    #[test]
    fn every_message_dispatches() {
        let frames = [
            built_infallible(write::authentication_ok),
            built(|b| write::backend_key_data(b, 1, b"abcd")),
            built_infallible(write::bind_complete),
            built_infallible(write::close_complete),
            built(|b| write::command_complete(b, "SELECT 1")),
            built(|b| write::copy_data(b, b"x")),
            built_infallible(write::copy_done),
            built(|b| write::copy_in_response(b, 0, &[0])),
            built(|b| write::copy_out_response(b, 0, &[0])),
            built(|b| write::copy_both_response(b, 0, &[])),
            built(|b| write::data_row(b, [Some(&b"1"[..])])),
            built_infallible(write::empty_query_response),
            built(|b| write::error_response(b, Severity::Error, "XX000", "m", None, None)),
            built(|b| write::function_call_response(b, None)),
            built(|b| write::negotiate_protocol_version(b, 0, &["_pq_.x"])),
            built_infallible(write::no_data),
            built(|b| write::notice_response(b, Severity::Notice, "00000", "m", None, None)),
            built(|b| write::notification_response(b, 1, "c", "")),
            built(|b| write::parameter_description(b, &[23])),
            built(|b| write::parameter_status(b, "a", "b")),
            built_infallible(write::parse_complete),
            built_infallible(write::portal_suspended),
            built_infallible(|b| write::ready_for_query(b, TransactionStatus::Idle)),
            built(|b| write::row_description(b, &[])),
        ];
        for frame in &frames {
            let msg = BackendMessage::from_frame(frame).unwrap();
            assert_eq!(msg.tag().as_u8(), frame.tag());
        }
    }

    #[test]
    fn bodies_on_empty_messages_are_refused() {
        for tag in [b'1', b'2', b'3', b'n', b's', b'I', b'c'] {
            let frame = Frame::new(tag, b"x").unwrap();
            assert!(BackendMessage::from_frame(&frame).is_err());
            let frame = Frame::new(tag, b"").unwrap();
            assert!(BackendMessage::from_frame(&frame).is_ok());
        }
        let frame = Frame::new(b'Q', b"").unwrap();
        assert!(matches!(
            BackendMessage::from_frame(&frame),
            Err(CodecError::UnknownTag { .. })
        ));
    }
}
