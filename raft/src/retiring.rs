//! The gateways being drained of their index votes before a scale-down, kept as a record of the
//! replicated index itself (`M retiring-gateways`).
//!
//! Keeping the set in the log, not in each gateway's memory, means every leader — including one
//! elected in the middle of a drain, or a gateway restarted during it — plans from the same set
//! the operator last committed, so no new leader can re-promote a gateway that is about to be
//! removed because it has not heard of the drain yet.

use std::collections::BTreeSet;

use crate::schema::record_key;
use cairn_kv::{EngineError, KvEngine, WriteOp};

/// Name of the record ([`record_key`]).
const RECORD: &str = "retiring-gateways";

/// Key of the record.
fn key() -> Vec<u8> {
    record_key(RECORD)
}

/// The retiring gateways as `engine` (a replica of the index) holds them; empty when none are.
pub fn read(engine: &impl KvEngine) -> Result<BTreeSet<u64>, EngineError> {
    match engine.get(&key())? {
        None => Ok(BTreeSet::new()),
        Some(v) => serde_json::from_slice(&v).map_err(|e| {
            EngineError::Unavailable(format!("the record {RECORD:?} does not parse: {e}"))
        }),
    }
}

/// The write that makes `ids` the retiring set (no record at all when it is empty).
pub fn write(ids: &BTreeSet<u64>) -> WriteOp {
    if ids.is_empty() {
        WriteOp::Delete(key())
    } else {
        let json = serde_json::to_vec(ids).expect("a set of integers serialises");
        WriteOp::Put(key(), json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_kv::MemEngine;

    #[test]
    fn the_set_round_trips_and_an_empty_set_leaves_no_record() {
        let engine = MemEngine::default();
        assert!(read(&engine).unwrap().is_empty());
        let ids = BTreeSet::from([3, 4]);
        engine.write(vec![write(&ids)]).unwrap();
        assert_eq!(read(&engine).unwrap(), ids);
        engine.write(vec![write(&BTreeSet::new())]).unwrap();
        assert_eq!(engine.get(&key()).unwrap(), None);
        assert!(read(&engine).unwrap().is_empty());
    }

    #[test]
    fn the_record_is_this_layers_record() {
        assert_eq!(key(), record_key("retiring-gateways"));
    }
}
