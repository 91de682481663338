//! Fuzzing helpers: one entry point per untrusted input of the codec (the
//! client in each connection state, the upstream server), each asserting
//! the invariants of that input, plus the deterministic random and mutated
//! byte tests that run in the unit suite.
//!
//! The entry points are public when the `fuzzing` feature is on, for the
//! cargo-fuzz targets under `fuzz/` and the property tests; they panic on a
//! broken invariant, which is what a fuzzer looks for.
//!
//! Invariants checked on every message a decoder accepts:
//! - re-encoding it with the [`write`](super::write) builders (or, for
//!   messages the gateway never writes, the same layout by hand) gives
//!   back exactly the bytes read, so the gateway and PostgreSQL cannot read
//!   one message two ways;
//! - decoding never reads past a frame, never allocates from an unchecked
//!   count, and always makes progress.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "fuzz helpers fail loudly on a broken invariant, by design"
)]

use bytes::{BufMut, BytesMut};
use tokio_util::codec::Decoder;

use super::backend::{
    Authentication, BackendKeyData, CommandComplete, CopyResponse, DataRow, ErrorResponse,
    FunctionCallResponse, NegotiateProtocolVersion, NoticeResponse, NotificationResponse,
    ParameterDescription, ParameterStatus, ReadyForQuery, RowDescription,
};
#[cfg(test)]
use super::backend::{Severity, TransactionStatus};
#[cfg(test)]
use super::frontend::Target;
use super::frontend::{
    Bind, Close, Describe, Execute, FunctionCall, Parse, PasswordMessage, Query,
};
use super::{
    BackendMessage, CodecError, CopyData, CopyFail, Frame, FrameCodec, FrontendMessage,
    StartupCodec, StartupPacket, write,
};

/// Largest message the agent reads from a client during authentication.
pub const AUTH_MAX_MESSAGE: usize = 64 * 1024;
/// Largest message the fuzz entry points accept in the other states.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Appends `msg` as the client would send it.
pub fn encode_frontend(msg: &FrontendMessage<'_>, buf: &mut BytesMut) -> Result<(), CodecError> {
    match msg {
        FrontendMessage::Query(q) => write::query(buf, q.sql),
        FrontendMessage::Parse(p) => write::parse(buf, p.name, p.sql, &p.param_types),
        FrontendMessage::Bind(b) => {
            let pf: Vec<i16> = b.param_formats.iter().collect();
            let rf: Vec<i16> = b.result_formats.iter().collect();
            write::bind(buf, b.portal, b.statement, &pf, b.params.iter(), &rf)
        }
        FrontendMessage::Describe(d) => write::describe(buf, d.kind, d.name),
        FrontendMessage::Execute(e) => write::execute(buf, e.portal, e.max_rows),
        FrontendMessage::Close(c) => write::close(buf, c.kind, c.name),
        FrontendMessage::Sync => {
            write::sync(buf);
            Ok(())
        }
        FrontendMessage::Flush => {
            write::flush(buf);
            Ok(())
        }
        FrontendMessage::Terminate => {
            write::terminate(buf);
            Ok(())
        }
        // A password message is opaque until the state says which kind it is.
        FrontendMessage::Password(p) => write::sasl_response(buf, p.data),
        FrontendMessage::CopyData(d) => write::copy_data(buf, d.data),
        FrontendMessage::CopyDone => {
            write::copy_done(buf);
            Ok(())
        }
        FrontendMessage::CopyFail(f) => write::copy_fail(buf, f.message),
        FrontendMessage::FunctionCall(f) => {
            let af: Vec<i16> = f.arg_formats.iter().collect();
            write::function_call(buf, f.function_oid, &af, f.args.iter(), f.result_format)
        }
    }
}

