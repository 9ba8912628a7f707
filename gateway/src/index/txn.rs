//! One index operation's view of the engine.
//!
//! On a gateway alone, reads and the write go straight to the local engine; the key and bucket
//! locks serialise conflicting operations. Replicated, the index is cut into Raft groups, and the
//! view routes by the groups this gateway hosts:
//! - before it reads a key or a range it passes the read barrier of every group owning some of
//!   it (once per group and attempt), so what any gateway acknowledged before the operation
//!   began is visible;
//! - it records what the operation read, by the group owning it;
//! - its write goes to the group owning the written keys as a [`Proposal`] guarded by the reads
//!   in that group. A batch computed from a state that changed before it reached the log (a
//!   racing write through another gateway) is refused with [`EngineError::Conflict`], one whose
//!   keys a split handed to another group meanwhile with [`EngineError::Moved`]; either way the
//!   operation runs again.
//!
//! Reads in other groups than the written one (the bucket's record, in the meta group, for an
//! object write) are linearizable when made but cannot guard the batch: no log orders both. What
//! must not race across groups is fenced inside the data group's own log (bucket deletion, see
//! `Index::delete_bucket`).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cairn_kv::{EngineError, Entries, KvEngine, WriteOp};
use cairn_raft::Consensus;
use cairn_raft::proposal::{Outcome, Proposal, ReadCheck};
use cairn_raft::remote::RemoteRead;
use cairn_raft::routing::Route;
use cairn_raft::store::GroupId;

use super::schema::Routes;

/// How long a read waits for a group that owns its keys to be running here (a split's new group
/// starts a moment after the split is applied).
const ROUTE_WAIT: Duration = Duration::from_secs(10);

