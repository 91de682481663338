//! The spool's in-memory index and the state the writer, the streamer and
//! the handles share.
//!
//! Event bytes stay on disk: memory holds, per segment, the highest sequence
//! of each session it contains, and per session the acknowledged sequence and
//! the numbers still waiting. A segment is deleted once every session in it
//! is acknowledged up to that segment's highest sequence.

use std::collections::VecDeque;
use std::collections::hash_map::Entry;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, watch};
use tracing::{error, info};

use super::recent::Recent;
use super::seqset::SeqSet;
use super::{OnFull, SpoolConfig};

/// The file name of segment `id`.
pub(super) fn segment_name(id: u64) -> String {
    format!("spool-{id:016}.log")
}

/// The id in a spool file name (`spool-<16 digits>`) and what follows it.
pub(super) fn parse_segment_name(name: &str) -> Option<(u64, &str)> {
    let rest = name.strip_prefix("spool-")?;
    let digits = rest.get(..16)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, rest.get(16..)?))
}

/// Creates a new, empty segment file and makes its name durable.
pub(super) fn create_segment(dir: &Path, id: u64) -> io::Result<(File, PathBuf)> {
    let path = dir.join(segment_name(id));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        // Statement text is sensitive: only the agent's user reads the spool.
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(&path)?;
    sync_dir(dir)?;
    Ok((file, path))
}

/// Makes entries created, renamed or removed in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// One segment file.
#[derive(Debug)]
pub(super) struct Segment {
    /// Its number; segments are read and sent in this order.
    pub id: u64,
    /// Its file.
    pub path: PathBuf,
    /// Durable bytes: the streamer reads no further.
    pub len: u64,
    /// The highest sequence of each session the segment holds.
    pub max_seq: foldhash::HashMap<Arc<str>, u64>,
}

impl Segment {
    /// An empty segment.
    pub(super) fn new(id: u64, path: PathBuf) -> Self {
        Self {
            id,
            path,
            len: 0,
            max_seq: foldhash::HashMap::default(),
        }
    }
}

/// What the spool knows about one session.
#[derive(Debug, Default)]
struct Session {
    /// The PDP stored every event up to this sequence.
    acked: u64,
    /// Recorded, durable and not yet acknowledged.
    pending: SeqSet,
    /// How many segments hold events of this session; the entry is dropped
    /// at zero (nothing on disk to filter, and acks only grow).
    segments: usize,
}

/// The index, behind the shared mutex. No lock on it is ever held across an
/// `.await`.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Oldest first. The back one is the writer's active segment.
    segments: VecDeque<Segment>,
    /// Keyed by the agent's own session ids: a fast hash serves (foldhash;
    /// every event looks its session up here, in the feed and in the
    /// streamer).
    sessions: foldhash::HashMap<Arc<str>, Session>,
    /// Events recorded and not yet acknowledged.
    unacked: u64,
}

impl State {
    /// Appends a segment: it becomes the active one.
    pub(super) fn push_segment(&mut self, segment: Segment) {
        self.segments.push_back(segment);
    }