/// Appends `packet` as the client would send it.
pub fn encode_startup(packet: &StartupPacket, buf: &mut BytesMut) -> Result<(), CodecError> {
    match packet {
        StartupPacket::SslRequest => {
            write::ssl_request(buf);
            Ok(())
        }
        StartupPacket::GssEncRequest => {
            write::gssenc_request(buf);
            Ok(())
        }
        StartupPacket::CancelRequest {
            process_id,
            secret_key,
        } => write::cancel_request(buf, *process_id, secret_key),
        StartupPacket::Startup {
            version_minor,
            parameters,
            ..
        } => write::startup_message_with_minor(buf, *version_minor, parameters),
    }
}

/// A message with a tag and a hand-written body, for the few messages no
/// builder writes in full (any error field, any authentication code).
fn raw_message(buf: &mut BytesMut, tag: u8, body: &[u8]) {
    buf.put_u8(tag);
    buf.put_i32(i32::try_from(body.len() + 4).unwrap_or(i32::MAX));
    buf.put_slice(body);
}

fn fields_body(fields: &[(u8, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (code, value) in fields {
        body.push(*code);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    body
}

/// Appends `msg` as PostgreSQL would send it.
pub fn encode_backend(msg: &BackendMessage<'_>, buf: &mut BytesMut) -> Result<(), CodecError> {
    use BackendMessage as B;
    let done = |f: fn(&mut BytesMut), buf: &mut BytesMut| {
        f(buf);
        Ok(())
    };
    match msg {
        B::Authentication(a) => match a {
            Authentication::Ok => done(write::authentication_ok, buf),
            Authentication::CleartextPassword => {
                done(write::authentication_cleartext_password, buf)
            }
            Authentication::Md5Password { salt } => {
                write::authentication_md5_password(buf, *salt);
                Ok(())
            }
            Authentication::Sasl { mechanisms } => write::authentication_sasl(buf, mechanisms),
            Authentication::SaslContinue { data } => write::authentication_sasl_continue(buf, data),
            Authentication::SaslFinal { data } => write::authentication_sasl_final(buf, data),
            Authentication::Other { code, data } => {
                let mut body = code.to_be_bytes().to_vec();
                body.extend_from_slice(data);
                raw_message(buf, b'R', &body);
                Ok(())
            }
        },
        B::BackendKeyData(k) => write::backend_key_data(buf, k.process_id, k.secret_key),
        B::BindComplete => done(write::bind_complete, buf),
        B::CloseComplete => done(write::close_complete, buf),
        B::CommandComplete(c) => write::command_complete(buf, c.tag),
        B::CopyData(d) => write::copy_data(buf, d.data),
        B::CopyDone => done(write::copy_done, buf),
        B::CopyInResponse(c) => {
            write::copy_in_response(buf, c.format, &c.column_formats.iter().collect::<Vec<_>>())
        }
        B::CopyOutResponse(c) => {
            write::copy_out_response(buf, c.format, &c.column_formats.iter().collect::<Vec<_>>())
        }
        B::CopyBothResponse(c) => {
            write::copy_both_response(buf, c.format, &c.column_formats.iter().collect::<Vec<_>>())
        }
        B::DataRow(d) => write::data_row(buf, d.iter()),
        B::EmptyQueryResponse => done(write::empty_query_response, buf),
        B::ErrorResponse(e) => {
            raw_message(buf, b'E', &fields_body(&e.fields));
            Ok(())
        }
        B::NoticeResponse(n) => {
            raw_message(buf, b'N', &fields_body(&n.fields));
            Ok(())
        }
        B::FunctionCallResponse(f) => write::function_call_response(buf, f.value),
        B::NegotiateProtocolVersion(n) => {
            write::negotiate_protocol_version(buf, n.newest_minor, &n.unrecognized_options)
        }
        B::NoData => done(write::no_data, buf),
        B::NotificationResponse(n) => {
            write::notification_response(buf, n.process_id, n.channel, n.payload)
        }
        B::ParameterDescription(p) => write::parameter_description(buf, &p.types),
        B::ParameterStatus(p) => write::parameter_status(buf, p.name, p.value),
        B::ParseComplete => done(write::parse_complete, buf),
        B::PortalSuspended => done(write::portal_suspended, buf),
        B::ReadyForQuery(r) => {
            write::ready_for_query(buf, r.status);
            Ok(())
        }
        B::RowDescription(r) => write::row_description(buf, &r.fields),
    }
}

/// Asserts that a decoded client message re-encodes to exactly `frame`.
pub fn assert_frontend_round_trip(frame: &Frame, msg: &FrontendMessage<'_>) {
    let mut buf = BytesMut::new();
    encode_frontend(msg, &mut buf)
        .unwrap_or_else(|e| panic!("decoded {msg:?} does not encode: {e}"));
    assert_eq!(&buf[..], &frame.raw()[..], "re-encoding {msg:?}");
    let again = one_frame(&buf);
    assert_eq!(FrontendMessage::from_frame(&again).ok().as_ref(), Some(msg));
}

/// Asserts that a decoded server message re-encodes to exactly `frame`.
pub fn assert_backend_round_trip(frame: &Frame, msg: &BackendMessage<'_>) {
    let mut buf = BytesMut::new();
    encode_backend(msg, &mut buf)
        .unwrap_or_else(|e| panic!("decoded {msg:?} does not encode: {e}"));
    assert_eq!(&buf[..], &frame.raw()[..], "re-encoding {msg:?}");
    let again = one_frame(&buf);
    assert_eq!(BackendMessage::from_frame(&again).ok().as_ref(), Some(msg));
}

/// The single frame in `bytes`.
pub fn one_frame(bytes: &[u8]) -> Frame {
    let mut src = BytesMut::from(bytes);
    let frame = FrameCodec::new(usize::MAX)
        .decode(&mut src)
        .expect("a frame")
        .expect("a whole frame");
    assert!(src.is_empty(), "more than one frame");
    frame
}

/// Cuts `bytes` into frames the way a connection does; each frame must be
/// exactly the bytes it was cut from.
fn frames(bytes: &[u8], max: usize, mut each: impl FnMut(&Frame) -> bool) {
    let mut at = 0;
    drain(&mut FrameCodec::new(max), bytes, |f: Frame| {
        assert!(f.wire_len() <= max.saturating_add(1));
        assert_eq!(&f.raw()[..], &bytes[at..at + f.wire_len()]);
        at += f.wire_len();
        each(&f)
    });
}

/// The client before its StartupMessage: SSLRequest, GSSENCRequest,
/// CancelRequest or StartupMessage, read as the handshake does.
pub fn startup(bytes: &[u8]) {
    let mut at = 0;
    drain(&mut StartupCodec, bytes, |packet: StartupPacket| {
        let mut buf = BytesMut::new();
        encode_startup(&packet, &mut buf)
            .unwrap_or_else(|e| panic!("decoded {packet:?} does not encode: {e}"));
        assert_eq!(
            &buf[..],
            &bytes[at..at + buf.len()],
            "re-encoding {packet:?}"
        );
        at += buf.len();
        let again = StartupCodec.decode(&mut buf).expect("re-decodes");
        assert_eq!(again.as_ref(), Some(&packet));
        if let StartupPacket::Startup { parameters, .. } = &packet {
            for (i, (name, _)) in parameters.iter().enumerate() {
                assert!(!name.is_empty());
                assert!(parameters[..i].iter().all(|(n, _)| n != name));
            }
            let _ = packet.protocol_options().count();
            let _ = packet.parameter("user");
        }
        // The handshake moves on to tagged messages after a StartupMessage
        // and hangs up after a CancelRequest.
        matches!(
            packet,
            StartupPacket::SslRequest | StartupPacket::GssEncRequest
        )
    });
}

/// The client answering the password request: one message of at most
/// [`AUTH_MAX_MESSAGE`] bytes, whose body is read as cleartext (the token),
/// SASLInitialResponse or SASLResponse.
pub fn authentication(bytes: &[u8]) {
    frames(bytes, AUTH_MAX_MESSAGE, |frame| {
        if let Ok(p) = PasswordMessage::from_frame(frame) {
            assert_frontend_round_trip(frame, &FrontendMessage::Password(p));
            if let Ok(password) = p.cleartext_password() {
                assert!(!password.contains(&0));
                let mut buf = BytesMut::new();
                write::password_message(&mut buf, password).expect("encodes");
                assert_eq!(&buf[..], &frame.raw()[..]);
                let _ = String::from_utf8_lossy(password).trim().is_empty();
            }
            if let Ok(s) = p.sasl_initial_response() {
                let mut buf = BytesMut::new();
                match s.data {
                    Some(data) => {
                        write::sasl_initial_response(&mut buf, s.mechanism, data).expect("encodes")
                    }
                    None => {
                        let mut body = s.mechanism.as_bytes().to_vec();
                        body.push(0);
                        body.extend_from_slice(&(-1i32).to_be_bytes());
                        raw_message(&mut buf, b'p', &body);
                    }
                }
                assert_eq!(&buf[..], &frame.raw()[..]);
            }
            assert_eq!(p.sasl_response(), frame.body());
        }
        let _ = FrontendMessage::from_frame(frame);
        // The handshake reads exactly one message.
        false
    });
}

/// Every client message in the ready state (simple and extended query,
/// function calls), decoded and re-encoded.
pub fn ready(bytes: &[u8]) {
    frames(bytes, MAX_MESSAGE, |frame| {
        if let Ok(msg) = FrontendMessage::from_frame(frame) {
            assert_eq!(msg.tag().as_u8(), frame.tag());
            assert_frontend_round_trip(frame, &msg);
            match &msg {
                FrontendMessage::Query(q) => assert!(!q.sql.contains('\0')),
                FrontendMessage::Bind(b) => {
                    assert_eq!(b.params.iter().count(), b.params.len());
                    for i in 0..=b.params.len() {
                        let _ = b.param_format(i);
                    }
                }
                FrontendMessage::FunctionCall(f) => {
                    assert_eq!(f.args.iter().count(), f.args.len());
                }
                _ => {}
            }
            true
        } else {
            // The session ends at the first message it cannot read.
            every_view(frame.body());
            false
        }
    });
}

/// The client during `COPY FROM STDIN`: CopyData, CopyDone, CopyFail (and
/// Flush/Sync, which PostgreSQL ignores there).
pub fn copy_in(bytes: &[u8]) {
    frames(
        bytes,
        MAX_MESSAGE,
        |frame| match FrontendMessage::from_frame(frame) {
            Ok(
                msg @ (FrontendMessage::CopyData(_)
                | FrontendMessage::CopyDone
                | FrontendMessage::CopyFail(_)
                | FrontendMessage::Flush
                | FrontendMessage::Sync),
            ) => {
                assert_frontend_round_trip(frame, &msg);
                if let FrontendMessage::CopyData(d) = msg {
                    assert_eq!(d.data, frame.body());
                }
                !matches!(
                    msg,
                    FrontendMessage::CopyDone | FrontendMessage::CopyFail(_)
                )
            }
            Ok(_) | Err(_) => false,
        },
    );
}

/// Everything the upstream server sends, decoded and re-encoded.
pub fn backend(bytes: &[u8]) {
    frames(
        bytes,
        MAX_MESSAGE,
        |frame| match BackendMessage::from_frame(frame) {
            Ok(msg) => {
                assert_eq!(msg.tag().as_u8(), frame.tag());
                assert_backend_round_trip(frame, &msg);
                if let BackendMessage::DataRow(d) = &msg {
                    assert_eq!(d.iter().count(), d.len());
                }
                if let BackendMessage::CommandComplete(c) = &msg {
                    let _ = c.rows();
                }
                true
            }
            Err(_) => {
                every_view(frame.body());
                false
            }
        },
    );
}

/// xorshift64*: small, fast and the same on every run.
#[cfg(test)]
struct Rng(u64);

#[cfg(test)]
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }

    fn byte(&mut self) -> u8 {
        // Favour the bytes that matter to parsers: NUL, 0xff, small counts.
        match self.below(8) {
            0 => 0,
            1 => 0xff,
            2 => u8::try_from(self.below(4)).unwrap_or(0),
            _ => self.next().to_le_bytes()[0],
        }
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.byte()).collect()
    }
}

