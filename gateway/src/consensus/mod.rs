//! The replicated index: the gateways' RocksDB indexes kept identical by Raft (openraft).
//!
//! Today the whole keyspace is one Raft group with a replica on every gateway listed in `--peer`;
//! `--index-replicas` of them (three by default) vote, spread over zones, and a voter gone for
//! longer than `--replica-grace` hands its vote to another gateway ([`membership`]). An index
//! operation runs on the gateway that received the
//! request: it first waits until its replica has applied everything the leader had committed
//! when the operation began (a read barrier, so reads and lists are linearizable through any
//! gateway), computes its batch locally, and proposes it guarded by what it read
//! ([`proposal::Proposal`]). The leader orders proposals in the log; a batch commits once a
//! majority has it on disk, and every replica applies it only if its guard holds.

pub mod command;
pub mod digest;
pub mod host;
pub mod membership;
pub mod network;
pub mod proposal;
pub mod ranges;
pub mod retiring;
pub mod rpc;
pub mod snapshot;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::index::engine::RocksEngine;
use crate::metrics::{GatewayMetrics, OutcomeLabels};
use network::HttpNetwork;
use proposal::{Outcome, Proposal};
use store::{GroupId, INDEX_GROUP, LogStore, StateMachine};

openraft::declare_raft_types!(
    /// Raft types of the replicated index.
    pub TypeConfig:
        D = command::Command,
        R = Outcome,
        SnapshotData = tokio::fs::File,
);

/// How long an operation waits for a leader (an election after a crash takes about a second).
const LEADER_WAIT: Duration = Duration::from_secs(15);

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
}

/// Where this gateway's index replica sits.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// This gateway's id (unique, stable across restarts).
    pub id: u64,
    /// Every gateway of the fleet (this one too): id → admin API base URL.
    pub peers: BTreeMap<u64, String>,
    /// Token peers present (the fleet's admin token).
    pub token: String,
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
}

/// The replication state as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// This gateway's id.
    pub id: u64,
    /// Leader, follower, candidate or learner.
    pub state: String,
    /// The current leader, if known.
    pub leader: Option<u64>,
    /// Raft term.
    pub term: u64,
    /// Last log index on this replica.
    pub last_log_index: Option<u64>,
    /// Last index applied to this replica's index.
    pub applied_index: Option<u64>,
    /// This gateway's zone.
    pub zone: String,
    /// Voting members (gateway ids).
    pub voters: Vec<u64>,
    /// Members holding a replica without a vote.
    pub learners: Vec<u64>,
    /// The listed gateways as the leader probes them (empty on other gateways).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerStatus>,
    /// Gateways being drained (`PUT /admin/v1/index/retiring`), as this replica holds the
    /// set: they hand their votes and the leadership to the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring: Vec<u64>,
    /// Last log index covered by this replica's newest snapshot.
    pub snapshot_index: Option<u64>,
    /// Log entries up to this index are purged from this replica's log.
    pub purged_index: Option<u64>,
}

/// A listed gateway as the leader's membership reconciler last saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// Gateway id.
    pub id: u64,
    /// Its zone, once it answered.
    pub zone: Option<String>,
    /// Whether it answered the last probe.
    pub reachable: bool,
    /// Seconds since it last answered (or since this leader took over).
    pub unseen_seconds: f64,
    /// Whether it has been unreachable for longer than the grace period.
    pub gone: bool,
}

/// What a gateway tells the leader's probe (`GET /internal/v1/index/hello`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// Its gateway id.
    pub id: u64,
    /// Its zone.
    pub zone: String,
}

