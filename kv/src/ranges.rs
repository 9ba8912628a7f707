//! Sets of key ranges: what a replicated group owns, what its snapshots carry and what installing
//! one replaces (a partition's ranges in every table of the index, plus, for the meta group, the
//! keys outside them), so a snapshot of one group never touches another's keys. Which ranges
//! those are is the index's business (its key schema); this type only does the set arithmetic.

/// One RocksDB entry (key, value), as its iterators yield them.
pub type Entry = Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>;

/// Sorted, disjoint, non-empty `[start, end)` ranges.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "Vec<Range>", from = "Vec<Range>")]
pub struct KeyRanges(Vec<(Vec<u8>, Vec<u8>)>);

/// One range as stored (in the Raft state and snapshot files): base64 bounds.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Range {
    #[serde(with = "crate::engine::b64")]
    start: Vec<u8>,
    #[serde(with = "crate::engine::b64")]
    end: Vec<u8>,
}

impl From<KeyRanges> for Vec<Range> {
    fn from(k: KeyRanges) -> Self {
        k.0.into_iter()
            .map(|(start, end)| Range { start, end })
            .collect()
    }
}

impl From<Vec<Range>> for KeyRanges {
    fn from(v: Vec<Range>) -> Self {
        KeyRanges::new(v.into_iter().map(|r| (r.start, r.end)).collect())
    }
}

/// Above every key the engine is given (the index's keys start with an ASCII table tag).
pub const ABOVE_EVERY_KEY: [u8; 8] = [0xff; 8];

impl KeyRanges {
    /// Every key of the index.
    pub fn everything() -> Self {
        Self(vec![(Vec::new(), ABOVE_EVERY_KEY.to_vec())])
    }

