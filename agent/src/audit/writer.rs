//! The writer: one thread that owns the active segment and commits records
//! in groups.
//!
//! `record_batch` queues a [`Batch`] of framed events and waits for its one
//! answer. The writer takes every batch queued (up to [`MAX_BATCHES`]),
//! writes their records with one `write` and one `fdatasync` per segment
//! touched, then indexes the records, wakes the streamer and answers each
//! batch. Recorders queueing at the same time therefore share a sync. A
//! plain thread keeps `fdatasync` off the async runtime's workers.
//!
//! Syncs are also spaced by [`SpoolConfig::sync_interval`](super::SpoolConfig):
//! a group that arrives sooner after the last sync waits out the rest of the
//! interval and takes in whatever arrives meanwhile (PostgreSQL's
//! `commit_delay`). Under load the disk then sees one sync per interval
//! rather than one per event or two; after a quiet spell nothing waits.
//!
//! A failed write is undone (truncated back) and fails its records and
//! every later one of the group; if it cannot be undone the spool is marked
//! broken and takes nothing more. A batch is never split across groups, so
//! what is stored of it is always a prefix: a later record of a batch is
//! never durable while an earlier one is not (the feed retries the rest
//! under the same sequence numbers).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use super::AuditError;
use super::frame::HEADER_LEN;
use super::recent::Entry;
use super::spool::{Segment, Shared, create_segment};

/// The most batches committed together: all that the queue holds.
const MAX_BATCHES: usize = super::QUEUE_DEPTH;

/// A framed event to write.
pub(super) struct Record {
    /// The record bytes.
    pub frame: Vec<u8>,
    /// Its session, for the index.
    pub session: Arc<str>,
    /// Its sequence, for the index.
    pub seq: u64,
}

/// Records written in order and answered together.
pub(super) struct Batch {
    pub records: Vec<Record>,
    /// Told how many records, from the first, are durable, and why the rest
    /// are not.
    pub done: oneshot::Sender<Written>,
}

/// How many records of a batch are durable (a prefix), and why the rest are
/// not.
pub(super) type Written = (usize, Option<AuditError>);

/// The segment being written.
pub(super) struct Active {
    id: u64,
    file: File,
    /// Durable bytes.
    len: u64,
}

impl Active {
    /// An empty segment file, already in the index.
    pub(super) fn new(id: u64, file: File) -> Self {
        Self { id, file, len: 0 }
    }
}

/// Starts the writer thread. It stops once every sender is dropped.
pub(super) fn spawn(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Batch>,
    mut active: Active,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("audit-spool".into())
        .spawn(move || {
            let interval = shared.config.sync_interval;
            let mut group = Vec::with_capacity(MAX_BATCHES);
            let mut last_sync: Option<Instant> = None;
            while queue.blocking_recv_many(&mut group, MAX_BATCHES) > 0 {
                if let Some(wait) = wait_before_sync(last_sync, interval, Instant::now()) {
                    std::thread::sleep(wait);
                    // Takes in what arrived meanwhile; returns at once.
                    let room = MAX_BATCHES.saturating_sub(group.len());
                    if room > 0 && !queue.is_empty() {
                        queue.blocking_recv_many(&mut group, room);
                    }
                }
                commit_group(&shared, &mut active, &mut group);
                last_sync = Some(Instant::now());
            }
        })?;
    Ok(())
}

/// How long a group that arrived at `now` waits before its sync, so syncs
/// are at least `interval` apart; `None`: sync at once.
fn wait_before_sync(
    last_sync: Option<Instant>,
    interval: Duration,
    now: Instant,
) -> Option<Duration> {
    let due = last_sync? + interval;
    (due > now).then(|| due - now)
}

/// Writes the records of `group` (left empty) and answers every batch.
fn commit_group(shared: &Shared, active: &mut Active, group: &mut Vec<Batch>) {
    let records = group.iter().flat_map(|batch| &batch.records);
    let (mut stored, failure) = write_records(shared, active, records);
    for batch in group.drain(..) {
        let len = batch.records.len();
        let durable = stored.min(len);
        stored -= durable;
        for record in &batch.records[durable..] {
            shared.release(record.frame.len() as u64);
        }
        let error = (durable < len).then(|| match &failure {
            Some(Failure::Disk(e)) => AuditError::Disk(Arc::clone(e)),
            Some(Failure::Broken) | None => AuditError::Broken,
        });
        // The recorder may have given up waiting; what was stored stands.
        let _ = batch.done.send((durable, error));
    }
}

/// Why records were not written.
enum Failure {
    Disk(Arc<io::Error>),
    Broken,
}

