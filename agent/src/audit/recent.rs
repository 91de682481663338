//! The records the writer made durable lately, kept in memory for the
//! streamer.
//!
//! While the stream keeps up, it sends each event from here, as the writer
//! wrote it, instead of reading the segment back from disk (a blocking
//! thread, a file opened, every record checked and copied again). Anything
//! not here (after a reconnect, which starts from the oldest segment; past
//! a segment's end; or once the PDP has been away long enough for
//! [`MAX_BYTES`] to push records out) is read from disk as before. Only the
//! oldest records are ever dropped, so what is here always runs up to the
//! durable end of the spool.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

/// Payload bytes kept at most. At a few thousand events a second and a
/// 50 ms linger the stream needs a few hundred KiB of them.
const MAX_BYTES: usize = 4 << 20;

/// One durable record.
#[derive(Debug)]
pub(super) struct Entry {
    /// Its segment.
    pub segment: u64,
    /// Where its frame starts in the segment.
    pub offset: u64,
    /// Its framed length (header included).
    pub len: u64,
    /// Its event's session.
    pub session: Arc<str>,
    /// Its event's sequence.
    pub seq: u64,
    /// The encoded event, as the spool holds it.
    pub payload: Bytes,
}

/// Recent records in spool order.
#[derive(Debug, Default)]
pub(super) struct Recent {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl Recent {
    /// Adds the next durable record, dropping the oldest past [`MAX_BYTES`].
    pub fn push(&mut self, entry: Entry) {
        self.bytes += entry.payload.len();
        self.entries.push_back(entry);
        while self.bytes > MAX_BYTES {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.payload.len(),
                None => break,
            }
        }
    }

    /// Forgets the records before `(segment, offset)`: the stream is past
    /// them.
    pub fn skip_before(&mut self, segment: u64, offset: u64) {
        while self
            .entries
            .front()
            .is_some_and(|e| (e.segment, e.offset) < (segment, offset))
        {
            self.pop();
        }
    }

    /// The oldest record, if it starts at `(segment, offset)`.
    pub fn at(&self, segment: u64, offset: u64) -> Option<&Entry> {
        self.entries
            .front()
            .filter(|e| e.segment == segment && e.offset == offset)
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Takes the oldest record.
    pub fn pop(&mut self) -> Option<Entry> {
        let entry = self.entries.pop_front()?;
        self.bytes -= entry.payload.len();
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(segment: u64, offset: u64, len: usize) -> Entry {
        Entry {
            segment,
            offset,
            len: len as u64,
            session: "s".into(),
            seq: offset + 1,
            payload: Bytes::from(vec![0; len]),
        }
    }

    #[test]
    fn keeps_the_newest_records_in_order() {
        let mut recent = Recent::default();
        let len = MAX_BYTES / 4;
        for k in 0..6 {
            recent.push(entry(1, (k * len) as u64, len));
        }
        // The two oldest went to keep the cap; the newest are all here.
        assert!(recent.at(1, 0).is_none());
        assert!(recent.at(1, (2 * len) as u64).is_some());
        assert_eq!(recent.bytes, MAX_BYTES);
        recent.skip_before(1, (4 * len) as u64);
        assert_eq!(recent.pop().map(|e| e.offset), Some((4 * len) as u64));
        assert_eq!(recent.pop().map(|e| e.offset), Some((5 * len) as u64));
        assert!(recent.pop().is_none());
        assert_eq!(recent.bytes, 0);
    }

    #[test]
    fn skips_only_what_lies_behind() {
        let mut recent = Recent::default();
        recent.push(entry(1, 0, 10));
        recent.push(entry(1, 10, 10));
        recent.push(entry(2, 0, 10));
        recent.skip_before(1, 10);
        assert!(recent.at(1, 10).is_some());
        recent.skip_before(2, 0);
        assert!(recent.at(1, 10).is_none() && recent.at(2, 0).is_some());
        // A cursor behind everything (a new call) keeps everything.
        recent.skip_before(1, 0);
        assert!(recent.at(2, 0).is_some());
    }
}
