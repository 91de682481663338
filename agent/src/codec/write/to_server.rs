//! Builders for frontend messages, which the proxy sends to the database
//! (its own connection setup and statements) or re-issues for a client.

use bytes::{BufMut, BytesMut};

use super::{
    count_u16, empty, len_i32, length_prefixed, put_cstr, put_formats, put_values, tagged,
};
use crate::codec::error::CodecError;
use crate::codec::frontend::Target;
use crate::codec::startup::{
    CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, MAX_CANCEL_KEY_LEN, MAX_STARTUP_PACKET_LEN,
    PROTOCOL_3_0, SSL_REQUEST_CODE,
};

/// StartupMessage for protocol 3.0 with these parameters (`user` is
/// required by the server; `database`, `application_name`, GUCs optional).
pub fn startup_message<K: AsRef<str>, V: AsRef<str>>(
    buf: &mut BytesMut,
    params: &[(K, V)],
) -> Result<(), CodecError> {
    startup_message_with_minor(buf, 0, params)
}

/// StartupMessage for protocol 3.`minor` (3.2 brings long cancel keys).
pub fn startup_message_with_minor<K: AsRef<str>, V: AsRef<str>>(
    buf: &mut BytesMut,
    minor: u16,
    params: &[(K, V)],
) -> Result<(), CodecError> {
    const M: &str = "startup packet";
    let start = buf.len();
    length_prefixed(buf, M, |buf| {
        buf.put_u32(PROTOCOL_3_0 | u32::from(minor));
        for (name, value) in params {
            let name = name.as_ref();
            if name.is_empty() {
                return Err(CodecError::unencodable(M, "parameter name is empty"));
            }
            put_cstr(buf, name.as_bytes(), M)?;
            put_cstr(buf, value.as_ref().as_bytes(), M)?;
        }
        buf.put_u8(0);
        if buf.len().saturating_sub(start) > MAX_STARTUP_PACKET_LEN.saturating_add(4) {
            return Err(CodecError::unencodable(M, "packet exceeds 10000 bytes"));
        }
        Ok(())
    })
}

fn request(buf: &mut BytesMut, code: u32) {
    buf.reserve(8);
    buf.put_i32(8);
    buf.put_u32(code);
}

/// SSLRequest: ask the database to switch to TLS.
pub fn ssl_request(buf: &mut BytesMut) {
    request(buf, SSL_REQUEST_CODE);
}

/// GSSENCRequest: ask the database to switch to GSSAPI encryption.
pub fn gssenc_request(buf: &mut BytesMut) {
    request(buf, GSSENC_REQUEST_CODE);
}

/// CancelRequest, sent on a new connection to cancel the query running on
/// the session identified by `process_id` and `key` (1 to 256 bytes).
pub fn cancel_request(buf: &mut BytesMut, process_id: i32, key: &[u8]) -> Result<(), CodecError> {
    const M: &str = "cancel request";
    if key.is_empty() || key.len() > MAX_CANCEL_KEY_LEN {
        return Err(CodecError::unencodable(
            M,
            "cancel key length is not between 1 and 256",
        ));
    }
    length_prefixed(buf, M, |buf| {
        buf.put_u32(CANCEL_REQUEST_CODE);
        buf.put_i32(process_id);
        buf.put_slice(key);
        Ok(())
    })
}

/// PasswordMessage carrying a cleartext password or an `md5...` digest; the
/// NUL terminator is added here.
pub fn password_message(buf: &mut BytesMut, password: &[u8]) -> Result<(), CodecError> {
    tagged(buf, b'p', "password message", |buf| {
        put_cstr(buf, password, "password message")
    })
}

/// SASLInitialResponse: the chosen mechanism and the client's first message.
pub fn sasl_initial_response(
    buf: &mut BytesMut,
    mechanism: &str,
    data: &[u8],
) -> Result<(), CodecError> {
    const M: &str = "SASLInitialResponse message";
    tagged(buf, b'p', M, |buf| {
        put_cstr(buf, mechanism.as_bytes(), M)?;
        buf.put_i32(len_i32(data.len(), M)?);
        buf.put_slice(data);
        Ok(())
    })
}

/// SASLResponse: the client's next SASL message.
pub fn sasl_response(buf: &mut BytesMut, data: &[u8]) -> Result<(), CodecError> {
    tagged(buf, b'p', "SASLResponse message", |buf| {
        buf.put_slice(data);
        Ok(())
    })
}

/// Query: a simple-protocol query.
pub fn query(buf: &mut BytesMut, sql: &str) -> Result<(), CodecError> {
    tagged(buf, b'Q', "Query message", |buf| {
        put_cstr(buf, sql.as_bytes(), "Query message")
    })
}

