//! Opening the embedded store: scan every segment into the index, repair a
//! torn tail of the last one, refuse damage anywhere else.

use std::fs::File;
use std::io::{BufReader, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use palisade_proto::v1 as pb;
use prost::Message as _;

use super::index::{Index, Location};
use super::segment::{
    FrameFault, FrameReader, HEADER_LEN, MAGIC, Record, is_zero_from, list_segments, segment_name,
};
use super::sync_dir;
use crate::audit::AuditError;
use crate::audit::chain::hash_from_slice;

/// The state the store resumes from.
pub(super) struct Recovered {
    pub index: Index,
    pub last_segment: u32,
    /// The last segment's length after any repair: where appends go.
    pub last_len: u64,
}

/// Scans `dir` (creating the first segment of a new store).
pub(super) fn recover(dir: &Path) -> Result<Recovered, AuditError> {
    let ids = list_segments(dir)?;
    let mut index = Index::default();
    let Some(&last) = ids.last() else {
        create_segment(dir, 1)?;
        index.set_segment_len(1, HEADER_LEN);
        return Ok(Recovered {
            index,
            last_segment: 1,
            last_len: HEADER_LEN,
        });
    };
    for pair in ids.windows(2) {
        if let [a, b] = pair
            && *b != a + 1
        {
            return Err(AuditError::MissingSegment {
                dir: dir.to_path_buf(),
                missing: segment_name(a + 1),
            });
        }
    }
    let mut last_len = HEADER_LEN;
    for &id in &ids {
        let len = scan_segment(dir, id, id == last, &mut index)?;
        index.set_segment_len(id, len);
        last_len = len;
    }
    Ok(Recovered {
        index,
        last_segment: last,
        last_len,
    })
}

/// Creates segment `id` holding only the header, durably.
fn create_segment(dir: &Path, id: u32) -> Result<(), AuditError> {
    let path = dir.join(segment_name(id));
    let io = |source| AuditError::Io {
        path: path.clone(),
        source,
    };
    let file = File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    file.write_all_at(&MAGIC, 0).map_err(io)?;
    file.sync_all().map_err(io)?;
    sync_dir(dir)
}

/// Indexes one segment; returns its valid length.
fn scan_segment(dir: &Path, id: u32, is_last: bool, index: &mut Index) -> Result<u64, AuditError> {
    let name = segment_name(id);
    let path = dir.join(&name);
    let io = |source| AuditError::Io {
        path: path.clone(),
        source,
    };
    let corrupt = |offset: u64, reason: String| AuditError::Corrupt {
        segment: name.clone(),
        offset,
        reason,
    };
    let mut file = File::options()
        .read(true)
        .write(is_last)
        .open(&path)
        .map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();

    let mut header = Vec::with_capacity(MAGIC.len());
    (&file)
        .take(HEADER_LEN)
        .read_to_end(&mut header)
        .map_err(io)?;
    if header != MAGIC {
        let unfinished = MAGIC.starts_with(&header) || header.iter().all(|&b| b == 0);
        let only_header = file_len <= HEADER_LEN || is_zero_from(&file, 0, file_len).map_err(io)?;
        if !(is_last && unfinished && only_header) {
            return Err(corrupt(0, "not an audit segment (bad header)".to_owned()));
        }
        // A crash while the segment was being created: start it again.
        tracing::warn!(segment = %name, "audit segment with an unfinished header rewritten");
        file.set_len(0).map_err(io)?;
        file.write_all_at(&MAGIC, 0).map_err(io)?;
        file.sync_all().map_err(io)?;
        return Ok(HEADER_LEN);
    }

    file.seek(SeekFrom::Start(HEADER_LEN)).map_err(io)?;
    let mut frames = FrameReader::new(BufReader::new(&file), HEADER_LEN, file_len);
    loop {
        match frames.next_frame() {
            Ok(None) => return Ok(file_len),
            Ok(Some(frame)) => {
                let offset = frame.offset;
                let len = u32::try_from(frame.record.len())
                    .map_err(|_| corrupt(offset, "record too long".to_owned()))?;
                let (event, hash) =
                    decode(&frame.record).map_err(|reason| corrupt(offset, reason))?;
                let location = Location {
                    segment: id,
                    offset,
                    len,
                };
                index_event(index, &event, hash, location);
            }
            Err(FrameFault::Io(source)) => return Err(io(source)),
            Err(FrameFault::Bad {
                offset,
                declared_end,
                reason,
            }) => {
                // Torn: the frame runs to (or past) the end of the file, or
                // only zeros follow it.
                let torn = is_last
                    && match declared_end {
                        None => true,
                        Some(end) if end >= file_len => true,
                        Some(end) => is_zero_from(&file, end, file_len).map_err(io)?,
                    };
                if !torn {
                    return Err(corrupt(offset, reason));
                }
                tracing::warn!(
                    segment = %name,
                    offset,
                    cut = file_len - offset,
                    reason = %reason,
                    "torn audit record at the end of the last segment cut away (it was never acknowledged)"
                );
                drop(frames);
                file.set_len(offset).map_err(io)?;
                file.sync_all().map_err(io)?;
                return Ok(offset);
            }
        }
    }
}

/// The event and hash of a record whose frame is intact.
fn decode(record: &[u8]) -> Result<(pb::AuditEvent, [u8; 32]), String> {
    let record = Record::decode(record).map_err(|e| format!("record does not decode: {e}"))?;
    let event =
        pb::AuditEvent::decode(record.event).map_err(|e| format!("event does not decode: {e}"))?;
    let hash = hash_from_slice(&record.hash).ok_or_else(|| "malformed hash".to_owned())?;
    if hash_from_slice(&record.previous_hash).is_none() {
        return Err("malformed previous hash".to_owned());
    }
    Ok((event, hash))
}

/// Indexes an event found on disk. A chain that does not continue (which
/// only editing the files can cause) is indexed as found and left for
/// `verify` to report; an event at or below the session's head cannot be
/// indexed and is skipped.
fn index_event(index: &mut Index, event: &pb::AuditEvent, hash: [u8; 32], location: Location) {
    let head = index.head(&event.session_id);
    if event.sequence <= head.last_sequence {
        tracing::warn!(
            session_id = %event.session_id,
            sequence = event.sequence,
            segment = location.segment,
            offset = location.offset,
            "audit record repeats an earlier sequence; not indexed (run audit verify)"
        );
        return;
    }
    if event.sequence != head.last_sequence + 1 {
        tracing::warn!(
            session_id = %event.session_id,
            sequence = event.sequence,
            "audit chain has a gap (run audit verify)"
        );
    }
    index.insert(event, hash, location);
}