/// This gateway's replica of the replicated index.
pub struct Consensus {
    id: u64,
    zone: String,
    raft: Raft<TypeConfig>,
    peers: BTreeMap<u64, String>,
    http: reqwest::Client,
    token: String,
    metrics: Arc<GatewayMetrics>,
    /// Read barriers waiting for the next read-index round (see [`read_index_rounds`]).
    read_index_waiters: mpsc::UnboundedSender<ReadIndexWaiter>,
    /// Told of every applied write (the index counts partition load with it).
    apply_observer: Arc<std::sync::OnceLock<store::ApplyObserver>>,
    /// Told of the reads other gateways report (while this one leads).
    read_observer: std::sync::OnceLock<store::ReadObserver>,
    /// The listed gateways as this gateway's membership reconciler sees them while it leads.
    peer_views: Arc<std::sync::Mutex<Vec<PeerStatus>>>,
    /// This replica of the index (the retiring set is read from it).
    engine: Arc<RocksEngine>,
    /// Set while this leader hands over the leadership: it refuses proposals and read-index
    /// requests (their callers retry), so nothing resets the followers' election timers.
    stepping_down: Arc<AtomicBool>,
}

/// Where a read-index round delivers the index (or why there is none).
type ReadIndexWaiter = oneshot::Sender<Result<Option<u64>, ConsensusError>>;

impl Consensus {
    /// Starts the replica over `engine`. The gateway with the smallest id forms the group the
    /// first time (every gateway must list the same peers).
    pub async fn start(
        cfg: ConsensusConfig,
        engine: Arc<RocksEngine>,
        http: reqwest::Client,
        metrics: Arc<GatewayMetrics>,
    ) -> Result<Arc<Self>, ConsensusError> {
        if !cfg.peers.contains_key(&cfg.id) {
            return Err(ConsensusError::Setup(format!(
                "--gateway-id {} is not among the --peer entries",
                cfg.id
            )));
        }
        let config = openraft::Config {
            cluster_name: "cairn-index".into(),
            heartbeat_interval: 50,
            election_timeout_min: 400,
            election_timeout_max: 800,
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
        let apply_observer = Arc::new(std::sync::OnceLock::new());
        let raft = Raft::new(
            cfg.id,
            Arc::new(config),
            HttpNetwork::new(http.clone(), cfg.token.clone(), INDEX_GROUP),
            LogStore::new(&engine, INDEX_GROUP),
            StateMachine::open(engine.clone(), INDEX_GROUP, apply_observer.clone())
                .map_err(|e| ConsensusError::Setup(e.to_string()))?,
        )
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
        tokio::spawn(observe(cfg.id, raft.clone(), metrics.clone()));
        let peer_views = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stepping_down = Arc::new(AtomicBool::new(false));
        tokio::spawn(reconcile_membership(
            Reconciler {
                raft: raft.clone(),
                id: cfg.id,
                zone: cfg.zone.clone(),
                peers: cfg.peers.clone(),
                replicas: cfg.replicas,
                grace: cfg.replica_grace,
                http: http.clone(),
                token: cfg.token.clone(),
                metrics: metrics.clone(),
                engine: engine.clone(),
                stepping_down: stepping_down.clone(),
            },
            peer_views.clone(),
        ));
        let (read_index_waiters, rounds) = mpsc::unbounded_channel();
        let consensus = Arc::new(Self {
            id: cfg.id,
            zone: cfg.zone,
            raft,
            peers: cfg.peers,
            http,
            token: cfg.token,
            metrics,
            read_index_waiters,
            apply_observer,
            read_observer: std::sync::OnceLock::new(),
            peer_views,
            engine,
            stepping_down,
        });
        tokio::spawn(read_index_rounds(Arc::downgrade(&consensus), rounds));
        Ok(consensus)
    }

    /// Has `observer` told the load key of every write batch this replica applies from now on
    /// (once; later calls are ignored).
    pub fn observe_applied(&self, observer: store::ApplyObserver) {
        let _ = self.apply_observer.set(observer);
    }

    /// Has `observer` told the reads other gateways report to this one while it leads (once).
    pub fn observe_reported_reads(&self, observer: store::ReadObserver) {
        let _ = self.read_observer.set(observer);
    }

    /// Sends `report` to the leader, once (a lost report only makes the leader's read rate a
    /// little low for a tick). Nothing to do on the leader itself, which counts its own reads.
    pub async fn report_reads(&self, report: &store::ReadReport) -> Result<(), ConsensusError> {
        match self.leader() {
            Some(l) if l != self.id => match self.forward::<_, ()>(l, "read-load", report).await {
                Forwarded::Done(()) | Forwarded::NotLeader => Ok(()),
                Forwarded::Failed(e) => Err(ConsensusError::NoLeader(Duration::ZERO, e)),
            },
            _ => Ok(()),
        }
    }

    /// A report from another gateway, handled here if this gateway leads.
    pub fn reported_reads_here(&self, report: &store::ReadReport) -> Forwarded<()> {
        if !self.is_leader() {
            return Forwarded::NotLeader;
        }
        if let Some(observe) = self.read_observer.get() {
            observe(report);
        }
        Forwarded::Done(())
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
        }
    }

