//! Tests of the embedded store: the shared suite, then what only files have
//! (reopen, segments, torn tails, damage and tampering on disk, the lock).

use std::path::Path;
use std::time::Duration;

use palisade_proto::v1 as pb;
use prost::Message as _;

use super::segment::{FrameReader, HEADER_LEN, MAGIC, Record, encode_frame, segment_name};
use super::{EmbeddedOptions, EmbeddedStore};
use crate::audit::testkit::{self, check_chain, encoded, session, statement};
use crate::audit::{AuditError, AuditStore, Broken, SessionFilter};

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir).unwrap()
}

fn open_small(dir: &Path, segment_size: u64) -> EmbeddedStore {
    EmbeddedStore::open_with(dir, EmbeddedOptions { segment_size }).unwrap()
}

fn seg(dir: &Path, id: u32) -> std::path::PathBuf {
    dir.join(segment_name(id))
}

/// Three sessions, interleaved in the file: `s` has 5 events, `t` 2, `u` 1.
async fn fill(store: &EmbeddedStore) {
    let s = session(
        "s",
        1000,
        "alice",
        "db",
        None,
        &[pb::Effect::Allow; 3],
        Some("client_terminated"),
    );
    let t = session("t", 1001, "bob", "db", None, &[pb::Effect::Deny], None);
    let u = session("u", 1002, "carol", "db", None, &[], None);
    for (i, event) in s.iter().enumerate() {
        let mut batch = vec![event.clone()];
        batch.extend(t.get(i).cloned());
        batch.extend(u.get(i).cloned());
        store.append(encoded(batch)).await.unwrap();
    }
}

/// (offset, frame length) of every frame of a segment file.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut reader = FrameReader::new(
        &bytes[HEADER_LEN as usize..],
        HEADER_LEN,
        bytes.len() as u64,
    );
    let mut out = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        out.push((frame.offset as usize, frame.record.len() + 8));
    }
    out
}

fn location(store: &EmbeddedStore, session_id: &str, sequence: u64) -> (u32, usize) {
    let location = store.inner.index().location(session_id, sequence).unwrap();
    (location.segment, location.offset as usize)
}

fn broken(session_id: &str, sequence: u64, problem: &str) -> Option<Broken> {
    Some(Broken {
        session_id: session_id.into(),
        sequence,
        problem: problem.into(),
    })
}

#[tokio::test]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    testkit::conformance(&store).await.unwrap();
    // And again after reopening, on everything the suite stored.
    let before = store
        .list_sessions(&SessionFilter::default())
        .await
        .unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store
            .list_sessions(&SessionFilter::default())
            .await
            .unwrap(),
        before
    );
    assert!(store.verify(None).await.unwrap().intact());
}

#[tokio::test]
async fn conformance_with_tiny_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path(), 4096);
    testkit::conformance(&store).await.unwrap();
    testkit::replicas(&store, &store).await.unwrap();
    assert!(seg(dir.path(), 3).exists(), "segments did not roll");
}

#[tokio::test]
async fn reopened_store_keeps_everything_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path(), 1024);
    fill(&store).await;
    let sessions = store
        .list_sessions(&SessionFilter::default())
        .await
        .unwrap();
    let events = store.session_events("s", 0).await.unwrap();
    drop(store);

    let store = open_small(dir.path(), 1024);
    assert_eq!(
        store
            .list_sessions(&SessionFilter::default())
            .await
            .unwrap(),
        sessions
    );
    assert_eq!(store.session_events("s", 0).await.unwrap(), events);
    let next = statement("t", 3, 1010, "select 3", pb::Effect::Allow);
    let acks = store.append(encoded([next])).await.unwrap();
    assert_eq!(testkit::acks(&acks), [("t".to_owned(), 3)]);
    check_chain(&store.session_events("t", 0).await.unwrap(), &[1, 2, 3]).unwrap();
    let report = store.verify(None).await.unwrap();
    assert!(report.intact(), "{report:?}");
    assert_eq!((report.sessions_checked, report.events_checked), (3, 9));
}

#[tokio::test]
async fn a_batch_never_splits_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path(), 512);
    let events = session(
        "big",
        1,
        "alice",
        "db",
        None,
        &[pb::Effect::Allow; 20],
        None,
    );
    store.append(encoded(events)).await.unwrap();
    assert!(!seg(dir.path(), 2).exists());
    store
        .append(encoded([statement("big", 22, 2, "x", pb::Effect::Allow)]))
        .await
        .unwrap();
    assert!(seg(dir.path(), 2).exists());
    assert_eq!(location(&store, "big", 22), (2, HEADER_LEN as usize));
    check_chain(
        &store.session_events("big", 0).await.unwrap(),
        &(1..=22).collect::<Vec<_>>(),
    )
    .unwrap();
}