/// The engine as one operation sees it.
pub(crate) struct Txn<'a> {
    local: &'a dyn KvEngine,
    consensus: Option<&'a Consensus>,
    /// Groups whose read barrier this attempt has passed.
    barriered: RefCell<BTreeSet<GroupId>>,
    /// What the operation read, with the group owning it (`None`: a scan across groups, which
    /// guards no batch).
    reads: RefCell<Vec<(Option<GroupId>, ReadCheck)>>,
    /// Told the load key of each committed write (replicated too: the gateway that proposed a
    /// write counts it, and reports it to the meta leader).
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
            barriered: RefCell::default(),
            reads: RefCell::new(Vec::new()),
            on_write,
        }
    }

    /// The index for read-only work that needs no guard (lists), once the keys of
    /// `[start, end)` are as fresh as a guarded read's would be: the local replica, reading
    /// through replicas of remote groups the keys it does not hold.
    pub(crate) fn local(&self, start: &[u8], end: &[u8]) -> Result<Routed<'a>, EngineError> {
        let route = self.settle(start, end)?;
        Ok(self.routed(route.is_some_and(|r| !r.remote.is_empty())))
    }

    /// As [`Txn::local`], for every record whose route is in `[start, end)` (object keys), in
    /// every data table.
    pub(crate) fn local_routes(&self, start: &[u8], end: &[u8]) -> Result<Routed<'a>, EngineError> {
        let mut remote = false;
        for (s, e) in super::keys::table_ranges(start, Some(end)) {
            remote |= self.settle(&s, &e)?.is_some_and(|r| !r.remote.is_empty());
        }
        Ok(self.routed(remote))
    }

    /// The engine view: the local replica alone unless some keys are `remote`.
    fn routed(&self, remote: bool) -> Routed<'a> {
        Routed {
            local: self.local,
            consensus: self.consensus.filter(|_| remote),
            passed: self.barriered.borrow().clone(),
        }
    }

    /// Passes the read barrier of every group running here that owns some key of
    /// `[start, end)` and that this attempt has not passed yet, until the owners are stable (a
    /// barrier may apply a split, which hands keys to a group that then needs its own). Keys no
    /// group here owns are routed to the groups peers run ([`Consensus::route`]), whose replicas
    /// pass their own barriers when they serve a read. Returns the owners.
    fn settle(&self, start: &[u8], end: &[u8]) -> Result<Option<Route>, EngineError> {
        let Some(c) = self.consensus else {
            return Ok(None);
        };
        let began = Instant::now();
        loop {
            let route = c.route(start, end);
            let fresh: Vec<GroupId> = {
                let done = self.barriered.borrow();
                route
                    .local
                    .iter()
                    .copied()
                    .filter(|g| !done.contains(g))
                    .collect()
            };
            if fresh.is_empty() {
                if route.complete {
                    return Ok(Some(route));
                }
                if began.elapsed() > ROUTE_WAIT {
                    return Err(EngineError::Unavailable(format!(
                        "no index group known here owns every key from {} to {}",
                        super::keys::readable(start),
                        super::keys::readable(end)
                    )));
                }
                // Keys no group here owns: ask the peers where they are (at most every few
                // hundred milliseconds), or wait for a group a split created to start here.
                tokio::runtime::Handle::current().block_on(c.learn_remote_groups());
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let barriers = fresh.iter().map(|g| c.read_barrier_of(*g));
            let passed = tokio::runtime::Handle::current()
                .block_on(futures_util::future::join_all(barriers));
            for (group, passed) in fresh.into_iter().zip(passed) {
                match passed {
                    Ok(()) => {
                        self.barriered.borrow_mut().insert(group);
                    }
                    // The group went away here (merged, or this replica was moved away and
                    // just dropped): look the keys up again, where the group runs now.
                    Err(
                        cairn_raft::ConsensusError::NoGroup(..)
                        | cairn_raft::ConsensusError::NotMember(_),
                    ) => {}
                    Err(e) => return Err(EngineError::Unavailable(e.to_string())),
                }
            }
        }
    }

    /// Whether every read is still owned by the group it was read from.
    fn reads_still_routed(&self, consensus: &Consensus) -> bool {
        self.reads.borrow().iter().all(|(group, check)| {
            let Some(group) = group else {
                return true;
            };
            match check {
                ReadCheck::Get { key, .. } => {
                    consensus.route(key, &super::keys::after(key)).is(*group)
                }
                ReadCheck::Scan { start, end, .. } => consensus.route(start, end).is(*group),
            }
        })
    }

    /// The object routes `[start, end)` (`end` `None`: to the last) of the group owning `key`,
    /// once its barrier is passed; `None` on a gateway alone (one engine owns every key).
    pub(crate) fn group_routes(
        &self,
        key: &[u8],
    ) -> Result<Option<super::schema::RouteSpan>, EngineError> {
        let Some(c) = self.consensus else {
            return Ok(None);
        };
        let route = self.settle(key, &super::keys::after(key))?;
        let group = route.and_then(|r| r.single()).ok_or(EngineError::Moved)?;
        let ranges = c
            .host()
            .ranges_of(group)
            .or_else(|| c.remote_group(group).map(|g| g.ranges));
        let routes = ranges.and_then(|r| r.object_routes());
        routes.map(Some).ok_or(EngineError::Moved)
    }

    /// The value at `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let route = self.settle(key, &super::keys::after(key))?;
        let value = self
            .routed(route.as_ref().is_some_and(|r| !r.remote.is_empty()))
            .get(key)?;
        if self.consensus.is_some() {
            let group = route.and_then(|r| r.single());
            self.reads
                .borrow_mut()
                .push((group, ReadCheck::get(key, value.as_deref())));
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
        let route = self.settle(start, end)?;
        let entries = self
            .routed(route.as_ref().is_some_and(|r| !r.remote.is_empty()))
            .scan(start, end, limit)?;
        if self.consensus.is_some() {
            let group = route.and_then(|r| r.single());
            self.reads
                .borrow_mut()
                .push((group, ReadCheck::scan(start, end, limit, &entries)));
        }
        Ok(entries)
    }

    /// Writes `ops` atomically and durably; replicated, only if nothing read so far in the
    /// written group changed. A batch without reads may span groups: it is then cut into one
    /// batch per group (independent writes, such as the collector's removals). Must run on a
    /// blocking thread of the runtime (index operations do).
    pub(crate) fn write(&self, ops: Vec<WriteOp>) -> Result<(), EngineError> {
        let load_key = crate::index::partition::load_key(&ops).map(|k| k.into_owned());
        let Some(consensus) = self.consensus else {
            self.local.write(ops)?;
            if let Some(key) = load_key {
                (self.on_write)(&key);
            }
            return Ok(());
        };
        let mut by_group: std::collections::BTreeMap<GroupId, Vec<WriteOp>> = Default::default();
        for op in ops {
            let key = match &op {
                WriteOp::Put(k, _) | WriteOp::Delete(k) => k,
            };
            let group = match consensus.host().owner_of(key) {
                Some(g) => g,
                // Owned by a group that does not run here: route it as a read would.
                None => self
                    .settle(key, &super::keys::after(key))?
                    .and_then(|r| r.single())
                    .ok_or(EngineError::Moved)?,
            };
            by_group.entry(group).or_default().push(op);
        }
        if !self.reads_still_routed(consensus) {
            // A split applied here since the reads moved some of them to another group.
            return Err(EngineError::Moved);
        }
        let guarded = !self.reads.borrow().is_empty();
        if guarded && by_group.len() > 1 {
            return Err(EngineError::Unavailable(format!(
                "a guarded batch spans index groups {:?}",
                by_group.keys().collect::<Vec<_>>()
            )));
        }
        for (group, ops) in by_group {
            let checks = self
                .reads
                .borrow()
                .iter()
                .filter(|(g, _)| *g == Some(group))
                .map(|(_, c)| c.clone())
                .collect();
            let proposal = Proposal { checks, ops };
            let outcome = tokio::runtime::Handle::current()
                .block_on(consensus.propose_in(group, proposal))
                .map_err(|e| match e {
                    // The group went away (a merge absorbed it): route again.
                    cairn_raft::ConsensusError::NoGroup(..) => EngineError::Moved,
                    e => EngineError::Unavailable(e.to_string()),
                })?;
            match outcome {
                Outcome::Applied => {}
                Outcome::Conflict => return Err(EngineError::Conflict),
                Outcome::Moved => return Err(EngineError::Moved),
            }
        }
        if let Some(key) = load_key {
            (self.on_write)(&key);
        }
        Ok(())
    }
}

