//! Where the data groups run, kept as records of the meta group (`M group-layout/{group}`: each
//! group's ranges, voters, learners and leader), so every gateway, all of which hold a replica
//! of the meta group, routes keys of groups it does not run from its own replica instead of
//! asking the peers.
//!
//! The meta leader learns the layout from every peer and commits the records that changed
//! (leaders, members or ranges: not applied positions, which move with every write), so the
//! log carries one small entry per change, however many gateways read it. The records are a
//! hint like any directory entry: a replica serving a remote read checks that its group owns the
//! keys, so a record one period behind a split or a move costs a retry.

use std::collections::BTreeMap;

use super::remote::GroupReplica;
use super::store::GroupId;
use crate::index::engine::{EngineError, KvEngine, WriteOp};
use crate::index::keys;

/// Prefix of the records' names (`keys::meta`).
const PREFIX: &str = "group-layout/";

/// Key of `group`'s record (fixed-width, so the records sort by group).
fn key(group: GroupId) -> Vec<u8> {
    keys::meta(&format!("{PREFIX}{group:020}"))
}

/// The layout as `engine` (a replica of the meta group) holds it, by group.
pub fn read(engine: &dyn KvEngine) -> Result<BTreeMap<GroupId, GroupReplica>, EngineError> {
    let start = keys::meta(PREFIX);
    let end = keys::prefix_end(&start).expect("a non-empty prefix");
    let mut out = BTreeMap::new();
    for (k, v) in engine.scan(&start, &end, usize::MAX)? {
        let g: GroupReplica = serde_json::from_slice(&v).map_err(|e| {
            EngineError::Unavailable(format!(
                "the record {} does not parse: {e}",
                keys::readable(&k)
            ))
        })?;
        out.insert(g.group, g);
    }
    Ok(out)
}

/// The writes that make the records describe `learned` (the freshest description of every data
/// group; the meta group is left out): changed and new groups are written, and, when `complete`
/// (every peer answered, so a group missing from `learned` is gone), records of missing groups
/// are deleted.
pub fn changes(
    recorded: &BTreeMap<GroupId, GroupReplica>,
    learned: &[GroupReplica],
    meta: GroupId,
    complete: bool,
) -> Vec<WriteOp> {
    let mut ops = Vec::new();
    let mut seen = Vec::new();
    for g in learned.iter().filter(|g| g.group != meta) {
        let record = GroupReplica {
            applied: None,
            ..g.clone()
        };
        seen.push(g.group);
        if recorded.get(&g.group) != Some(&record) {
            let json = serde_json::to_vec(&record).expect("a group description serialises");
            ops.push(WriteOp::Put(key(g.group), json));
        }
    }
    if complete {
        for group in recorded.keys().filter(|g| !seen.contains(g)) {
            ops.push(WriteOp::Delete(key(*group)));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::ranges::KeyRanges;
    use crate::index::engine::MemEngine;

    fn replica(group: GroupId, leader: u64, applied: u64) -> GroupReplica {
        GroupReplica {
            group,
            ranges: KeyRanges::span(b"Oa", b"Oz"),
            voters: vec![1, 2, 3],
            learners: vec![],
            leader: Some(leader),
            applied: Some(applied),
        }
    }

    #[test]
    fn only_changed_groups_are_written_and_gone_ones_deleted_once_every_peer_answered() {
        let engine = MemEngine::default();
        let learned = vec![replica(1, 1, 9), replica(2, 1, 5), replica(3, 2, 7)];
        let ops = changes(&read(&engine).unwrap(), &learned, 1, true);
        assert_eq!(ops.len(), 2, "the meta group is not recorded");
        engine.write(ops).unwrap();
        let recorded = read(&engine).unwrap();
        assert_eq!(recorded.len(), 2);
        assert_eq!(recorded[&2].applied, None);
        assert_eq!(recorded[&3].leader, Some(2));
        // Only applied positions moved: nothing to write.
        let later = vec![replica(2, 1, 50), replica(3, 2, 70)];
        assert!(changes(&recorded, &later, 1, true).is_empty());
        // A leader changed, and group 3 is gone (absorbed by a merge).
        let moved = vec![replica(2, 3, 51)];
        assert!(
            changes(&recorded, &moved, 1, false).len() == 1,
            "a partial view deletes nothing"
        );
        engine.write(changes(&recorded, &moved, 1, true)).unwrap();
        let recorded = read(&engine).unwrap();
        assert_eq!(recorded.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(recorded[&2].leader, Some(3));
    }

    #[test]
    fn the_records_are_meta_data() {
        let k = key(7);
        assert_eq!(keys::route(&k).as_ref(), k.as_slice());
        assert_eq!(k[0], keys::tag::META);
    }
}
