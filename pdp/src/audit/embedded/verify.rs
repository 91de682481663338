//! `verify` for the embedded store: the chains recomputed from the files.

use std::fs::File;
use std::io::{self, BufReader, Read as _, Seek as _, SeekFrom};

use prost::Message as _;

use super::Inner;
use super::segment::{FrameFault, FrameReader, HEADER_LEN, MAGIC, Record, segment_name};
use crate::audit::check::{ChainChecker, StoredRecord};
use crate::audit::{AuditError, Broken, VerifyReport};

/// Walks every segment up to its committed length (appends continue
/// meanwhile; what they add is not looked at), then compares each chain's end
/// with the index's head.
pub(super) fn verify(inner: &Inner, only: Option<&str>) -> Result<VerifyReport, AuditError> {
    let (segments, heads) = {
        let index = inner.index();
        (index.segments(), index.heads(only))
    };
    let mut checker = ChainChecker::new(only);
    let report = |checker: &ChainChecker, broken: Broken| {
        let (sessions_checked, events_checked) = checker.counts();
        VerifyReport {
            sessions_checked,
            events_checked,
            broken: Some(broken),
        }
    };
    for (segment, committed) in segments {
        let name = segment_name(segment);
        let path = inner.segment_path(segment);
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        let attribute = |problem: String, offset: Option<u64>| {
            let index = inner.index();
            let found = match offset {
                Some(offset) => index.event_at(segment, offset),
                None => index.first_event_in(segment),
            };
            let (session_id, sequence) = found.unwrap_or_default();
            Broken {
                session_id,
                sequence,
                problem,
            }
        };
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(report(
                    &checker,
                    attribute(format!("{name} is missing"), None),
                ));
            }
            Err(e) => return Err(io(e)),
        };
        let mut header = Vec::with_capacity(MAGIC.len());
        (&file)
            .take(HEADER_LEN)
            .read_to_end(&mut header)
            .map_err(io)?;
        if header != MAGIC {
            let problem = format!("{name} has a bad header");
            return Ok(report(&checker, attribute(problem, None)));
        }
        file.seek(SeekFrom::Start(HEADER_LEN)).map_err(io)?;
        let mut frames = FrameReader::new(BufReader::new(&file), HEADER_LEN, committed);
        loop {
            let frame = match frames.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(FrameFault::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    // The file is shorter than what was committed: records
                    // were cut away; the chains and heads name which.
                    break;
                }
                Err(FrameFault::Io(e)) => return Err(io(e)),
                Err(FrameFault::Bad { offset, reason, .. }) => {
                    let problem = format!("corrupt record in {name} at offset {offset}: {reason}");
                    return Ok(report(&checker, attribute(problem, Some(offset))));
                }
            };
            let offset = frame.offset;
            let record = match Record::decode(frame.record.as_slice()) {
                Ok(record) => record,
                Err(e) => {
                    let problem = format!(
                        "corrupt record in {name} at offset {offset}: record does not decode: {e}"
                    );
                    return Ok(report(&checker, attribute(problem, Some(offset))));
                }
            };
            let stored = StoredRecord {
                payload: &record.event,
                previous_hash: &record.previous_hash,
                hash: &record.hash,
                claimed: None,
            };
            if let Err(broken) = checker.check(&stored, || inner.index().event_at(segment, offset))
            {
                return Ok(report(&checker, broken));
            }
        }
    }
    Ok(match checker.finish(heads) {
        Ok((sessions_checked, events_checked)) => VerifyReport {
            sessions_checked,
            events_checked,
            broken: None,
        },
        Err((sessions_checked, events_checked, broken)) => VerifyReport {
            sessions_checked,
            events_checked,
            broken: Some(broken),
        },
    })
}
