//! Property tests: decode∘encode is the identity for every message the
//! builders write, in both directions, and no input makes a decoder panic
//! in any connection state.

use bytes::BytesMut;
use proptest::prelude::*;

use super::backend::{FieldDescription, Severity, TransactionStatus};
use super::frontend::Target;
use super::fuzz;
use super::{BackendMessage, FrontendMessage, StartupCodec, StartupPacket, write};
use tokio_util::codec::Decoder;

/// Writes one or more messages.
type Builder = Box<dyn Fn(&mut BytesMut) -> Result<(), super::CodecError>>;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A protocol string: no NUL.
fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,24}"
}

fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..24))
}

/// Parameter values with a format code list PostgreSQL accepts for them:
/// none, one for all, or one each.
fn values_and_formats() -> impl Strategy<Value = (Vec<Option<Vec<u8>>>, Vec<i16>)> {
    prop::collection::vec(value(), 0..4).prop_flat_map(|v| {
        let n = v.len();
        let formats = prop_oneof![Just(0usize), Just(1usize), Just(n)]
            .prop_flat_map(|k| prop::collection::vec(0i16..2, k));
        (Just(v), formats)
    })
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![Just(Target::Statement), Just(Target::Portal)]
}

/// One client message, as the bytes a builder writes.
fn frontend_message() -> impl Strategy<Value = Vec<u8>> {
    let build = |f: Builder| {
        let mut buf = BytesMut::new();
        f(&mut buf).map(|()| buf.to_vec()).unwrap_or_default()
    };
    prop_oneof![
        text().prop_map(move |s| build(Box::new(move |b| write::query(b, &s)))),
        (text(), text(), prop::collection::vec(any::<u32>(), 0..4))
            .prop_map(move |(n, s, t)| { build(Box::new(move |b| write::parse(b, &n, &s, &t))) }),
        (
            text(),
            text(),
            values_and_formats(),
            prop::collection::vec(any::<i16>(), 0..3)
        )
            .prop_map(move |(p, s, (v, pf), rf)| {
                build(Box::new(move |b| {
                    write::bind(b, &p, &s, &pf, v.iter().map(|x| x.as_deref()), &rf)
                }))
            }),
        (target(), text())
            .prop_map(move |(t, n)| build(Box::new(move |b| write::describe(b, t, &n)))),
        (text(), any::<i32>())
            .prop_map(move |(p, n)| build(Box::new(move |b| write::execute(b, &p, n)))),
        (target(), text()).prop_map(move |(t, n)| build(Box::new(move |b| write::close(b, t, &n)))),
        Just(()).prop_map(move |()| build(Box::new(|b| {
            write::sync(b);
            write::flush(b);
            write::terminate(b);
            write::copy_done(b);
            Ok(())
        }))),
        prop::collection::vec(1u8..=255, 0..32)
            .prop_map(move |p| build(Box::new(move |b| write::password_message(b, &p)))),
        (text(), prop::collection::vec(any::<u8>(), 0..32)).prop_map(move |(m, d)| {
            build(Box::new(move |b| write::sasl_initial_response(b, &m, &d)))
        }),
        prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(move |d| build(Box::new(move |b| write::copy_data(b, &d)))),
        text().prop_map(move |m| build(Box::new(move |b| write::copy_fail(b, &m)))),
        (any::<u32>(), values_and_formats(), any::<i16>()).prop_map(move |(o, (a, f), r)| {
            build(Box::new(move |b| {
                write::function_call(b, o, &f, a.iter().map(|x| x.as_deref()), r)
            }))
        }),
    ]
}

fn severity() -> impl Strategy<Value = Severity> {
    prop_oneof![
        Just(Severity::Error),
        Just(Severity::Fatal),
        Just(Severity::Notice),
        Just(Severity::Warning)
    ]
}

fn sqlstate() -> impl Strategy<Value = String> {
    "[0-9A-Z]{5}"
}

