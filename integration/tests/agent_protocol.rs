//! Protocol details real drivers rely on, and hostile input, byte by byte.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on a broken assumption"
)]

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use integration::agent::Stack;
use integration::raw::{RawClient, sqlstate, tags};
use palisade_agent::codec::{Target, write};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn session(stack: &Stack, token: &str) -> RawClient {
    let mut c = RawClient::tls(stack.agent.addr, &stack.agent.ca)
        .await
        .unwrap();
    let frames = c
        .startup(
            0,
            &[
                ("user", "ci"),
                ("database", "prod"),
                ("application_name", "raw"),
            ],
            token,
        )
        .await
        .unwrap();
    assert_eq!(frames.last().unwrap().tag(), b'Z', "{}", tags(&frames));
    c
}

#[tokio::test]
async fn extended_protocol_flush_errors_and_sync() {
    let stack = Stack::start().await.unwrap();
    let mut c = session(&stack, &stack.ci_token().unwrap()).await;

    // Parse/Describe/Flush is answered at once, before any Sync.
    let mut out = BytesMut::new();
    write::parse(&mut out, "s1", "SELECT id FROM orders WHERE id = $1", &[23]).unwrap();
    write::describe(&mut out, Target::Statement, "s1").unwrap();
    write::flush(&mut out);
    c.send(&out).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(c.recv().await.unwrap());
    }
    assert_eq!(tags(&got), "1tT");
    // Then Bind/Execute/Sync.
    out.clear();
    write::bind(
        &mut out,
        "",
        "s1",
        &[0i16; 0],
        [Some(b"5".as_slice())],
        &[0i16; 0],
    )
    .unwrap();
    write::execute(&mut out, "", 0).unwrap();
    write::sync(&mut out);
    c.send(&out).await.unwrap();
    assert_eq!(tags(&c.until_ready().await.unwrap()), "2DCZ");

    // A refused Parse: the ErrorResponse comes at once (Flush, no Sync yet),
    // and never a ReadyForQuery inside the run.
    out.clear();
    write::parse(&mut out, "", "DELETE FROM orders", &[]).unwrap();
    write::bind(
        &mut out,
        "",
        "",
        &[0i16; 0],
        Vec::<Option<&[u8]>>::new(),
        &[0i16; 0],
    )
    .unwrap();
    write::execute(&mut out, "", 0).unwrap();
    write::flush(&mut out);
    c.send(&out).await.unwrap();
    let e = c.recv().await.unwrap();
    assert_eq!(e.tag(), b'E');
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    assert!(
        c.recv_within(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none(),
        "nothing more before Sync"
    );
    out.clear();
    write::sync(&mut out);
    c.send(&out).await.unwrap();
    assert_eq!(tags(&c.until_ready().await.unwrap()), "Z");

    // Allowed, then refused, then allowed, in one pipeline: the error stands
    // where the refused statement stood, and the rest up to Sync is skipped.
    out.clear();
    write::parse(&mut out, "", "SELECT 1", &[]).unwrap();
    write::bind(
        &mut out,
        "",
        "",
        &[0i16; 0],
        Vec::<Option<&[u8]>>::new(),
        &[0i16; 0],
    )
    .unwrap();
    write::execute(&mut out, "", 0).unwrap();
    write::parse(&mut out, "", "DROP TABLE orders", &[]).unwrap();
    write::bind(
        &mut out,
        "",
        "",
        &[0i16; 0],
        Vec::<Option<&[u8]>>::new(),
        &[0i16; 0],
    )
    .unwrap();
    write::execute(&mut out, "", 0).unwrap();
    write::parse(&mut out, "", "SELECT 2", &[]).unwrap();
    write::sync(&mut out);
    c.send(&out).await.unwrap();
    assert_eq!(tags(&c.until_ready().await.unwrap()), "12DCEZ");

    // A client that does not wait: a Sync-ended request, then a refused
    // Query, in one write. The refusal belongs to the second request, and
    // the first request's ReadyForQuery must not swallow it.
    out.clear();
    write::parse(&mut out, "", "SELECT 1", &[]).unwrap();
    write::sync(&mut out);
    write::query(&mut out, "DELETE FROM orders").unwrap();
    c.send(&out).await.unwrap();
    assert_eq!(tags(&c.until_ready().await.unwrap()), "1Z");
    let frames = c.until_ready().await.unwrap();
    assert_eq!(tags(&frames), "EZ");
    assert_eq!(sqlstate(&frames[0]).as_deref(), Some("42501"));

    // Several statements and result sets in one Query, one ReadyForQuery.
    out.clear();
    write::query(
        &mut out,
        "SELECT 1; SELECT 2, 3; SET application_name = 'x'",
    )
    .unwrap();
    c.send(&out).await.unwrap();
    assert_eq!(tags(&c.until_ready().await.unwrap()), "TDCTDCCSZ");
}

