//! Index groups this gateway runs no replica of: where they are, and reads their replicas serve.
//!
//! A gateway routes an operation by the groups it hosts. A key owned by none of them (its
//! replica of the owning group is still starting, was stopped, or was forgotten after a failed
//! absorb; or, once groups live on fewer gateways than the fleet, was never here) is routed by a
//! directory: the layout the meta leader records in the meta group ([`super::layout`]), and the
//! answers of the peers to `GET /internal/v1/index/groups` (the groups each runs, their ranges,
//! members and leader); the freshest description per group wins.
//!
//! The directory is a hint. A replica serving a remote read first passes its own read barrier
//! and then checks that its group still owns every key read (`Moved` otherwise, and the reader
//! learns the directory again), so a stale entry costs a retry, never a wrong answer. Writes to a
//! remote group go to its leader as forwarded proposals; their guards are checked in the group's
//! log as for any proposal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::store::GroupId;
use cairn_kv::KeyRanges;
use cairn_kv::{EngineError, Entries, KvEngine, b64};

/// One group as a replica of it describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupReplica {
    /// The group.
    pub group: GroupId,
    /// The keys it owns, as that replica has applied.
    pub ranges: KeyRanges,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Members without a vote.
    pub learners: Vec<u64>,
    /// Its leader, if that replica knows one.
    pub leader: Option<u64>,
    /// The last log index that replica applied (the freshest description wins).
    pub applied: Option<u64>,
}

impl GroupReplica {
    /// The members to ask, the leader first (any replica serves a read once past its barrier;
    /// only the leader takes proposals).
    pub fn members(&self) -> Vec<u64> {
        let mut out: Vec<u64> = self.leader.into_iter().collect();
        for id in self.voters.iter().chain(&self.learners) {
            if !out.contains(id) {
                out.push(*id);
            }
        }
        out
    }
}

/// One read of a remote group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteRead {
    /// The value at `key`.
    Get {
        #[serde(with = "b64")]
        key: Vec<u8>,
    },
    /// Up to `limit` entries with `start <= key < end`.
    Scan {
        #[serde(with = "b64")]
        start: Vec<u8>,
        #[serde(with = "b64")]
        end: Vec<u8>,
        limit: u64,
    },
}

/// Bytes as base64 in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bytes(#[serde(with = "b64")] pub Vec<u8>);

/// What one [`RemoteRead`] returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadValue {
    /// A get's value.
    Value(Option<Bytes>),
    /// A scan's entries.
    Entries(Vec<(Bytes, Bytes)>),
}

impl ReadValue {
    /// A get's value (`None` also for a scan's answer, which a get never receives).
    pub fn into_value(self) -> Option<Vec<u8>> {
        match self {
            ReadValue::Value(v) => v.map(|b| b.0),
            ReadValue::Entries(_) => None,
        }
    }

    /// A scan's entries (empty for a get's answer).
    pub fn into_entries(self) -> Entries {
        match self {
            ReadValue::Entries(e) => e.into_iter().map(|(k, v)| (k.0, v.0)).collect(),
            ReadValue::Value(_) => Vec::new(),
        }
    }
}

/// A replica's answer to remote reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteAnswer {
    /// One value per read, in order.
    Values(Vec<ReadValue>),
    /// The group no longer owns some key read (it split or was frozen for a merge meanwhile).
    Moved,
}

