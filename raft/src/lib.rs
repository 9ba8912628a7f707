//! The replicated index: the gateways' RocksDB indexes kept identical by Raft (openraft), one
//! Raft group per partition of the keyspace.
//!
//! The meta group ([`INDEX_GROUP`]) holds buckets, configuration, access keys and the partition
//! map; every other group is born of a split (`docs/multi-raft.md`) and owns a range of object
//! routes in every data table, until a merge has its left neighbour absorb it. Every gateway listed in `--peer` hosts a replica of every group
//! ([`host::GroupHost`], all over one RocksDB); `--index-replicas` of them (three by default)
//! vote in each group, spread over zones, and a voter gone for longer than `--replica-grace`
//! hands its vote to another gateway ([`membership`]). Groups have leaders of their own: a split
//! hands the new group's leadership to the gateway leading the fewest groups.
//!
//! An index operation runs on the gateway that received the request: before it reads a key it
//! waits until its replica of the key's group has applied everything that group's leader had
//! committed (a read barrier, so reads and lists are linearizable through any gateway), computes
//! its batch locally, and proposes it to that group guarded by what it read
//! ([`proposal::Proposal`]). The group's leader orders proposals in its log; a batch commits once
//! a majority has it on disk, and every replica applies it only if its guard holds, and only if
//! the group still owns its keys (else `Moved`: the operation runs again, routed anew).

pub mod balance;
pub mod command;
pub mod digest;
mod group;
pub mod host;
pub mod layout;
pub mod load;
pub mod log_sync;
pub mod membership;
pub mod metrics;
mod moves;
pub mod network;
pub mod placement;
pub mod proposal;
pub mod remote;
pub mod retiring;
pub mod routing;
pub mod rpc;
pub mod schema;
pub mod snapshot;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_transport::FleetClient;
use openraft::error::RaftError;
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use cairn_kv::{KeyRanges, RocksEngine};
use command::Command;
use group::GroupRuntime;
use host::GroupHost;
use metrics::{OutcomeLabels, RaftMetrics};
use network::HttpNetwork;
use proposal::{Outcome, Proposal};
use schema::KeySchema;
use store::{GroupId, INDEX_GROUP};

openraft::declare_raft_types!(
    /// Raft types of the replicated index.
    pub TypeConfig:
        D = command::Command,
        // One outcome per guarded batch of the entry (one for every other entry).
        R = Vec<Outcome>,
        SnapshotData = tokio::fs::File,
);

/// How long an operation waits for a leader (an election after a crash takes about a second).
const LEADER_WAIT: Duration = Duration::from_secs(15);

/// How long a group born of a split waits for its chosen leader (several election timeouts), and
/// a peer must lack a group before its leader sends it a snapshot ([`GroupHost`]).
const BIRTH_GRACE: Duration = Duration::from_secs(3);

/// Why the replicated index could not serve an operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsensusError {
    /// No leader could be reached in time.
    #[error("no index leader reachable within {0:?}: {1}")]
    NoLeader(Duration, String),
    /// This replica did not catch up with the leader in time.
    #[error("index replica did not catch up: {0}")]
    Lagging(String),
    /// Raft stopped (a storage error).
    #[error("raft stopped: {0}")]
    Fatal(String),
    /// Raft rejected the configuration or could not start.
    #[error("raft: {0}")]
    Setup(String),
    /// This gateway runs no replica of the group (it is still starting, or gone).
    #[error("index group {0} is not running here: {1}")]
    NoGroup(GroupId, String),
    /// The group's leader does not count this gateway as a member any more (its replica was
    /// moved away): the replica here is stale, and is dropped.
    #[error("this gateway is no longer a member of index group {0}")]
    NotMember(GroupId),
}

/// Where this gateway's index replica sits.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// This gateway's id (unique, stable across restarts).
    pub id: u64,
    /// Every gateway of the fleet (this one too): id → admin API base URL.
    pub peers: BTreeMap<u64, String>,
    /// A snapshot of the index is taken every this many log entries, and the log before it
    /// purged; a replica that fell further behind catches up from the snapshot.
    pub snapshot_every: u64,
    /// This gateway's zone (`""` when unknown); voters are spread over zones.
    pub zone: String,
    /// How many gateways vote in the group (the others hold a replica as learners).
    pub replicas: usize,
    /// How long a voter may be unreachable before another gateway takes its vote.
    pub replica_grace: Duration,
}

/// What [`rpc`] answers to a forwarded proposal or read-index request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forwarded<T> {
    /// Done by the leader.
    Done(T),
    /// The receiver is not the leader (any more).
    NotLeader,
    /// The leader failed the request.
    Failed(String),
    /// The receiver leads the group, and the sender is not one of its members (only sent to
    /// senders that say who they are, so gateways of earlier versions never see it).
    NotMember,
}

/// What a gateway tells the leader's probe (`GET /internal/v1/index/hello`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// Its gateway id.
    pub id: u64,
    /// Its zone.
    pub zone: String,
    /// How many index groups it hosts (a bounded group's new replica goes where there are
    /// fewest; 0 from gateways that do not tell).
    #[serde(default)]
    pub groups: usize,
}

