//! The index's key schema as the replicated layer sees it ([`cairn_raft::schema::KeySchema`]):
//! where a split at a route cuts every data table, which table names the routes, and the bucket
//! deletion fences a split copies into both halves. `cairn-raft` knows nothing else of the keys.

use cairn_kv::{EngineError, Entries, KeyRanges};
use cairn_raft::schema::{KeySchema, RangeScan};

use super::keys::{self, tag};

/// Object routes `[start, end)` (`end` `None`: to the last route).
pub type RouteSpan = (Vec<u8>, Option<Vec<u8>>);

/// The index's [`KeySchema`].
#[derive(Debug, Default, Clone, Copy)]
pub struct IndexSchema;

impl KeySchema for IndexSchema {
    fn ranges_from_route(&self, route: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        keys::table_ranges(route, None)
    }

    fn route_table(&self) -> (Vec<u8>, Vec<u8>) {
        (vec![tag::OBJECT], vec![tag::OBJECT + 1])
    }

    /// Every fence the parent holds of the bucket `route` cuts, copied at `route` (see
    /// `Index::delete_bucket`): a part fenced once stays fenced whatever splits follow.
    fn split_copies(&self, route: &[u8], scan: &RangeScan<'_>) -> Result<Entries, EngineError> {
        let Some(bucket) = keys::route_bucket(route) else {
            return Ok(Vec::new());
        };
        let bucket_start = [&[tag::OBJECT][..], bucket, &[0]].concat();
        let (start, end) = keys::table_range(tag::FENCE, &bucket_start, Some(route));
        Ok(scan(&start, &end)?
            .into_iter()
            .filter_map(|(key, value)| {
                let copy = keys::fence_nonce(&key).and_then(|n| keys::fence_at(route, n))?;
                Some((copy, value))
            })
            .collect())
    }

    fn readable(&self, key: &[u8]) -> String {
        keys::readable(key)
    }
}

/// Route arithmetic on a group's ranges, in the index's schema.
pub trait Routes {
    /// The records of routes before `at`, and those of `at` and after, in every table.
    fn split_at_route(&self, at: &[u8]) -> (KeyRanges, KeyRanges);
    /// The object routes these ranges hold; `None` if none.
    fn object_routes(&self) -> Option<RouteSpan>;
}

impl Routes for KeyRanges {
    fn split_at_route(&self, at: &[u8]) -> (KeyRanges, KeyRanges) {
        self.split_off(&KeyRanges::new(IndexSchema.ranges_from_route(at)))
    }

    fn object_routes(&self) -> Option<RouteSpan> {
        IndexSchema.routes_of(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_kv::{KvEngine, MemEngine, WriteOp};

    #[test]
    fn the_replicated_layers_records_are_meta_records() {
        assert_eq!(
            keys::meta("group-layout/7"),
            cairn_raft::schema::record_key("group-layout/7")
        );
        let k = cairn_raft::schema::record_key("retiring-gateways");
        assert_eq!(keys::route(&k).as_ref(), k.as_slice());
        assert!(KeyRanges::new(keys::meta_ranges()).contains(&k));
    }

    #[test]
    fn a_split_copies_the_fences_of_the_bucket_it_cuts_and_no_other() {
        let engine = MemEngine::default();
        let at = keys::object("b", "m");
        let fence_b = keys::fence_at(&keys::object("b", "a"), 7).unwrap();
        let fence_c = keys::fence_at(&keys::object("c", "a"), 8).unwrap();
        engine
            .write(vec![
                WriteOp::Put(fence_b, b"b".to_vec()),
                WriteOp::Put(fence_c, b"c".to_vec()),
            ])
            .unwrap();
        let scan = |s: &[u8], e: &[u8]| engine.scan(s, e, usize::MAX);
        let copies = IndexSchema.split_copies(&at, &scan).unwrap();
        assert_eq!(
            copies,
            vec![(keys::fence_at(&at, 7).unwrap(), b"b".to_vec())]
        );
        // A route outside every bucket's objects copies nothing.
        assert!(
            IndexSchema
                .split_copies(&keys::meta("x"), &scan)
                .unwrap()
                .is_empty()
        );
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
