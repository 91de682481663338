//! The sequence numbers of one session that are recorded but not yet
//! acknowledged, kept as sorted, disjoint, inclusive ranges. A session's
//! numbers are contiguous, so this is one range almost always, however many
//! events wait.

/// A set of sequence numbers.
#[derive(Debug, Default)]
pub(super) struct SeqSet {
    // INVARIANT: sorted, disjoint, and never adjacent (adjacent ranges merge).
    ranges: Vec<(u64, u64)>,
}

impl SeqSet {
    /// Adds `seq`; false if it was already there.
    pub(super) fn insert(&mut self, seq: u64) -> bool {
        // The first range that ends at or after `seq`.
        let i = self.ranges.partition_point(|&(_, end)| end < seq);
        if self.ranges.get(i).is_some_and(|&(start, _)| start <= seq) {
            return false;
        }
        let joins_prev = i > 0
            && self
                .ranges
                .get(i - 1)
                .is_some_and(|&(_, end)| end.checked_add(1) == Some(seq));
        let joins_next = self
            .ranges
            .get(i)
            .is_some_and(|&(start, _)| seq.checked_add(1) == Some(start));
        match (joins_prev, joins_next) {
            (true, true) => {
                let next_end = self.ranges.remove(i).1;
                if let Some(prev) = self.ranges.get_mut(i - 1) {
                    prev.1 = next_end;
                }
            }
            (true, false) => {
                if let Some(prev) = self.ranges.get_mut(i - 1) {
                    prev.1 = seq;
                }
            }
            (false, true) => {
                if let Some(next) = self.ranges.get_mut(i) {
                    next.0 = seq;
                }
            }
            (false, false) => self.ranges.insert(i, (seq, seq)),
        }
        true
    }

    /// Removes every number up to and including `seq`; returns how many.
    pub(super) fn remove_through(&mut self, seq: u64) -> u64 {
        let mut removed = 0;
        self.ranges.retain_mut(|range| {
            if range.1 <= seq {
                removed += range.1 - range.0 + 1;
                false
            } else {
                if range.0 <= seq {
                    removed += seq - range.0 + 1;
                    range.0 = seq + 1;
                }
                true
            }
        });
        removed
    }

    /// The highest number held.
    pub(super) fn max(&self) -> Option<u64> {
        self.ranges.last().map(|&(_, end)| end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_numbers_stay_one_range() {
        let mut s = SeqSet::default();
        for n in 1..=1000 {
            assert!(s.insert(n));
        }
        assert!(!s.insert(500));
        assert_eq!(s.ranges, vec![(1, 1000)]);
        assert_eq!(s.remove_through(10), 10);
        assert_eq!(s.ranges, vec![(11, 1000)]);
        assert_eq!(s.max(), Some(1000));
    }

    #[test]
    fn out_of_order_numbers_merge() {
        let mut s = SeqSet::default();
        for n in [5, 1, 3, 2, 9, 4, 7] {
            assert!(s.insert(n));
        }
        assert_eq!(s.ranges, vec![(1, 5), (7, 7), (9, 9)]);
        assert!(s.insert(8));
        assert_eq!(s.ranges, vec![(1, 5), (7, 9)]);
        assert_eq!(s.remove_through(7), 6);
        assert_eq!(s.ranges, vec![(8, 9)]);
        assert_eq!(s.remove_through(100), 2);
        assert_eq!(s.max(), None);
        assert_eq!(s.remove_through(u64::MAX), 0);
    }
}