#[tokio::test]
async fn fastpath_is_refused_and_notifications_flow_while_idle() {
    let stack = Stack::start().await.unwrap();
    let mut c = session(&stack, &stack.ci_token().unwrap()).await;
    let mut out = BytesMut::new();
    // FunctionCall of pg_read_file's OID (2624) with a path argument.
    write::function_call(
        &mut out,
        2624,
        &[0i16; 0],
        [Some(b"/etc/passwd".as_slice())],
        0,
    )
    .unwrap();
    c.send(&out).await.unwrap();
    let frames = c.until_ready().await.unwrap();
    assert_eq!(tags(&frames), "EZ");
    assert_eq!(sqlstate(&frames[0]).as_deref(), Some("42501"));

    out.clear();
    write::query(&mut out, "LISTEN jobs").unwrap();
    c.send(&out).await.unwrap();
    assert_eq!(tags(&c.until_ready().await.unwrap()), "CZ");
    // Another session notifies; this one receives it without asking.
    let other = stack.connect(&stack.ci_token().unwrap()).await.unwrap();
    other.simple_query("NOTIFY jobs, 'done'").await.unwrap();
    let n = c.recv().await.unwrap();
    assert_eq!(n.tag(), b'A');
    assert!(n.body().ends_with(b"done\0"));
}

#[tokio::test]
async fn negotiation_gssenc_and_direct_tls() {
    let stack = Stack::start().await.unwrap();
    let token = stack.ci_token().unwrap();
    // GSSENCRequest is declined with 'N'; the client may go on.
    let mut tcp = RawClient::tcp(stack.agent.addr).await.unwrap();
    let mut out = BytesMut::new();
    write::gssenc_request(&mut out);
    tcp.write_all(&out).await.unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'N');

    // A newer minor version and a protocol option get NegotiateProtocolVersion.
    let mut c = RawClient::tls(stack.agent.addr, &stack.agent.ca)
        .await
        .unwrap();
    let frames = c
        .startup(
            2,
            &[("user", "ci"), ("database", "prod"), ("_pq_.test", "1")],
            &token,
        )
        .await
        .unwrap();
    assert_eq!(frames[0].tag(), b'v', "{}", tags(&frames));
    assert_eq!(frames.last().unwrap().tag(), b'Z');

    // PostgreSQL 17 direct TLS (ALPN postgresql).
    let mut c = RawClient::direct_tls(stack.agent.addr, &stack.agent.ca)
        .await
        .unwrap();
    let frames = c
        .startup(0, &[("user", "ci"), ("database", "prod")], &token)
        .await
        .unwrap();
    assert_eq!(frames.last().unwrap().tag(), b'Z', "{}", tags(&frames));
}

#[tokio::test]
async fn hostile_input_ends_only_that_connection() {
    let stack = Stack::start_with(|c| {
        c.limits.max_message_bytes = 64 * 1024;
        c.limits.startup_timeout = Duration::from_secs(1);
    })
    .await
    .unwrap();
    let token = stack.ci_token().unwrap();
    let bystander = stack.connect(&token).await.unwrap();

    // Oversized: a FATAL protocol violation, then the connection closes.
    let mut c = session(&stack, &token).await;
    let mut out = BytesMut::new();
    out.put_u8(b'Q');
    out.put_i32(10 * 1024 * 1024);
    c.send(&out).await.unwrap();
    let e = c.recv().await.unwrap();
    assert_eq!(sqlstate(&e).as_deref(), Some("08P01"));
    assert!(c.closed_within(Duration::from_secs(5)).await);

    // Malformed: a Query without its terminator; an unknown message type.
    for bad in [b"Q\0\0\0\x08abcd".as_slice(), b"~\0\0\0\x04".as_slice()] {
        let mut c = session(&stack, &token).await;
        c.send(bad).await.unwrap();
        let e = c.recv().await.unwrap();
        assert_eq!(sqlstate(&e).as_deref(), Some("08P01"));
        assert!(c.closed_within(Duration::from_secs(5)).await);
    }

    // Truncated, then the client vanishes: nothing to answer, nothing breaks.
    let mut c = session(&stack, &token).await;
    c.send(b"Q\0\0\0\x20SELE").await.unwrap();
    drop(c);

    // Garbage before startup.
    let mut tcp = RawClient::tcp(stack.agent.addr).await.unwrap();
    tcp.write_all(&[0xff; 64]).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;

    // A client that never sends its startup is let go.
    let mut silent = RawClient::new(Box::new(RawClient::tcp(stack.agent.addr).await.unwrap()));
    assert!(
        silent.closed_within(Duration::from_secs(10)).await,
        "startup timeout"
    );

    // The bystander never noticed.
    let rows = bystander.simple_query("SELECT 1").await.unwrap();
    assert!(!rows.is_empty());
}

