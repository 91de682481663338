//! Builders for backend messages, which the proxy sends to its clients.

use bytes::{BufMut, BytesMut};

use super::{count_u16, empty, len_i32, put_cstr, put_formats, put_values, tagged};
use crate::codec::backend::{FieldDescription, Severity, TransactionStatus};
use crate::codec::error::CodecError;
use crate::codec::startup::{MAX_CANCEL_KEY_LEN, PROTOCOL_3_0};

fn authentication(buf: &mut BytesMut, code: i32) {
    buf.reserve(9);
    buf.put_u8(b'R');
    buf.put_i32(8);
    buf.put_i32(code);
}

/// AuthenticationOk: the client is in.
pub fn authentication_ok(buf: &mut BytesMut) {
    authentication(buf, 0);
}

/// AuthenticationCleartextPassword: ask the client for its password (the
/// proxy needs it in clear to authenticate to the database on its behalf).
pub fn authentication_cleartext_password(buf: &mut BytesMut) {
    authentication(buf, 3);
}

/// AuthenticationMD5Password with `salt`.
pub fn authentication_md5_password(buf: &mut BytesMut, salt: [u8; 4]) {
    buf.reserve(13);
    buf.put_u8(b'R');
    buf.put_i32(12);
    buf.put_i32(5);
    buf.put_slice(&salt);
}

/// AuthenticationSASL: offer these mechanisms, most preferred first.
pub fn authentication_sasl(buf: &mut BytesMut, mechanisms: &[&str]) -> Result<(), CodecError> {
    const M: &str = "AuthenticationSASL message";
    tagged(buf, b'R', M, |buf| {
        buf.put_i32(10);
        for m in mechanisms {
            if m.is_empty() {
                return Err(CodecError::unencodable(M, "mechanism name is empty"));
            }
            put_cstr(buf, m.as_bytes(), M)?;
        }
        buf.put_u8(0);
        Ok(())
    })
}

/// AuthenticationSASLContinue: a SASL challenge.
pub fn authentication_sasl_continue(buf: &mut BytesMut, data: &[u8]) -> Result<(), CodecError> {
    tagged(buf, b'R', "AuthenticationSASLContinue message", |buf| {
        buf.put_i32(11);
        buf.put_slice(data);
        Ok(())
    })
}

/// AuthenticationSASLFinal: the SASL outcome data.
pub fn authentication_sasl_final(buf: &mut BytesMut, data: &[u8]) -> Result<(), CodecError> {
    tagged(buf, b'R', "AuthenticationSASLFinal message", |buf| {
        buf.put_i32(12);
        buf.put_slice(data);
        Ok(())
    })
}

/// ParameterStatus: report a run-time parameter to the client.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) -> Result<(), CodecError> {
    const M: &str = "ParameterStatus message";
    tagged(buf, b'S', M, |buf| {
        put_cstr(buf, name.as_bytes(), M)?;
        put_cstr(buf, value.as_bytes(), M)
    })
}

/// BackendKeyData: the process id and cancel key the client will quote in a
/// CancelRequest (1 to 256 bytes; 4 for protocol 3.0 clients).
pub fn backend_key_data(buf: &mut BytesMut, process_id: i32, key: &[u8]) -> Result<(), CodecError> {
    const M: &str = "BackendKeyData message";
    if key.is_empty() || key.len() > MAX_CANCEL_KEY_LEN {
        return Err(CodecError::unencodable(
            M,
            "cancel key length is not between 1 and 256",
        ));
    }
    tagged(buf, b'K', M, |buf| {
        buf.put_i32(process_id);
        buf.put_slice(key);
        Ok(())
    })
}

/// ReadyForQuery: the proxy is ready for the next command.
pub fn ready_for_query(buf: &mut BytesMut, status: TransactionStatus) {
    buf.reserve(6);
    buf.put_u8(b'Z');
    buf.put_i32(5);
    buf.put_u8(status.as_u8());
}

