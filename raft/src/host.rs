//! The Raft groups one gateway hosts over its one RocksDB: which are running, starting each once,
//! and deciding which group an incoming Raft message may reach.
//!
//! Groups come into being in three ways, and the host owns all three:
//! - at open: the base group and every group the engine persisted (`store::hosted_groups`);
//! - when a group this replica hosts applies a `Split`: the new group starts over the same engine,
//!   its state exactly what the parent held there, and the chosen replica initializes it;
//! - from a snapshot: a replica that never applied the split (it caught up in the parent from a
//!   post-split snapshot) learns of the new group only when that group's leader sends it a
//!   snapshot. Only an install may create a group: appends and votes for an unknown group are
//!   refused, since a replica created empty and fed the log from its start would lack every key
//!   the group was born with. The sender, told the group is missing there, snapshots and purges
//!   its log so the next attempt is a snapshot.
//!
//! An install whose ranges overlap another local group is refused until they no longer do: a
//! replica that lags in the parent must apply the split (shrinking the parent) before the new
//! group's snapshot may replace those keys, or the parent's older entries would later re-apply
//! over the newer state. "Another local group" includes one known only by the ranges the engine
//! holds for it: a group born of a split owns its keys from the split's write on, though it
//! starts a moment later (or, if starting fails, when the gateway opens again). The one
//! exception is a frozen local group whose keys the snapshot holds entirely: the snapshot's
//! group absorbed it (a merge this replica slept through).
//!
//! Groups go away one way: absorbed by a neighbour (a merge). The absorbing group's state machine
//! tells the host, which takes the absorbed group out of the routing at once, then stops it and
//! forgets its log and state.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use openraft::Raft;
use openraft::raft::InstallSnapshotRequest;

use super::TypeConfig;
use super::log_sync::{LogSync, LogSyncMetrics};
use super::schema::KeySchema;
use super::snapshot;
use super::store::{self, Birth, GroupId, LogStore, SplitEvent, StateMachine};
use cairn_kv::{KeyRanges, RocksEngine};

type NodeId = u64;

/// Builds and starts the Raft of one group from its storage (the caller's config and network).
pub type Launch = Arc<
    dyn Fn(GroupId, LogStore, StateMachine) -> BoxFuture<'static, Result<Raft<TypeConfig>, String>>
        + Send
        + Sync,
>;

/// Why a message was not let through to a group, or a group could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// This gateway hosts no replica of the group (only a snapshot can create one).
    #[error("no replica of index group {0} here")]
    NoSuchGroup(GroupId),
    /// The replica of the group here is stopped (it answers nothing until started again).
    #[error("the replica of index group {0} here is stopped")]
    Stopped(GroupId),
    /// The snapshot's ranges overlap other groups of this gateway, which must shrink first.
    #[error("a snapshot of index group {group} overlaps local groups {others:?}")]
    Overlaps {
        /// The group the snapshot is for.
        group: GroupId,
        /// The local groups owning some of its keys.
        others: Vec<GroupId>,
    },
    /// Opening the group's storage or starting its Raft failed.
    #[error("index group {0} could not start: {1}")]
    Start(GroupId, String),
}

/// One running group: its Raft and its state machine (whose ranges say what it owns now).
struct Running {
    raft: Raft<TypeConfig>,
    state: StateMachine,
}

/// The groups of this gateway: running, or stopped with their state still on disk (their keys
/// stay theirs: no snapshot of another group may replace them meanwhile).
#[derive(Default)]
struct Groups {
    running: BTreeMap<GroupId, Running>,
    stopped: BTreeMap<GroupId, KeyRanges>,
}

