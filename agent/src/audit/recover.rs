//! Opening a spool directory left by a previous run, which may have been
//! killed at any point.
//!
//! Every `spool-<n>.log` is read in order and indexed. A record cut short at
//! the end of the last segment is the write the previous run was doing when
//! it died; it was never acknowledged to a caller, so the file is truncated
//! before it. Any other bad record is corruption: the segment is kept aside
//! as `.corrupt` for inspection (renamed, or copied when records before the
//! damage are readable; those stay in place and are still sent, in order).
//! Records after the damage cannot be found again without their lengths.
//! The agent keeps serving either way.
//!
//! Writes then go to a new segment, so recovered segments are never written.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use super::AuditError;
use super::frame::{Next, RecordReader};
use super::spool::{Segment, State, create_segment, parse_segment_name, segment_name, sync_dir};

/// The recovered index and the fresh segment to write to.
pub(super) struct Recovered {
    /// Recovered segments, then the new active one at the back.
    pub state: State,
    /// Bytes on disk.
    pub used: u64,
    /// The active segment's id.
    pub active_id: u64,
    /// Its file, empty and open for writing.
    pub active: File,
}

/// Opens `dir`, creating it when missing.
pub(super) fn recover(dir: &Path) -> Result<Recovered, AuditError> {
    let open_error = |source| AuditError::Open {
        path: dir.to_owned(),
        source,
    };
    create_dir(dir).map_err(open_error)?;
    let mut ids = Vec::new();
    let mut highest = 0;
    for entry in std::fs::read_dir(dir).map_err(open_error)? {
        let name = entry.map_err(open_error)?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((id, rest)) = parse_segment_name(name) {
            // `.corrupt` files count too: their numbers are never reused.
            highest = highest.max(id);
            if rest == ".log" {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();

    let mut state = State::default();
    let mut used = 0;
    let mut recovered_events = 0u64;
    for (i, &id) in ids.iter().enumerate() {
        let path = dir.join(segment_name(id));
        let last = i + 1 == ids.len();
        match recover_segment(&mut state, id, &path, last) {
            Ok((events, len)) if events > 0 => {
                recovered_events += events;
                used += len;
                state.set_len(id, len);
            }
            Ok(_) => {
                state.drop_segment(id);
                remove_if_present(&path).map_err(open_error)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => state.drop_segment(id),
            Err(e) => return Err(open_error(e)),
        }
    }
    sync_dir(dir).map_err(open_error)?;

    let active_id = highest + 1;
    let (active, path) = create_segment(dir, active_id).map_err(open_error)?;
    state.push_segment(Segment::new(active_id, path));
    if recovered_events > 0 {
        info!(
            events = recovered_events,
            bytes = used,
            "recovered audit events from a previous run; sending them first"
        );
    }
    Ok(Recovered {
        state,
        used,
        active_id,
        active,
    })
}

fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Indexes one segment, repairing it if needed; returns its event count and
/// its length after repair.
fn recover_segment(state: &mut State, id: u64, path: &Path, last: bool) -> io::Result<(u64, u64)> {
    state.push_segment(Segment::new(id, path.to_owned()));
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut reader = RecordReader::new(BufReader::new(file), 0);
    let mut events = 0;
    loop {
        let (at, torn, reason) = match reader.next_record()? {
            Next::Record(r) => {
                state.add(id, &r.id.session_id, r.id.sequence);
                events += 1;
                continue;
            }
            Next::End => return Ok((events, size)),
            Next::Torn { at } => (at, last, "record cut short"),
            Next::Bad { at, next, reason } => (at, last && !valid_record_at(path, next)?, reason),
        };
        if torn {
            warn!(
                segment = %path.display(),
                offset = at,
                dropped_bytes = size - at,
                reason,
                "audit spool ends in a torn write (the agent stopped mid-write); truncating it"
            );
            truncate(path, at)?;
        } else {
            keep_aside(path, at, size, reason)?;
            if at > 0 {
                truncate(path, at)?;
            }
        }
        return Ok((events, at));
    }
}

/// Whether a valid record starts at `offset` (a bad record followed by good
/// ones is corruption, not a torn write).
fn valid_record_at(path: &Path, offset: Option<u64>) -> io::Result<bool> {
    let Some(offset) = offset else {
        return Ok(false);
    };
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = RecordReader::new(BufReader::new(file), offset);
    Ok(matches!(reader.next_record()?, Next::Record(_)))
}

/// Keeps the damaged segment as `<name>.corrupt` (a free variant of it):
/// renamed when nothing before the damage is readable, else copied, as the
/// readable part stays in the spool.
fn keep_aside(path: &Path, at: u64, size: u64, reason: &str) -> io::Result<()> {
    let aside = free_corrupt_name(path);
    if at == 0 {
        std::fs::rename(path, &aside)?;
    } else {
        std::fs::copy(path, &aside)?;
        File::open(&aside)?.sync_all()?;
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    error!(
        segment = %path.display(),
        kept_as = %aside.display(),
        offset = at,
        lost_bytes = size - at,
        reason,
        "audit spool segment is corrupt: events after the damage cannot be sent; kept aside for inspection"
    );
    Ok(())
}

fn free_corrupt_name(path: &Path) -> PathBuf {
    let base = path.with_extension("log.corrupt");
    let mut candidate = base.clone();
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{}.{n}", base.display()));
        n += 1;
    }
    candidate
}

fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use palisade_proto::v1 as pb;

    use super::super::frame::encode;
    use super::*;

    fn event(session: &str, seq: u64) -> pb::AuditEvent {
        pb::AuditEvent {
            session_id: session.into(),
            sequence: seq,
            ..Default::default()
        }
    }

    fn write_segment(dir: &Path, id: u64, events: &[(&str, u64)]) -> u64 {
        let mut bytes = Vec::new();
        for (s, n) in events {
            bytes.extend(encode(&event(s, *n)).unwrap());
        }
        std::fs::write(dir.join(segment_name(id)), &bytes).unwrap();
        bytes.len() as u64
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn torn_tail_of_the_last_segment_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, &[("a", 1), ("a", 2)]);
        let good = write_segment(dir.path(), 2, &[("a", 3), ("b", 1)]);
        let torn = encode(&event("a", 4)).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(segment_name(2)))
            .unwrap();
        f.write_all(&torn[..torn.len() - 3]).unwrap();

        let r = recover(dir.path()).unwrap();
        assert_eq!(r.active_id, 3);
        assert_eq!(r.state.unacked(), 4);
        let len = std::fs::metadata(dir.path().join(segment_name(2)))
            .unwrap()
            .len();
        assert_eq!(len, good);
        assert_eq!(
            names(dir.path()),
            vec![segment_name(1), segment_name(2), segment_name(3)]
        );
    }

    #[test]
    fn zeroed_or_bad_tail_without_records_after_it_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        let good = write_segment(dir.path(), 7, &[("a", 1)]);
        let path = dir.path().join(segment_name(7));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        let mut bad = encode(&event("a", 2)).unwrap();
        *bad.last_mut().unwrap() ^= 1;
        f.write_all(&bad).unwrap();
        f.write_all(&[0; 100]).unwrap();
        let r = recover(dir.path()).unwrap();
        assert_eq!(r.state.unacked(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        assert!(!names(dir.path()).iter().any(|n| n.contains("corrupt")));
    }

    #[test]
    fn corruption_keeps_the_segment_aside_and_the_readable_part() {
        let dir = tempfile::tempdir().unwrap();
        let one = write_segment(dir.path(), 1, &[("a", 1)]);
        write_segment(dir.path(), 1, &[("a", 1), ("a", 2), ("a", 3)]);
        // Damage a2: a1 stays, a2 and a3 are lost to the spool.
        let path = dir.path().join(segment_name(1));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[one as usize + 9] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        // A segment damaged at its first byte is renamed whole.
        write_segment(dir.path(), 2, &[("b", 1)]);
        let path2 = dir.path().join(segment_name(2));
        let mut bytes2 = std::fs::read(&path2).unwrap();
        bytes2[0] = 0;
        bytes2[1] = 0;
        std::fs::write(&path2, &bytes2).unwrap();
        write_segment(dir.path(), 3, &[("c", 1)]);

        let r = recover(dir.path()).unwrap();
        assert_eq!(r.state.unacked(), 2, "a1 and c1");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), one);
        assert_eq!(
            names(dir.path()),
            vec![
                segment_name(1),
                format!("{}.corrupt", segment_name(1)),
                format!("{}.corrupt", segment_name(2)),
                segment_name(3),
                segment_name(4),
            ]
        );
        assert_eq!(
            std::fs::read(dir.path().join(format!("{}.corrupt", segment_name(1)))).unwrap(),
            bytes
        );
        // Reopening again finds nothing wrong and does not reuse numbers.
        drop(r);
        let r = recover(dir.path()).unwrap();
        assert_eq!(r.active_id, 5);
        assert_eq!(r.state.unacked(), 2);
    }

    #[test]
    fn empty_segments_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, &[]);
        write_segment(dir.path(), 2, &[("a", 1)]);
        write_segment(dir.path(), 3, &[]);
        let r = recover(dir.path()).unwrap();
        assert_eq!(r.active_id, 4);
        assert_eq!(names(dir.path()), vec![segment_name(2), segment_name(4)]);
    }
}
