//! The partition map: the index keyspace cut into ranges `[start, end)`. The map is itself an
//! index record (`M partition-map`), so a split or merge is one committed write, replicated like
//! any other, and every gateway sees the same map at the same log position.
//!
//! The first partition, `["", "O")`, is the *meta* partition: buckets, configuration, access keys,
//! the garbage queue and the map itself. Object entries start at `O` and are the ranges that split
//! and merge by load ([`load`], [`policy`]).

pub mod load;
pub mod policy;

use serde::{Deserialize, Serialize};

use super::keys;

/// Identifier of a partition; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId(pub u64);

impl std::fmt::Display for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a split or merge cannot be applied to a map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// No partition has this id.
    #[error("no partition {0}")]
    NoSuchPartition(PartitionId),
    /// The split key is not strictly inside the partition's range.
    #[error("split key is not strictly inside partition {0}")]
    SplitKeyOutside(PartitionId),
    /// The meta partition is never split or merged.
    #[error("the meta partition is never split or merged")]
    Meta,
    /// The partition is the last one: it has no right neighbour to merge with.
    #[error("partition {0} has no right neighbour")]
    NoNeighbour(PartitionId),
}

/// One key range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// The partition.
    pub id: PartitionId,
    /// First key of the range (inclusive).
    #[serde(with = "cairn_kv::b64")]
    pub start: Vec<u8>,
    /// End of the range (exclusive); `None` = the end of the keyspace.
    #[serde(default, with = "opt_b64")]
    pub end: Option<Vec<u8>>,
    /// Bumped whenever the range changes, so stale routing is detected.
    pub epoch: u64,
}

impl Partition {
    /// `true` if `key` falls in this range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }

    /// `true` for the meta partition (everything before the object entries).
    pub fn is_meta(&self) -> bool {
        self.start.as_slice() < first_object_key().as_slice()
    }

    /// The range's end as a scan bound (`0xff...` standing in for the end of the keyspace: index
    /// keys start with an ASCII tag, so none reaches it).
    pub fn end_bound(&self) -> Vec<u8> {
        self.end.clone().unwrap_or_else(|| vec![0xff; 8])
    }

    /// The index key ranges holding this partition's records: one per data table for an object
    /// range (see [`keys::table_ranges`]), everything outside the data tables for the meta one.
    pub fn key_ranges(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        if self.is_meta() {
            keys::meta_ranges()
        } else {
            keys::table_ranges(&self.start, self.end.as_deref())
        }
    }

    /// The range of current-object keys (`O`) in this partition (empty for the meta one).
    pub fn object_keys(&self) -> (Vec<u8>, Vec<u8>) {
        let table_end = vec![keys::tag::OBJECT + 1];
        let start = self.start.clone().max(first_object_key());
        let end = self.end.clone().unwrap_or(table_end.clone()).min(table_end);
        (start, end)
    }
}

/// The first key of the object ranges (the end of the meta partition).
pub fn first_object_key() -> Vec<u8> {
    vec![keys::tag::OBJECT]
}

/// Ranges in key order, covering the whole keyspace without gaps or overlaps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMap {
    /// Bumped on every change.
    pub version: u64,
    /// The next id to hand out (ids are never reused, even after a merge).
    #[serde(default)]
    pub next_id: u64,
    /// The partitions, sorted by `start`.
    pub partitions: Vec<Partition>,
}

impl Default for PartitionMap {
    fn default() -> Self {
        Self::initial()
    }
}

impl PartitionMap {
    /// The map of a new index: the meta partition and one partition for every object entry.
    pub fn initial() -> Self {
        Self {
            version: 1,
            next_id: 3,
            partitions: vec![
                Partition {
                    id: PartitionId(1),
                    start: Vec::new(),
                    end: Some(first_object_key()),
                    epoch: 1,
                },
                Partition {
                    id: PartitionId(2),
                    start: first_object_key(),
                    end: None,
                    epoch: 1,
                },
            ],
        }
    }

    /// The partition holding `key`.
    pub fn lookup(&self, key: &[u8]) -> &Partition {
        let i = self
            .partitions
            .partition_point(|p| p.start.as_slice() <= key);
        &self.partitions[i.saturating_sub(1)]
    }