/// Every view over the same body; results are consumed so lazy parts
/// (iterators, helpers) run too.
fn every_view(body: &[u8]) {
    if let Ok(q) = Query::from_body(body) {
        assert!(!q.sql.contains('\0'));
    }
    let _ = Parse::from_body(body);
    if let Ok(b) = Bind::from_body(body) {
        assert_eq!(b.params.iter().count(), b.params.len());
        let _ = b.param_formats.iter().count() + b.result_formats.iter().count();
        for i in 0..=b.params.len() {
            let _ = b.param_format(i);
        }
    }
    let _ = Describe::from_body(body);
    let _ = Execute::from_body(body);
    let _ = Close::from_body(body);
    if let Ok(p) = PasswordMessage::from_body(body) {
        let _ = p.cleartext_password();
        let _ = p.sasl_initial_response();
        let _ = p.sasl_response();
    }
    let _ = CopyData::from_body(body);
    let _ = CopyFail::from_body(body);
    if let Ok(f) = FunctionCall::from_body(body) {
        assert_eq!(f.args.iter().count(), f.args.len());
    }
    let _ = Authentication::from_body(body);
    let _ = ParameterStatus::from_body(body);
    let _ = BackendKeyData::from_body(body);
    let _ = ReadyForQuery::from_body(body);
    for fields in [
        ErrorResponse::from_body(body).map(|e| e.fields),
        NoticeResponse::from_body(body).map(|e| e.fields),
    ]
    .into_iter()
    .flatten()
    {
        assert!(fields.iter().all(|(code, _)| *code != 0));
    }
    if let Ok(c) = CommandComplete::from_body(body) {
        let _ = c.rows();
    }
    if let Ok(t) = RowDescription::from_body(body) {
        assert!(t.fields.len() <= body.len() / 19);
    }
    if let Ok(d) = DataRow::from_body(body) {
        let n = d.iter().fold(0, |n, v| n + v.map_or(0, <[u8]>::len));
        assert!(n <= body.len());
        assert_eq!(d.iter().count(), d.len());
    }
    let _ = CopyResponse::from_body(body).map(|c| c.column_formats.iter().count());
    let _ = NotificationResponse::from_body(body);
    let _ = NegotiateProtocolVersion::from_body(body);
    let _ = ParameterDescription::from_body(body);
    let _ = FunctionCallResponse::from_body(body);
    let _ = StartupPacket::parse(body);
}