#[tokio::test]
async fn idle_sessions_are_ended_with_a_clear_error() {
    let stack = Stack::start_with(|c| c.limits.idle_timeout = Duration::from_secs(1))
        .await
        .unwrap();
    let mut idle = session(&stack, &stack.ci_token().unwrap()).await;
    let e = idle
        .recv_within(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a goodbye");
    assert_eq!(sqlstate(&e).as_deref(), Some("57P05"));
    assert!(idle.closed_within(Duration::from_secs(5)).await);
}

/// A large result sent to a client that reads slowly over TLS arrives whole:
/// TLS takes what the socket cannot yet, and the agent must flush it rather
/// than leave the end of the result waiting for a write that never comes.
#[tokio::test]
async fn a_large_result_reaches_a_slow_tls_reader_whole() {
    let stack = Stack::start().await.unwrap();
    let token = stack.dba_token().unwrap();
    for round in 0..3 {
        let mut c = RawClient::tls(stack.agent.addr, &stack.agent.ca)
            .await
            .unwrap();
        c.startup(0, &[("user", "dba"), ("database", "prod")], &token)
            .await
            .unwrap();
        let mut out = BytesMut::new();
        write::query(
            &mut out,
            "SELECT g, repeat('x', 2000) FROM generate_series(1, 5000) g",
        )
        .unwrap();
        c.send(&out).await.unwrap();
        // Let the socket buffers fill before reading anything.
        tokio::time::sleep(Duration::from_millis(300 * (round + 1))).await;
        let mut rows = 0;
        loop {
            let f = c
                .recv_within(Duration::from_secs(20))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: stalled after {rows} rows"));
            match f.tag() {
                b'D' => rows += 1,
                b'Z' => break,
                _ => {}
            }
        }
        assert_eq!(rows, 5000, "round {round}");
    }
}

/// Drivers that use the unnamed statement send the same Parse for every
/// execution; the agent allows a text it allowed before without deciding
/// again only while that decision stands. A policy edit refuses the very
/// next Parse of it, in the same session.
#[tokio::test]
async fn the_unnamed_statement_parsed_again_follows_policy_edits() {
    let stack = Stack::start().await.unwrap();
    let mut c = session(&stack, &stack.ci_token().unwrap()).await;
    let run = |out: &mut BytesMut| {
        out.clear();
        write::parse(out, "", "SELECT revenue FROM reporting.daily", &[]).unwrap();
        write::bind(out, "", "", &[0i16; 0], [None::<&[u8]>; 0], &[0i16; 0]).unwrap();
        write::execute(out, "", 0).unwrap();
        write::sync(out);
    };
    let mut out = BytesMut::new();
    for _ in 0..3 {
        run(&mut out);
        c.send(&out).await.unwrap();
        let frames = c.until_ready().await.unwrap();
        assert!(tags(&frames).starts_with("12"), "{}", tags(&frames));
        assert!(tags(&frames).ends_with("CZ"), "{}", tags(&frames));
    }
    stack.close_reporting().unwrap();
    let mut refused = None;
    for _ in 0..50 {
        run(&mut out);
        c.send(&out).await.unwrap();
        let frames = c.until_ready().await.unwrap();
        if let Some(error) = frames.iter().find(|f| f.tag() == b'E') {
            refused = Some(error.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = refused.expect("the edit was not enforced within 5 s");
    assert_eq!(sqlstate(&error).as_deref(), Some("42501"));
}