    /// Indexes a durable event of segment `segment` (the back one normally,
    /// any during recovery).
    pub(super) fn add(&mut self, segment: u64, session: &str, seq: u64) {
        let Some(seg) = self.segments.iter_mut().rev().find(|s| s.id == segment) else {
            return;
        };
        let key = match self.sessions.get_key_value(session) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(session),
        };
        let entry = self.sessions.entry(Arc::clone(&key)).or_default();
        match seg.max_seq.entry(key) {
            Entry::Occupied(mut e) => *e.get_mut() = (*e.get()).max(seq),
            Entry::Vacant(e) => {
                e.insert(seq);
                entry.segments += 1;
            }
        }
        if seq > entry.acked && entry.pending.insert(seq) {
            self.unacked += 1;
        }
    }

    /// Sets how many bytes of segment `segment` are durable.
    pub(super) fn set_len(&mut self, segment: u64, len: u64) {
        if let Some(seg) = self.segments.iter_mut().rev().find(|s| s.id == segment) {
            seg.len = len;
        }
    }

    /// Applies "every event of `session` up to `seq` is stored".
    pub(super) fn ack(&mut self, session: &str, seq: u64) {
        // Unknown sessions have nothing left on disk; acks never go back.
        if let Some(s) = self.sessions.get_mut(session).filter(|s| seq > s.acked) {
            s.acked = seq;
            self.unacked -= s.pending.remove_through(seq);
        }
    }

    /// The acknowledged sequence of `session`; `u64::MAX` once the spool has
    /// forgotten it, which happens only when all of it was acknowledged.
    pub(super) fn acked(&self, session: &str) -> u64 {
        self.sessions.get(session).map_or(u64::MAX, |s| s.acked)
    }

    /// Removes the sealed segments whose events are all acknowledged and
    /// returns their files and sizes, for the caller to delete.
    pub(super) fn take_trimmable(&mut self) -> Vec<(PathBuf, u64)> {
        let active = self.segments.back().map(|s| s.id);
        let sessions = &mut self.sessions;
        let mut trimmed = Vec::new();
        self.segments.retain(|seg| {
            let done = Some(seg.id) != active
                && seg
                    .max_seq
                    .iter()
                    .all(|(s, max)| sessions.get(s).is_none_or(|st| st.acked >= *max));
            if done {
                for s in seg.max_seq.keys() {
                    if let Some(st) = sessions.get_mut(s) {
                        st.segments -= 1;
                        if st.segments == 0 {
                            sessions.remove(s);
                        }
                    }
                }
                trimmed.push((seg.path.clone(), seg.len));
            }
            !done
        });
        trimmed
    }

    /// Removes segment `id` from the index, with whatever it held (recovery
    /// drops a segment it cannot use).
    pub(super) fn drop_segment(&mut self, id: u64) {
        let Some(pos) = self.segments.iter().position(|s| s.id == id) else {
            return;
        };
        let Some(seg) = self.segments.remove(pos) else {
            return;
        };
        for s in seg.max_seq.keys() {
            if let Some(st) = self.sessions.get_mut(s) {
                st.segments -= 1;
                if st.segments == 0 {
                    self.unacked -= st.pending.remove_through(u64::MAX);
                    self.sessions.remove(s);
                }
            }
        }
    }

    /// `(id, path, durable length)` of the segments from `from` on.
    pub(super) fn segments_from(&self, from: u64) -> Vec<(u64, PathBuf, u64)> {
        self.segments
            .iter()
            .filter(|s| s.id >= from)
            .map(|s| (s.id, s.path.clone(), s.len))
            .collect()
    }

    /// Whether a durable record starts at or after `offset` in `segment`.
    pub(super) fn durable_from(&self, segment: u64, offset: u64) -> bool {
        self.segments
            .iter()
            .any(|s| (s.id == segment && s.len > offset) || (s.id > segment && s.len > 0))
    }

    /// The first segment's id.
    pub(super) fn first_segment(&self) -> u64 {
        self.segments.front().map_or(0, |s| s.id)
    }

    /// The highest recorded sequence of every session with events waiting.
    pub(super) fn flush_targets(&self) -> Vec<(Arc<str>, u64)> {
        self.sessions
            .iter()
            .filter_map(|(k, s)| s.pending.max().map(|m| (Arc::clone(k), m)))
            .collect()
    }

    /// Events waiting for acknowledgement.
    pub(super) fn unacked(&self) -> u64 {
        self.unacked
    }

    /// Segments on disk and their bytes.
    pub(super) fn disk(&self) -> (usize, u64) {
        (
            self.segments.len(),
            self.segments.iter().map(|s| s.len).sum(),
        )
    }
}

/// Everything the handles, the writer thread and the streamer task share.
pub(super) struct Shared {
    /// The validated configuration.
    pub config: SpoolConfig,
    state: Mutex<State>,
    /// Bytes on disk plus bytes reserved by records on their way to disk;
    /// `record` reserves before queueing, so this never passes `max_bytes`
    /// through new records.
    pub used: AtomicU64,
    /// A record was refused for space since the spool last shrank.
    full: AtomicBool,
    /// Records refused for space since open.
    pub refused: AtomicU64,
    /// A write failed and could not be undone: the spool takes nothing more.
    pub broken: AtomicBool,
    /// The last write failed (and was undone), e.g. the disk is full: until
    /// a write succeeds again, sessions refuse statements (fail closed)
    /// while their events wait to be retried.
    pub write_failed: AtomicBool,
    /// The feed holds events the spool refused and is retrying them: their
    /// statements ran, so no more run until those events are durable.
    pub held: AtomicBool,
    /// fdatasync calls, to show that records share them.
    pub syncs: AtomicU64,
    /// Batches the streamer read back from disk rather than from memory.
    pub disk_reads: AtomicU64,
    /// The writer made events durable: the streamer may have work.
    pub data_ready: Notify,
    /// The records made durable lately, for the streamer.
    recent: Mutex<Recent>,
    /// Bumped after acknowledgements were applied and trimmed.
    pub acked: watch::Sender<u64>,
}

