//! Where the data groups run, kept as records of the meta group (`M group-layout/{group}`: each
//! group's ranges, voters, learners and leader), so every gateway, all of which hold a replica
//! of the meta group, routes keys of groups it does not run from its own replica instead of
//! asking the peers.
//!
//! A group's leader writes its group's record when it changes (leader, members or ranges: not
//! applied positions, which move with every write), and deletes the records of the groups it
//! absorbed in a merge ([`publications`]); the meta leader asks every peer only now and then
//! ([`changes`]), for groups no leader described: the log carries one small entry per change,
//! however many gateways read it, and no gateway asks every peer each period. Writes are guarded
//! by the records they replace ([`guards`]), so a batch from a replica a moment behind, or
//! racing another gateway's, is refused instead of writing over a newer record. The records are
//! a hint like any directory entry: a replica serving a remote read checks that its group owns
//! the keys, so a record one period behind a split or a move costs a retry.

use std::collections::BTreeMap;

use super::proposal::{Proposal, ReadCheck};
use super::remote::GroupReplica;
use super::store::GroupId;
use crate::schema::record_key;
use cairn_kv::{EngineError, KvEngine, WriteOp};

/// Prefix of the records' names ([`record_key`]).
const PREFIX: &str = "group-layout/";

/// Key of `group`'s record (fixed-width, so the records sort by group).
fn key(group: GroupId) -> Vec<u8> {
    record_key(&format!("{PREFIX}{group:020}"))
}

/// The layout as `engine` (a replica of the meta group) holds it, by group.
pub fn read(engine: &dyn KvEngine) -> Result<BTreeMap<GroupId, GroupReplica>, EngineError> {
    let start = record_key(PREFIX);
    let end = cairn_kv::prefix_end(&start).expect("a non-empty prefix");
    let mut out = BTreeMap::new();
    for (k, v) in engine.scan(&start, &end, usize::MAX)? {
        let g: GroupReplica = serde_json::from_slice(&v).map_err(|e| {
            EngineError::Unavailable(format!(
                "the record {} does not parse: {e}",
                k.escape_ascii()
            ))
        })?;
        out.insert(g.group, g);
    }
    Ok(out)
}

/// Whether `engine` records `group` as `current` describes it (ranges, members and leader): a
/// point read, so a leader checks its groups every tick without reading the whole layout.
pub fn records(engine: &dyn KvEngine, current: &GroupReplica) -> Result<bool, EngineError> {
    let Some(v) = engine.get(&key(current.group))? else {
        return Ok(false);
    };
    Ok(serde_json::from_slice::<GroupReplica>(&v).ok() == Some(as_record(current)))
}

/// `g` as recorded: without its applied position, which moves with every write.
fn as_record(g: &GroupReplica) -> GroupReplica {
    GroupReplica {
        applied: None,
        ..g.clone()
    }
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
        let record = as_record(g);
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

/// The writes by which the leader of the groups `led` (as its replicas describe them) makes
/// the records current: their changed or missing records are written, and the records of
/// other groups whose keys all belong to one of them are deleted (groups absorbed by a merge;
/// live groups never share keys).
pub fn publications(
    recorded: &BTreeMap<GroupId, GroupReplica>,
    led: &[GroupReplica],
    meta: GroupId,
) -> Vec<WriteOp> {
    let mut ops = changes(recorded, led, meta, false);
    let led: Vec<&GroupReplica> = led.iter().filter(|g| g.group != meta).collect();
    for (group, record) in recorded {
        let absorbed = !record.ranges.is_empty()
            && led.iter().all(|g| g.group != *group)
            && led
                .iter()
                .any(|g| record.ranges.partition_by(&g.ranges).1.is_empty());
        if absorbed {
            ops.push(WriteOp::Delete(key(*group)));
        }
    }
    ops
}

/// The writes `ops_for` makes of the layout `engine` holds, as a batch guarded by [`guards`];
/// `None` when there is nothing to write.
pub fn batch(
    engine: &dyn KvEngine,
    ops_for: impl FnOnce(&BTreeMap<GroupId, GroupReplica>) -> Vec<WriteOp>,
) -> Result<Option<Proposal>, EngineError> {
    let ops = ops_for(&read(engine)?);
    if ops.is_empty() {
        return Ok(None);
    }
    let checks = guards(engine, &ops)?;
    Ok(Some(Proposal { checks, ops }))
}

/// Guards for `ops`: each record they write or delete is still what `engine` holds now.
pub fn guards(engine: &dyn KvEngine, ops: &[WriteOp]) -> Result<Vec<ReadCheck>, EngineError> {
    ops.iter()
        .map(|op| {
            let (WriteOp::Put(key, _) | WriteOp::Delete(key)) = op;
            Ok(ReadCheck::get(key, engine.get(key)?.as_deref()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_kv::KeyRanges;
    use cairn_kv::MemEngine;

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

    fn spanning(group: GroupId, leader: u64, from: &[u8], to: &[u8]) -> GroupReplica {
        GroupReplica {
            ranges: KeyRanges::span(from, to),
            ..replica(group, leader, 1)
        }
    }

    #[test]
    fn a_leader_writes_its_groups_records_and_deletes_those_it_absorbed() {
        let engine = MemEngine::default();
        // Groups 2 and 3 were split at "Om"; 4 is elsewhere.
        let before = vec![
            spanning(2, 1, b"Oa", b"Om"),
            spanning(3, 2, b"Om", b"Oz"),
            spanning(4, 2, b"P", b"Q"),
        ];
        engine
            .write(changes(&read(&engine).unwrap(), &before, 1, true))
            .unwrap();
        let recorded = read(&engine).unwrap();
        assert!(
            publications(&recorded, &before[..1], 1).is_empty(),
            "unchanged"
        );
        assert!(
            !records(&engine, &replica(2, 1, 99)).unwrap(),
            "other ranges"
        );
        assert!(records(&engine, &spanning(2, 1, b"Oa", b"Om")).unwrap());
        // Gateway 1 leads group 2, which absorbed group 3.
        let merged = vec![spanning(2, 1, b"Oa", b"Oz")];
        let ops = publications(&recorded, &merged, 1);
        assert_eq!(ops.len(), 2, "{ops:?}");
        let checks = guards(&engine, &ops).unwrap();
        engine.write(ops).unwrap();
        let recorded = read(&engine).unwrap();
        assert_eq!(recorded.keys().copied().collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(recorded[&2].ranges, KeyRanges::span(b"Oa", b"Oz"));
        assert!(records(&engine, &merged[0]).unwrap());
        assert!(
            !records(&engine, &spanning(3, 2, b"Om", b"Oz")).unwrap(),
            "deleted"
        );
        // The guards no longer hold: a batch computed before is refused.
        for check in checks {
            assert!(!check.holds(&engine).unwrap(), "{check:?}");
        }
        // Group 4's leader changed: only its own record is rewritten.
        let ops = publications(&recorded, &[spanning(4, 3, b"P", b"Q")], 1);
        assert_eq!(ops.len(), 1);
        assert!(guards(&engine, &ops).unwrap()[0].holds(&engine).unwrap());
    }

    #[test]
    fn the_records_are_this_layers_records() {
        assert_eq!(key(7), record_key("group-layout/00000000000000000007"));
    }
}