/// The index as a read-only engine for one operation: the local replica, and, when some keys
/// are owned by groups this gateway does not run, replicas of those groups for them.
pub(crate) struct Routed<'a> {
    local: &'a dyn KvEngine,
    /// Set only when some keys are remote (else every read is local).
    consensus: Option<&'a Consensus>,
    /// The groups whose read barriers the operation passed when the view was made: the only
    /// local groups it may read. A group that starts here later (born of a split this replica
    /// applied since) holds its keys as of the split, not what was written to it since; a read
    /// it owns is `Moved`, and the operation routes again, passing its barrier.
    passed: BTreeSet<GroupId>,
}

impl KvEngine for Routed<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let Some(c) = self.consensus else {
            return self.local.get(key);
        };
        let route = c.route(key, &super::keys::after(key));
        match (route.local.as_slice(), route.remote.as_slice()) {
            ([group], []) if self.passed.contains(group) => self.local.get(key),
            ([], [group]) => {
                let read = RemoteRead::Get { key: key.to_vec() };
                let value = c.read_remote_blocking(*group, read)?;
                Ok(value.ok_or(EngineError::Moved)?.into_value())
            }
            _ => Err(EngineError::Moved),
        }
    }

    fn write(&self, _ops: Vec<WriteOp>) -> Result<(), EngineError> {
        Err(EngineError::Unavailable(
            "a routed read view takes no writes".into(),
        ))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, EngineError> {
        match self.consensus {
            None => self.local.scan(start, end, limit),
            Some(c) => c
                .scan_routed(self.local, &self.passed, start, end, limit)?
                .ok_or(EngineError::Moved),
        }
    }

    fn approximate_size(&self) -> u64 {
        self.local.approximate_size()
    }

    fn approximate_range_size(&self, start: &[u8], end: &[u8]) -> u64 {
        self.local.approximate_range_size(start, end)
    }
}