/// Serves `reads` from `engine`, a replica of a group owning `owned` (past its read barrier).
pub fn answer(
    engine: &dyn KvEngine,
    owned: &KeyRanges,
    reads: &[RemoteRead],
) -> Result<RemoteAnswer, EngineError> {
    let inside = reads.iter().all(|r| match r {
        RemoteRead::Get { key } => owned.contains(key),
        RemoteRead::Scan { start, end, .. } => owned.contains_scan(start, end),
    });
    if !inside {
        return Ok(RemoteAnswer::Moved);
    }
    let values = reads
        .iter()
        .map(|r| match r {
            RemoteRead::Get { key } => engine.get(key).map(|v| ReadValue::Value(v.map(Bytes))),
            RemoteRead::Scan { start, end, limit } => {
                let limit = usize::try_from(*limit).unwrap_or(usize::MAX);
                let entries = engine.scan(start, end, limit)?;
                Ok(ReadValue::Entries(
                    entries
                        .into_iter()
                        .map(|(k, v)| (Bytes(k), Bytes(v)))
                        .collect(),
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(RemoteAnswer::Values(values))
}

/// The groups the peers run and this gateway does not, as last learned.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    groups: BTreeMap<GroupId, GroupReplica>,
}

impl Directory {
    /// The directory from the peers' answers: per group, the description of the replica that
    /// applied the most; groups in `local` (run here) left out.
    pub fn learn(answers: impl IntoIterator<Item = GroupReplica>, local: &[GroupId]) -> Self {
        let mut groups: BTreeMap<GroupId, GroupReplica> = BTreeMap::new();
        for g in answers.into_iter().filter(|g| !local.contains(&g.group)) {
            match groups.get(&g.group) {
                Some(known) if known.applied >= g.applied => {}
                _ => {
                    groups.insert(g.group, g);
                }
            }
        }
        Self { groups }
    }

    /// The group's description, if known.
    pub fn get(&self, group: GroupId) -> Option<&GroupReplica> {
        self.groups.get(&group)
    }

    /// The known groups owning some key of `holes`, each with the part of `holes` it owns (in
    /// id order; a key claimed by two stale descriptions goes to the first), and what no known
    /// group owns.
    pub fn cover(&self, holes: &KeyRanges) -> (Vec<(GroupId, KeyRanges)>, KeyRanges) {
        let mut rest = holes.clone();
        let mut found = Vec::new();
        for (id, g) in &self.groups {
            if rest.is_empty() {
                break;
            }
            let (inside, outside) = rest.partition_by(&g.ranges);
            if !inside.is_empty() {
                found.push((*id, inside));
                rest = outside;
            }
        }
        (found, rest)
    }

    /// The known groups, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &GroupReplica> {
        self.groups.values()
    }

    /// How many groups it knows.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether it knows no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_kv::{MemEngine, WriteOp};

    fn replica(group: GroupId, s: &str, e: &str, applied: u64) -> GroupReplica {
        GroupReplica {
            group,
            ranges: KeyRanges::span(s.as_bytes(), e.as_bytes()),
            voters: vec![1, 2, 3],
            learners: vec![4],
            leader: Some(2),
            applied: Some(applied),
        }
    }

    #[test]
    fn the_freshest_description_of_each_group_wins_and_local_groups_are_left_out() {
        // Replica 3 of group 5 has not applied the split that shrank it to [m, p).
        let dir = Directory::learn(
            [
                replica(5, "m", "z", 10),
                replica(5, "m", "p", 12),
                replica(6, "p", "z", 3),
                replica(7, "a", "m", 9),
            ],
            &[7],
        );
        assert_eq!(dir.len(), 2);
        assert_eq!(dir.get(5).unwrap().ranges, KeyRanges::span(b"m", b"p"));
        assert!(dir.get(7).is_none());
        let (found, rest) = dir.cover(&KeyRanges::span(b"k", b"q"));
        assert_eq!(
            found,
            vec![
                (5, KeyRanges::span(b"m", b"p")),
                (6, KeyRanges::span(b"p", b"q"))
            ]
        );
        assert_eq!(rest, KeyRanges::span(b"k", b"m"));
        assert_eq!(dir.get(5).unwrap().members(), vec![2, 1, 3, 4]);
    }

    #[test]
    fn a_replica_answers_only_reads_its_group_owns() {
        let e = MemEngine::default();
        e.write(vec![
            WriteOp::Put(b"b".to_vec(), b"1".to_vec()),
            WriteOp::Put(b"c".to_vec(), b"2".to_vec()),
        ])
        .unwrap();
        let owned = KeyRanges::span(b"a", b"m");
        let reads = vec![
            RemoteRead::Get { key: b"b".to_vec() },
            RemoteRead::Get { key: b"x".to_vec() },
        ];
        assert_eq!(answer(&e, &owned, &reads).unwrap(), RemoteAnswer::Moved);
        let reads = vec![
            RemoteRead::Get { key: b"b".to_vec() },
            RemoteRead::Get { key: b"d".to_vec() },
            RemoteRead::Scan {
                start: b"a".to_vec(),
                end: b"m".to_vec(),
                limit: 1,
            },
        ];
        let got = answer(&e, &owned, &reads).unwrap();
        let bytes = |s: &str| Bytes(s.as_bytes().to_vec());
        let want = RemoteAnswer::Values(vec![
            ReadValue::Value(Some(bytes("1"))),
            ReadValue::Value(None),
            ReadValue::Entries(vec![(bytes("b"), bytes("1"))]),
        ]);
        assert_eq!(got, want);
        let text = serde_json::to_string(&got).unwrap();
        assert_eq!(serde_json::from_str::<RemoteAnswer>(&text).unwrap(), want);
    }
}