#[cfg(test)]
fn every_frame_view(frame: &Frame) {
    let _ = FrontendMessage::from_frame(frame);
    let _ = BackendMessage::from_frame(frame);
    every_view(frame.body());
}

/// Drains a buffer through a decoder; stops at the first error or wait,
/// or when `each` returns false.
fn drain<D: Decoder>(codec: &mut D, bytes: &[u8], mut each: impl FnMut(D::Item) -> bool) {
    let mut src = BytesMut::from(bytes);
    for _ in 0..=bytes.len() {
        let before = src.len();
        match codec.decode(&mut src) {
            Ok(Some(item)) => {
                assert!(src.len() < before, "a message of no bytes");
                if !each(item) {
                    return;
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
    panic!("decoder made no progress");
}

#[cfg(test)]
const TAGS: &[u8] = b"QPBDECSHXpdcfFRK23GHWIEVvnNAtS1sZT";

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    for _ in 0..4000 {
        let bytes = rng.bytes(96);
        every_view(&bytes);
        drain(&mut StartupCodec, &bytes, |_| true);
        let input_len = bytes.len();
        drain(&mut FrameCodec::new(64), &bytes, |f| {
            assert!(f.wire_len() <= input_len);
            every_frame_view(&f);
            true
        });
        // Same body under every tag.
        let tag = TAGS[rng.below(TAGS.len())];
        if let Ok(frame) = Frame::new(tag, &bytes) {
            every_frame_view(&frame);
        }
    }
}

#[cfg(test)]
fn corpus() -> Vec<BytesMut> {
    let mut out = Vec::new();
    let mut add = |f: &dyn Fn(&mut BytesMut) -> Result<(), super::CodecError>| {
        let mut buf = BytesMut::new();
        if f(&mut buf).is_ok() {
            out.push(buf);
        }
    };
    add(&|b| write::query(b, "select * from t where a = 'x'"));
    add(&|b| write::parse(b, "s1", "select $1, $2", &[23, 25]));
    add(&|b| write::bind(b, "p", "s1", &[0, 1], [Some(&b"12"[..]), None], &[1]));
    add(&|b| write::describe(b, Target::Portal, "p"));
    add(&|b| write::execute(b, "p", 10));
    add(&|b| write::close(b, Target::Statement, "s1"));
    add(&|b| write::password_message(b, b"pw"));
    add(&|b| write::sasl_initial_response(b, "SCRAM-SHA-256", b"n,,n=,r=x"));
    add(&|b| write::copy_fail(b, "why"));
    add(&|b| write::function_call(b, 7, &[1], [Some(&b"ab"[..]), None], 1));
    add(&|b| write::startup_message_with_minor(b, 2, &[("user", "u"), ("database", "d")]));
    add(&|b| write::cancel_request(b, 5, &[1; 32]));
    add(&|b| write::authentication_sasl(b, &["SCRAM-SHA-256"]));
    add(&|b| write::backend_key_data(b, 9, &[2; 32]));
    add(&|b| write::negotiate_protocol_version(b, 0, &["_pq_.a"]));
    add(&|b| write::error_response(b, Severity::Error, "42501", "no", Some("d"), Some("h")));
    add(&|b| write::notice_response(b, Severity::Notice, "00000", "n", None, None));
    add(&|b| write::command_complete(b, "SELECT 2"));
    add(&|b| write::data_row(b, [Some(&b"1"[..]), None, Some(b"abc")]));
    add(&|b| write::parameter_description(b, &[23]));
    add(&|b| write::copy_out_response(b, 0, &[0, 0]));
    add(&|b| write::notification_response(b, 1, "ch", "pay"));
    add(&|b| write::function_call_response(b, Some(b"v")));
    add(&|b| {
        write::ready_for_query(b, TransactionStatus::Idle);
        Ok(())
    });
    add(&|b| {
        write::authentication_md5_password(b, *b"salt");
        Ok(())
    });
    out
}

#[test]
fn mutated_messages_never_panic() {
    let corpus = corpus();
    assert!(corpus.len() >= 25);
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    for round in 0..6000 {
        let mut bytes = corpus[round % corpus.len()].to_vec();
        for _ in 0..=rng.below(3) {
            match rng.below(4) {
                0 if !bytes.is_empty() => {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.byte();
                }
                1 if !bytes.is_empty() => {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
                2 => bytes.truncate(rng.below(bytes.len() + 1)),
                _ => bytes.extend(rng.bytes(8)),
            }
        }
        drain(&mut StartupCodec, &bytes, |_| true);
        drain(&mut FrameCodec::new(1 << 16), &bytes, |f| {
            every_frame_view(&f);
            true
        });
        startup(&bytes);
        authentication(&bytes);
        ready(&bytes);
        copy_in(&bytes);
        backend(&bytes);
        every_view(bytes.get(5..).unwrap_or_default());
        every_view(bytes.get(4..).unwrap_or_default());
    }
}
