//! Views of the messages a client sends after its startup packet.
//!
//! The proxy matches on [`FrontendTag`] to decide what to look at, and
//! parses with [`FrontendMessage::from_frame`] or one view's `from_frame`
//! only for messages it must inspect (statements, binds, passwords).

mod auth;
mod bind;
mod extended;
mod function_call;
mod query;

pub use auth::{PasswordMessage, SaslInitialResponse};
pub use bind::Bind;
pub use extended::{Close, Describe, Execute, Parse, Target};
pub use function_call::FunctionCall;
pub use query::Query;

use super::copy::{CopyData, CopyFail};
use super::error::CodecError;
use super::frame::{Frame, expect_empty};

/// Type byte of each message a client may send after startup.
///
/// Exists so the proxy's dispatch is an exhaustive `match` instead of byte
/// literals; several bytes mean something else coming from the server, which
/// has its own [`BackendTag`](super::BackendTag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrontendTag {
    /// `Q`: simple-protocol query.
    Query,
    /// `P`: prepare a statement.
    Parse,
    /// `B`: bind parameters to a statement, creating a portal.
    Bind,
    /// `D`: describe a statement or portal.
    Describe,
    /// `E`: run a portal.
    Execute,
    /// `C`: close a statement or portal.
    Close,
    /// `S`: end of an extended-protocol batch.
    Sync,
    /// `H`: ask the server to flush its output.
    Flush,
    /// `X`: the client is leaving.
    Terminate,
    /// `p`: password, SASL initial response or SASL response (by context).
    Password,
    /// `d`: COPY data.
    CopyData,
    /// `c`: end of COPY data.
    CopyDone,
    /// `f`: abort COPY FROM STDIN.
    CopyFail,
    /// `F`: fast-path function call.
    FunctionCall,
}

impl FrontendTag {
    /// The tag for a type byte, or `None` if clients never send it.
    pub const fn from_u8(tag: u8) -> Option<Self> {
        Some(match tag {
            b'Q' => Self::Query,
            b'P' => Self::Parse,
            b'B' => Self::Bind,
            b'D' => Self::Describe,
            b'E' => Self::Execute,
            b'C' => Self::Close,
            b'S' => Self::Sync,
            b'H' => Self::Flush,
            b'X' => Self::Terminate,
            b'p' => Self::Password,
            b'd' => Self::CopyData,
            b'c' => Self::CopyDone,
            b'f' => Self::CopyFail,
            b'F' => Self::FunctionCall,
            _ => return None,
        })
    }

    /// The type byte on the wire.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Query => b'Q',
            Self::Parse => b'P',
            Self::Bind => b'B',
            Self::Describe => b'D',
            Self::Execute => b'E',
            Self::Close => b'C',
            Self::Sync => b'S',
            Self::Flush => b'H',
            Self::Terminate => b'X',
            Self::Password => b'p',
            Self::CopyData => b'd',
            Self::CopyDone => b'c',
            Self::CopyFail => b'f',
            Self::FunctionCall => b'F',
        }
    }
}