/// Appends `records` in order, one write and sync per segment touched;
/// returns how many, from the first, are durable, and why the rest are not.
fn write_records<'a>(
    shared: &Shared,
    active: &mut Active,
    records: impl Iterator<Item = &'a Record>,
) -> (usize, Option<Failure>) {
    let segment_bytes = shared.config.segment_bytes;
    let mut records = records.peekable();
    let mut stored = 0;
    while let Some(first) = records.peek() {
        if shared.broken.load(Ordering::Acquire) {
            return (stored, Some(Failure::Broken));
        }
        let full = active.len > 0 && active.len + first.frame.len() as u64 > segment_bytes;
        if full && let Err(e) = roll(shared, active) {
            error!(error = %e, "could not start a new audit spool segment");
            shared.write_failed.store(true, Ordering::Release);
            return (stored, Some(Failure::Disk(Arc::new(e))));
        }
        // What fits in this segment; always at least one record, so an event
        // larger than a segment gets one of its own.
        let mut chunk = Vec::new();
        let mut chunk_len = 0;
        while let Some(r) = records.next_if(|r| {
            chunk.is_empty() || active.len + (chunk_len + r.frame.len()) as u64 <= segment_bytes
        }) {
            chunk_len += r.frame.len();
            chunk.push(r);
        }
        // Sized once, rather than grown record by record: the bytes go on to
        // the streamer as they are (no copy), so each chunk gets a buffer of
        // its own.
        let mut buffer = BytesMut::with_capacity(chunk_len);
        for r in &chunk {
            buffer.extend_from_slice(&r.frame);
        }
        if let Err(e) = append(&active.file, active.len, &buffer) {
            error!(error = %e, segment = active.id, "audit spool write failed");
            shared.write_failed.store(true, Ordering::Release);
            if let Err(undo) = undo(&mut active.file, active.len) {
                error!(error = %undo, segment = active.id, "could not undo a failed audit spool write: the spool takes no more events");
                shared.broken.store(true, Ordering::Release);
            }
            return (stored, Some(Failure::Disk(Arc::new(e))));
        }
        shared.syncs.fetch_add(1, Ordering::Relaxed);
        if shared.write_failed.swap(false, Ordering::AcqRel) {
            tracing::info!("audit spool writes succeed again");
        }
        let base = active.len;
        active.len += buffer.len() as u64;
        // The written bytes go to the streamer as they are (no copy). Memory
        // and the index change under both locks, `recent` first as the
        // streamer takes them, so it never finds records on disk that are
        // still on their way to memory.
        let written = buffer.freeze();
        {
            let mut recent = shared.recent();
            let mut state = shared.state();
            let mut start = 0;
            for r in &chunk {
                state.add(active.id, &r.session, r.seq);
                let end = start + r.frame.len();
                recent.push(Entry {
                    segment: active.id,
                    offset: base + start as u64,
                    len: r.frame.len() as u64,
                    session: Arc::clone(&r.session),
                    seq: r.seq,
                    payload: written.slice(start + HEADER_LEN..end),
                });
                start = end;
            }
            state.set_len(active.id, active.len);
        }
        shared.data_ready.notify_one();
        stored += chunk.len();
    }
    (stored, None)
}

fn append(file: &File, at: u64, bytes: &[u8]) -> io::Result<()> {
    file.write_all_at(bytes, at)?;
    file.sync_data()
}

fn undo(file: &mut File, len: u64) -> io::Result<()> {
    file.set_len(len)?;
    file.sync_data()
}

/// Seals the active segment (already synced) and starts the next one.
fn roll(shared: &Shared, active: &mut Active) -> io::Result<()> {
    let id = active.id + 1;
    let (file, path) = create_segment(&shared.config.dir, id)?;
    *active = Active::new(id, file);
    shared.state().push_segment(Segment::new(id, path));
    // The sealed segment may be acknowledged already.
    shared.trim();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_are_spaced_by_the_interval() {
        let interval = Duration::from_millis(5);
        let t0 = Instant::now();
        // The first group, and one after a quiet spell, sync at once.
        assert_eq!(wait_before_sync(None, interval, t0), None);
        assert_eq!(
            wait_before_sync(Some(t0), interval, t0 + Duration::from_millis(7)),
            None
        );
        // One right after a sync waits out the rest of the interval.
        assert_eq!(
            wait_before_sync(Some(t0), interval, t0 + Duration::from_millis(2)),
            Some(Duration::from_millis(3))
        );
        // A zero interval never waits.
        assert_eq!(wait_before_sync(Some(t0), Duration::ZERO, t0), None);
    }
}
