//! The embedded audit store: append-only, hash-chained segment files in one
//! directory, with an in-memory index rebuilt at open. No setup.
//!
//! # On disk
//!
//! ```text
//! <dir>/LOCK                  held (flock) by the one process using the store
//! <dir>/segment-000001.log    frames, see `segment` for the byte layout
//! <dir>/segment-000002.log    ...
//! ```
//!
//! A segment is `"PLSDAUD1"` followed by frames `len:u32le crc32:u32le
//! record`, where `record` is a protobuf `Record { bytes event = 1; bytes
//! previous_hash = 2; bytes hash = 3; }` and `event` holds the `AuditEvent`
//! as it was received (the bytes its hash is computed over). A new
//! segment is started when a batch would grow the current one past
//! [`EmbeddedOptions::segment_size`]; a batch is never split across
//! segments.
//!
//! # Durability
//!
//! One `append` is one positioned write of all its frames and one
//! `fdatasync`; the index is updated, and acks returned, only after that.
//! Rolling to a new segment syncs the new file and the directory first. If
//! a write or sync fails, the store tries to cut the file back; if that
//! fails too (or the sync failed, when the kernel may have dropped the
//! data), it stops taking writes until it is reopened.
//!
//! # Recovery
//!
//! Opening scans every segment. A damaged frame at the tail of the *last*
//! segment (cut short, or with a bad checksum with nothing but zeros after
//! it) is what a crash during an append leaves: it was never acknowledged,
//! so it is cut away with a warning. A damaged frame anywhere else makes
//! `open` fail with an error naming the segment and offset: it is not
//! silently dropped.
//!
//! # Tamper evidence
//!
//! [`AuditStore::verify`] reads the segments again (up to the committed
//! length) and recomputes every chain from the files; it uses the index only
//! to compare each chain's end with the head it knows and to name a damaged
//! record. An unkeyed chain cannot reveal that the newest records of the
//! whole store were cut away while the store was closed; anchoring heads
//! elsewhere is what would.
//!
//! # Concurrency
//!
//! Appends are serialized by one writer lock. Every operation that touches
//! files runs on tokio's blocking pool as a task of its own, so a caller
//! that gives up (a dropped gRPC request) never interrupts a write half-way.
//! Reads take the index's read lock briefly and then read the files at the
//! recorded offsets, which are never rewritten.

mod index;
mod recover;
mod segment;
mod verify;

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use palisade_proto::v1 as pb;
use prost::Message as _;
use tokio::sync::watch;

use self::index::{Index, Location};
use self::segment::{FrameFault, Record, encode_frame, read_frame_at, segment_name};
use super::batch::{Plan, group_by_session, plan, warn_if_differs};
use super::chain::hash_from_slice;
use super::{AuditError, AuditStore, EncodedEvent, SessionFilter, StoredEvent, VerifyReport};

/// Settings of an [`EmbeddedStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// A batch that would grow the current segment past this many bytes
    /// starts a new segment. Default 64 MiB.
    pub segment_size: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
        }
    }
}

/// The default audit store: segment files in a directory; see the
/// [module documentation](self).
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    dir: PathBuf,
    options: EmbeddedOptions,
    writer: Mutex<Writer>,
    index: RwLock<Index>,
    changes: watch::Sender<u64>,
    /// Holds the directory's `flock` for as long as the store lives.
    _lock: File,
}