/// One server message, as the bytes a builder writes.
fn backend_message() -> impl Strategy<Value = Vec<u8>> {
    let build = |f: Builder| {
        let mut buf = BytesMut::new();
        f(&mut buf).map(|()| buf.to_vec()).unwrap_or_default()
    };
    let field = (
        text(),
        any::<u32>(),
        any::<i16>(),
        any::<u32>(),
        any::<i16>(),
        any::<i32>(),
        any::<i16>(),
    );
    prop_oneof![
        Just(()).prop_map(move |()| build(Box::new(|b| {
            write::authentication_ok(b);
            write::authentication_cleartext_password(b);
            write::parse_complete(b);
            write::bind_complete(b);
            write::close_complete(b);
            write::no_data(b);
            write::portal_suspended(b);
            write::empty_query_response(b);
            write::ready_for_query(b, TransactionStatus::InTransaction);
            Ok(())
        }))),
        any::<[u8; 4]>().prop_map(move |s| build(Box::new(move |b| {
            write::authentication_md5_password(b, s);
            Ok(())
        }))),
        prop::collection::vec("[^\u{0}]{1,16}", 0..3).prop_map(move |m| {
            build(Box::new(move |b| {
                let m: Vec<&str> = m.iter().map(String::as_str).collect();
                write::authentication_sasl(b, &m)
            }))
        }),
        prop::collection::vec(any::<u8>(), 0..32).prop_map(move |d| build(Box::new(move |b| {
            write::authentication_sasl_continue(b, &d)?;
            write::authentication_sasl_final(b, &d)
        }))),
        (text(), text())
            .prop_map(move |(n, v)| build(Box::new(move |b| write::parameter_status(b, &n, &v)))),
        (any::<i32>(), prop::collection::vec(any::<u8>(), 1..64)).prop_map(move |(p, k)| {
            build(Box::new(move |b| write::backend_key_data(b, p, &k)))
        }),
        (any::<u16>(), prop::collection::vec(text(), 0..3)).prop_map(move |(m, o)| {
            build(Box::new(move |b| {
                write::negotiate_protocol_version(b, m, &o)
            }))
        }),
        (
            severity(),
            sqlstate(),
            text(),
            prop::option::of(text()),
            prop::option::of(text())
        )
            .prop_map(move |(s, c, m, d, h)| build(Box::new(move |b| {
                write::error_response(b, s, &c, &m, d.as_deref(), h.as_deref())?;
                write::notice_response(b, s, &c, &m, d.as_deref(), h.as_deref())
            }))),
        text().prop_map(move |t| build(Box::new(move |b| write::command_complete(b, &t)))),
        prop::collection::vec(field, 0..4).prop_map(move |fields| build(Box::new(move |b| {
            let fields: Vec<FieldDescription<'_>> = fields
                .iter()
                .map(
                    |(name, table_oid, column_attr, type_oid, type_size, type_modifier, format)| {
                        FieldDescription {
                            name,
                            table_oid: *table_oid,
                            column_attr: *column_attr,
                            type_oid: *type_oid,
                            type_size: *type_size,
                            type_modifier: *type_modifier,
                            format: *format,
                        }
                    },
                )
                .collect();
            write::row_description(b, &fields)
        }))),
        prop::collection::vec(value(), 0..6).prop_map(move |v| build(Box::new(move |b| {
            write::data_row(b, v.iter().map(|x| x.as_deref()))
        }))),
        prop::collection::vec(any::<u32>(), 0..4)
            .prop_map(move |t| build(Box::new(move |b| write::parameter_description(b, &t)))),
        (any::<i8>(), prop::collection::vec(any::<i16>(), 0..4)).prop_map(move |(f, c)| {
            build(Box::new(move |b| {
                write::copy_in_response(b, f, &c)?;
                write::copy_out_response(b, f, &c)?;
                write::copy_both_response(b, f, &c)
            }))
        }),
        (any::<i32>(), text(), text()).prop_map(move |(p, c, m)| {
            build(Box::new(move |b| {
                write::notification_response(b, p, &c, &m)
            }))
        }),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..16)).prop_map(move |v| build(
            Box::new(move |b| write::function_call_response(b, v.as_deref()))
        )),
        prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(move |d| build(Box::new(move |b| write::copy_data(b, &d)))),
    ]
}