    /// The union of `ranges` (in any order, possibly overlapping or empty).
    pub fn new(mut ranges: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        ranges.retain(|(s, e)| s < e);
        ranges.sort();
        let mut merged: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match merged.last_mut() {
                Some((_, last_end)) if s <= *last_end => {
                    if e > *last_end {
                        *last_end = e;
                    }
                }
                _ => merged.push((s, e)),
            }
        }
        Self(merged)
    }

    /// The keys from `start` up to (not including) `end`; index keys stop below
    /// `0xff…`, so an `end` above them is cut there.
    pub fn span(start: &[u8], end: &[u8]) -> Self {
        let end = end.min(&ABOVE_EVERY_KEY[..]);
        Self::new(vec![(start.to_vec(), end.to_vec())])
    }

    /// The keys of these ranges and of `other`.
    pub fn union(&self, other: &KeyRanges) -> KeyRanges {
        KeyRanges::new(self.0.iter().chain(&other.0).cloned().collect())
    }

    /// Whether some key is in these ranges and in `other`.
    pub fn overlaps(&self, other: &KeyRanges) -> bool {
        !self.partition_by(other).0.is_empty()
    }

    /// The parts of these ranges inside `other`, and the rest.
    pub fn partition_by(&self, other: &KeyRanges) -> (KeyRanges, KeyRanges) {
        let (mut inside, mut outside) = (Vec::new(), Vec::new());
        for (s, e) in &self.0 {
            let mut at = s.clone();
            for (os, oe) in &other.0 {
                if oe <= &at || os >= e {
                    continue;
                }
                if os > &at {
                    outside.push((at.clone(), os.clone()));
                }
                let end = oe.clone().min(e.clone());
                inside.push((os.clone().max(at.clone()), end.clone()));
                at = end;
            }
            if &at < e {
                outside.push((at, e.clone()));
            }
        }
        (KeyRanges::new(inside), KeyRanges::new(outside))
    }

    /// The ranges below `from`'s and those of `from` (a split: `from` is every range the new
    /// half takes, e.g. a route onward in every table).
    pub fn split_off(&self, from: &KeyRanges) -> (KeyRanges, KeyRanges) {
        let (right, left) = self.partition_by(from);
        (left, right)
    }

    /// Whether a scan of `[start, end)` reads only keys of these ranges (a range reaching past
    /// every index key also holds scans bounded anywhere above them).
    pub fn contains_scan(&self, start: &[u8], end: &[u8]) -> bool {
        let i = self.0.partition_point(|(s, _)| s.as_slice() <= start);
        i > 0 && {
            let (_, e) = &self.0[i - 1];
            start < e.as_slice() && (end <= e.as_slice() || e.as_slice() == ABOVE_EVERY_KEY)
        } || start >= end
    }

    /// The first and last key these ranges hold of `[start, end)` (e.g. one table of the index),
    /// as `[first, last)` (`last` `None`: to `end`); `None` if they hold none of it.
    pub fn span_within(&self, start: &[u8], end: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        let (inside, _) = self.partition_by(&KeyRanges::span(start, end));
        let first = inside.0.first()?.0.clone();
        let last = inside.0.last()?.1.clone();
        Some((first, (last.as_slice() < end).then_some(last)))
    }

    /// Whether there are no ranges.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `key` is in one of the ranges.
    pub fn contains(&self, key: &[u8]) -> bool {
        // The last range starting at or before `key` is the only one that can hold it.
        let i = self.0.partition_point(|(s, _)| s.as_slice() <= key);
        i > 0 && key < self.0[i - 1].1.as_slice()
    }

    /// The ranges, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(s, e)| (s.as_slice(), e.as_slice()))
    }

    /// Every entry of `snap` (the default column family) in the ranges, in key order.
    pub fn entries<'a>(
        &'a self,
        snap: &'a rocksdb::Snapshot<'_>,
    ) -> impl Iterator<Item = Entry> + 'a {
        self.iter().flat_map(move |(start, end)| {
            let mut opts = rocksdb::ReadOptions::default();
            opts.set_iterate_upper_bound(end.to_vec());
            snap.iterator_opt(
                rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward),
                opts,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &[u8], e: &[u8]) -> (Vec<u8>, Vec<u8>) {
        (s.to_vec(), e.to_vec())
    }

    #[test]
    fn ranges_are_merged_sorted_and_bounded_half_open() {
        let k = KeyRanges::new(vec![
            r(b"m", b"p"),
            r(b"a", b"c"),
            r(b"b", b"d"),
            r(b"x", b"x"),
        ]);
        assert_eq!(k, KeyRanges::new(vec![r(b"a", b"d"), r(b"m", b"p")]));
        for inside in [&b"a"[..], b"b\0", b"c\xff", b"m", b"o"] {
            assert!(k.contains(inside), "{inside:?}");
        }
        for outside in [&b""[..], b"d", b"e", b"p", b"x", b"z"] {
            assert!(!k.contains(outside), "{outside:?}");
        }
    }

    #[test]
    fn a_split_takes_the_given_ranges_and_leaves_the_rest() {
        let all = KeyRanges::new(vec![r(b"a", b"z")]);
        let (left, right) = all.split_off(&KeyRanges::new(vec![r(b"m", b"p"), r(b"x", b"\xff")]));
        assert_eq!(left, KeyRanges::new(vec![r(b"a", b"m"), r(b"p", b"x")]));
        assert_eq!(right, KeyRanges::new(vec![r(b"m", b"p"), r(b"x", b"z")]));
        assert_eq!(left.union(&right), all);
        assert!(!left.overlaps(&right));
    }

    #[test]
    fn the_span_within_a_table_is_its_first_and_last_key_held() {
        let k = KeyRanges::new(vec![r(b"A", b"B"), r(b"Ob", b"Od"), r(b"Of", b"Q")]);
        assert_eq!(k.span_within(b"O", b"P"), Some((b"Ob".to_vec(), None)));
        assert_eq!(
            k.span_within(b"O", b"Oe"),
            Some((b"Ob".to_vec(), Some(b"Od".to_vec())))
        );
        // Held up to the end of the span asked: open-ended.
        assert_eq!(k.span_within(b"Oa", b"Oc"), Some((b"Ob".to_vec(), None)));
        assert_eq!(k.span_within(b"Q", b"R"), None);
        assert!(KeyRanges::everything().contains(b"\xfe anything"));
    }
}