/// NegotiateProtocolVersion: tell a client which 3.x minor version it gets
/// and which `_pq_.` options were not recognised. The version goes on the
/// wire as `3 << 16 | newest_minor`, which libpq requires.
pub fn negotiate_protocol_version<S: AsRef<str>>(
    buf: &mut BytesMut,
    newest_minor: u16,
    unrecognized_options: &[S],
) -> Result<(), CodecError> {
    const M: &str = "NegotiateProtocolVersion message";
    tagged(buf, b'v', M, |buf| {
        buf.put_u32(PROTOCOL_3_0 | u32::from(newest_minor));
        buf.put_i32(len_i32(unrecognized_options.len(), M)?);
        for option in unrecognized_options {
            put_cstr(buf, option.as_ref().as_bytes(), M)?;
        }
        Ok(())
    })
}

/// Writes S, V, C and then `rest` (M, D, H); fields whose value is `None`
/// are left out.
fn fields_message(
    buf: &mut BytesMut,
    tag: u8,
    message: &'static str,
    severity: Severity,
    code: &str,
    rest: [(u8, Option<&str>); 3],
) -> Result<(), CodecError> {
    if code.len() != 5
        || !code
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        return Err(CodecError::unencodable(
            message,
            "SQLSTATE is not 5 digits or capitals",
        ));
    }
    tagged(buf, tag, message, |buf| {
        let head = [
            (b'S', Some(severity.as_str())),
            (b'V', Some(severity.as_str())),
            (b'C', Some(code)),
        ];
        for (field, value) in head.into_iter().chain(rest) {
            if let Some(value) = value {
                buf.put_u8(field);
                put_cstr(buf, value.as_bytes(), message)?;
            }
        }
        buf.put_u8(0);
        Ok(())
    })
}

/// ErrorResponse with fields S, V, C (SQLSTATE), M and, when given, D and H:
/// how the proxy refuses a statement or a connection.
pub fn error_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) -> Result<(), CodecError> {
    let rest = [(b'M', Some(message)), (b'D', detail), (b'H', hint)];
    fields_message(buf, b'E', "ErrorResponse message", severity, code, rest)
}

/// NoticeResponse with the same fields as [`error_response`]: tells the
/// client something (e.g. that results were masked) without failing.
pub fn notice_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) -> Result<(), CodecError> {
    let rest = [(b'M', Some(message)), (b'D', detail), (b'H', hint)];
    fields_message(buf, b'N', "NoticeResponse message", severity, code, rest)
}

/// ParseComplete, for a Parse the proxy answers itself.
pub fn parse_complete(buf: &mut BytesMut) {
    empty(buf, b'1');
}

/// BindComplete, for a Bind the proxy answers itself.
pub fn bind_complete(buf: &mut BytesMut) {
    empty(buf, b'2');
}

/// CloseComplete, for a Close the proxy answers itself.
pub fn close_complete(buf: &mut BytesMut) {
    empty(buf, b'3');
}

/// NoData: a described statement returns no rows.
pub fn no_data(buf: &mut BytesMut) {
    empty(buf, b'n');
}

/// PortalSuspended: Execute stopped at its row limit.
pub fn portal_suspended(buf: &mut BytesMut) {
    empty(buf, b's');
}

/// EmptyQueryResponse: the query string was empty.
pub fn empty_query_response(buf: &mut BytesMut) {
    empty(buf, b'I');
}

/// CommandComplete with a command tag such as `SET` or `SELECT 0`.
pub fn command_complete(buf: &mut BytesMut, tag: &str) -> Result<(), CodecError> {
    tagged(buf, b'C', "CommandComplete message", |buf| {
        put_cstr(buf, tag.as_bytes(), "CommandComplete message")
    })
}