    /// The partition with this id.
    pub fn get(&self, id: PartitionId) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.id == id)
    }

    /// The right neighbour of partition `id`, if both exist.
    pub fn right_of(&self, id: PartitionId) -> Option<&Partition> {
        let i = self.partitions.iter().position(|p| p.id == id)?;
        self.partitions.get(i + 1)
    }

    fn position(&self, id: PartitionId) -> Result<usize, MapError> {
        self.partitions
            .iter()
            .position(|p| p.id == id)
            .ok_or(MapError::NoSuchPartition(id))
    }

    /// The map with partition `id` cut at `at`: the left half keeps the id, the right half gets a
    /// new one; both get a new epoch.
    pub fn split(&self, id: PartitionId, at: &[u8]) -> Result<PartitionMap, MapError> {
        let i = self.position(id)?;
        let p = &self.partitions[i];
        if p.is_meta() {
            return Err(MapError::Meta);
        }
        if at <= p.start.as_slice() || !p.contains(at) {
            return Err(MapError::SplitKeyOutside(id));
        }
        let mut next = self.clone();
        next.version += 1;
        let new_id = PartitionId(next.next_id.max(self.max_id() + 1));
        next.next_id = new_id.0 + 1;
        let epoch = p.epoch + 1;
        let right = Partition {
            id: new_id,
            start: at.to_vec(),
            end: p.end.clone(),
            epoch,
        };
        next.partitions[i].end = Some(at.to_vec());
        next.partitions[i].epoch = epoch;
        next.partitions.insert(i + 1, right);
        Ok(next)
    }

    /// The map with partition `left` and its right neighbour joined under `left`'s id.
    pub fn merge(&self, left: PartitionId) -> Result<PartitionMap, MapError> {
        let i = self.position(left)?;
        if self.partitions[i].is_meta() {
            return Err(MapError::Meta);
        }
        let right = self
            .partitions
            .get(i + 1)
            .ok_or(MapError::NoNeighbour(left))?
            .clone();
        let mut next = self.clone();
        next.version += 1;
        next.next_id = self.next_id.max(self.max_id() + 1);
        let joined = &mut next.partitions[i];
        joined.end = right.end;
        joined.epoch = joined.epoch.max(right.epoch) + 1;
        next.partitions.remove(i + 1);
        Ok(next)
    }

    fn max_id(&self) -> u64 {
        self.partitions.iter().map(|p| p.id.0).max().unwrap_or(0)
    }

    /// Checks the map covers the keyspace exactly once, with unique ids.
    pub fn validate(&self) -> Result<(), String> {
        let first = self.partitions.first().ok_or("empty partition map")?;
        if !first.start.is_empty() {
            return Err("first partition does not start at the empty key".into());
        }
        for pair in self.partitions.windows(2) {
            if pair[0].end.as_ref() != Some(&pair[1].start) || pair[0].start >= pair[1].start {
                return Err(format!(
                    "gap or overlap between partitions {} and {}",
                    pair[0].id, pair[1].id
                ));
            }
        }
        let mut ids: Vec<_> = self.partitions.iter().map(|p| p.id).collect();
        ids.sort();
        ids.dedup();
        if ids.len() != self.partitions.len() {
            return Err("duplicate partition id".into());
        }
        match self.partitions.last().and_then(|p| p.end.as_ref()) {
            None => Ok(()),
            Some(_) => Err("last partition does not reach the end of the keyspace".into()),
        }
    }
}

/// The route (see [`keys::route`]) a write batch counts against for load: its first
/// current-object key (the object the S3 request wrote), else the route of its first record of
/// an object (a version, upload, part or garbage record), else its first key (bucket or
/// configuration bookkeeping).
pub fn load_key(ops: &[cairn_kv::WriteOp]) -> Option<std::borrow::Cow<'_, [u8]>> {
    use cairn_kv::WriteOp;
    fn key(op: &WriteOp) -> &[u8] {
        match op {
            WriteOp::Put(k, _) | WriteOp::Delete(k) => k,
        }
    }
    let tagged = |tags: &[u8]| {
        ops.iter()
            .map(key)
            .find(|k| k.first().is_some_and(|t| tags.contains(t)))
    };
    tagged(&[keys::tag::OBJECT])
        .or_else(|| tagged(&keys::tag::DATA))
        .or_else(|| ops.first().map(key))
        .map(keys::route)
}

