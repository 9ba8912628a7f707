//! One index operation's view of the engine.
//!
//! On a gateway alone, reads and the write go straight to the local engine; the key and bucket
//! locks serialise conflicting operations. Replicated, the view also records what the operation
//! read, and its write becomes a [`Proposal`] guarded by those reads, committed through Raft: a
//! batch computed from a state that changed before it reached the log (a racing write through
//! another gateway) is refused with [`EngineError::Conflict`] and the operation runs again.

use std::cell::RefCell;

use super::engine::{EngineError, Entries, KvEngine, WriteOp};
use crate::consensus::Consensus;
use crate::consensus::proposal::{Outcome, Proposal, ReadCheck};

/// The engine as one operation sees it.
pub(crate) struct Txn<'a> {
    local: &'a dyn KvEngine,
    consensus: Option<&'a Consensus>,
    reads: RefCell<Vec<ReadCheck>>,
    /// Told the load key of a local write (replicated, the state machine tells it at apply).
    on_write: &'a dyn Fn(&[u8]),
}

impl<'a> Txn<'a> {
    /// A view of `local`, replicated through `consensus` if there is one.
    pub(crate) fn new(
        local: &'a dyn KvEngine,
        consensus: Option<&'a Consensus>,
        on_write: &'a dyn Fn(&[u8]),
    ) -> Self {
        Self {
            local,
            consensus,
            reads: RefCell::new(Vec::new()),
            on_write,
        }
    }

    /// The local replica, for read-only work (lists) that needs no guard.
    pub(crate) fn local(&self) -> &dyn KvEngine {
        self.local
    }

    /// The value at `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let value = self.local.get(key)?;
        if self.consensus.is_some() {
            self.reads
                .borrow_mut()
                .push(ReadCheck::get(key, value.as_deref()));
        }
        Ok(value)
    }

    /// Up to `limit` entries with `start <= key < end`.
    pub(crate) fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Entries, EngineError> {
        let entries = self.local.scan(start, end, limit)?;
        if self.consensus.is_some() {
            self.reads
                .borrow_mut()
                .push(ReadCheck::scan(start, end, limit, &entries));
        }
        Ok(entries)
    }

    /// Writes `ops` atomically and durably; replicated, only if nothing read so far changed.
    /// Must run on a blocking thread of the runtime (index operations do).
    pub(crate) fn write(&self, ops: Vec<WriteOp>) -> Result<(), EngineError> {
        let Some(consensus) = self.consensus else {
            let key = crate::index::partition::load_key(&ops).map(|k| k.into_owned());
            self.local.write(ops)?;
            if let Some(key) = key {
                (self.on_write)(&key);
            }
            return Ok(());
        };
        let proposal = Proposal {
            checks: self.reads.borrow().clone(),
            ops,
        };
        let outcome = tokio::runtime::Handle::current()
            .block_on(consensus.propose(proposal))
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        match outcome {
            Outcome::Applied => Ok(()),
            Outcome::Conflict => Err(EngineError::Conflict),
            // Only once the index has a group per partition (today one group owns every key).
            Outcome::Moved => Err(EngineError::Unavailable(
                "the batch's keys moved to another index group".into(),
            )),
        }
    }
}
