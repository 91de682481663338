//! Builders for the messages the proxy makes up itself.
//!
//! Each appends one complete message to a `BytesMut` (normally the
//! connection's write buffer), so building costs no allocation of its own
//! and nothing returned borrows from the arguments. Messages with only fixed
//! fields return `()`. Those with strings, byte strings or lists return
//! `Result`, because the protocol cannot carry a NUL inside a string or a
//! count beyond its field; on error the buffer is left exactly as it was,
//! so a half-written message can never reach a peer.

mod to_client;
mod to_server;

pub use to_client::{
    authentication_cleartext_password, authentication_md5_password, authentication_ok,
    authentication_sasl, authentication_sasl_continue, authentication_sasl_final, backend_key_data,
    bind_complete, close_complete, command_complete, copy_both_response, copy_in_response,
    copy_out_response, data_row, empty_query_response, error_response, function_call_response,
    negotiate_protocol_version, no_data, notice_response, notification_response,
    parameter_description, parameter_status, parse_complete, portal_suspended, ready_for_query,
    row_description,
};
pub use to_server::{
    bind, cancel_request, close, copy_fail, describe, execute, flush, function_call,
    gssenc_request, parse, password_message, query, sasl_initial_response, sasl_response,
    ssl_request, startup_message, startup_message_with_minor, sync, terminate,
};

use bytes::{BufMut, BytesMut};

use super::error::CodecError;

/// CopyData ('d'), either direction: a chunk of COPY data.
pub fn copy_data(buf: &mut BytesMut, data: &[u8]) -> Result<(), CodecError> {
    tagged(buf, b'd', "CopyData message", |buf| {
        buf.put_slice(data);
        Ok(())
    })
}

/// CopyDone ('c'), either direction: the end of COPY data.
pub fn copy_done(buf: &mut BytesMut) {
    empty(buf, b'c');
}

/// Appends a tag-only message.
fn empty(buf: &mut BytesMut, tag: u8) {
    buf.reserve(5);
    buf.put_u8(tag);
    buf.put_i32(4);
}

/// Appends a tagged message whose body `body` writes, then fills in the
/// length. On error, truncates the buffer back to where it was.
fn tagged(
    buf: &mut BytesMut,
    tag: u8,
    message: &'static str,
    body: impl FnOnce(&mut BytesMut) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let start = buf.len();
    buf.put_u8(tag);
    let result = length_prefixed(buf, message, body);
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

/// Appends an Int32 length (counting itself) and a body; the untagged
/// startup packets are exactly this.
fn length_prefixed(
    buf: &mut BytesMut,
    message: &'static str,
    body: impl FnOnce(&mut BytesMut) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let at = buf.len();
    buf.put_i32(0);
    let result = body(buf).and_then(|()| {
        let len = i32::try_from(buf.len().saturating_sub(at))
            .map_err(|_| CodecError::unencodable(message, "message is longer than 2 GiB"))?;
        patch(buf, at, len.to_be_bytes());
        Ok(())
    });
    if result.is_err() {
        buf.truncate(at);
    }
    result
}

/// Overwrites `N` bytes at `at`, reserved earlier by the caller.
fn patch<const N: usize>(buf: &mut BytesMut, at: usize, bytes: [u8; N]) {
    if let Some(slot) = buf.get_mut(at..).and_then(|s| s.first_chunk_mut::<N>()) {
        *slot = bytes;
    }
}

/// Appends a NUL-terminated string, refusing an embedded NUL (which the
/// receiver would take as the end of the string).
fn put_cstr(buf: &mut BytesMut, s: &[u8], message: &'static str) -> Result<(), CodecError> {
    if s.contains(&0) {
        return Err(CodecError::unencodable(
            message,
            "string contains a NUL byte",
        ));
    }
    buf.reserve(s.len().saturating_add(1));
    buf.put_slice(s);
    buf.put_u8(0);
    Ok(())
}

/// A list length as the Int16 count field.
fn count_u16(n: usize, message: &'static str) -> Result<u16, CodecError> {
    u16::try_from(n).map_err(|_| CodecError::unencodable(message, "more than 65535 items"))
}

/// A byte string's length as an Int32 field.
fn len_i32(n: usize, message: &'static str) -> Result<i32, CodecError> {
    i32::try_from(n).map_err(|_| CodecError::unencodable(message, "value is longer than 2 GiB"))
}

/// Appends an Int16 count and that many Int16 format codes.
fn put_formats(buf: &mut BytesMut, codes: &[i16], message: &'static str) -> Result<(), CodecError> {
    buf.put_u16(count_u16(codes.len(), message)?);
    for &code in codes {
        buf.put_i16(code);
    }
    Ok(())
}

/// Appends an Int16 count and length-prefixed values (-1 for NULL),
/// counting as it goes so the values can come from any iterator.
fn put_values<V: AsRef<[u8]>>(
    buf: &mut BytesMut,
    values: impl IntoIterator<Item = Option<V>>,
    message: &'static str,
) -> Result<(), CodecError> {
    let at = buf.len();
    buf.put_u16(0);
    let mut count: u16 = 0;
    for value in values {
        count = count
            .checked_add(1)
            .ok_or(CodecError::unencodable(message, "more than 65535 items"))?;
        match value {
            None => buf.put_i32(-1),
            Some(v) => {
                let v = v.as_ref();
                buf.put_i32(len_i32(v.len(), message)?);
                buf.put_slice(v);
            }
        }
    }
    patch(buf, at, count.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_builders_leave_the_buffer_alone() {
        let mut buf = BytesMut::from(&b"keep"[..]);
        assert!(query(&mut buf, "a\0b").is_err());
        assert!(parameter_status(&mut buf, "a", "b\0").is_err());
        assert!(startup_message(&mut buf, &[("user", "a\0")]).is_err());
        assert!(startup_message(&mut buf, &[("", "x")]).is_err());
        assert!(cancel_request(&mut buf, 1, &[0; 257]).is_err());
        assert!(data_row(&mut buf, std::iter::repeat_n(None::<&[u8]>, 70_000)).is_err());
        assert!(parse(&mut buf, "", "", &[0; 70_000]).is_err());
        assert_eq!(&buf[..], b"keep");
        query(&mut buf, "select 1").unwrap();
        assert_eq!(&buf[..4], b"keep");
        assert_eq!(&buf[4..], b"Q\0\0\0\x0dselect 1\0");
    }

    #[test]
    fn fixed_messages_are_exact() {
        let mut buf = BytesMut::new();
        copy_done(&mut buf);
        assert_eq!(&buf[..], b"c\0\0\0\x04");
    }
}