/// `Option<Vec<u8>>` as an optional base64 string.
mod opt_b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => cairn_kv::b64::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        use base64::Engine as _;
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(k: &str) -> Vec<u8> {
        keys::object("b", k)
    }

    #[test]
    fn lookup_finds_the_covering_range() {
        let map = PartitionMap::initial();
        map.validate().unwrap();
        let map = map.split(PartitionId(2), &obj("m")).unwrap();
        map.validate().unwrap();
        assert_eq!(map.lookup(b"").id, PartitionId(1));
        assert_eq!(map.lookup(&keys::bucket("b")).id, PartitionId(1));
        assert_eq!(map.lookup(&obj("lzz")).id, PartitionId(2));
        assert_eq!(map.lookup(&obj("m")).id, PartitionId(3));
        assert_eq!(map.lookup(b"\xff").id, PartitionId(3));
        assert!(map.lookup(&obj("q")).contains(&obj("q")));
    }

    #[test]
    fn splits_and_merges_keep_the_keyspace_covered_and_ids_fresh() {
        let map = PartitionMap::initial();
        let a = map.split(PartitionId(2), &obj("g")).unwrap();
        let b = a.split(PartitionId(3), &obj("p")).unwrap();
        assert_eq!(b.partitions.len(), 4);
        b.validate().unwrap();
        let c = b.merge(PartitionId(3)).unwrap();
        c.validate().unwrap();
        assert_eq!(c.partitions.len(), 3);
        assert_eq!(c.get(PartitionId(3)).unwrap().end, None);
        assert!(c.get(PartitionId(4)).is_none());
        // The id of the merged-away partition is never handed out again.
        let d = c.split(PartitionId(3), &obj("x")).unwrap();
        assert_eq!(d.partitions.last().unwrap().id, PartitionId(5));
        assert!(d.version > c.version && c.version > b.version);
        // Epochs only grow.
        assert!(d.get(PartitionId(3)).unwrap().epoch > b.get(PartitionId(3)).unwrap().epoch);
    }

    #[test]
    fn bad_splits_and_merges_are_refused() {
        let map = PartitionMap::initial();
        assert_eq!(map.split(PartitionId(1), b"B"), Err(MapError::Meta));
        assert_eq!(map.merge(PartitionId(1)), Err(MapError::Meta));
        assert_eq!(
            map.split(PartitionId(2), &first_object_key()),
            Err(MapError::SplitKeyOutside(PartitionId(2)))
        );
        assert_eq!(
            map.split(PartitionId(9), &obj("a")),
            Err(MapError::NoSuchPartition(PartitionId(9)))
        );
        assert_eq!(
            map.merge(PartitionId(2)),
            Err(MapError::NoNeighbour(PartitionId(2)))
        );
        let split = map.split(PartitionId(2), &obj("m")).unwrap();
        assert_eq!(
            split.split(PartitionId(2), &obj("n")),
            Err(MapError::SplitKeyOutside(PartitionId(2)))
        );
    }

    #[test]
    fn a_batch_counts_against_the_object_it_wrote() {
        use cairn_kv::WriteOp;
        let put = |k: Vec<u8>| WriteOp::Put(k, vec![]);
        let ops = vec![
            put(keys::version("b", "k", 3)),
            put(keys::garbage("b", "j", 1, &[0; 16])),
            put(obj("k")),
        ];
        assert_eq!(load_key(&ops).as_deref(), Some(obj("k").as_slice()));
        let gc = vec![WriteOp::Delete(keys::garbage("b", "j", 1, &[0; 16]))];
        assert_eq!(load_key(&gc).as_deref(), Some(obj("j").as_slice()));
        let bucket = vec![put(keys::bucket("b"))];
        assert_eq!(
            load_key(&bucket).as_deref(),
            Some(keys::bucket("b").as_slice())
        );
        assert_eq!(load_key(&[]), None);
    }

    #[test]
    fn the_map_round_trips_through_json() {
        let map = PartitionMap::initial()
            .split(PartitionId(2), &obj("m"))
            .unwrap();
        let text = serde_json::to_string(&map).unwrap();
        assert_eq!(serde_json::from_str::<PartitionMap>(&text).unwrap(), map);
    }
}
