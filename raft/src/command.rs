//! What a log entry asks its group to do: a guarded batch of index writes, or a change of the
//! group's own range (a split, or the freeze and absorb of a merge). Batches are serialised exactly as a bare [`Proposal`] was before
//! commands existed, so the entries already on disk still decode.

use serde::{Deserialize, Serialize};

use super::proposal::Proposal;
use super::store::GroupId;
use cairn_kv::KeyRanges;

/// A log entry's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    /// A guarded batch of index writes.
    Batch(Proposal),
    /// Several guarded batches, applied in order as if each were its own entry (a leader
    /// coalesces the proposals that queued while its previous entry was being committed).
    Batches(Batches),
    /// Hands the records of routes from `split_at` on to a new group.
    Split(Split),
    /// Stops the group taking writes, so its records stay as they are until its left neighbour
    /// absorbs them (a merge).
    Freeze(Freeze),
    /// Lets a frozen group take writes again (a merge given up).
    Thaw(Thaw),
    /// Takes over the ranges and records of a frozen neighbour (a merge).
    Absorb(Absorb),
}

/// Guarded batches in one entry. Each is applied as if alone, in order, with one exception that
/// keeps the apply simple: a batch whose checks read a key an earlier batch of the same entry
/// wrote is answered `Conflict` (its caller recomputes it, as after any race) rather than checked
/// against the writes not yet in the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batches {
    /// The batches, in the order they are applied.
    pub batches: Vec<Proposal>,
}

/// Freeze the group (the id guards against a command sent to the wrong group): from this log
/// position on every batch and split is answered `Moved`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// The group to freeze.
    pub freeze: GroupId,
}

/// Unfreeze the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thaw {
    /// The group to thaw.
    pub thaw: GroupId,
}

/// Absorb group `absorb`, frozen by the entry at `frozen_at` of its log, which owns `ranges`:
/// every replica applies it once its own replica of `absorb` has applied the freeze (its records
/// are then final and already in the shared engine), takes the ranges over and drops the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Absorb {
    /// The frozen neighbour.
    pub absorb: GroupId,
    /// The log index of its freeze.
    pub frozen_at: u64,
    /// The key ranges it owns.
    pub ranges: KeyRanges,
}

/// Cut the group at a route: it keeps the routes before `split_at`, and `new_group` is born on
/// every replica with the rest, its state exactly the records each replica holds there at this
/// log position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// The first route of the new group (an `O` key, see `keys::route`).
    #[serde(with = "cairn_kv::b64")]
    pub split_at: Vec<u8>,
    /// The new group's id (a partition id, never reused).
    pub new_group: GroupId,
    /// The replica meant to lead the new group: it initializes the group as it is born (absent:
    /// whichever replica the host picks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
}

impl Default for Command {
    fn default() -> Self {
        Command::Batch(Proposal::default())
    }
}

impl From<Proposal> for Command {
    fn from(p: Proposal) -> Self {
        Command::Batch(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::test_keys as keys;
    use cairn_kv::WriteOp;

    #[test]
    fn a_batch_is_written_as_a_bare_proposal_and_old_entries_still_decode() {
        let p = Proposal {
            checks: Vec::new(),
            ops: vec![WriteOp::Put(b"Ob\0k".to_vec(), b"v".to_vec())],
        };
        let as_proposal = serde_json::to_string(&p).unwrap();
        assert_eq!(
            serde_json::to_string(&Command::Batch(p.clone())).unwrap(),
            as_proposal
        );
        assert_eq!(
            serde_json::from_str::<Command>(&as_proposal).unwrap(),
            Command::Batch(p.clone())
        );
        let split = Command::Split(Split {
            split_at: b"Ob\0m".to_vec(),
            new_group: 7,
            leader: Some(3),
        });
        let json = serde_json::to_string(&split).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), split);
        // The merge commands decode as themselves, not as batches.
        for c in [
            Command::Freeze(Freeze { freeze: 3 }),
            Command::Thaw(Thaw { thaw: 3 }),
            Command::Absorb(Absorb {
                absorb: 3,
                frozen_at: 9,
                ranges: KeyRanges::new(keys::table_ranges(b"Ob\0m", None)),
            }),
        ] {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), c, "{json}");
        }
        // Coalesced batches decode as themselves, not as one batch.
        let batches = Command::Batches(Batches {
            batches: vec![p.clone(), Proposal::default()],
        });
        let json = serde_json::to_string(&batches).unwrap();
        assert_eq!(
            serde_json::from_str::<Command>(&json).unwrap(),
            batches,
            "{json}"
        );
        // A split written without a chosen leader still decodes as a split.
        let without = r#"{"split_at":"T2IAbQ==","new_group":7}"#;
        assert!(matches!(
            serde_json::from_str::<Command>(without).unwrap(),
            Command::Split(Split { leader: None, .. })
        ));
    }
}