/// Parse: prepare `sql` as statement `name` (empty for unnamed).
pub fn parse(
    buf: &mut BytesMut,
    name: &str,
    sql: &str,
    param_types: &[u32],
) -> Result<(), CodecError> {
    const M: &str = "Parse message";
    tagged(buf, b'P', M, |buf| {
        put_cstr(buf, name.as_bytes(), M)?;
        put_cstr(buf, sql.as_bytes(), M)?;
        buf.put_u16(count_u16(param_types.len(), M)?);
        for &t in param_types {
            buf.put_u32(t);
        }
        Ok(())
    })
}

/// Bind: bind parameter values (`None` is NULL) from any iterator.
pub fn bind<V: AsRef<[u8]>>(
    buf: &mut BytesMut,
    portal: &str,
    statement: &str,
    param_formats: &[i16],
    params: impl IntoIterator<Item = Option<V>>,
    result_formats: &[i16],
) -> Result<(), CodecError> {
    const M: &str = "Bind message";
    tagged(buf, b'B', M, |buf| {
        put_cstr(buf, portal.as_bytes(), M)?;
        put_cstr(buf, statement.as_bytes(), M)?;
        put_formats(buf, param_formats, M)?;
        put_values(buf, params, M)?;
        put_formats(buf, result_formats, M)
    })
}

/// Describe a statement or portal.
pub fn describe(buf: &mut BytesMut, kind: Target, name: &str) -> Result<(), CodecError> {
    tagged(buf, b'D', "Describe message", |buf| {
        buf.put_u8(kind.as_u8());
        put_cstr(buf, name.as_bytes(), "Describe message")
    })
}

/// Execute a portal, returning at most `max_rows` rows (0 for all).
pub fn execute(buf: &mut BytesMut, portal: &str, max_rows: i32) -> Result<(), CodecError> {
    tagged(buf, b'E', "Execute message", |buf| {
        put_cstr(buf, portal.as_bytes(), "Execute message")?;
        buf.put_i32(max_rows);
        Ok(())
    })
}

/// Close a statement or portal.
pub fn close(buf: &mut BytesMut, kind: Target, name: &str) -> Result<(), CodecError> {
    tagged(buf, b'C', "Close message", |buf| {
        buf.put_u8(kind.as_u8());
        put_cstr(buf, name.as_bytes(), "Close message")
    })
}

/// Sync: end of an extended-protocol batch.
pub fn sync(buf: &mut BytesMut) {
    empty(buf, b'S');
}

/// Flush: ask for pending output without ending the batch.
pub fn flush(buf: &mut BytesMut) {
    empty(buf, b'H');
}

/// Terminate: close the session cleanly.
pub fn terminate(buf: &mut BytesMut) {
    empty(buf, b'X');
}

/// CopyFail: abort a COPY FROM STDIN with a reason.
pub fn copy_fail(buf: &mut BytesMut, message: &str) -> Result<(), CodecError> {
    tagged(buf, b'f', "CopyFail message", |buf| {
        put_cstr(buf, message.as_bytes(), "CopyFail message")
    })
}

/// FunctionCall: the fast-path call (`None` arguments are NULL).
pub fn function_call<V: AsRef<[u8]>>(
    buf: &mut BytesMut,
    function_oid: u32,
    arg_formats: &[i16],
    args: impl IntoIterator<Item = Option<V>>,
    result_format: i16,
) -> Result<(), CodecError> {
    const M: &str = "FunctionCall message";
    tagged(buf, b'F', M, |buf| {
        buf.put_u32(function_oid);
        put_formats(buf, arg_formats, M)?;
        put_values(buf, args, M)?;
        buf.put_i16(result_format);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_messages_are_exact() {
        let mut buf = BytesMut::new();
        ssl_request(&mut buf);
        gssenc_request(&mut buf);
        sync(&mut buf);
        flush(&mut buf);
        terminate(&mut buf);
        let expected: &[u8] = b"\0\0\0\x08\x04\xd2\x16\x2f\0\0\0\x08\x04\xd2\x16\x30\
            S\0\0\0\x04H\0\0\0\x04X\0\0\0\x04";
        assert_eq!(&buf[..], expected);
    }

    #[test]
    fn startup_packet_layout() {
        let mut buf = BytesMut::new();
        startup_message(&mut buf, &[("user", "u")]).unwrap();
        assert_eq!(&buf[..], b"\0\0\0\x10\0\x03\0\0user\0u\0\0");
    }

    #[test]
    fn oversized_startup_packet_is_refused() {
        let mut buf = BytesMut::new();
        let long = "x".repeat(MAX_STARTUP_PACKET_LEN);
        assert!(startup_message(&mut buf, &[("user", long.as_str())]).is_err());
        assert!(buf.is_empty());
    }
}
