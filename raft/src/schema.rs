//! What the replicated layer needs to know of the keys it replicates, told by the model that
//! owns them. The layer itself sees byte ranges only; the index (in the gateway) implements
//! [`KeySchema`] and passes it to [`crate::Consensus::start`].

use cairn_kv::{EngineError, Entries, KeyRanges};

/// Reads the entries of `[start, end)` a group holds (what [`KeySchema::split_copies`] is given).
pub type RangeScan<'a> = dyn Fn(&[u8], &[u8]) -> Result<Entries, EngineError> + 'a;

/// First byte of the keys this layer keeps its own records under (where groups run, the
/// retiring gateways), in the meta group: a schema must route every key starting with it to
/// the meta group and never use it for its own records (the index's `M` table is this prefix:
/// its key test checks that `keys::meta(name)` is [`record_key`]`(name)`).
pub const RECORD_PREFIX: u8 = b'M';

/// The key of this layer's record `name`.
pub fn record_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(RECORD_PREFIX);
    k.extend_from_slice(name.as_bytes());
    k
}

/// A model's rules for the keys of a replicated group. Every replica applies them at the same
/// log position, so they must be deterministic functions of their arguments and of the state
/// read through them.
pub trait KeySchema: Send + Sync + 'static {
    /// Every key range of the records routed at `route` or after it, in every table: what a
    /// split at `route` hands (as far as the parent owns it) to the new group.
    fn ranges_from_route(&self, route: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)>;

    /// The table whose keys are the routes themselves, `[start, end)`: the span of it a group
    /// holds names the group in logs and status.
    fn route_table(&self) -> (Vec<u8>, Vec<u8>);

    /// Records a split at `route` must write into the new group besides what it is handed,
    /// read from the parent's state through `scan` (`[start, end)`, the parent's keys only):
    /// e.g. the index copies a deletion fence of a bucket the split cuts, so that both halves
    /// stay fenced.
    fn split_copies(&self, route: &[u8], scan: &RangeScan<'_>) -> Result<Entries, EngineError>;

    /// `key` as an operator reads it in logs and status.
    fn readable(&self, key: &[u8]) -> String {
        key.escape_ascii().to_string()
    }

    /// The span of routes that `ranges` hold, `[first, last)` (`last` `None`: to the table's
    /// end); `None` if they hold none.
    fn routes_of(&self, ranges: &KeyRanges) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        let (start, end) = self.route_table();
        ranges.span_within(&start, &end)
    }
}

/// A schema of one table, `T` + route, for this crate's tests and for callers that replicate
/// plain keys: every key is a route, splits copy nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlatSchema;

impl KeySchema for FlatSchema {
    fn ranges_from_route(&self, route: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![(route.to_vec(), cairn_kv::ABOVE_EVERY_KEY.to_vec())]
    }

    fn route_table(&self) -> (Vec<u8>, Vec<u8>) {
        (Vec::new(), cairn_kv::ABOVE_EVERY_KEY.to_vec())
    }

    fn split_copies(&self, _route: &[u8], _scan: &RangeScan<'_>) -> Result<Entries, EngineError> {
        Ok(Vec::new())
    }
}

/// Keys laid out as the index lays them (tables by a tag byte, records routed by bucket and
/// key), simplified, for this crate's tests: `O` objects, `U` uploads and parts, `V` versions
/// are data tables; `B` buckets and `M` records stay with the meta group.
#[cfg(test)]
pub(crate) mod test_keys {
    use super::*;

    /// The layout number these tests open engines with.
    pub const LAYOUT: u32 = 1;

    const DATA: [u8; 3] = [b'O', b'U', b'V'];

    fn key(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut k = vec![tag];
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                k.push(0);
            }
            k.extend_from_slice(p);
        }
        k
    }

    pub fn object(bucket: &str, name: &str) -> Vec<u8> {
        key(b'O', &[bucket.as_bytes(), name.as_bytes()])
    }

    pub fn version(bucket: &str, name: &str, n: u64) -> Vec<u8> {
        key(
            b'V',
            &[bucket.as_bytes(), name.as_bytes(), &n.to_be_bytes()],
        )
    }

    pub fn upload(bucket: &str, name: &str, id: &str) -> Vec<u8> {
        key(b'U', &[bucket.as_bytes(), name.as_bytes(), id.as_bytes()])
    }

    pub fn part(bucket: &str, name: &str, id: &str, n: u32) -> Vec<u8> {
        key(
            b'U',
            &[
                bucket.as_bytes(),
                name.as_bytes(),
                id.as_bytes(),
                &n.to_be_bytes(),
            ],
        )
    }

    pub fn bucket(name: &str) -> Vec<u8> {
        key(b'B', &[name.as_bytes()])
    }

    pub fn meta(name: &str) -> Vec<u8> {
        record_key(name)
    }

    /// The ranges of the records routed in `[start, end)` (object keys), in every data table.
    pub fn table_ranges(start: &[u8], end: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
        DATA.iter()
            .map(|&t| {
                let from = [&[t][..], &start[1..]].concat();
                let to = match end {
                    Some(e) => [&[t][..], &e[1..]].concat(),
                    None => vec![t + 1],
                };
                (from, to)
            })
            .filter(|(s, e)| s < e)
            .collect()
    }

    /// This layout as a [`KeySchema`].
    pub struct Tables;

    impl KeySchema for Tables {
        fn ranges_from_route(&self, route: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
            table_ranges(route, None)
        }

        fn route_table(&self) -> (Vec<u8>, Vec<u8>) {
            (b"O".to_vec(), b"P".to_vec())
        }

        fn split_copies(
            &self,
            _route: &[u8],
            _scan: &RangeScan<'_>,
        ) -> Result<Entries, EngineError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_split_at_a_route_cuts_every_data_table_and_keeps_the_meta_tables_left() {
        let all = KeyRanges::everything();
        let (left, right) =
            all.split_off(&KeyRanges::new(Tables.ranges_from_route(&object("b", "m"))));
        assert_eq!(left.union(&right), all);
        for k in [
            bucket("b"),
            meta("x"),
            object("b", "a"),
            version("b", "l", 1),
        ] {
            assert!(left.contains(&k) && !right.contains(&k), "{k:?}");
        }
        for k in [
            object("b", "m"),
            upload("b", "z", "u"),
            part("b", "z", "u", 3),
        ] {
            assert!(right.contains(&k) && !left.contains(&k), "{k:?}");
        }
        assert_eq!(Tables.routes_of(&right), Some((object("b", "m"), None)));
        assert_eq!(
            Tables.routes_of(&KeyRanges::new(vec![(bucket("a"), bucket("c"))])),
            None
        );
    }
}