pub use cairn_admin_api::{GroupStatus, PeerStatus, ReplicationStatus};

/// This gateway's replicas of the replicated index: the meta group ([`INDEX_GROUP`]) and every
/// group born of a split, over one RocksDB.
pub struct Consensus {
    id: u64,
    zone: String,
    /// This gateway's replica of the meta group (buckets, configuration, the partition map).
    raft: Raft<TypeConfig>,
    /// Every group of this gateway; Raft messages go through it.
    host: Arc<GroupHost>,
    /// Each running group's runtime (read-index rounds, step-down flag), started as groups
    /// appear.
    runtimes: std::sync::Mutex<BTreeMap<GroupId, Arc<GroupRuntime>>>,
    peers: BTreeMap<u64, String>,
    /// Signs every call to a peer with the fleet credential.
    fleet: FleetClient,
    metrics: Arc<RaftMetrics>,
    /// What the index says of its keys.
    schema: Arc<dyn KeySchema>,
    /// Told of the reads other gateways report (while this one leads).
    read_observer: std::sync::OnceLock<load::ReadObserver>,
    /// Told of the leaderships this gateway handed over.
    hand_over_observer: std::sync::OnceLock<load::HandOverObserver>,
    /// The listed gateways as the meta group's membership reconciler sees them while it leads.
    peer_views: Arc<std::sync::Mutex<Vec<PeerStatus>>>,
    /// This replica of the index (the retiring set is read from it).
    engine: Arc<RocksEngine>,
    /// How many gateways vote in each group, and how long one may be gone before its vote moves.
    replicas: usize,
    replica_grace: Duration,
    /// Where the groups this gateway does not run are ([`routing`]).
    remote: routing::RemoteGroups,
    /// The replica move this gateway asked for while leading the meta group, and when.
    moving: std::sync::Mutex<Option<(placement::Move, Instant)>>,
    me: std::sync::Weak<Consensus>,
}

/// Where a read-index round delivers the index (or why there is none).
type ReadIndexWaiter = oneshot::Sender<Result<Option<u64>, ConsensusError>>;