impl Groups {
    /// The groups other than `group` owning some key of `ranges`: running (the ranges their
    /// state machines hold now), stopped, or only `persisted` (every group's ranges as the
    /// engine holds them, [`store::hosted_groups`]).
    ///
    /// The persisted ranges are what make the answer whole. A split shrinks the parent and
    /// gives the child its ranges in one write, but the child starts afterwards, in a task of
    /// its own that waits for this lock (or not at all, if starting it fails): until then the
    /// child is in none of these maps while the parent's state machine no longer owns its keys.
    /// Checked against running and stopped groups alone, a snapshot of a group born of the
    /// child (a later split, applied elsewhere) could be installed in that moment; the child
    /// then starts over the same keys, and replaying its log (or installing its own snapshot)
    /// here writes its older state over the newer group's records, or records the newer group's
    /// ranges as the child's split had them: replicas at the same applied index that differ.
    fn overlapping(
        &self,
        group: GroupId,
        ranges: &KeyRanges,
        persisted: &[store::Hosted],
    ) -> Vec<GroupId> {
        let running = self.running.iter().map(|(id, r)| (*id, r.state.ranges()));
        let stopped = self.stopped.iter().map(|(id, k)| (*id, k.clone()));
        let persisted = persisted.iter().map(|h| (h.group, h.ranges.clone()));
        let others: std::collections::BTreeSet<GroupId> = running
            .chain(stopped)
            .chain(persisted)
            .filter(|(id, owned)| *id != group && owned.overlaps(ranges))
            .map(|(id, _)| id)
            .collect();
        others.into_iter().collect()
    }

    fn raft(&self, group: GroupId) -> Result<Raft<TypeConfig>, HostError> {
        match self.running.get(&group) {
            Some(r) => Ok(r.raft.clone()),
            None if self.stopped.contains_key(&group) => Err(HostError::Stopped(group)),
            None => Err(HostError::NoSuchGroup(group)),
        }
    }
}

/// The running groups owning some keys of a range ([`GroupHost::owners`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owners {
    /// The groups, in id order.
    pub groups: Vec<GroupId>,
    /// Whether they own every key of the range between them (not: a group born of a split is
    /// still starting here, or the range is in a group this gateway does not host).
    pub complete: bool,
}

/// A peer reported to lack a group.
#[derive(Clone, Copy)]
struct Missing {
    since: Instant,
    last: Instant,
    forcing: bool,
}

/// The groups of one gateway. Shared (`Arc`); split observers hold it weakly.
pub struct GroupHost {
    node: NodeId,
    engine: Arc<RocksEngine>,
    /// What the index says of its keys (every group's state machine is given it).
    schema: Arc<dyn KeySchema>,
    launch: Launch,
    /// How long a born group waits for its chosen leader before a replica initializes it itself,
    /// and how long a peer must lack a group before its leader forces a snapshot for it.
    grace: Duration,
    /// Held while a group starts, so each starts once.
    groups: tokio::sync::Mutex<Groups>,
    /// The running groups' state machines, readable without waiting: routing looks keys up
    /// from blocking threads.
    directory: std::sync::RwLock<BTreeMap<GroupId, StateMachine>>,
    /// Groups a peer lacks, as reported: since when, last reported, a snapshot being forced.
    missing: std::sync::Mutex<BTreeMap<(GroupId, NodeId), Missing>>,
    /// Makes every group's log appends durable, several per sync.
    log_sync: LogSync,
    me: Weak<GroupHost>,
}

impl GroupHost {
    /// Opens `node`'s groups over `engine`: `base` (owning `ranges` unless it persisted others),
    /// then every other group the engine holds, births settled; `grace` as on [`GroupHost`];
    /// its log syncs counted in `sync_metrics`.
    pub async fn open(
        node: NodeId,
        engine: Arc<RocksEngine>,
        schema: Arc<dyn KeySchema>,
        base: (GroupId, KeyRanges),
        launch: Launch,
        grace: Duration,
        sync_metrics: LogSyncMetrics,
    ) -> Result<Arc<Self>, HostError> {
        let (group, ranges) = base;
        let log_sync = LogSync::start(&engine.db(), sync_metrics)
            .map_err(|e| HostError::Start(group, format!("raft log sync thread: {e}")))?;
        let host = Arc::new_cyclic(|me| Self {
            node,
            engine,
            schema,
            launch,
            grace,
            groups: Default::default(),
            directory: Default::default(),
            missing: Default::default(),
            log_sync,
            me: me.clone(),
        });
        host.start(group, ranges, None).await?;
        let hosted = store::hosted_groups(&host.engine)
            .map_err(|e| HostError::Start(group, e.to_string()))?;
        for h in hosted.into_iter().filter(|h| h.group != group) {
            host.start(h.group, h.ranges, h.birth).await?;
        }
        Ok(host)
    }

    /// The running replica of `group`.
    pub async fn get(&self, group: GroupId) -> Result<Raft<TypeConfig>, HostError> {
        self.groups.lock().await.raft(group)
    }