/// Every frame in `bytes`, decoded by `decode` and re-encoded.
fn frames(bytes: &[u8]) -> Vec<super::Frame> {
    let mut src = BytesMut::from(bytes);
    let mut out = Vec::new();
    let mut codec = super::FrameCodec::new(1 << 20);
    while let Some(f) = codec.decode(&mut src).unwrap() {
        out.push(f);
    }
    assert!(src.is_empty());
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frontend_messages_round_trip(wire in frontend_message()) {
        prop_assume!(!wire.is_empty());
        for frame in frames(&wire) {
            let msg = FrontendMessage::from_frame(&frame).unwrap();
            fuzz::assert_frontend_round_trip(&frame, &msg);
        }
    }

    #[test]
    fn backend_messages_round_trip(wire in backend_message()) {
        prop_assume!(!wire.is_empty());
        for frame in frames(&wire) {
            let msg = BackendMessage::from_frame(&frame).unwrap();
            fuzz::assert_backend_round_trip(&frame, &msg);
        }
    }

    #[test]
    fn startup_packets_round_trip(
        minor in 0u16..4,
        params in prop::collection::btree_map("[^\u{0}]{1,12}", text(), 0..5),
        pid in any::<i32>(),
        key in prop::collection::vec(any::<u8>(), 1..=256),
    ) {
        let params: Vec<(String, String)> = params.into_iter().collect();
        let mut buf = BytesMut::new();
        write::startup_message_with_minor(&mut buf, minor, &params).unwrap();
        write::cancel_request(&mut buf, pid, &key).unwrap();
        let wire = buf.to_vec();
        let mut src = BytesMut::from(&wire[..]);
        let first = StartupCodec.decode(&mut src).unwrap().unwrap();
        let second = StartupCodec.decode(&mut src).unwrap().unwrap();
        prop_assert_eq!(first, StartupPacket::Startup { version_major: 3, version_minor: minor, parameters: params });
        prop_assert_eq!(second, StartupPacket::CancelRequest { process_id: pid, secret_key: key });
        fuzz::startup(&wire);
    }

    /// Arbitrary bytes, and a valid message followed by arbitrary bytes,
    /// in every client state and from the server.
    #[test]
    fn decoders_never_panic(
        garbage in prop::collection::vec(any::<u8>(), 0..256),
        front in frontend_message(),
        back in backend_message(),
    ) {
        for input in [garbage.clone(), [front.clone(), garbage.clone()].concat(), [back.clone(), garbage.clone()].concat()] {
            fuzz::startup(&input);
            fuzz::authentication(&input);
            fuzz::ready(&input);
            fuzz::copy_in(&input);
            fuzz::backend(&input);
        }
    }

    /// A flipped byte in a valid message: still no panic, and whatever is
    /// accepted still round-trips (checked inside the entry points).
    #[test]
    fn mutated_messages_never_panic(
        front in frontend_message(),
        back in backend_message(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        for mut wire in [front, back] {
            if !wire.is_empty() {
                let i = at.index(wire.len());
                wire[i] = byte;
            }
            fuzz::ready(&wire);
            fuzz::copy_in(&wire);
            fuzz::authentication(&wire);
            fuzz::backend(&wire);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// `run_of` covers exactly the messages `decode` would cut out one by
    /// one before the first of another tag, an incomplete or a bad one.
    #[test]
    fn a_run_of_one_tag_is_what_decode_cuts_out(
        messages in prop::collection::vec(
            (prop_oneof![Just(b'D'), Just(b'C'), any::<u8>()], prop::collection::vec(any::<u8>(), 0..40)),
            0..8,
        ),
        cut in any::<prop::sample::Index>(),
        max in 4usize..48,
    ) {
        let mut wire = Vec::new();
        for (tag, body) in &messages {
            wire.push(*tag);
            wire.extend_from_slice(&u32::try_from(body.len() + 4).unwrap_or(u32::MAX).to_be_bytes());
            wire.extend_from_slice(body);
        }
        // Also runs ending in the middle of a message.
        let wire = &wire[..cut.index(wire.len() + 1)];
        let mut codec = super::FrameCodec::new(max);
        let (len, count) = codec.run_of(wire, b'D');
        let mut buf = BytesMut::from(wire);
        let (mut cut_len, mut cut_count) = (0usize, 0u64);
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            if frame.tag() != b'D' {
                break;
            }
            cut_len += frame.wire_len();
            cut_count += 1;
        }
        prop_assert_eq!((len, count), (cut_len, cut_count));
    }
}