    /// The Raft group this replica belongs to (the whole index, today).
    pub fn group(&self) -> GroupId {
        INDEX_GROUP
    }

    /// The Raft handle (for the RPC endpoints).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The current leader, if one is known.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether this gateway leads (it runs the fleet-wide background work: GC, lifecycle).
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// The replication state.
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
            voters: membership
                .voter_ids()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            learners: membership
                .learner_ids()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            peers,
            retiring: self.retiring_here().into_iter().collect(),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
        }
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
    /// the leadership to the others. Idempotent: the operator repeats it every reconcile, and
    /// an unchanged set costs a read barrier, not a log entry. Returns this replica's status
    /// once it holds the set.
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
        Ok(self.status())
    }

    /// Runs `f` on a consistent view of this replica: the index (default column family) and the
    /// log index it has applied, read from the same RocksDB snapshot (a batch and its applied
    /// position are written together).
    pub fn with_view<T>(
        &self,
        f: impl FnOnce(&rocksdb::Snapshot<'_>, Option<u64>) -> T,
    ) -> Result<T, ConsensusError> {
        let db = self.engine.db();
        let snap = db.snapshot();
        let applied = store::applied_in(&db, &snap, INDEX_GROUP).map_err(ConsensusError::Fatal)?;
        Ok(f(&snap, applied))
    }

    /// Commits `proposal` through the leader (this gateway or another) and returns whether its
    /// guard held. Waits through elections for up to [`LEADER_WAIT`].
    pub async fn propose(&self, proposal: Proposal) -> Result<Outcome, ConsensusError> {
        let started = Instant::now();
        let answer = self
            .at_leader("propose", &proposal, || self.propose_here(proposal.clone()))
            .await;
        let outcome = match &answer {
            Ok(Outcome::Applied) => "applied",
            Ok(Outcome::Conflict) => "conflict",
            Ok(Outcome::Moved) => "moved",
            Err(_) => "failed",
        };
        let raft_metrics = &self.metrics.raft;
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

    /// Runs a request on the leader: `here` when this gateway leads, else forwarded to the
    /// leader's `/internal/v1/index/{what}`; retried through elections for up to
    /// [`LEADER_WAIT`].
    async fn at_leader<Req, T, F, Fut>(
        &self,
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
            let attempt = match self.leader() {
                Some(l) if l == self.id => here().await,
                Some(l) => self.forward(l, what, body).await,
                None => Forwarded::NotLeader,
            };
            match attempt {
                Forwarded::Done(answer) => return Ok(answer),
                Forwarded::NotLeader => {}
                Forwarded::Failed(e) => last_error = e,
            }
            if started.elapsed() > LEADER_WAIT {
                return Err(ConsensusError::NoLeader(LEADER_WAIT, last_error));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until this replica has applied everything committed when the call began, as
    /// confirmed by the current leader: what any gateway acknowledged is then visible here.
    pub async fn read_barrier(&self) -> Result<(), ConsensusError> {
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        self.read_index_waiters
            .send(tx)
            .map_err(|_| ConsensusError::Fatal("read-index rounds stopped".into()))?;
        let index = rx
            .await
            .map_err(|_| ConsensusError::Fatal("read-index rounds stopped".into()))??;
        self.raft
            .wait(Some(LEADER_WAIT))
            .applied_index_at_least(index, "read barrier")
            .await
            .map_err(|e| ConsensusError::Lagging(e.to_string()))?;
        self.metrics
            .raft
            .read_barrier_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// The leader's read index, asked now (from this gateway if it leads, else forwarded),
    /// waiting through elections for up to [`LEADER_WAIT`].
    async fn fetch_read_index(&self) -> Result<Option<u64>, ConsensusError> {
        self.at_leader("read-index", &(), || self.read_index_here())
            .await
    }

    /// Proposes on this gateway, which believes it leads.
    pub async fn propose_here(&self, proposal: Proposal) -> Forwarded<Outcome> {
        if self.stepping_down.load(Ordering::Acquire) {
            return Forwarded::NotLeader;
        }
        match self.raft.client_write(proposal.into()).await {
            Ok(resp) => Forwarded::Done(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Forwarded::NotLeader,
            Err(e) => Forwarded::Failed(e.to_string()),
        }
    }

    /// The leader's read index (this gateway believes it leads), once its own replica applied it.
    pub async fn read_index_here(&self) -> Forwarded<Option<u64>> {
        if self.stepping_down.load(Ordering::Acquire) {
            return Forwarded::NotLeader;
        }
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Forwarded::Done(log_id.map(|l| l.index)),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(_))) => {
                Forwarded::NotLeader
            }
            Err(e) => Forwarded::Failed(e.to_string()),
        }
    }

    async fn forward<Req: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        leader: u64,
        what: &str,
        body: &Req,
    ) -> Forwarded<T> {
        let Some(addr) = self.peer_addr(leader) else {
            return Forwarded::Failed(format!("leader {leader} has no known address"));
        };
        let url = format!("{}/internal/v1/index/{what}", addr.trim_end_matches('/'));
        let sent = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10))
            .json(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => r
                .json()
                .await
                .unwrap_or_else(|e| Forwarded::Failed(format!("{url}: {e}"))),
            Ok(r) => Forwarded::Failed(format!("{url}: HTTP {}", r.status())),
            Err(e) => Forwarded::Failed(format!("{url}: {e}")),
        }
    }

    fn peer_addr(&self, id: u64) -> Option<String> {
        if let Some(addr) = self.peers.get(&id) {
            return Some(addr.clone());
        }
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// Stops Raft (tests that restart a gateway in-process).
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// Serves read barriers in rounds: every barrier waiting when a round starts shares that
/// round's read index. That is still linearizable (the index is asked after each of them began)
/// and costs one leader confirmation per round instead of one per operation.
async fn read_index_rounds(
    consensus: std::sync::Weak<Consensus>,
    mut waiting: mpsc::UnboundedReceiver<ReadIndexWaiter>,
) {
    while let Some(first) = waiting.recv().await {
        let mut round = vec![first];
        while let Ok(w) = waiting.try_recv() {
            round.push(w);
        }
        let Some(c) = consensus.upgrade() else {
            return;
        };
        let index = c.fetch_read_index().await;
        drop(c);
        for w in round {
            let _ = w.send(index.clone());
        }
    }
}

/// Follows Raft's state into the metrics, and logs every change of leader.
async fn observe(id: u64, raft: Raft<TypeConfig>, metrics: Arc<GatewayMetrics>) {
    let mut rx = raft.metrics();
    drop(raft);
    let mut leader = None;
    loop {
        {
            let m = rx.borrow_and_update();
            let r = &metrics.raft;
            r.term.set(m.current_term as i64);
            r.is_leader.set(i64::from(m.current_leader == Some(id)));
            r.applied_index
                .set(m.last_applied.map(|l| l.index as i64).unwrap_or(0));
            r.voters
                .set(m.membership_config.membership().voter_ids().count() as i64);
            r.learners
                .set(m.membership_config.membership().learner_ids().count() as i64);
            if m.current_leader != leader {
                if m.current_leader.is_some() {
                    r.leader_changes.inc();
                }
                tracing::info!(
                    gateway = id,
                    term = m.current_term,
                    leader = ?m.current_leader,
                    previous = ?leader,
                    "index leader changed"
                );
                leader = m.current_leader;
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// What the membership reconciler works from.
struct Reconciler {
    raft: Raft<TypeConfig>,
    id: u64,
    zone: String,
    /// The listed gateways: id → admin URL.
    peers: BTreeMap<u64, String>,
    replicas: usize,
    grace: Duration,
    http: reqwest::Client,
    token: String,
    metrics: Arc<GatewayMetrics>,
    /// This replica of the index, which holds the retiring set (see [`Consensus::retire`]).
    engine: Arc<RocksEngine>,
    /// See [`Consensus::stepping_down`].
    stepping_down: Arc<AtomicBool>,
}

impl Reconciler {
    /// Hands the leadership to another voter: stops heartbeats, refuses new proposals and
    /// read-index requests, and does not stand for election, so the followers' election timers
    /// run out and one of them takes over (openraft 0.9 has no leader transfer). Gives up after
    /// a few seconds (no other voter could win) and leads on; the next tick tries again.
    async fn step_down(&self) {
        const HANDOVER_WAIT: Duration = Duration::from_secs(5);
        self.stepping_down.store(true, Ordering::Release);
        let config = self.raft.runtime_config();
        config.elect(false);
        config.heartbeat(false);
        let id = self.id;
        let handed = self
            .raft
            .wait(Some(HANDOVER_WAIT))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != id),
                "another index leader",
            )
            .await;
        config.heartbeat(true);
        config.elect(true);
        self.stepping_down.store(false, Ordering::Release);
        match handed {
            Ok(m) => {
                tracing::info!(leader = ?m.current_leader, "handed the index leadership over (this gateway is retiring)")
            }
            Err(e) => {
                tracing::warn!(error = %e, "no other gateway took over the index leadership; leading on")
            }
        }
    }

    /// Asks every other listed gateway for its zone at once; `None` for those that do not answer
    /// within a short timeout.
    async fn probe(&self) -> BTreeMap<u64, Option<String>> {
        let asks =
            self.peers
                .iter()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, addr)| async move {
                    let url = format!("{addr}/internal/v1/index/hello");
                    let answer = self
                        .http
                        .get(&url)
                        .bearer_auth(&self.token)
                        .timeout(Duration::from_millis(800))
                        .send()
                        .await;
                    let hello = match answer {
                        Ok(r) if r.status().is_success() => r.json::<Hello>().await.ok(),
                        _ => None,
                    };
                    // A gateway answering with another id is misconfigured: it does not count as seen.
                    (*id, hello.filter(|h| h.id == *id).map(|h| h.zone))
                });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .collect()
    }
}

/// What the leader remembers of a listed gateway between ticks.
#[derive(Debug, Clone)]
struct Sighting {
    zone: Option<String>,
    reachable: bool,
    /// When it last answered, or when this gateway started leading (a new leader gives every
    /// gateway a full grace period).
    seen: Instant,
}

/// On the leader, moves the membership one step at a time towards the shape [`membership`]
/// derives from the listed gateways, their zones and their liveness. Ends when Raft stops.
async fn reconcile_membership(r: Reconciler, views: Arc<std::sync::Mutex<Vec<PeerStatus>>>) {
    use openraft::ChangeMembers;
    /// A learner this close to the leader's log votes without stalling commits.
    const CAUGHT_UP_SLACK: u64 = 64;
    let mut sightings: BTreeMap<u64, Sighting> = BTreeMap::new();
    let mut leading = false;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let m = r.raft.metrics().borrow().clone();
        if m.running_state.is_err() {
            return;
        }
        if m.current_leader != Some(r.id) || m.state != ServerState::Leader {
            leading = false;
            r.metrics.raft.gone_peers.set(0);
            r.metrics.raft.retiring_peers.set(0);
            continue;
        }
        let now = Instant::now();
        if !leading {
            leading = true;
            for s in sightings.values_mut() {
                s.seen = now;
            }
        }
        let answers = r.probe().await;
        let now = Instant::now();
        for (id, answer) in answers {
            let s = sightings.entry(id).or_insert(Sighting {
                zone: None,
                reachable: false,
                seen: now,
            });
            s.reachable = answer.is_some();
            if let Some(zone) = answer {
                s.zone = Some(zone);
                s.seen = now;
            }
        }
        sightings.insert(
            r.id,
            Sighting {
                zone: Some(r.zone.clone()),
                reachable: true,
                seen: now,
            },
        );
        let peers: BTreeMap<u64, membership::Peer> = r
            .peers
            .iter()
            .map(|(id, addr)| {
                let s = &sightings[id];
                let peer = membership::Peer {
                    addr: addr.clone(),
                    zone: s.zone.clone(),
                    reachable: s.reachable,
                    gone: now.duration_since(s.seen) > r.grace,
                };
                (*id, peer)
            })
            .collect();
        let gone = peers.values().filter(|p| p.gone).count();
        r.metrics.raft.gone_peers.set(gone as i64);
        *views.lock().unwrap_or_else(|e| e.into_inner()) = peers
            .iter()
            .map(|(id, p)| PeerStatus {
                id: *id,
                zone: p.zone.clone(),
                reachable: p.reachable,
                unseen_seconds: now.duration_since(sightings[id].seen).as_secs_f64(),
                gone: p.gone,
            })
            .collect();
        // The retiring set as committed: confirm the leadership and apply everything before
        // reading it, so a leader elected mid-drain plans from the set its predecessor had.
        if let Err(e) = r.raft.ensure_linearizable().await {
            tracing::debug!(error = %e, "leadership not confirmed; membership waits");
            continue;
        }
        let retiring = match retiring::read(r.engine.as_ref()) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the retiring gateways; membership waits");
                continue;
            }
        };
        r.metrics.raft.retiring_peers.set(retiring.len() as i64);
        let desired = membership::Desired {
            peers,
            replicas: r.replicas,
            leader: r.id,
            retiring,
        };
        let config = m.membership_config.membership();
        let last = m.last_log_index.unwrap_or(0);
        let matched = m.replication.clone().unwrap_or_default();
        let current = membership::Current {
            voters: config.voter_ids().collect(),
            learners: config.learner_ids().collect(),
            caught_up: matched
                .iter()
                .filter(|(_, log)| {
                    log.map(|l| l.index + CAUGHT_UP_SLACK >= last)
                        .unwrap_or(false)
                })
                .map(|(id, _)| *id)
                .collect(),
        };
        let Some(step) = membership::next_step(&desired, &current) else {
            continue;
        };
        tracing::info!(?step, "changing the index group's membership");
        let raft = &r.raft;
        let done = match step.clone() {
            membership::Step::AddLearner(peer, addr) => raft
                .add_learner(peer, BasicNode { addr }, false)
                .await
                .map(|_| ()),
            membership::Step::Promote(ids) => raft
                .change_membership(ChangeMembers::AddVoterIds(ids), false)
                .await
                .map(|_| ()),
            // `retain`: a demoted voter stays a learner, so it keeps a replica.
            membership::Step::Demote(ids) => raft
                .change_membership(ChangeMembers::RemoveVoters(ids), true)
                .await
                .map(|_| ()),
            membership::Step::RemoveLearners(ids) => raft
                .change_membership(ChangeMembers::RemoveNodes(ids), false)
                .await
                .map(|_| ()),
            membership::Step::StepDown => {
                r.step_down().await;
                continue;
            }
        };
        match done {
            Ok(()) => tracing::info!(?step, "index group membership changed"),
            Err(RaftError::Fatal(e)) => {
                tracing::debug!(error = %e, "raft stopped; membership reconciler ends");
                return;
            }
            Err(e) => tracing::warn!(?step, error = %e, "membership change failed; will retry"),
        }
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