/// RowDescription for rows the proxy produces or reshapes.
pub fn row_description(
    buf: &mut BytesMut,
    fields: &[FieldDescription<'_>],
) -> Result<(), CodecError> {
    const M: &str = "RowDescription message";
    tagged(buf, b'T', M, |buf| {
        buf.put_u16(count_u16(fields.len(), M)?);
        for f in fields {
            put_cstr(buf, f.name.as_bytes(), M)?;
            buf.put_u32(f.table_oid);
            buf.put_i16(f.column_attr);
            buf.put_u32(f.type_oid);
            buf.put_i16(f.type_size);
            buf.put_i32(f.type_modifier);
            buf.put_i16(f.format);
        }
        Ok(())
    })
}

/// DataRow from any iterator of values (`None` is NULL), so a masked row
/// can be written straight from the original row's iterator.
pub fn data_row<V: AsRef<[u8]>>(
    buf: &mut BytesMut,
    values: impl IntoIterator<Item = Option<V>>,
) -> Result<(), CodecError> {
    tagged(buf, b'D', "DataRow message", |buf| {
        put_values(buf, values, "DataRow message")
    })
}

/// ParameterDescription: parameter type OIDs of a described statement.
pub fn parameter_description(buf: &mut BytesMut, types: &[u32]) -> Result<(), CodecError> {
    const M: &str = "ParameterDescription message";
    tagged(buf, b't', M, |buf| {
        buf.put_u16(count_u16(types.len(), M)?);
        for &t in types {
            buf.put_u32(t);
        }
        Ok(())
    })
}

fn copy_response(
    buf: &mut BytesMut,
    tag: u8,
    format: i8,
    column_formats: &[i16],
) -> Result<(), CodecError> {
    const M: &str = "copy response message";
    tagged(buf, tag, M, |buf| {
        buf.put_i8(format);
        put_formats(buf, column_formats, M)
    })
}

/// CopyInResponse: ready to receive COPY data.
pub fn copy_in_response(
    buf: &mut BytesMut,
    format: i8,
    column_formats: &[i16],
) -> Result<(), CodecError> {
    copy_response(buf, b'G', format, column_formats)
}

/// CopyOutResponse: COPY data follows.
pub fn copy_out_response(
    buf: &mut BytesMut,
    format: i8,
    column_formats: &[i16],
) -> Result<(), CodecError> {
    copy_response(buf, b'H', format, column_formats)
}

/// CopyBothResponse: COPY data flows both ways (replication).
pub fn copy_both_response(
    buf: &mut BytesMut,
    format: i8,
    column_formats: &[i16],
) -> Result<(), CodecError> {
    copy_response(buf, b'W', format, column_formats)
}

/// NotificationResponse: a NOTIFY for a listening client.
pub fn notification_response(
    buf: &mut BytesMut,
    process_id: i32,
    channel: &str,
    payload: &str,
) -> Result<(), CodecError> {
    const M: &str = "NotificationResponse message";
    tagged(buf, b'A', M, |buf| {
        buf.put_i32(process_id);
        put_cstr(buf, channel.as_bytes(), M)?;
        put_cstr(buf, payload.as_bytes(), M)
    })
}

/// FunctionCallResponse: the result of a fast-path call (`None` is NULL).
pub fn function_call_response(buf: &mut BytesMut, value: Option<&[u8]>) -> Result<(), CodecError> {
    const M: &str = "FunctionCallResponse message";
    tagged(buf, b'V', M, |buf| {
        match value {
            None => buf.put_i32(-1),
            Some(v) => {
                buf.put_i32(len_i32(v.len(), M)?);
                buf.put_slice(v);
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_messages_are_exact() {
        let mut buf = BytesMut::new();
        authentication_ok(&mut buf);
        authentication_cleartext_password(&mut buf);
        authentication_md5_password(&mut buf, *b"abcd");
        ready_for_query(&mut buf, TransactionStatus::InTransaction);
        parse_complete(&mut buf);
        bind_complete(&mut buf);
        close_complete(&mut buf);
        no_data(&mut buf);
        portal_suspended(&mut buf);
        empty_query_response(&mut buf);
        let expected: &[u8] = b"R\0\0\0\x08\0\0\0\0R\0\0\0\x08\0\0\0\x03R\0\0\0\x0c\0\0\0\x05abcd\
            Z\0\0\0\x05T1\0\0\0\x042\0\0\0\x043\0\0\0\x04n\0\0\0\x04s\0\0\0\x04I\0\0\0\x04";
        assert_eq!(&buf[..], expected);
    }

    #[test]
    fn error_response_layout_matches_postgres() {
        let mut buf = BytesMut::new();
        let r = error_response(&mut buf, Severity::Fatal, "08P01", "bad", None, Some("h"));
        assert!(r.is_ok());
        assert_eq!(&buf[..], b"E\0\0\0\x22SFATAL\0VFATAL\0C08P01\0Mbad\0Hh\0\0");
    }
}