impl Consensus {
    /// Starts the replica over `engine`. The gateway with the smallest id forms the group the
    /// first time (every gateway must list the same peers).
    pub async fn start(
        cfg: ConsensusConfig,
        engine: Arc<RocksEngine>,
        fleet: FleetClient,
        schema: Arc<dyn KeySchema>,
        metrics: Arc<RaftMetrics>,
    ) -> Result<Arc<Self>, ConsensusError> {
        if !cfg.peers.contains_key(&cfg.id) {
            return Err(ConsensusError::Setup(format!(
                "--gateway-id {} is not among the --peer entries",
                cfg.id
            )));
        }
        let config = openraft::Config {
            cluster_name: "cairn-index".into(),
            // Also the timeout of every AppendEntries (openraft 0.9): a follower whose
            // appends take longer (a loaded machine, a slow fsync) never catches up, as each
            // attempt is dropped. At 50 ms a follower fell 40 s behind under a 60 s write load
            // on two cores, and writes through it failed after waiting 15 s.
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            // Small batches, so one fits in that timeout (300 by default: megabytes with inline
            // objects).
            max_payload_entries: 64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every.max(1)),
            // Entries kept behind a snapshot, so a replica a little behind needs no snapshot.
            max_in_snapshot_log_to_keep: cfg.snapshot_every.clamp(1, 1000),
            // Snapshot chunks travel as JSON; give each one time, and keep them modest.
            install_snapshot_timeout: 10_000,
            snapshot_max_chunk_size: 1 << 20,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ConsensusError::Setup(e.to_string()))?;
        // Every group this gateway hosts (the meta group, and those splits create), each with
        // its own network to the same peers. Peers that answer "no such group" are reported to
        // the host, which is set once it exists.
        let host_cell: Arc<std::sync::OnceLock<std::sync::Weak<GroupHost>>> = Arc::default();
        let reporter: network::MissingReporter = {
            let cell = host_cell.clone();
            Arc::new(move |group, target| {
                if let Some(host) = cell.get().and_then(|w| w.upgrade()) {
                    host.replica_missing(group, target);
                }
            })
        };
        let (id, config) = (cfg.id, Arc::new(config));
        let launch_fleet = fleet.clone();
        let launch: host::Launch = Arc::new(move |group, log, state| {
            let net =
                HttpNetwork::new(launch_fleet.clone(), group).reporting_missing(reporter.clone());
            let config = config.clone();
            Box::pin(async move {
                Raft::new(id, config, net, log, state)
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        let host = GroupHost::open(
            cfg.id,
            engine.clone(),
            schema.clone(),
            (INDEX_GROUP, KeyRanges::everything()),
            launch,
            BIRTH_GRACE,
            metrics.log_sync.clone(),
        )
        .await
        .map_err(|e| ConsensusError::Setup(e.to_string()))?;
        let _ = host_cell.set(Arc::downgrade(&host));
        let raft = host
            .get(INDEX_GROUP)
            .await
            .map_err(|e| ConsensusError::Setup(e.to_string()))?;
        let first = cfg.peers.keys().next().copied();
        if first == Some(cfg.id)
            && !raft
                .is_initialized()
                .await
                .map_err(|e| ConsensusError::Fatal(e.to_string()))?
        {
            let members: BTreeMap<u64, BasicNode> = cfg
                .peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(id = cfg.id, peers = ?cfg.peers, "formed the index group"),
                // Another start already did (the log is not empty).
                Err(RaftError::APIError(e)) => {
                    tracing::info!(id = cfg.id, reason = %e, "index group already formed")
                }
                Err(e) => return Err(ConsensusError::Fatal(e.to_string())),
            }
        }
        let consensus = Arc::new_cyclic(|me| Self {
            id: cfg.id,
            zone: cfg.zone,
            raft,
            host,
            runtimes: Default::default(),
            peers: cfg.peers,
            fleet,
            metrics,
            schema,
            read_observer: std::sync::OnceLock::new(),
            hand_over_observer: std::sync::OnceLock::new(),
            peer_views: Arc::default(),
            engine,
            replicas: cfg.replicas,
            replica_grace: cfg.replica_grace,
            remote: Default::default(),
            moving: Default::default(),
            me: me.clone(),
        });
        for group in consensus.host.groups().await {
            consensus.runtime(group).await?;
        }
        tokio::spawn(supervise_groups(Arc::downgrade(&consensus)));
        Ok(consensus)
    }

    /// The runtime of `group`, started the first time it is asked for (the group must run here).
    ///
    /// Boxed: a runtime's tasks call back into it, and the compiler proves such a cycle `Send`
    /// only through a boxed future.
    fn runtime(
        &self,
        group: GroupId,
    ) -> futures_util::future::BoxFuture<'_, Result<Arc<GroupRuntime>, ConsensusError>> {
        Box::pin(self.start_runtime(group))
    }

    async fn start_runtime(&self, group: GroupId) -> Result<Arc<GroupRuntime>, ConsensusError> {
        if let Some(r) = self.runtime_now(group) {
            return Ok(r);
        }
        let raft = self
            .host
            .get(group)
            .await
            .map_err(|e| ConsensusError::NoGroup(group, e.to_string()))?;
        let mut runtimes = self.runtimes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = runtimes.get(&group) {
            return Ok(r.clone());
        }
        let (read_index_waiters, rounds) = mpsc::unbounded_channel();
        let stepping_down = Arc::new(AtomicBool::new(false));
        let align = Arc::new(placement::AlignTarget::default());
        tokio::spawn(group::read_index_rounds(self.me.clone(), group, rounds));
        let (proposal_waiters, proposals) = mpsc::unbounded_channel();
        let proposals = Arc::new(tokio::sync::Mutex::new(proposals));
        for _ in 0..group::ROUNDS_IN_FLIGHT {
            tokio::spawn(group::proposal_rounds(
                raft.clone(),
                proposals.clone(),
                self.metrics.clone(),
            ));
        }
        tokio::spawn(group::observe(
            self.id,
            group,
            raft.clone(),
            self.metrics.clone(),
        ));
        let views = if group == INDEX_GROUP {
            self.peer_views.clone()
        } else {
            Arc::default()
        };
        tokio::spawn(group::reconcile_membership(
            group::Reconciler {
                group,
                raft: raft.clone(),
                id: self.id,
                zone: self.zone.clone(),
                peers: self.peers.clone(),
                replicas: self.replicas,
                grace: self.replica_grace,
                fleet: self.fleet.clone(),
                metrics: self.metrics.clone(),
                engine: self.engine.clone(),
                stepping_down: stepping_down.clone(),
                align: align.clone(),
                consensus: self.me.clone(),
            },
            views,
        ));
        let runtime = Arc::new(GroupRuntime {
            raft,
            read_index_waiters,
            proposal_waiters,
            stepping_down,
            align,
        });
        runtimes.insert(group, runtime.clone());
        self.metrics.groups.set(runtimes.len() as i64);
        tracing::debug!(group, "index group runtime started");
        Ok(runtime)
    }

    /// The runtime of `group` if it was started and the group still runs here (not absorbed by
    /// a merge).
    fn runtime_now(&self, group: GroupId) -> Option<Arc<GroupRuntime>> {
        if !self.host.runs(group) {
            return None;
        }
        self.runtimes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&group)
            .cloned()
    }

    /// Has `observer` told the load other gateways report to this one (once).
    pub fn observe_reported_reads(&self, observer: load::ReadObserver) {
        let _ = self.read_observer.set(observer);
    }

    /// Has `observer` told of each leadership this gateway hands over (once).
    pub fn observe_hand_overs(&self, observer: load::HandOverObserver) {
        let _ = self.hand_over_observer.set(observer);
    }

