//! The key ranges of the index a Raft group's state machine owns: what its snapshots carry and
//! what installing one replaces. Today the one group owns every key ([`KeyRanges::everything`]);
//! a group per partition will own its partition's `keys::table_ranges` (plus, for the meta
//! group, `keys::meta_ranges`), so a snapshot of one group never touches another's keys.

/// One RocksDB entry (key, value), as its iterators yield them.
pub type Entry = Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>;

/// Object routes `[start, end)` (`end` `None`: to the last route).
pub type RouteSpan = (Vec<u8>, Option<Vec<u8>>);

/// Sorted, disjoint, non-empty `[start, end)` ranges.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "Vec<Range>", from = "Vec<Range>")]
pub struct KeyRanges(Vec<(Vec<u8>, Vec<u8>)>);

/// One range as stored (in the Raft state and snapshot files): base64 bounds.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Range {
    #[serde(with = "crate::index::engine::b64")]
    start: Vec<u8>,
    #[serde(with = "crate::index::engine::b64")]
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

/// Above every index key (they start with an ASCII table tag).
const ABOVE_EVERY_KEY: [u8; 8] = [0xff; 8];

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

    /// Split at the route `at` (see `keys::route`): the records of routes before it, and those
    /// of `at` and after, in every table these ranges hold.
    pub fn split_at_route(&self, at: &[u8]) -> (KeyRanges, KeyRanges) {
        let from_at = KeyRanges::new(crate::index::keys::table_ranges(at, None));
        let (right, left) = self.partition_by(&from_at);
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

    /// The object routes these ranges hold (their part of the `O` table), as `[start, end)`
    /// (`end` `None`: to the table's end); `None` if they hold none.
    pub fn object_routes(&self) -> Option<RouteSpan> {
        let table = [crate::index::keys::tag::OBJECT];
        let table_end = [crate::index::keys::tag::OBJECT + 1];
        let (inside, _) = self.partition_by(&KeyRanges::span(&table, &table_end));
        let start = inside.0.first()?.0.clone();
        let end = inside.0.last()?.1.clone();
        Some((start, (end.as_slice() < &table_end[..]).then_some(end)))
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
    use crate::index::keys;

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
    fn a_split_at_a_route_cuts_every_data_table_and_keeps_the_meta_tables_left() {
        let all = KeyRanges::everything();
        let at = keys::object("b", "m");
        let (left, right) = all.split_at_route(&at);
        assert_eq!(left.union(&right), all, "the halves cover every key");
        assert!(!left.overlaps(&right) && !right.overlaps(&left));
        assert!(left.overlaps(&all) && all.overlaps(&right));
        for key in [
            keys::bucket("b"),
            keys::meta("partition-map"),
            keys::object("b", "a"),
            keys::version("b", "l", 1),
            keys::upload("b", "l", "u"),
        ] {
            assert!(left.contains(&key) && !right.contains(&key), "{key:?}");
        }
        for key in [
            keys::object("b", "m"),
            keys::object("c", "a"),
            keys::version("b", "m", 1),
            keys::part("b", "z", "u", 3),
        ] {
            assert!(right.contains(&key) && !left.contains(&key), "{key:?}");
        }
        // Splitting the right half again leaves three disjoint groups covering everything.
        let (middle, last) = right.split_at_route(&keys::object("c", ""));
        assert!(middle.contains(&keys::object("b", "z")));
        assert!(last.contains(&keys::object("c", "a")));
        assert!(!middle.contains(&keys::object("c", "a")));
        let json = serde_json::to_string(&middle).unwrap();
        assert_eq!(serde_json::from_str::<KeyRanges>(&json).unwrap(), middle);
    }

    #[test]
    fn everything_holds_every_index_key() {
        let all = KeyRanges::everything();
        for key in [
            keys::bucket("b"),
            keys::object("b", "k"),
            keys::version("b", "k", 7),
            keys::meta("partition-map"),
        ] {
            assert!(all.contains(&key));
        }
    }

    #[test]
    fn a_partition_owns_its_routes_in_every_data_table_and_nothing_else() {
        let start = keys::object("b", "k");
        let end = keys::object("b", "m");
        let part = KeyRanges::new(keys::table_ranges(&start, Some(&end)));
        assert!(part.contains(&keys::object("b", "l")));
        assert!(part.contains(&keys::version("b", "l", 3)));
        assert!(part.contains(&keys::upload("b", "l", "u1")));
        assert!(!part.contains(&keys::object("b", "m")));
        assert!(!part.contains(&keys::version("b", "a", 3)));
        assert!(!part.contains(&keys::bucket("b")));
        assert!(!part.contains(&keys::meta("partition-map")));
        // The meta ranges and the data tables together cover the keyspace without overlap.
        let meta = KeyRanges::new(keys::meta_ranges());
        for key in [keys::object("b", "l"), keys::version("b", "l", 3)] {
            assert!(!meta.contains(&key));
        }
        assert!(meta.contains(&keys::meta("partition-map")));
        assert!(meta.contains(&keys::bucket("b")));
    }
}