#[tokio::test]
async fn torn_tails_are_cut_away() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store).await;
    drop(store);
    let path = seg(dir.path(), 1);
    let good = std::fs::read(&path).unwrap();

    let mut frame = Vec::new();
    let record = Record {
        event: statement("s", 6, 1, "x", pb::Effect::Allow)
            .encode_to_vec()
            .into(),
        previous_hash: vec![0; 32],
        hash: vec![0; 32],
    };
    encode_frame(&record, &mut frame).unwrap();
    let mut bad_crc = frame.clone();
    bad_crc[4] ^= 0xff;
    let tails: [(&str, Vec<u8>); 5] = [
        ("half a header", frame[..5].to_vec()),
        ("half a record", frame[..frame.len() / 2].to_vec()),
        ("bad checksum at the end", bad_crc.clone()),
        ("zeros", vec![0; 4096]),
        ("bad checksum then zeros", [bad_crc, vec![0; 100]].concat()),
    ];
    for (what, tail) in tails {
        std::fs::write(&path, [good.as_slice(), &tail].concat()).unwrap();
        let store = open(dir.path());
        assert_eq!(std::fs::read(&path).unwrap(), good, "{what}: not cut back");
        let report = store.verify(None).await.unwrap();
        assert!(report.intact(), "{what}: {report:?}");
        let acks = store
            .append(encoded([statement("t", 3, 1, "x", pb::Effect::Allow)]))
            .await
            .unwrap();
        assert_eq!(acks[0].sequence, 3, "{what}");
        drop(store);
        std::fs::write(&path, &good).unwrap();
    }
}

#[tokio::test]
async fn unfinished_new_segment_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store).await;
    drop(store);
    std::fs::write(seg(dir.path(), 2), &MAGIC[..3]).unwrap();
    let store = open(dir.path());
    assert_eq!(std::fs::read(seg(dir.path(), 2)).unwrap(), MAGIC);
    store
        .append(encoded([statement("u", 2, 1, "x", pb::Effect::Allow)]))
        .await
        .unwrap();
    assert_eq!(location(&store, "u", 2).0, 2);
    assert!(store.verify(None).await.unwrap().intact());
}

#[tokio::test]
async fn damage_in_the_middle_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store).await;
    let (_, offset) = location(&store, "s", 2);
    drop(store);
    let path = seg(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset + 20] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    match EmbeddedStore::open(dir.path()) {
        Err(AuditError::Corrupt {
            segment,
            offset: at,
            reason,
        }) => {
            assert_eq!(segment, "segment-000001.log");
            assert_eq!(at, offset as u64);
            assert_eq!(reason, "checksum mismatch");
        }
        other => panic!("{other:?}"),
    }
    // Nothing was cut away.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[tokio::test]
async fn damage_at_the_end_of_an_earlier_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path(), 600);
    fill(&store).await;
    drop(store);
    assert!(seg(dir.path(), 2).exists());
    let path = seg(dir.path(), 1);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, AuditError::Corrupt { segment, .. } if segment == "segment-000001.log"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(dir.path(), 400);
    fill(&store).await;
    drop(store);
    assert!(seg(dir.path(), 3).exists());
    std::fs::remove_file(seg(dir.path(), 2)).unwrap();
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, AuditError::MissingSegment { missing, .. } if missing == "segment-000002.log"),
        "{err}"
    );
}

#[tokio::test]
async fn flipped_byte_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store).await;
    let (_, offset) = location(&store, "s", 3);
    let path = seg(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset + 30] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();

    let report = store.verify(None).await.unwrap();
    let problem =
        format!("corrupt record in segment-000001.log at offset {offset}: checksum mismatch");
    assert_eq!(report.broken, broken("s", 3, &problem));
    let one = store.verify(Some("s")).await.unwrap();
    assert_eq!(one.broken, broken("s", 3, &problem));
    // Reading the damaged event fails loudly; the ones before still read.
    assert!(matches!(
        store.session_events("s", 0).await,
        Err(AuditError::Corrupt { .. })
    ));
    assert_eq!(store.session_events("s", 3).await.unwrap().len(), 2);
}

/// Rewrites the record of `(session, sequence)` with `edit` applied to its
/// event and a recomputed checksum, as an editor covering tracks would.
fn edit_record(
    store: &EmbeddedStore,
    session_id: &str,
    sequence: u64,
    edit: impl FnOnce(&mut pb::AuditEvent),
) {
    let (segment, offset) = location(store, session_id, sequence);
    let path = seg(store.dir(), segment);
    let bytes = std::fs::read(&path).unwrap();
    let (_, len) = frames(&bytes)
        .into_iter()
        .find(|(o, _)| *o == offset)
        .unwrap();
    let mut record = Record::decode(&bytes[offset + 8..offset + len]).unwrap();
    let mut event = pb::AuditEvent::decode(record.event.clone()).unwrap();
    edit(&mut event);
    record.event = event.encode_to_vec().into();
    let mut frame = Vec::new();
    encode_frame(&record, &mut frame).unwrap();
    let edited = [&bytes[..offset], &frame, &bytes[offset + len..]].concat();
    std::fs::write(&path, edited).unwrap();
}

fn set_text(event: &mut pb::AuditEvent, text: &str) {
    if let Some(pb::audit_event::Event::Statement(statement)) = &mut event.event {
        statement.text = text.into();
    }
}

