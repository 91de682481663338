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
//! A failed write is undone (truncated back) and fails only its records; if
//! it cannot be undone the spool is marked broken and takes nothing more.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
            let mut group = Vec::with_capacity(MAX_GROUP);
            while queue.blocking_recv_many(&mut group, MAX_GROUP) > 0 {
                commit_group(&shared, &mut active, &mut group);
            }
        })?;
    Ok(())
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
        if let Err(e) = append(&mut active.file, active.len, &bytes) {
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

fn append(file: &mut File, at: u64, bytes: &[u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(at))?;
    file.write_all(bytes)?;
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