    /// The groups running here, in id order.
    pub async fn groups(&self) -> Vec<GroupId> {
        self.groups.lock().await.running.keys().copied().collect()
    }

    /// The running group owning `key` here (none: the group a split just created is still
    /// starting, or this gateway hosts no group owning it).
    pub fn owner_of(&self, key: &[u8]) -> Option<GroupId> {
        self.read_directory()
            .iter()
            .find(|(_, state)| state.owns(key))
            .map(|(id, _)| *id)
    }

    /// The running groups owning some key of `[start, end)`.
    pub fn owners(&self, start: &[u8], end: &[u8]) -> Owners {
        let span = KeyRanges::span(start, end);
        let mut groups = Vec::new();
        let mut rest = span.clone();
        for (id, state) in self.read_directory().iter() {
            state.with_ranges(|owned| {
                if owned.overlaps(&span) {
                    groups.push(*id);
                    rest = rest.partition_by(owned).1;
                }
            });
        }
        Owners {
            groups,
            complete: rest.is_empty(),
        }
    }

    /// The key ranges `group` owns now, if it runs here.
    pub fn ranges_of(&self, group: GroupId) -> Option<KeyRanges> {
        self.read_directory().get(&group).map(|s| s.ranges())
    }

    /// The log index of `group`'s freeze if it is frozen; `None` if it is not, or not running
    /// here.
    pub fn frozen_of(&self, group: GroupId) -> Option<u64> {
        self.read_directory().get(&group).and_then(|s| s.frozen())
    }

    /// Whether some group running here is frozen (a merge under way).
    pub fn merging(&self) -> bool {
        self.read_directory().values().any(|s| s.frozen().is_some())
    }

    /// Whether `group` runs here.
    pub fn runs(&self, group: GroupId) -> bool {
        self.read_directory().contains_key(&group)
    }

    /// Each running group's key ranges now, in id order.
    pub fn directory(&self) -> Vec<(GroupId, KeyRanges)> {
        self.read_directory()
            .iter()
            .map(|(id, state)| (*id, state.ranges()))
            .collect()
    }

