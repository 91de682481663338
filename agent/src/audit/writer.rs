//! The writer: one thread that owns the active segment and commits records
//! in groups.
//!
//! `record` queues a framed event and waits. The writer takes everything
//! queued (up to [`MAX_GROUP`]), writes it with one `write` and one
//! `fdatasync` per segment touched, then indexes the records, wakes the
//! streamer and answers every waiter. Sessions recording at the same time
//! therefore share a sync. A plain thread keeps `fdatasync` off the async
//! runtime's workers.
//!
//! Syncs are also spaced by [`SpoolConfig::sync_interval`](super::SpoolConfig):
//! a group that arrives sooner after the last sync waits out the rest of the
//! interval and takes in whatever arrives meanwhile (PostgreSQL's
//! `commit_delay`). Under load the disk then sees one sync per interval
//! rather than one per event or two; after a quiet spell nothing waits.
//!
//! A failed write is undone (truncated back) and fails only its records; if
//! it cannot be undone the spool is marked broken and takes nothing more.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::error;

use super::AuditError;
use super::spool::{Segment, Shared, create_segment};

/// The most records committed together.
const MAX_GROUP: usize = 1024;

/// A framed event waiting to be written.
pub(super) struct Pending {
    /// The record bytes.
    pub frame: Vec<u8>,
    /// Its session, for the index.
    pub session: String,
    /// Its sequence, for the index.
    pub seq: u64,
    /// Told once the record is durable, or why it is not.
    pub done: oneshot::Sender<Result<(), AuditError>>,
}

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
    mut queue: mpsc::Receiver<Pending>,
    mut active: Active,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("audit-spool".into())
        .spawn(move || {
            let interval = shared.config.sync_interval;
            let mut group = Vec::with_capacity(MAX_GROUP);
            let mut last_sync: Option<Instant> = None;
            while queue.blocking_recv_many(&mut group, MAX_GROUP) > 0 {
                if let Some(wait) = wait_before_sync(last_sync, interval, Instant::now()) {
                    std::thread::sleep(wait);
                    // Takes in what arrived meanwhile; returns at once.
                    let room = MAX_GROUP.saturating_sub(group.len());
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

/// Writes `group` (left empty), answering every record.
fn commit_group(shared: &Shared, active: &mut Active, group: &mut Vec<Pending>) {
    let segment_bytes = shared.config.segment_bytes;
    let mut records = group.drain(..).peekable();
    while let Some(first) = records.peek() {
        if shared.broken.load(Ordering::Acquire) {
            fail(shared, records, || AuditError::Broken);
            return;
        }
        let full = active.len > 0 && active.len + first.frame.len() as u64 > segment_bytes;
        let rolled = if full { roll(shared, active) } else { Ok(()) };
        if let Err(e) = rolled {
            error!(error = %e, "could not start a new audit spool segment");
            shared.write_failed.store(true, Ordering::Release);
            let e = Arc::new(e);
            fail(shared, records, || AuditError::Disk(Arc::clone(&e)));
            return;
        }
        // What fits in this segment; always at least one record, so an event
        // larger than a segment gets one of its own.
        let mut chunk = Vec::new();
        let mut bytes = Vec::new();
        while let Some(p) = records.next_if(|p| {
            bytes.is_empty() || active.len + (bytes.len() + p.frame.len()) as u64 <= segment_bytes
        }) {
            bytes.extend_from_slice(&p.frame);
            chunk.push(p);
        }
        if let Err(e) = append(&active.file, active.len, &bytes) {
            error!(error = %e, segment = active.id, "audit spool write failed");
            shared.write_failed.store(true, Ordering::Release);
            if let Err(undo) = undo(&mut active.file, active.len) {
                error!(error = %undo, segment = active.id, "could not undo a failed audit spool write: the spool takes no more events");
                shared.broken.store(true, Ordering::Release);
            }
            let e = Arc::new(e);
            fail(shared, chunk.into_iter().chain(records), || {
                AuditError::Disk(Arc::clone(&e))
            });
            return;
        }
        shared.syncs.fetch_add(1, Ordering::Relaxed);
        if shared.write_failed.swap(false, Ordering::AcqRel) {
            tracing::info!("audit spool writes succeed again");
        }
        active.len += bytes.len() as u64;
        {
            let mut state = shared.state();
            for p in &chunk {
                state.add(active.id, &p.session, p.seq);
            }
            state.set_len(active.id, active.len);
        }
        shared.data_ready.notify_one();
        for p in chunk {
            // The caller may have given up waiting; the record stands.
            let _ = p.done.send(Ok(()));
        }
    }
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

fn fail(shared: &Shared, records: impl Iterator<Item = Pending>, error: impl Fn() -> AuditError) {
    for p in records {
        shared.release(p.frame.len() as u64);
        let _ = p.done.send(Err(error()));
    }
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
