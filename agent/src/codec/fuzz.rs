//! Deterministic fuzzing: random and mutated bytes through every decoder
//! and view. Passing means no panic, no hang, and frames that match their
//! input.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::backend::{
    Authentication, BackendKeyData, CommandComplete, CopyResponse, DataRow, ErrorResponse,
    FunctionCallResponse, NegotiateProtocolVersion, NoticeResponse, NotificationResponse,
    ParameterDescription, ParameterStatus, ReadyForQuery, RowDescription, Severity,
    TransactionStatus,
};
use super::frontend::{
    Bind, Close, Describe, Execute, FunctionCall, Parse, PasswordMessage, Query, Target,
};
use super::{
    BackendMessage, CopyData, CopyFail, Frame, FrameCodec, FrontendMessage, StartupCodec,
    StartupPacket, write,
};

/// xorshift64*: small, fast and the same on every run.
struct Rng(u64);

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

fn every_frame_view(frame: &Frame) {
    let _ = FrontendMessage::from_frame(frame);
    let _ = BackendMessage::from_frame(frame);
    every_view(frame.body());
}

/// Drains a buffer through a decoder; stops at the first error or wait.
fn drain<D: Decoder>(codec: &mut D, bytes: &[u8], mut each: impl FnMut(D::Item)) {
    let mut src = BytesMut::from(bytes);
    for _ in 0..=bytes.len() {
        match codec.decode(&mut src) {
            Ok(Some(item)) => each(item),
            Ok(None) | Err(_) => return,
        }
    }
    panic!("decoder made no progress");
}

const TAGS: &[u8] = b"QPBDECSHXpdcfFRK23GHWIEVvnNAtS1sZT";

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    for _ in 0..4000 {
        let bytes = rng.bytes(96);
        every_view(&bytes);
        drain(&mut StartupCodec, &bytes, |_| {});
        let input_len = bytes.len();
        drain(&mut FrameCodec::new(64), &bytes, |f| {
            assert!(f.wire_len() <= input_len);
            every_frame_view(&f);
        });
        // Same body under every tag.
        let tag = TAGS[rng.below(TAGS.len())];
        if let Ok(frame) = Frame::new(tag, &bytes) {
            every_frame_view(&frame);
        }
    }
}

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
        drain(&mut StartupCodec, &bytes, |_| {});
        drain(&mut FrameCodec::new(1 << 16), &bytes, |f| {
            every_frame_view(&f)
        });
        every_view(bytes.get(5..).unwrap_or_default());
        every_view(bytes.get(4..).unwrap_or_default());
    }
}