    fn read_directory(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<GroupId, StateMachine>> {
        self.directory.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_directory(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<GroupId, StateMachine>> {
        self.directory.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `node`'s replica of `group` owning `ranges` (unless it persisted others), unless it
    /// runs already; with `birth`, settles its initialization.
    pub async fn start(
        &self,
        group: GroupId,
        ranges: KeyRanges,
        birth: Option<Birth>,
    ) -> Result<Raft<TypeConfig>, HostError> {
        let mut groups = self.groups.lock().await;
        let raft = self.start_locked(&mut groups, group, ranges).await?;
        drop(groups);
        if let Some(birth) = birth {
            self.settle_birth(group, raft.clone(), birth).await;
        }
        Ok(raft)
    }

    async fn start_locked(
        &self,
        groups: &mut Groups,
        group: GroupId,
        ranges: KeyRanges,
    ) -> Result<Raft<TypeConfig>, HostError> {
        if let Some(running) = groups.running.get(&group) {
            return Ok(running.raft.clone());
        }
        let fail = |e: String| HostError::Start(group, e);
        let state =
            StateMachine::open_owning(self.engine.clone(), self.schema.clone(), group, ranges)
                .map_err(|e| fail(e.to_string()))?;
        let me = self.me.clone();
        state.observe_splits(Arc::new(move |born: SplitEvent| {
            if let Some(host) = me.upgrade() {
                tokio::spawn(host.born(born));
            }
        }));
        let me = self.me.clone();
        state.observe_absorbs(Arc::new(move |absorbed: GroupId| {
            if let Some(host) = me.upgrade() {
                host.absorbed(group, absorbed);
            }
        }));
        let me = self.me.clone();
        state.observe_absorb_failures(Arc::new(move |absorbed: GroupId| {
            if let Some(host) = me.upgrade() {
                host.absorb_failed(group, absorbed);
            }
        }));
        // A copy short of the freeze that applies nothing for this long is not catching up:
        // the replica is rebuilt from a snapshot (see `absorb_failed`). One that keeps applying
        // is waited for, however far behind it was.
        state.set_absorb_wait(self.grace * 4);
        let log = LogStore::new(&self.engine, group, self.log_sync.clone());
        let raft = (self.launch)(group, log, state.clone())
            .await
            .map_err(fail)?;
        tracing::info!(group, ranges = ?state.ranges(), "index group started");
        groups.stopped.remove(&group);
        self.write_directory().insert(group, state.clone());
        groups.running.insert(
            group,
            Running {
                raft: raft.clone(),
                state,
            },
        );
        Ok(raft)
    }

    /// Group `absorber` of this gateway absorbed `group` (a merge): it leaves the routing at
    /// once, then stops, and its log and state are forgotten (its records belong to the
    /// absorbing group). The absorber then snapshots and purges its log here (see
    /// [`GroupHost::compact`]).
    fn absorbed(&self, absorber: GroupId, group: GroupId) {
        self.write_directory().remove(&group);
        let Some(host) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let running = {
                let mut groups = host.groups.lock().await;
                groups.stopped.remove(&group);
                groups.running.remove(&group)
            };
            if let Some(r) = running {
                let _ = r.raft.shutdown().await;
            }
            match store::forget_group(&host.engine, group) {
                Ok(()) => tracing::info!(group, "absorbed index group stopped and forgotten"),
                Err(e) => tracing::warn!(group, error = %e, "absorbed index group not forgotten"),
            }
            if let Err(e) = host.compact(absorber).await {
                tracing::warn!(group = absorber, error = %e, "could not compact the log past a merge");
            }
        });
    }

    /// Group `absorber` of this gateway could not absorb `group`: its copy here never reached
    /// the freeze (it joined the groups mid-merge), so `absorber` stopped here. Both groups are
    /// stopped and forgotten here; the absorber's leader, told this replica lacks the group,
    /// takes it out of the group and adds it again, so that it is sent a snapshot of the merged
    /// state ([`GroupHost::replica_missing`]).
    fn absorb_failed(&self, absorber: GroupId, group: GroupId) {
        self.write_directory().remove(&absorber);
        self.write_directory().remove(&group);
        let Some(host) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let stopped: Vec<_> = {
                let mut groups = host.groups.lock().await;
                [absorber, group]
                    .iter()
                    .filter_map(|g| {
                        groups.stopped.remove(g);
                        groups.running.remove(g)
                    })
                    .collect()
            };
            for r in stopped {
                let _ = r.raft.shutdown().await;
            }
            for g in [absorber, group] {
                if let Err(e) = store::forget_group(&host.engine, g) {
                    tracing::warn!(group = g, error = %e, "index group not forgotten");
                }
            }
            tracing::warn!(
                group = absorber,
                absorbed = group,
                "forgot both groups of a merge this replica could not apply; waiting for a snapshot"
            );
        });
    }