impl Shared {
    /// Shares `state`, whose segments hold `used` bytes.
    pub(super) fn new(config: SpoolConfig, state: State, used: u64) -> Self {
        Self {
            config,
            state: Mutex::new(state),
            used: AtomicU64::new(used),
            full: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            write_failed: AtomicBool::new(false),
            held: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            disk_reads: AtomicU64::new(0),
            data_ready: Notify::new(),
            recent: Mutex::new(Recent::default()),
            acked: watch::Sender::new(0),
        }
    }

    /// The index. A panic elsewhere cannot leave it half-updated in a way
    /// that matters more than losing the agent, so poisoning is ignored.
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The recent durable records. Whoever needs both this and `state`
    /// (the writer, the streamer) takes this one first.
    pub(super) fn recent(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves room for a record of `len` bytes.
    pub(super) fn reserve(&self, len: u64) -> bool {
        let max = self.config.max_bytes;
        let reserved = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(len).filter(|&total| total <= max)
            })
            .is_ok();
        if !reserved {
            self.refused.fetch_add(1, Ordering::Relaxed);
            if !self.full.swap(true, Ordering::AcqRel) {
                match self.config.on_full {
                    OnFull::Refuse => error!(
                        max_bytes = max,
                        "audit spool is full: statements are refused until the policy service acknowledges audit events"
                    ),
                    OnFull::Allow => error!(
                        max_bytes = max,
                        "audit spool is full: STATEMENTS RUN UNAUDITED until the policy service acknowledges audit events (on_full = allow)"
                    ),
                }
            }
        }
        reserved
    }

    /// Gives back `len` reserved bytes whose write failed.
    pub(super) fn release(&self, len: u64) {
        // Saturating: a miscount must not wrap into "full forever".
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(len))
            });
    }

    /// Whether a record was refused for space since the spool last shrank.
    pub(super) fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// Deletes the segments whose events are all acknowledged. Blocking file
    /// I/O: call from the writer thread or a blocking task.
    pub(super) fn trim(&self) {
        let trimmed = self.state().take_trimmable();
        self.delete_segments(trimmed);
    }

    /// Deletes segments already taken out of the index, then tells flush
    /// waiters that acknowledgements moved. Blocking file I/O.
    pub(super) fn delete_segments(&self, trimmed: Vec<(PathBuf, u64)>) {
        let mut freed = 0;
        for (path, len) in trimmed {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    // Its events are acknowledged: nothing is lost, and a
                    // restart at worst sends them again.
                    error!(path = %path.display(), error = %e, "could not delete an acknowledged audit spool segment");
                }
            }
            self.release(len);
            freed += len;
        }
        if freed > 0 {
            // Not needed for safety (a lost delete only resends), but keeps
            // the directory in step with the index.
            let _ = sync_dir(&self.config.dir);
            if self.full.swap(false, Ordering::AcqRel) {
                info!(
                    freed_bytes = freed,
                    "audit spool has room again: recording resumes"
                );
            }
        }
        self.acked.send_modify(|generation| *generation += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_name(42), "spool-0000000000000042.log");
        assert_eq!(parse_segment_name(&segment_name(42)), Some((42, ".log")));
        assert_eq!(
            parse_segment_name("spool-0000000000000042.log.corrupt"),
            Some((42, ".log.corrupt"))
        );
        assert_eq!(parse_segment_name("spool-00000000000000x2.log"), None);
        assert_eq!(parse_segment_name("spool-42.log"), None);
        assert_eq!(parse_segment_name("other"), None);
    }

    #[test]
    fn segments_trim_once_every_session_in_them_is_acked() {
        let mut state = State::default();
        for id in 1..=3 {
            state.push_segment(Segment::new(id, PathBuf::from(segment_name(id))));
        }
        // Segment 1: a1..a2, b1. Segment 2: a3, b2. Segment 3 (active): a4.
        state.add(1, "a", 1);
        state.add(1, "a", 2);
        state.add(1, "b", 1);
        state.add(2, "a", 3);
        state.add(2, "b", 2);
        state.add(3, "a", 4);
        assert_eq!(state.unacked(), 6);

        state.ack("a", 3);
        assert_eq!(state.unacked(), 3);
        assert!(state.take_trimmable().is_empty(), "b1 holds segment 1");
        state.ack("b", 1);
        let trimmed = state.take_trimmable();
        assert_eq!(trimmed.len(), 1);
        assert!(trimmed[0].0.ends_with(segment_name(1)));
        state.ack("b", 2);
        state.ack("a", 4);
        assert_eq!(state.unacked(), 0);
        // The active segment stays, with session a; b is forgotten.
        assert_eq!(state.take_trimmable().len(), 1);
        assert_eq!(state.acked("b"), u64::MAX);
        assert_eq!(state.acked("a"), 4);
        state.ack("a", 2);
        assert_eq!(state.acked("a"), 4, "acks never go back");
    }
}