    /// Sends `report` to gateway `to` (the leader of the groups owning its keys, or the meta
    /// leader), once: a lost report only makes a leader's rates a little low for a tick.
    pub async fn report_load(
        &self,
        to: u64,
        report: &load::ReadReport,
    ) -> Result<(), ConsensusError> {
        match self
            .forward::<_, ()>(INDEX_GROUP, to, "read-load", report)
            .await
        {
            Forwarded::Done(()) | Forwarded::NotLeader | Forwarded::NotMember => Ok(()),
            Forwarded::Failed(e) => Err(ConsensusError::NoLeader(Duration::ZERO, e)),
        }
    }

    /// A report from another gateway. Counted whatever this gateway leads now: the sender
    /// routed it by what it last knew, and load counted against a partition not led here
    /// decides nothing (it only shows in this gateway's own figures, and decays).
    pub fn reported_load_here(&self, report: &load::ReadReport) -> Forwarded<()> {
        if let Some(observe) = self.read_observer.get() {
            observe(report);
        }
        Forwarded::Done(())
    }

    /// The leader of the group owning index key `key` as this gateway knows it: of a group
    /// running here, its Raft's; of one only peers run, the last learned.
    pub fn leader_of_key(&self, key: &[u8]) -> Option<u64> {
        let group = self.route(key, &cairn_kv::after(key)).single()?;
        if self.host.runs(group) {
            self.leader_of(group)
        } else {
            self.remote_group(group)?.leader
        }
    }

    /// This gateway's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// What this gateway answers the leader's probe.
    pub fn hello(&self) -> Hello {
        Hello {
            id: self.id,
            zone: self.zone.clone(),
            groups: self.host.directory().len(),
        }
    }

    /// The meta group (buckets, configuration, access keys, the partition map).
    pub fn group(&self) -> GroupId {
        INDEX_GROUP
    }

    /// The meta group's Raft handle.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The meta group's current leader, if one is known.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// The current leader of `group`, if this gateway hosts it and knows one.
    pub fn leader_of(&self, group: GroupId) -> Option<u64> {
        if group == INDEX_GROUP {
            return self.leader();
        }
        self.runtime_now(group)?
            .raft
            .metrics()
            .borrow()
            .current_leader
    }

    /// Whether this gateway leads the meta group (it runs the fleet-wide background work: GC,
    /// lifecycle, partition splits).
    pub fn is_leader(&self) -> bool {
        leads(self.id, &self.raft)
    }

    /// Whether this gateway leads `group`.
    pub fn is_leader_of(&self, group: GroupId) -> bool {
        self.runtime_now(group)
            .is_some_and(|r| leads(self.id, &r.raft))
    }

    /// Whether this gateway leads the group (running here) that owns index key `key`.
    pub fn leads_owner_of(&self, key: &[u8]) -> bool {
        self.host
            .owner_of(key)
            .is_some_and(|group| self.is_leader_of(group))
    }

    /// Every group this gateway hosts, with the ranges it owns now.
    pub fn host(&self) -> &Arc<GroupHost> {
        &self.host
    }

