//! The partition map: the index keyspace cut into ranges `[start, end)`, each served by one
//! partition. Today the map has one partition covering everything, served by the local engine; the
//! replicated index keeps this shape with many entries, each a Raft group.

use serde::{Deserialize, Serialize};

/// Identifier of a partition; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId(pub u64);

/// One key range and who serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// The partition.
    pub id: PartitionId,
    /// First key of the range (inclusive).
    pub start: Vec<u8>,
    /// End of the range (exclusive); `None` = the end of the keyspace.
    pub end: Option<Vec<u8>>,
    /// Bumped whenever the range or its replicas change, so stale routing is detected.
    pub epoch: u64,
}

impl Partition {
    /// `true` if `key` falls in this range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }
}

/// Ranges in key order, covering the whole keyspace without gaps or overlaps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMap {
    /// Bumped on every change.
    pub version: u64,
    /// The partitions, sorted by `start`.
    pub partitions: Vec<Partition>,
}

impl PartitionMap {
    /// One partition for the whole keyspace.
    pub fn single() -> Self {
        Self {
            version: 1,
            partitions: vec![Partition {
                id: PartitionId(1),
                start: Vec::new(),
                end: None,
                epoch: 1,
            }],
        }
    }

    /// The partition holding `key`.
    pub fn lookup(&self, key: &[u8]) -> &Partition {
        let i = self
            .partitions
            .partition_point(|p| p.start.as_slice() <= key);
        &self.partitions[i.saturating_sub(1)]
    }

    /// Checks the map covers the keyspace exactly once.
    pub fn validate(&self) -> Result<(), String> {
        let first = self.partitions.first().ok_or("empty partition map")?;
        if !first.start.is_empty() {
            return Err("first partition does not start at the empty key".into());
        }
        for pair in self.partitions.windows(2) {
            if pair[0].end.as_ref() != Some(&pair[1].start) {
                return Err(format!(
                    "gap or overlap between partitions {:?} and {:?}",
                    pair[0].id, pair[1].id
                ));
            }
        }
        match self.partitions.last().and_then(|p| p.end.as_ref()) {
            None => Ok(()),
            Some(_) => Err("last partition does not reach the end of the keyspace".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_the_covering_range() {
        let map = PartitionMap {
            version: 2,
            partitions: vec![
                Partition {
                    id: PartitionId(1),
                    start: vec![],
                    end: Some(b"m".to_vec()),
                    epoch: 1,
                },
                Partition {
                    id: PartitionId(2),
                    start: b"m".to_vec(),
                    end: None,
                    epoch: 1,
                },
            ],
        };
        map.validate().unwrap();
        assert_eq!(map.lookup(b"").id, PartitionId(1));
        assert_eq!(map.lookup(b"lzz").id, PartitionId(1));
        assert_eq!(map.lookup(b"m").id, PartitionId(2));
        assert_eq!(map.lookup(b"\xff").id, PartitionId(2));
        assert!(map.lookup(b"q").contains(b"q"));
        PartitionMap::single().validate().unwrap();
    }
}