/// The segment being appended to.
struct Writer {
    file: File,
    segment: u32,
    /// The committed length: everything before it is durable.
    len: u64,
    /// Set when a failed write may have left the file in an unknown state.
    stopped: bool,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir` with default options.
    ///
    /// Scans every segment, so it blocks for as long as reading them takes;
    /// call it before serving, or from `spawn_blocking`.
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// Opens (creating if needed) the store in `dir`.
    pub fn open_with(dir: &Path, options: EmbeddedOptions) -> Result<Self, AuditError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| AuditError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(AuditError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(io(&lock_path)(e.into())),
        }
        let recovered = recover::recover(dir)?;
        let path = dir.join(segment_name(recovered.last_segment));
        let file = File::options().write(true).open(&path).map_err(io(&path))?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                options,
                writer: Mutex::new(Writer {
                    file,
                    segment: recovered.last_segment,
                    len: recovered.last_len,
                    stopped: false,
                }),
                index: RwLock::new(recovered.index),
                changes: watch::Sender::new(0),
                _lock: lock,
            }),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

/// Runs `work` on the blocking pool; it runs to completion even if the
/// caller stops waiting.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AuditError> + Send + 'static,
) -> Result<T, AuditError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AuditError::Task(e.to_string()))?
}

#[tonic::async_trait]
impl AuditStore for EmbeddedStore {
    async fn append(&self, events: Vec<EncodedEvent>) -> Result<Vec<pb::EventAck>, AuditError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let inner = Arc::clone(&self.inner);
        let (acks, stored) = blocking(move || inner.append(events)).await?;
        // Freed here, on a runtime worker (usually the one that decoded the
        // events) rather than on the blocking thread: mimalloc frees another
        // thread's memory through a slower path (a tenth of the ingest
        // profile).
        drop(stored);
        Ok(acks)
    }

    async fn list_sessions(
        &self,
        filter: &SessionFilter,
    ) -> Result<Vec<pb::SessionSummary>, AuditError> {
        Ok(self.inner.index().list(filter))
    }

    async fn session_events(
        &self,
        session_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<StoredEvent>, AuditError> {
        let locations = self.inner.index().events_after(session_id, after_sequence);
        if locations.is_empty() {
            return Ok(Vec::new());
        }
        let inner = Arc::clone(&self.inner);
        let session_id = session_id.to_owned();
        blocking(move || inner.read_events(&session_id, &locations)).await
    }

    async fn verify(&self, session_id: Option<&str>) -> Result<VerifyReport, AuditError> {
        let inner = Arc::clone(&self.inner);
        let only = session_id.map(str::to_owned);
        blocking(move || verify::verify(&inner, only.as_deref())).await
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

impl Inner {
    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn segment_path(&self, segment: u32) -> PathBuf {
        self.dir.join(segment_name(segment))
    }

    /// Stores what continues each chain; returns the acks, and the plans
    /// (their events) for the caller to free.
    fn append(
        &self,
        events: Vec<EncodedEvent>,
    ) -> Result<(Vec<pb::EventAck>, Vec<Plan>), AuditError> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if writer.stopped {
            return Err(AuditError::Stopped);
        }
        let mut plans: Vec<Plan> = {
            let index = self.index();
            group_by_session(events)
                .into_iter()
                .map(|batch| {
                    let head = index.head(&batch.session_id);
                    plan(batch, head)
                })
                .collect()
        };
        self.compare_repeats(&plans);

        // Sized once: a frame is the payload plus at most 82 bytes (the
        // 8-byte header, the payload's tag and length, the two hashes).
        let mut frames = Vec::with_capacity(
            plans
                .iter()
                .flat_map(|plan| &plan.new)
                .map(|linked| linked.event.payload.len() + 82)
                .sum(),
        );
        let mut placed = Vec::new();
        for linked in plans.iter().flat_map(|plan| &plan.new) {
            let record = Record {
                // A reference to the received bytes, not a copy.
                event: linked.event.payload.clone(),
                previous_hash: linked.previous_hash.to_vec(),
                hash: linked.hash.to_vec(),
            };
            let start = frames.len() as u64;
            let len =
                encode_frame(&record, &mut frames).ok_or_else(|| AuditError::EventTooLarge {
                    session_id: linked.event.event.session_id.clone(),
                    sequence: linked.event.event.sequence,
                    size: record.encoded_len(),
                    max: segment::MAX_RECORD_LEN as usize,
                })?;
            placed.push((linked, start, len));
        }

        if !frames.is_empty() {
            let size = frames.len() as u64;
            if writer.len > segment::HEADER_LEN
                && writer.len.saturating_add(size) > self.options.segment_size
            {
                self.roll(&mut writer)?;
            }
            let base = writer.len;
            self.write_durably(&mut writer, &frames)?;
            let mut index = self.index_mut();
            for (linked, start, len) in placed {
                let location = Location {
                    segment: writer.segment,
                    offset: base + start,
                    len,
                };
                index.insert(&linked.event.event, linked.hash, location);
            }
            index.set_segment_len(writer.segment, writer.len);
            drop(index);
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        let acks = plans
            .iter_mut()
            .map(|plan| pb::EventAck {
                // The plans are only freed from here on.
                session_id: std::mem::take(&mut plan.session_id),
                sequence: plan.head.last_sequence,
            })
            .collect();
        Ok((acks, plans))
    }

    /// Writes `frames` at the committed end and syncs; on failure, leaves
    /// the committed length where it was (or stops the writer).
    fn write_durably(&self, writer: &mut Writer, frames: &[u8]) -> Result<(), AuditError> {
        let path = self.segment_path(writer.segment);
        let base = writer.len;
        if let Err(source) = writer.file.write_all_at(frames, base) {
            let cut = writer
                .file
                .set_len(base)
                .and_then(|()| writer.file.sync_data());
            if cut.is_err() {
                writer.stopped = true;
            }
            tracing::error!(segment = %path.display(), error = %source, "audit append failed");
            return Err(AuditError::Io { path, source });
        }
        if let Err(source) = writer.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty
            // pages and a retry would report success: stop until reopened.
            writer.stopped = true;
            tracing::error!(segment = %path.display(), error = %source, "audit sync failed; writes stopped");
            return Err(AuditError::Io { path, source });
        }
        writer.len = base + frames.len() as u64;
        Ok(())
    }

    /// Starts the next segment, durably, and makes it the writer's.
    fn roll(&self, writer: &mut Writer) -> Result<(), AuditError> {
        let next = writer.segment + 1;
        let path = self.segment_path(next);
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        // A leftover of a failed roll (never indexed) is overwritten.
        let file = File::options()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        file.write_all_at(&segment::MAGIC, 0).map_err(io)?;
        file.sync_all().map_err(io)?;
        sync_dir(&self.dir)?;
        *writer = Writer {
            file,
            segment: next,
            len: segment::HEADER_LEN,
            stopped: false,
        };
        self.index_mut().set_segment_len(next, segment::HEADER_LEN);
        Ok(())
    }

    /// Logs resent events whose content differs from the stored copy.
    fn compare_repeats(&self, plans: &[Plan]) {
        let repeats: Vec<(&EncodedEvent, Location)> = {
            let index = self.index();
            plans
                .iter()
                .flat_map(|plan| &plan.repeated)
                .filter_map(|resent| {
                    let event = &resent.event;
                    Some((resent, index.location(&event.session_id, event.sequence)?))
                })
                .collect()
        };
        for (resent, location) in repeats {
            match self.read_record(location) {
                Ok(record) => warn_if_differs(resent, &record.event),
                Err(e) => tracing::warn!(
                    session_id = %resent.event.session_id,
                    sequence = resent.event.sequence,
                    error = %e,
                    "stored copy of a resent audit event is unreadable"
                ),
            }
        }
    }

    fn read_record(&self, location: Location) -> Result<Record, AuditError> {
        let path = self.segment_path(location.segment);
        let file = File::open(&path).map_err(|source| AuditError::Io { path, source })?;
        self.read_record_in(&file, location)
    }

    fn read_record_in(&self, file: &File, location: Location) -> Result<Record, AuditError> {
        let corrupt = |reason: String| AuditError::Corrupt {
            segment: segment_name(location.segment),
            offset: location.offset,
            reason,
        };
        let bytes =
            read_frame_at(file, location.offset, location.len).map_err(|fault| match fault {
                FrameFault::Io(source) => AuditError::Io {
                    path: self.segment_path(location.segment),
                    source,
                },
                FrameFault::Bad { reason, .. } => corrupt(reason),
            })?;
        Record::decode(bytes.as_slice())
            .map_err(|e| corrupt(format!("record does not decode: {e}")))
    }

    fn read_events(
        &self,
        session_id: &str,
        locations: &[(u64, Location)],
    ) -> Result<Vec<StoredEvent>, AuditError> {
        let mut open: Option<(u32, File)> = None;
        let mut events = Vec::with_capacity(locations.len());
        for &(sequence, location) in locations {
            let file = match open.take() {
                Some((segment, file)) if segment == location.segment => file,
                _ => {
                    let path = self.segment_path(location.segment);
                    File::open(&path).map_err(|source| AuditError::Io { path, source })?
                }
            };
            let record = self.read_record_in(&file, location)?;
            open = Some((location.segment, file));
            let unreadable = |reason: String| AuditError::Unreadable {
                session_id: session_id.to_owned(),
                sequence,
                reason,
            };
            let event = pb::AuditEvent::decode(record.event.clone())
                .map_err(|e| unreadable(format!("event does not decode: {e}")))?;
            if event.session_id != session_id || event.sequence != sequence {
                return Err(unreadable("the record holds another event".to_owned()));
            }
            let (Some(previous_hash), Some(hash)) = (
                hash_from_slice(&record.previous_hash),
                hash_from_slice(&record.hash),
            ) else {
                return Err(unreadable("malformed hash".to_owned()));
            };
            events.push(StoredEvent {
                event,
                previous_hash,
                hash,
                payload: record.event,
            });
        }
        Ok(events)
    }
}

/// Makes a directory's entries (a new segment) durable.
fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| AuditError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests;