    /// The replication state: the meta group's, and every group's leader and members.
    pub fn status(&self) -> ReplicationStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let peers = if self.is_leader() {
            self.peer_views
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        } else {
            Vec::new()
        };
        ReplicationStatus {
            id: self.id,
            state: format!("{:?}", m.state),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            zone: self.zone.clone(),
            voters: sorted(membership.voter_ids()),
            learners: sorted(membership.learner_ids()),
            peers,
            retiring: self.retiring_here().into_iter().collect(),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            groups: self.group_statuses(),
            remote_groups: self.remote_group_statuses(),
        }
    }

    /// Every running group's leader, members and object keys, in id order.
    pub fn group_statuses(&self) -> Vec<GroupStatus> {
        let ranges: BTreeMap<GroupId, KeyRanges> = self.host.directory().into_iter().collect();
        let runtimes = self
            .runtimes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        runtimes
            .into_iter()
            .filter(|(group, _)| ranges.contains_key(group))
            .map(|(group, r)| {
                let m = r.raft.metrics().borrow().clone();
                let membership = m.membership_config.membership();
                let routes = ranges.get(&group).and_then(|k| self.schema.routes_of(k));
                let readable = |k: &[u8]| self.schema.readable(k);
                GroupStatus {
                    group,
                    leader: m.current_leader,
                    term: m.current_term,
                    applied_index: m.last_applied.map(|l| l.index),
                    voters: sorted(membership.voter_ids()),
                    learners: sorted(membership.learner_ids()),
                    objects_from: routes.as_ref().map(|(s, _)| readable(s)),
                    objects_to: routes.and_then(|(_, e)| e).map(|e| readable(&e)),
                    frozen: self.host.frozen_of(group),
                    snapshot_index: m.snapshot.map(|l| l.index),
                    purged_index: m.purged.map(|l| l.index),
                }
            })
            .collect()
    }

    /// The voter of `group` that should lead a group split off it: the one whose leaderships
    /// weigh least by `pressure` ([`balance::lightest_voter`]), so splits spread the load of
    /// leading over the gateways.
    pub fn least_loaded_voter(&self, group: GroupId, pressure: &balance::Pressure) -> Option<u64> {
        let statuses = self.fleet_group_statuses();
        let parent = statuses.iter().find(|s| s.group == group)?;
        balance::lightest_voter(parent, &statuses, pressure)
    }

    /// The retiring set as this replica holds it (empty, and logged, if it cannot be read).
    fn retiring_here(&self) -> BTreeSet<u64> {
        retiring::read(self.engine.as_ref()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the retiring gateways");
            BTreeSet::new()
        })
    }

    /// Makes `ids` the gateways to drain (replacing the previous set; `[]` cancels), committed
    /// in the index so whichever gateway leads, now or after an election, moves their votes and
    /// the leadership to the others, in every group. Idempotent: the operator repeats it every
    /// reconcile, and an unchanged set costs a read barrier, not a log entry. Returns this
    /// replica's status once it holds the set.
    pub async fn retire(&self, ids: BTreeSet<u64>) -> Result<ReplicationStatus, ConsensusError> {
        self.read_barrier().await?;
        let held = retiring::read(self.engine.as_ref())
            .map_err(|e| ConsensusError::Fatal(e.to_string()))?;
        if held != ids {
            let proposal = Proposal {
                checks: Vec::new(),
                ops: vec![retiring::write(&ids)],
            };
            self.propose(proposal).await?;
            self.read_barrier().await?;
            tracing::info!(retiring = ?ids, previous = ?held, "gateways to drain of index votes changed");
        }
        // The groups only other gateways run are in the answer too (the operator checks that
        // none of them still has a retiring voter): learn them fresh.
        self.learn_remote_groups().await;
        Ok(self.status())
    }

    /// Runs `f` on a consistent view of this replica: the index (default column family) and, for
    /// each running group, the log index it has applied and the ranges it owns, all read from
    /// the same RocksDB snapshot (a batch and its applied position are written together).
    pub fn with_view<T>(
        &self,
        f: impl FnOnce(&rocksdb::Snapshot<'_>, &[(GroupId, Option<u64>, KeyRanges)]) -> T,
    ) -> Result<T, ConsensusError> {
        let db = self.engine.db();
        let snap = db.snapshot();
        let mut groups = Vec::new();
        for (group, now) in self.host.directory() {
            let applied = store::applied_in(&db, &snap, group).map_err(ConsensusError::Fatal)?;
            // The ranges as of the snapshot (a split or merge may have moved them since).
            let owned = store::ranges_in(&db, &snap, group)
                .map_err(ConsensusError::Fatal)?
                .unwrap_or(now);
            groups.push((group, applied, owned));
        }
        Ok(f(&snap, &groups))
    }

    /// Commits `proposal` in the meta group (see [`Consensus::propose_in`]).
    pub async fn propose(&self, proposal: Proposal) -> Result<Outcome, ConsensusError> {
        self.propose_in(INDEX_GROUP, proposal).await
    }

    /// Commits `proposal` in `group` through its leader (this gateway or another) and returns
    /// whether its guard held. Waits through elections for up to [`LEADER_WAIT`].
    pub async fn propose_in(
        &self,
        group: GroupId,
        proposal: Proposal,
    ) -> Result<Outcome, ConsensusError> {
        self.commit(group, Command::Batch(proposal)).await
    }

    /// Commits a split of `group` (see [`command::Split`]); `Moved` if it changed nothing (the
    /// group no longer owns the route, or was split there already).
    pub async fn split(
        &self,
        group: GroupId,
        split: command::Split,
    ) -> Result<Outcome, ConsensusError> {
        self.commit(group, Command::Split(split)).await
    }

    /// Commits `command` in `group` through its leader (proposals, splits and the steps of a
    /// merge), waiting through elections for up to [`LEADER_WAIT`].
    pub async fn commit(
        &self,
        group: GroupId,
        command: Command,
    ) -> Result<Outcome, ConsensusError> {
        let started = Instant::now();
        let answer = self
            .at_leader(group, "propose", &command, || {
                self.propose_here(group, command.clone())
            })
            .await;
        let outcome = match &answer {
            Ok(Outcome::Applied) => "applied",
            Ok(Outcome::Conflict) => "conflict",
            Ok(Outcome::Moved) => "moved",
            Err(_) => "failed",
        };
        let raft_metrics = &self.metrics;
        if answer.is_ok() {
            raft_metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        raft_metrics
            .proposals
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
        answer
    }

    /// Runs a request on the leader of `group`: `here` when this gateway leads, else forwarded
    /// to the leader's internal endpoint; retried through elections for up to [`LEADER_WAIT`].
    async fn at_leader<Req, T, F, Fut>(
        &self,
        group: GroupId,
        what: &str,
        body: &Req,
        here: F,
    ) -> Result<T, ConsensusError>
    where
        Req: Serialize,
        T: serde::de::DeserializeOwned,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Forwarded<T>>,
    {
        let started = Instant::now();
        let mut last_error = String::from("no leader elected");
        loop {
            let runs_here = self.host.runs(group);
            let leader = if runs_here {
                self.leader_of(group)
            } else {
                // Not running here: a group only peers run, led where they say.
                if self.remote_group(group).is_none() {
                    self.learn_remote_groups().await;
                }
                match self.remote_group(group) {
                    Some(g) => g.leader.filter(|l| *l != self.id),
                    // A group absorbed by a merge has no leader to wait for: the caller
                    // reroutes.
                    None => {
                        return Err(ConsensusError::NoGroup(
                            group,
                            "neither this gateway nor a peer runs it".into(),
                        ));
                    }
                }
            };
            let attempt = match leader {
                Some(l) if l == self.id => here().await,
                Some(l) => self.forward(group, l, what, body).await,
                None => Forwarded::NotLeader,
            };
            match attempt {
                Forwarded::Done(answer) => return Ok(answer),
                Forwarded::NotLeader => {}
                Forwarded::Failed(e) => last_error = e,
                Forwarded::NotMember => return Err(ConsensusError::NotMember(group)),
            }
            if started.elapsed() > LEADER_WAIT {
                return Err(ConsensusError::NoLeader(LEADER_WAIT, last_error));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !runs_here {
                self.learn_remote_groups().await;
            }
        }
    }

    /// Waits until this replica of the meta group has applied everything committed when the
    /// call began (see [`Consensus::read_barrier_of`]).
    pub async fn read_barrier(&self) -> Result<(), ConsensusError> {
        self.read_barrier_of(INDEX_GROUP).await
    }

    /// Waits until this replica of `group` has applied everything committed in it when the
    /// call began, as confirmed by its current leader: what any gateway acknowledged is then
    /// visible here.
    pub async fn read_barrier_of(&self, group: GroupId) -> Result<(), ConsensusError> {
        let started = Instant::now();
        let runtime = self.runtime(group).await?;
        let (tx, rx) = oneshot::channel();
        runtime
            .read_index_waiters
            .send(tx)
            .map_err(|_| ConsensusError::Fatal("read-index rounds stopped".into()))?;
        let index = rx
            .await
            .map_err(|_| ConsensusError::Fatal("read-index rounds stopped".into()))??;
        runtime
            .raft
            .wait(Some(LEADER_WAIT))
            .applied_index_at_least(index, "read barrier")
            .await
            .map_err(|e| ConsensusError::Lagging(e.to_string()))?;
        self.metrics
            .read_barrier_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// The read index of `group`'s leader, asked now (from this gateway if it leads, else
    /// forwarded), waiting through elections for up to [`LEADER_WAIT`].
    ///
    /// A data group's leader is told who asks (`?from=`), and answers `NotMember` to a gateway
    /// it no longer counts as a member: that replica stopped receiving the group's log when it
    /// was moved away, so it would wait forever to catch up. It is dropped instead, and the
    /// group's keys are read where it now runs.
    async fn fetch_read_index(&self, group: GroupId) -> Result<Option<u64>, ConsensusError> {
        let what = if group == INDEX_GROUP {
            "read-index".to_string()
        } else {
            format!("read-index?from={}", self.id)
        };
        let from = Some(self.id).filter(|_| group != INDEX_GROUP);
        let asked = self
            .at_leader(group, &what, &(), || self.read_index_here(group, from))
            .await;
        if let Err(ConsensusError::NotMember(_)) = &asked {
            tracing::warn!(
                group,
                "this gateway's replica of the index group was moved away; dropping it"
            );
            self.leave(group).await;
        }
        asked
    }

    /// Drops this gateway's replica of `group` and its runtime ([`GroupHost::leave`]).
    pub(crate) async fn leave(&self, group: GroupId) {
        self.host.leave(group).await;
        self.runtimes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&group);
    }

    /// Commits `command` in `group` on this gateway, which believes it leads it.
    pub async fn propose_here(&self, group: GroupId, command: Command) -> Forwarded<Outcome> {
        let runtime = match self.runtime(group).await {
            Ok(r) => r,
            Err(e) => return Forwarded::Failed(e.to_string()),
        };
        if runtime.stepping_down.load(Ordering::Acquire) {
            return Forwarded::NotLeader;
        }
        if let Command::Batch(proposal) = command {
            // Guarded batches go into the group's next entry with the others waiting.
            let (answer, answered) = oneshot::channel();
            if runtime.proposal_waiters.send((proposal, answer)).is_err() {
                return Forwarded::Failed(format!("index group {group} stopped"));
            }
            return answered
                .await
                .unwrap_or_else(|_| Forwarded::Failed(format!("index group {group} stopped")));
        }
        group::outcome_of(&runtime.raft.client_write(command).await, 0)
    }

    /// The read index of `group` (this gateway believes it leads it), for gateway `from`
    /// (`NotMember` if that is not a member of the group).
    pub async fn read_index_here(
        &self,
        group: GroupId,
        from: Option<u64>,
    ) -> Forwarded<Option<u64>> {
        let runtime = match self.runtime(group).await {
            Ok(r) => r,
            Err(e) => return Forwarded::Failed(e.to_string()),
        };
        if runtime.stepping_down.load(Ordering::Acquire) {
            return Forwarded::NotLeader;
        }
        let metrics = runtime.raft.metrics().borrow().clone();
        if let Some(from) = from
            && metrics.current_leader == Some(self.id)
            && metrics
                .membership_config
                .membership()
                .get_node(&from)
                .is_none()
        {
            return Forwarded::NotMember;
        }
        match runtime.raft.ensure_linearizable().await {
            Ok(log_id) => Forwarded::Done(log_id.map(|l| l.index)),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(_))) => {
                Forwarded::NotLeader
            }
            Err(e) => Forwarded::Failed(e.to_string()),
        }
    }

    /// Sends a request for `group` to gateway `leader`: the meta group's requests keep the paths
    /// they had before there were several groups (`/internal/v1/index/{what}`), so gateways of
    /// both versions understand each other during a rolling upgrade.
    async fn forward<Req: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        group: GroupId,
        leader: u64,
        what: &str,
        body: &Req,
    ) -> Forwarded<T> {
        let Some(addr) = self.peer_addr(group, leader) else {
            return Forwarded::Failed(format!("leader {leader} has no known address"));
        };
        let base = addr.trim_end_matches('/');
        let url = if group == INDEX_GROUP {
            format!("{base}/internal/v1/index/{what}")
        } else {
            format!("{base}/internal/v1/index/{group}/{what}")
        };
        let request = self
            .fleet
            .http()
            .post(&url)
            .timeout(Duration::from_secs(10))
            .json(body);
        let sent = self.fleet.send(&leader.to_string(), request).await;
        match sent {
            Ok(r) if r.status().is_success() => r
                .json()
                .await
                .unwrap_or_else(|e| Forwarded::Failed(format!("{url}: {e}"))),
            Ok(r) => Forwarded::Failed(format!("{url}: HTTP {}", r.status())),
            Err(e) => Forwarded::Failed(format!("{url}: {e}")),
        }
    }

    fn peer_addr(&self, group: GroupId, id: u64) -> Option<String> {
        if let Some(addr) = self.peers.get(&id) {
            return Some(addr.clone());
        }
        let raft = self.runtime_now(group).map(|r| r.raft.clone());
        let m = raft
            .as_ref()
            .unwrap_or(&self.raft)
            .metrics()
            .borrow()
            .clone();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// Stops Raft (tests that restart a gateway in-process).
    pub async fn shutdown(&self) {
        self.host.shutdown().await;
    }
}