#[tokio::test]
async fn edited_event_with_fixed_checksum_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store).await;
    // Same length: nothing else in the file moves.
    edit_record(&store, "s", 3, |e| set_text(e, "select * from u"));
    let report = store.verify(None).await.unwrap();
    assert_eq!(report.broken, broken("s", 3, "hash mismatch"));

    // Edited while the store was closed: it opens, and verify names it.
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store.verify(None).await.unwrap().broken,
        broken("s", 3, "hash mismatch")
    );
    assert_eq!(store.verify(Some("t")).await.unwrap().broken, None);
}

#[tokio::test]
async fn edited_event_with_recomputed_hashes_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store).await;
    // Recompute this record's own hash too; the next one still points to
    // the old hash.
    let (_, offset) = location(&store, "s", 2);
    let path = seg(dir.path(), 1);
    let bytes = std::fs::read(&path).unwrap();
    let (_, len) = frames(&bytes)
        .into_iter()
        .find(|(o, _)| *o == offset)
        .unwrap();
    let mut record = Record::decode(&bytes[offset + 8..offset + len]).unwrap();
    let mut event = pb::AuditEvent::decode(record.event.clone()).unwrap();
    set_text(&mut event, "select * from secrets");
    record.event = event.encode_to_vec().into();
    let previous: [u8; 32] = record.previous_hash.as_slice().try_into().unwrap();
    record.hash = crate::audit::chain_hash(&previous, &record.event).to_vec();
    let mut frame = Vec::new();
    encode_frame(&record, &mut frame).unwrap();
    std::fs::write(
        &path,
        [&bytes[..offset], &frame, &bytes[offset + len..]].concat(),
    )
    .unwrap();

    let report = store.verify(None).await.unwrap();
    assert_eq!(
        report.broken,
        broken("s", 3, "previous hash mismatch (chain broken after 2)")
    );
}

#[tokio::test]
async fn deleted_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    fill(&store).await;
    let path = seg(dir.path(), 1);
    let bytes = std::fs::read(&path).unwrap();
    let cut = |session_id: &str, sequence: u64| {
        let (_, offset) = location(&store, session_id, sequence);
        let (_, len) = frames(&bytes)
            .into_iter()
            .find(|(o, _)| *o == offset)
            .unwrap();
        [&bytes[..offset], &bytes[offset + len..]].concat()
    };

    // From the middle of a chain.
    std::fs::write(&path, cut("s", 3)).unwrap();
    assert_eq!(
        store.verify(None).await.unwrap().broken,
        broken("s", 3, "event missing (chain continues from 2 to 4)")
    );
    // The last event of a chain (other sessions' records follow it).
    std::fs::write(&path, cut("t", 2)).unwrap();
    assert_eq!(
        store.verify(None).await.unwrap().broken,
        broken("t", 2, "event missing (chain ends at 1, head at 2)")
    );
    // The first event of a chain.
    std::fs::write(&path, cut("u", 1)).unwrap();
    assert_eq!(
        store.verify(Some("u")).await.unwrap().broken,
        broken("u", 1, "event missing (no stored event, head at 1)")
    );

    // Deleted while closed: found from the files alone. File order:
    // s1 t1 u1 s2 t2 s3 s4 s5.
    drop(store);
    std::fs::write(&path, cut_from(&bytes, 5)).unwrap();
    let store = open(dir.path());
    assert_eq!(
        store.verify(None).await.unwrap().broken,
        broken("s", 3, "event missing (chain continues from 2 to 4)")
    );
}

/// The file without its `n`th frame (0-based).
fn cut_from(bytes: &[u8], n: usize) -> Vec<u8> {
    let (offset, len) = frames(bytes)[n];
    [&bytes[..offset], &bytes[offset + len..]].concat()
}

#[tokio::test]
async fn a_second_process_cannot_open_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(matches!(
        EmbeddedStore::open(dir.path()),
        Err(AuditError::Locked { .. })
    ));
    drop(store);
    open(dir.path());
}

#[tokio::test]
async fn abandoned_appends_leave_a_consistent_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let events = session("c", 1, "alice", "db", None, &[pb::Effect::Allow; 30], None);
    for chunk in events.chunks(4) {
        // Give up on every append right away; the write still completes.
        let _ = tokio::time::timeout(Duration::ZERO, store.append(encoded(chunk.iter().cloned())))
            .await;
    }
    let acks = store.append(encoded(events.clone())).await.unwrap();
    assert_eq!(acks[0].sequence, 31);
    check_chain(
        &store.session_events("c", 0).await.unwrap(),
        &(1..=31).collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(store.verify(None).await.unwrap().intact());
}

#[tokio::test]
async fn repeats_are_compared_with_the_stored_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let events = session("r", 1, "alice", "db", None, &[pb::Effect::Allow], None);
    store.append(encoded(events.clone())).await.unwrap();
    let mut forged = events[1].clone();
    set_text(&mut forged, "select 'other'");
    // Logged, not stored, not an error.
    let acks = store.append(encoded([forged])).await.unwrap();
    assert_eq!(acks[0].sequence, 2);
    let stored = store.session_events("r", 1).await.unwrap();
    assert_eq!(stored[0].event, events[1]);
}