    /// Starts the group a split created (boxed: starting a group may start others).
    fn born(self: Arc<Self>, born: SplitEvent) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let group = born.new_group;
            if let Err(e) = self.start(group, born.ranges, Some(born.birth)).await {
                tracing::error!(group, error = %e, "the group a split created did not start");
            }
        })
    }

    /// The chosen replica initializes a born group at once (standing for election, so it leads);
    /// the others only if it still has no leader after the grace period (the chosen one is gone).
    async fn settle_birth(&self, group: GroupId, raft: Raft<TypeConfig>, birth: Birth) {
        let chosen = birth.leader == Some(self.node);
        let wait = if chosen { Duration::ZERO } else { self.grace };
        let settle = async move {
            tokio::time::sleep(wait).await;
            let uninitialized = !raft.is_initialized().await.unwrap_or(true);
            if uninitialized && raft.metrics().borrow().current_leader.is_none() {
                match raft.initialize(birth.voters()).await {
                    Ok(()) => tracing::info!(group, chosen, "initialized a group born of a split"),
                    Err(e) => tracing::debug!(group, error = %e, "born group not initialized"),
                }
            }
        };
        if chosen {
            settle.await;
        } else {
            tokio::spawn(settle);
        }
    }

    /// The replica an install-snapshot message for `group` goes to. The first chunk is checked
    /// against the other local groups' ranges; for a group not running here it creates the
    /// group, owning the snapshot's ranges (persisted first, so a restart reopens it).
    pub async fn snapshot_target(
        &self,
        group: GroupId,
        req: &InstallSnapshotRequest<TypeConfig>,
    ) -> Result<Raft<TypeConfig>, HostError> {
        let mut groups = self.groups.lock().await;
        let head = (req.offset == 0)
            .then(|| snapshot::ranges_in_head(&req.data))
            .flatten();
        if groups.stopped.contains_key(&group) {
            return Err(HostError::Stopped(group));
        }
        let Some(ranges) = head else {
            // A later chunk, or a head without ranges: only a running group can take it.
            return groups.raft(group);
        };
        // A frozen group whose keys the snapshot holds entirely was absorbed by the snapshot's
        // group (a merge this replica slept through): its records are in the snapshot.
        let absorbed: Vec<GroupId> = groups
            .running
            .iter()
            .filter(|(id, r)| {
                **id != group
                    && r.state.frozen().is_some()
                    && r.state
                        .with_ranges(|owned| owned.partition_by(&ranges).1.is_empty())
            })
            .map(|(id, _)| *id)
            .collect();
        for id in absorbed {
            tracing::info!(
                group,
                absorbed = id,
                "a snapshot holds a frozen local group: it was absorbed"
            );
            self.write_directory().remove(&id);
            if let Some(r) = groups.running.remove(&id) {
                let _ = r.raft.shutdown().await;
            }
            store::forget_group(&self.engine, id)
                .map_err(|e| HostError::Start(group, e.to_string()))?;
        }
        // Read under the lock, after the absorbed groups above were forgotten: a group whose
        // ranges the engine holds keeps its keys, whether or not it runs yet.
        let persisted = store::hosted_groups(&self.engine)
            .map_err(|e| HostError::Start(group, e.to_string()))?;
        let others = groups.overlapping(group, &ranges, &persisted);
        if !others.is_empty() {
            tracing::info!(
                group,
                ?others,
                "snapshot refused until the overlapping groups shrink"
            );
            return Err(HostError::Overlaps { group, others });
        }
        if !groups.running.contains_key(&group) {
            store::persist_ranges(&self.engine, group, &ranges)
                .map_err(|e| HostError::Start(group, e.to_string()))?;
            tracing::info!(
                group,
                "creating a replica of an index group from its snapshot"
            );
        }
        self.start_locked(&mut groups, group, ranges).await
    }

    /// Told by the network that `target` has no replica of `group`: once that has lasted the
    /// grace period (a split's new group starts a moment after the split applies), and this
    /// replica leads `group`, it snapshots `group` and purges the log behind, so `target` is
    /// sent the snapshot, which creates the group there.
    pub fn replica_missing(&self, group: GroupId, target: NodeId) {
        let now = Instant::now();
        {
            let mut missing = self.missing.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = Missing {
                since: now,
                last: now,
                forcing: false,
            };
            let m = missing.entry((group, target)).or_insert(fresh);
            if now.duration_since(m.last) > self.grace {
                // Reports that stopped for a while (the peer had the group since) start anew.
                *m = fresh;
            }
            m.last = now;
            if m.forcing || now.duration_since(m.since) < self.grace {
                return;
            }
            m.forcing = true;
        }
        let Some(host) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = host.force_snapshot(group).await {
                tracing::warn!(group, target, error = %e, "could not force a snapshot");
            } else if let Err(e) = host.re_add_if_lost(group, target).await {
                tracing::warn!(group, target, error = %e, "could not add a replica again");
            }
            // The next attempts send the snapshot; a later report starts a new grace period.
            let mut missing = host.missing.lock().unwrap_or_else(|e| e.into_inner());
            missing.remove(&(group, target));
        });
    }

    /// On `group`'s leader: if `target` had the group (replication had matched some of its
    /// log) and lost it (it gave up an absorb it could not apply), the leader would go on
    /// appending after what it had, and never send the snapshot. So `target` leaves the group
    /// (demoted first if it votes) and joins again as a learner, which replicates from nothing:
    /// a snapshot, the log behind being purged. The membership reconciler promotes it again.
    async fn re_add_if_lost(&self, group: GroupId, target: NodeId) -> Result<(), String> {
        use openraft::ChangeMembers;
        let raft = self.get(group).await.map_err(|e| e.to_string())?;
        let m = raft.metrics().borrow().clone();
        let had_it = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&target))
            .is_some_and(|matched| matched.is_some());
        if m.current_leader != Some(self.node) || !had_it {
            return Ok(());
        }
        let membership = m.membership_config.membership().clone();
        let Some(node) = membership.get_node(&target).cloned() else {
            return Ok(());
        };
        tracing::warn!(
            group,
            target,
            "a replica lost the group: it leaves the group and joins again, to be sent a snapshot"
        );
        let ids = std::collections::BTreeSet::from([target]);
        if membership.voter_ids().any(|v| v == target) {
            raft.change_membership(ChangeMembers::RemoveVoters(ids.clone()), true)
                .await
                .map_err(|e| e.to_string())?;
        }
        raft.change_membership(ChangeMembers::RemoveNodes(ids), false)
            .await
            .map_err(|e| e.to_string())?;
        raft.add_learner(target, node, false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// On `group`'s leader, once it added a replica: snapshots the group and purges the log
    /// behind (up to the entry adding it), so the new replica (which lacks the group, and may
    /// only get it by an install) is sent the snapshot at once, not refused appends for the
    /// grace period of [`GroupHost::replica_missing`] first.
    pub async fn snapshot_for_new_replica(&self, group: GroupId) -> Result<(), String> {
        self.force_snapshot(group).await
    }

    async fn force_snapshot(&self, group: GroupId) -> Result<(), String> {
        let raft = self.get(group).await.map_err(|e| e.to_string())?;
        if raft.metrics().borrow().current_leader != Some(self.node) {
            return Ok(());
        }
        self.compact(group).await
    }

    /// Snapshots `group` here and purges its log up to the snapshot, whatever this replica's
    /// role. After a merge every replica of the absorbing group does so: a replica added later
    /// must install the merged state, not replay the absorb, which needs a copy of the absorbed
    /// group frozen, and that group runs nowhere any more.
    async fn compact(&self, group: GroupId) -> Result<(), String> {
        let raft = self.get(group).await.map_err(|e| e.to_string())?;
        let Some(last) = raft.metrics().borrow().last_applied else {
            return Ok(());
        };
        raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
        let snap = raft
            .wait(Some(Duration::from_secs(60)))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= last.index),
                "a snapshot to purge the log behind",
            )
            .await
            .map_err(|e| e.to_string())?
            .snapshot
            .expect("waited for it");
        tracing::info!(
            group,
            upto = snap.index,
            "purging the log: a replica behind it gets the snapshot"
        );
        raft.trigger()
            .purge_log(snap.index)
            .await
            .map_err(|e| e.to_string())
    }

    /// Stops the replica of `group` here (its state stays on disk; [`GroupHost::start`] resumes).
    pub async fn stop(&self, group: GroupId) {
        let mut groups = self.groups.lock().await;
        if let Some(r) = groups.running.remove(&group) {
            self.write_directory().remove(&group);
            groups.stopped.insert(group, r.state.ranges());
            // Under the lock: nothing may start the group again before this replica is down.
            let _ = r.raft.shutdown().await;
        }
    }

    /// Drops this gateway's replica of `group`, which was moved away (its leader no longer
    /// counts this gateway as a member): it leaves the routing at once, stops, and its log and
    /// state are forgotten, so the group's keys are read where it runs now and a later return
    /// starts from a snapshot.
    pub async fn leave(&self, group: GroupId) {
        self.write_directory().remove(&group);
        let (running, stopped) = {
            let mut groups = self.groups.lock().await;
            (groups.running.remove(&group), groups.stopped.remove(&group))
        };
        let Some(ranges) = running.as_ref().map(|r| r.state.ranges()).or(stopped) else {
            return;
        };
        if let Some(r) = running {
            let _ = r.raft.shutdown().await;
        }
        // Its records go too: no other group here owns them, and sizes and digests read the
        // engine directly.
        let forgotten = store::forget_group(&self.engine, group).and_then(|()| {
            let db = self.engine.db();
            let mut batch = rocksdb::WriteBatch::default();
            for (start, end) in ranges.iter() {
                batch.delete_range(start, end);
            }
            let mut sync = rocksdb::WriteOptions::default();
            sync.set_sync(true);
            db.write_opt(batch, &sync)
        });
        match forgotten {
            Ok(()) => tracing::info!(group, "left the index group (its replica moved away)"),
            Err(e) => tracing::warn!(group, error = %e, "index group not forgotten"),
        }
    }

    /// Stops every group.
    pub async fn shutdown(&self) {
        let running = std::mem::take(&mut self.groups.lock().await.running);
        self.write_directory().clear();
        for r in running.into_values() {
            let _ = r.raft.shutdown().await;
        }
    }
}