/// Any message a client sends after startup, parsed and borrowing its frame.
///
/// Exists for code that wants every field checked at once (the session's
/// policy step, tests); hot relay paths match on [`FrontendTag`] instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrontendMessage<'a> {
    /// `Q`
    Query(Query<'a>),
    /// `P`
    Parse(Parse<'a>),
    /// `B`
    Bind(Bind<'a>),
    /// `D`
    Describe(Describe<'a>),
    /// `E`
    Execute(Execute<'a>),
    /// `C`
    Close(Close<'a>),
    /// `S`
    Sync,
    /// `H`
    Flush,
    /// `X`
    Terminate,
    /// `p`: read it with the [`PasswordMessage`] method the auth state calls for.
    Password(PasswordMessage<'a>),
    /// `d`
    CopyData(CopyData<'a>),
    /// `c`
    CopyDone,
    /// `f`
    CopyFail(CopyFail<'a>),
    /// `F`
    FunctionCall(FunctionCall<'a>),
}

impl<'a> FrontendMessage<'a> {
    /// Parses any frontend frame; an unknown tag is a protocol violation, as
    /// in PostgreSQL ("invalid frontend message type").
    pub fn from_frame(frame: &'a Frame) -> Result<Self, CodecError> {
        let tag =
            FrontendTag::from_u8(frame.tag()).ok_or(CodecError::UnknownTag { tag: frame.tag() })?;
        Ok(match tag {
            FrontendTag::Query => Self::Query(Query::from_frame(frame)?),
            FrontendTag::Parse => Self::Parse(Parse::from_frame(frame)?),
            FrontendTag::Bind => Self::Bind(Bind::from_frame(frame)?),
            FrontendTag::Describe => Self::Describe(Describe::from_frame(frame)?),
            FrontendTag::Execute => Self::Execute(Execute::from_frame(frame)?),
            FrontendTag::Close => Self::Close(Close::from_frame(frame)?),
            FrontendTag::Sync => {
                expect_empty(frame, b'S', "Sync message")?;
                Self::Sync
            }
            FrontendTag::Flush => {
                expect_empty(frame, b'H', "Flush message")?;
                Self::Flush
            }
            FrontendTag::Terminate => {
                expect_empty(frame, b'X', "Terminate message")?;
                Self::Terminate
            }
            FrontendTag::Password => Self::Password(PasswordMessage::from_frame(frame)?),
            FrontendTag::CopyData => Self::CopyData(CopyData::from_frame(frame)?),
            FrontendTag::CopyDone => {
                expect_empty(frame, b'c', "CopyDone message")?;
                Self::CopyDone
            }
            FrontendTag::CopyFail => Self::CopyFail(CopyFail::from_frame(frame)?),
            FrontendTag::FunctionCall => Self::FunctionCall(FunctionCall::from_frame(frame)?),
        })
    }

    /// Which message this is.
    pub fn tag(&self) -> FrontendTag {
        match self {
            Self::Query(_) => FrontendTag::Query,
            Self::Parse(_) => FrontendTag::Parse,
            Self::Bind(_) => FrontendTag::Bind,
            Self::Describe(_) => FrontendTag::Describe,
            Self::Execute(_) => FrontendTag::Execute,
            Self::Close(_) => FrontendTag::Close,
            Self::Sync => FrontendTag::Sync,
            Self::Flush => FrontendTag::Flush,
            Self::Terminate => FrontendTag::Terminate,
            Self::Password(_) => FrontendTag::Password,
            Self::CopyData(_) => FrontendTag::CopyData,
            Self::CopyDone => FrontendTag::CopyDone,
            Self::CopyFail(_) => FrontendTag::CopyFail,
            Self::FunctionCall(_) => FrontendTag::FunctionCall,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_support::{built, built_infallible};
    use crate::codec::write;

    #[test]
    fn tags_round_trip() {
        for b in 0..=u8::MAX {
            if let Some(tag) = FrontendTag::from_u8(b) {
                assert_eq!(tag.as_u8(), b);
            }
        }
        assert_eq!(FrontendTag::from_u8(b'Z'), None);
    }

    #[test]
    fn every_message_dispatches() {
        let frames = [
            built(|b| write::query(b, "select 1")),
            built(|b| write::parse(b, "s", "select $1", &[23])),
            built(|b| write::bind(b, "", "s", &[1], [Some(&b"\0\0\0\x01"[..])], &[])),
            built(|b| write::describe(b, Target::Portal, "")),
            built(|b| write::execute(b, "", 0)),
            built(|b| write::close(b, Target::Statement, "s")),
            built_infallible(write::sync),
            built_infallible(write::flush),
            built_infallible(write::terminate),
            built(|b| write::password_message(b, b"secret")),
            built(|b| write::copy_data(b, b"row\n")),
            built_infallible(write::copy_done),
            built(|b| write::copy_fail(b, "no")),
            built(|b| write::function_call(b, 1, &[], [None::<&[u8]>], 0)),
        ];
        for frame in &frames {
            let msg = FrontendMessage::from_frame(frame).unwrap();
            assert_eq!(msg.tag().as_u8(), frame.tag());
        }
    }

    #[test]
    fn bodies_on_empty_messages_are_refused() {
        for tag in [b'S', b'H', b'X', b'c'] {
            let frame = Frame::new(tag, b"x").unwrap();
            assert!(FrontendMessage::from_frame(&frame).is_err());
        }
    }

    #[test]
    fn unknown_tag_is_refused() {
        let frame = Frame::new(b'Z', b"").unwrap();
        let err = FrontendMessage::from_frame(&frame).unwrap_err();
        assert!(matches!(err, CodecError::UnknownTag { tag: b'Z' }));
        assert_eq!(err.to_string(), "invalid message type 'Z'");
    }
}