/// How far a replica of a group has come (`GET /internal/v1/index/{group}/progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupProgress {
    /// The last log index it applied.
    pub applied: Option<u64>,
    /// The log index of the group's freeze, if it applied one (and no thaw since).
    pub frozen: Option<u64>,
}

impl Consensus {
    /// This gateway's progress in `group`, if it runs a replica of it.
    pub async fn progress_here(&self, group: GroupId) -> Option<GroupProgress> {
        let runtime = self.runtime(group).await.ok()?;
        let applied = runtime
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index);
        Some(GroupProgress {
            applied,
            frozen: self.host.frozen_of(group),
        })
    }

    /// Every member's progress in `group` (`None` for a member that did not answer within a
    /// second), asked at once.
    pub async fn progress_of_members(
        &self,
        group: GroupId,
    ) -> BTreeMap<u64, Option<GroupProgress>> {
        let Ok(runtime) = self.runtime(group).await else {
            return BTreeMap::new();
        };
        let m = runtime.raft.metrics().borrow().clone();
        let nodes: Vec<(u64, String)> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let asks = nodes.into_iter().map(|(id, addr)| async move {
            if id == self.id {
                return (id, self.progress_here(group).await);
            }
            let url = format!(
                "{}/internal/v1/index/{group}/progress",
                self.peers.get(&id).unwrap_or(&addr)
            );
            let request = self.fleet.http().get(&url).timeout(Duration::from_secs(1));
            let answer = self.fleet.send(&id.to_string(), request).await;
            let progress = match answer {
                Ok(r) if r.status().is_success() => r.json::<GroupProgress>().await.ok(),
                _ => None,
            };
            (id, progress)
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .collect()
    }
}

/// A follower's lease on its leader: it refuses to vote for anyone else this long after the
/// leader's last heartbeat (openraft 0.9 uses `election_timeout_max`).
const FOLLOWER_LEASE: Duration = Duration::from_millis(800);

impl Consensus {
    /// Hands this gateway's leadership of `group` to its voter `to`: `to` is told to stand for
    /// election as soon as the followers' leases on this leader have run out, and this leader
    /// steps down (no heartbeats, no proposals, no election of its own), so `to` is first.
    /// Whether `to` leads now (another voter may still win the race; the balancer tries again
    /// later).
    pub async fn hand_over(&self, group: GroupId, to: u64) -> Result<bool, ConsensusError> {
        let runtime = self.runtime(group).await?;
        if !leads(self.id, &runtime.raft) || to == self.id {
            return Ok(false);
        }
        if let Forwarded::Failed(e) = self.forward::<_, ()>(group, to, "campaign", &()).await {
            tracing::debug!(group, to, error = %e, "the new leader was not told to campaign");
            return Ok(false);
        }
        let leader = group::step_down(self.id, &runtime.raft, &runtime.stepping_down).await;
        tracing::info!(group, to, ?leader, "index group leadership handed over");
        if leader == Some(to)
            && let Some(observe) = self.hand_over_observer.get()
        {
            observe(group, to);
        }
        Ok(leader == Some(to))
    }

    /// Stands for election in `group` once the followers' leases on the current leader have run
    /// out (it is stepping down for this gateway: see [`Consensus::hand_over`]).
    pub async fn campaign_here(&self, group: GroupId) -> Forwarded<()> {
        let runtime = match self.runtime(group).await {
            Ok(r) => r,
            Err(e) => return Forwarded::Failed(e.to_string()),
        };
        tokio::spawn(async move {
            tokio::time::sleep(FOLLOWER_LEASE + Duration::from_millis(150)).await;
            if let Err(e) = runtime.raft.trigger().elect().await {
                tracing::debug!(group, error = %e, "campaign not started");
            }
        });
        Forwarded::Done(())
    }

    /// On the meta group's leader: moves one group leadership from the gateway whose
    /// leaderships weigh most (by count, and by `pressure`) to a voter of that group at least
    /// two groups' weight lighter ([`balance::next_move`]), never to a gone gateway, and not
    /// while gateways are being drained. Returns the move made, if any.
    pub async fn balance_leaders(&self, pressure: &balance::Pressure) -> Option<balance::Move> {
        if !self.is_leader() {
            return None;
        }
        // A drain moves votes and leaderships itself: leaderships are not shuffled meanwhile.
        let mut excluded = self.retiring_here();
        if !excluded.is_empty() {
            return None;
        }
        excluded.extend(
            self.peer_views
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|p| !p.reachable || p.gone)
                .map(|p| p.id),
        );
        // Groups this gateway does not run are balanced too, as their replicas describe them.
        self.refresh_remote_groups().await;
        let m = balance::next_move(
            &self.fleet_group_statuses(),
            &excluded,
            INDEX_GROUP,
            pressure,
        )?;
        let body = HandOver { to: m.to };
        let moved = if m.from == self.id {
            self.hand_over(m.group, m.to).await.unwrap_or(false)
        } else {
            matches!(
                self.forward::<_, bool>(m.group, m.from, "hand-over", &body)
                    .await,
                Forwarded::Done(true)
            )
        };
        tracing::info!(
            group = m.group,
            from = m.from,
            to = m.to,
            moved,
            "balancing index group leaderships"
        );
        Some(m)
    }
}

/// Body of `POST /internal/v1/index/{group}/hand-over`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HandOver {
    /// The voter to lead the group.
    pub to: u64,
}

/// Whether `id` leads the group of `raft`.
fn leads(id: u64, raft: &Raft<TypeConfig>) -> bool {
    let m = raft.metrics();
    let m = m.borrow();
    m.state == ServerState::Leader && m.current_leader == Some(id)
}

fn sorted(ids: impl Iterator<Item = u64>) -> Vec<u64> {
    ids.collect::<BTreeSet<_>>().into_iter().collect()
}

/// Starts the runtime of every group the host runs, as groups appear (born of splits, or
/// created by snapshots), drops those of groups that are gone (absorbed by merges), and keeps
/// the recorded layout of the groups led here current. Ends with the gateway.
async fn supervise_groups(consensus: std::sync::Weak<Consensus>) {
    /// How often this gateway learns where the groups run (which also tells it of replicas
    /// here that their groups moved away).
    const MEMBERSHIP_CHECK: Duration = Duration::from_secs(3);
    let mut checked = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(c) = consensus.upgrade() else {
            return;
        };
        if c.raft.metrics().borrow().running_state.is_err() {
            return;
        }
        let hosted = c.host.groups().await;
        {
            let c = c.clone();
            tokio::spawn(async move { c.publish_layout().await });
        }
        if checked.elapsed() > MEMBERSHIP_CHECK {
            checked = Instant::now();
            if !c.known_peers().is_empty() {
                let c = c.clone();
                tokio::spawn(async move { c.refresh_remote_groups().await });
            }
        }
        for &group in &hosted {
            if c.runtime_now(group).is_none()
                && let Err(e) = c.runtime(group).await
            {
                tracing::debug!(group, error = %e, "index group runtime not started");
            }
        }
        // Groups absorbed by a merge are gone: so are their runtimes (their tasks end with
        // their Raft).
        let mut runtimes = c.runtimes.lock().unwrap_or_else(|e| e.into_inner());
        runtimes.retain(|group, _| hosted.contains(group));
        c.metrics.groups.set(runtimes.len() as i64);
    }
}

/// Parses `ID=URL` (a `--peer`).
pub fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, url) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected ID=URL, e.g. 1=http://10.0.0.1:9001"))?;
    // Any unsigned integer: on Kubernetes it is the StatefulSet pod's ordinal, from 0.
    let id: u64 = id
        .parse()
        .map_err(|_| format!("{s:?}: the id must be an unsigned integer"))?;
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(format!(
            "{s:?}: the URL must start with http:// or https://"
        ));
    }
    Ok((id, url.trim_end_matches('/').to_string()))
}
