//! Where the keys of an operation are: in groups running here (read from the local replica past
//! their read barriers) or in groups only peers run ([`remote`](super::remote)), read through
//! one of their replicas.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::layout;
use super::remote::{self, Directory, GroupReplica, ReadValue, RemoteAnswer, RemoteRead};
use super::store::GroupId;
use super::{Consensus, ConsensusError, Forwarded, LEADER_WAIT};
use cairn_kv::KeyRanges;
use cairn_kv::{EngineError, Entries, KvEngine};

/// The peers are asked where groups are at most this often (a burst of operations on keys
/// owned by no group here asks once).
const LEARN_EVERY: Duration = Duration::from_millis(200);

/// How long the peers have to say which groups they run.
const LEARN_TIMEOUT: Duration = Duration::from_secs(2);

/// The groups owning a range of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Groups running here, in id order.
    pub local: Vec<GroupId>,
    /// Groups only peers run, in id order.
    pub remote: Vec<GroupId>,
    /// Whether they own every key of the range between them.
    pub complete: bool,
}

impl Route {
    /// The one group owning every key of the range, if one does.
    pub fn single(&self) -> Option<GroupId> {
        match (self.local.as_slice(), self.remote.as_slice()) {
            ([g], []) | ([], [g]) => Some(*g),
            _ => None,
        }
    }

    /// Whether it is exactly `group`.
    pub fn is(&self, group: GroupId) -> bool {
        self.complete && self.single() == Some(group)
    }
}

/// A part of a range owned by one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// First key.
    pub start: Vec<u8>,
    /// Past the last key.
    pub end: Vec<u8>,
    /// The owning group.
    pub group: GroupId,
    /// Whether it runs here.
    pub local: bool,
}

/// A replica here of a group that no other member runs any more for this long is stale: the
/// group was absorbed by a merge after this replica had been moved away (a group born of a
/// split starts on all its members within moments).
const ORPHANED_FOR: Duration = Duration::from_secs(5);

/// A gateway that learned from the recorded layout and asks again this soon asks every peer.
const RETRY_EVERY_PEER: Duration = Duration::from_secs(1);

/// The meta leader asks every peer this often, to record groups no leader described (their
/// leader lost or not yet elected) and delete the records of groups no gateway runs.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// When and how the directory was last learned.
#[derive(Default)]
pub(super) struct LearnState {
    /// The last learning.
    at: Option<Instant>,
    /// The last learning from the recorded layout (`None` if the last one asked every peer).
    from_layout_at: Option<Instant>,
    /// The meta leader's last sweep of every peer.
    swept_at: Option<Instant>,
}

/// The remote groups directory and when the peers were last asked.
#[derive(Default)]
pub(super) struct RemoteGroups {
    directory: std::sync::RwLock<Directory>,
    learned: tokio::sync::Mutex<LearnState>,
    /// Groups running here that no other member said it runs, since when.
    orphans: std::sync::Mutex<BTreeMap<GroupId, Instant>>,
    /// Held while this gateway writes the records of the groups it leads.
    publishing: tokio::sync::Mutex<()>,
}

impl Consensus {
    /// The groups owning `[start, end)`: those running here first, then, for keys none of them
    /// owns, the remote groups last learned.
    pub fn route(&self, start: &[u8], end: &[u8]) -> Route {
        let owners = self.host.owners(start, end);
        if owners.complete {
            return Route {
                local: owners.groups,
                remote: Vec::new(),
                complete: true,
            };
        }
        let (found, rest) = self.remote_directory().cover(&self.holes(start, end));
        Route {
            local: owners.groups,
            remote: found.into_iter().map(|(g, _)| g).collect(),
            complete: rest.is_empty(),
        }
    }

    /// The owners of `[start, end)`, part by part in key order; `None` if some key is owned by
    /// no group known here.
    pub fn segments(&self, start: &[u8], end: &[u8]) -> Option<Vec<Segment>> {
        let span = KeyRanges::span(start, end);
        let mut out = Vec::new();
        let mut push = |group: GroupId, owned: &KeyRanges, local: bool| {
            for (s, e) in owned.iter() {
                out.push(Segment {
                    start: s.to_vec(),
                    end: e.to_vec(),
                    group,
                    local,
                });
            }
        };
        let mut rest = span;
        for (group, ranges) in self.host.directory() {
            let (inside, outside) = rest.partition_by(&ranges);
            push(group, &inside, true);
            rest = outside;
        }
        let (found, rest) = self.remote_directory().cover(&rest);
        for (group, owned) in &found {
            push(*group, owned, false);
        }
        out.sort_by(|a, b| a.start.cmp(&b.start));
        rest.is_empty().then_some(out)
    }

    /// The keys of `[start, end)` no group running here owns.
    fn holes(&self, start: &[u8], end: &[u8]) -> KeyRanges {
        let mut rest = KeyRanges::span(start, end);
        for (_, ranges) in self.host.directory() {
            rest = rest.partition_by(&ranges).1;
        }
        rest
    }

    fn remote_directory(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        self.remote
            .directory
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// What this gateway knows of `group`, which it does not run.
    pub fn remote_group(&self, group: GroupId) -> Option<GroupReplica> {
        self.remote_directory().get(group).cloned()
    }

    /// Every group running here, as `GET /internal/v1/index/groups` describes it to peers.
    pub fn groups_here(&self) -> Vec<GroupReplica> {
        self.group_statuses()
            .into_iter()
            .filter_map(|s| {
                Some(GroupReplica {
                    ranges: self.host.ranges_of(s.group)?,
                    group: s.group,
                    voters: s.voters,
                    learners: s.learners,
                    leader: s.leader,
                    applied: s.applied_index,
                })
            })
            .collect()
    }

    /// The groups only peers run, as last learned, in id order.
    pub fn remote_group_statuses(&self) -> Vec<super::GroupStatus> {
        let readable = |k: &[u8]| self.schema.readable(k);
        self.remote_directory()
            .iter()
            .map(|g| {
                let routes = self.schema.routes_of(&g.ranges);
                super::GroupStatus {
                    group: g.group,
                    leader: g.leader,
                    term: 0,
                    applied_index: g.applied,
                    voters: g.voters.clone(),
                    learners: g.learners.clone(),
                    objects_from: routes.as_ref().map(|(s, _)| readable(s)),
                    objects_to: routes.and_then(|(_, e)| e).map(|e| readable(&e)),
                    frozen: None,
                    snapshot_index: None,
                    purged_index: None,
                }
            })
            .collect()
    }

    /// Every group of the fleet: those running here, then those only peers run, in id order.
    pub fn fleet_group_statuses(&self) -> Vec<super::GroupStatus> {
        let mut all = self.group_statuses();
        all.extend(self.remote_group_statuses());
        all.sort_by_key(|g| g.group);
        all
    }

    /// Learns where the groups run (at most every [`LEARN_EVERY`]; concurrent callers wait for
    /// one round) and keeps, per group not running here, the freshest description.
    ///
    /// A gateway reads the layout recorded in its replica of the meta group ([`layout`], kept
    /// by the groups' leaders: [`Consensus::publish_layout`]) and asks the other members of its
    /// own groups (whose answers also tell it of replicas here that were moved away), so
    /// learning costs a request per group-mate, whatever the size of the fleet. Every peer is
    /// asked instead by the meta leader every [`SWEEP_EVERY`] (it records what no leader
    /// did), while nothing is recorded yet, and by a gateway asking again within
    /// [`RETRY_EVERY_PEER`] of reading the records: they did not route it (a leader's record
    /// is moments behind a split or a move).
    pub async fn learn_remote_groups(&self) {
        self.learn(true).await
    }

    /// As [`Consensus::learn_remote_groups`], for a periodic refresh rather than a route the
    /// directory missed: never asks every peer for being soon after the last learning.
    pub(super) async fn refresh_remote_groups(&self) {
        self.learn(false).await
    }

    /// Learns where the groups run; `retrying`: a caller the last learning did not serve, which
    /// asks every peer if that learning was from the recorded layout.
    async fn learn(&self, retrying: bool) {
        let mut state = self.remote.learned.lock().await;
        if state.at.is_some_and(|at| at.elapsed() < LEARN_EVERY) {
            return;
        }
        let local = self.host.groups().await;
        let retry = retrying
            && state
                .from_layout_at
                .is_some_and(|at| at.elapsed() < RETRY_EVERY_PEER);
        let sweep = self.is_leader() && state.swept_at.is_none_or(|at| at.elapsed() > SWEEP_EVERY);
        let recorded = if sweep || retry {
            None
        } else {
            match layout::read(self.engine.as_ref()) {
                Ok(r) if !r.is_empty() => Some(r),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "the recorded index group layout is unreadable");
                    None
                }
            }
        };
        let (answers, recorded) = match recorded {
            Some(recorded) => {
                state.from_layout_at = Some(Instant::now());
                let answers = self.ask_group_mates(&local).await;
                (answers, recorded.into_values().collect())
            }
            None => {
                state.from_layout_at = None;
                let peers = self.known_peers().len();
                let answers = self.ask_every_peer().await;
                if self.is_leader() {
                    self.record_layout(&answers, answers.len() == peers).await;
                    state.swept_at = Some(Instant::now());
                }
                (answers, Vec::new())
            }
        };
        // A replica here that its group moved away never hears of it (the leader stops sending
        // it the log before the change that removes it): the group's leader, describing its
        // own membership without this gateway, tells. (Not any peer: a replica moved away
        // earlier still lists itself, and may be further along than a new one catching up.)
        let mut moved_away: BTreeSet<GroupId> = answers
            .iter()
            .flat_map(|(peer, groups)| groups.iter().filter(|g| g.leader == Some(*peer)))
            .filter(|g| g.group != super::store::INDEX_GROUP && local.contains(&g.group))
            .filter(|g| !g.voters.contains(&self.id) && !g.learners.contains(&self.id))
            .map(|g| g.group)
            .collect();
        moved_away.extend(self.orphaned(&answers, &local));
        for group in moved_away {
            tracing::warn!(
                group,
                "this gateway's replica of the index group is stale (moved away); dropping it"
            );
            self.leave(group).await;
        }
        // Recorded descriptions carry no applied position: any replica's answer wins over them.
        let answers = answers.into_iter().flat_map(|(_, groups)| groups);
        let local = self.host.groups().await;
        let directory = Directory::learn(answers.chain(recorded), &local);
        tracing::debug!(
            groups = directory.len(),
            "learned where remote index groups run"
        );
        *self
            .remote
            .directory
            .write()
            .unwrap_or_else(|e| e.into_inner()) = directory;
        state.at = Some(Instant::now());
    }

    /// Writes the records of the data groups this gateway leads where they differ from its
    /// replica of the meta group, and deletes those of the groups they absorbed
    /// ([`layout::publications`]; a group absorbing another changes its own record too),
    /// guarded by the records replaced. One batch at a time: the
    /// supervisor calls it every tick, and a call while one is under way returns at once.
    pub(super) async fn publish_layout(&self) {
        let Ok(_one) = self.remote.publishing.try_lock() else {
            return;
        };
        let led: Vec<GroupReplica> = self
            .groups_here()
            .into_iter()
            .filter(|g| g.group != super::store::INDEX_GROUP && g.leader == Some(self.id))
            .collect();
        if led.is_empty() {
            return;
        }
        let engine = self.engine.as_ref();
        // Point reads every tick; the whole layout only once a record is not current.
        let current = led
            .iter()
            .all(|g| layout::records(engine, g).unwrap_or(false));
        if current {
            return;
        }
        let Some(proposal) = self.layout_batch(|recorded| {
            layout::publications(recorded, &led, super::store::INDEX_GROUP)
        }) else {
            return;
        };
        let changed = proposal.ops.len();
        match self.propose_in(super::store::INDEX_GROUP, proposal).await {
            Ok(super::proposal::Outcome::Applied) => {
                self.metrics.layout_publications.inc();
                tracing::debug!(changed, "recorded where the index groups led here run");
            }
            // A replica a moment behind, or another gateway's batch first: the next tick
            // compares again.
            Ok(outcome) => tracing::debug!(?outcome, "index group layout not recorded"),
            Err(e) => tracing::debug!(error = %e, "index group layout not recorded"),
        }
    }

    /// [`layout::batch`] on this replica of the meta group; `None` (logged) if its layout is
    /// unreadable.
    fn layout_batch(
        &self,
        ops_for: impl FnOnce(&BTreeMap<GroupId, GroupReplica>) -> Vec<cairn_kv::WriteOp>,
    ) -> Option<super::proposal::Proposal> {
        layout::batch(self.engine.as_ref(), ops_for).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the recorded index group layout is unreadable");
            None
        })
    }

    /// On the meta leader: commits the layout records that differ from what every peer
    /// (`answers`, `complete` if all answered) and this gateway say (the freshest description
    /// of each group).
    async fn record_layout(&self, answers: &[(u64, Vec<GroupReplica>)], complete: bool) {
        let mut all = self.groups_here();
        all.extend(
            answers
                .iter()
                .flat_map(|(_, groups)| groups.iter().cloned()),
        );
        let learned: Vec<GroupReplica> = Directory::learn(all, &[]).iter().cloned().collect();
        let Some(proposal) = self.layout_batch(|recorded| {
            layout::changes(recorded, &learned, super::store::INDEX_GROUP, complete)
        }) else {
            return;
        };
        let changed = proposal.ops.len();
        // Straight into this leader's log (a leader that lost its place records nothing; the
        // next one does): routing a proposal may learn the layout, which would record it.
        let batch = super::command::Command::Batch(proposal);
        match self.propose_here(super::store::INDEX_GROUP, batch).await {
            Forwarded::Done(_) => tracing::debug!(changed, "recorded where the index groups run"),
            other => tracing::debug!(?other, "index group layout not recorded"),
        }
    }

    /// Asks every peer which groups it runs: each peer's answer, for those that answered.
    async fn ask_every_peer(&self) -> Vec<(u64, Vec<GroupReplica>)> {
        let peers = self.known_peers();
        self.count_learn("every_peer", peers.len());
        let asks = peers
            .into_iter()
            .map(|(id, addr)| async move { self.groups_of_peer(id, &addr).await.map(|g| (id, g)) });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Asks the other members of the data groups running here which groups they run.
    async fn ask_group_mates(&self, local: &[GroupId]) -> Vec<(u64, Vec<GroupReplica>)> {
        let peers: BTreeMap<u64, String> = self.known_peers().into_iter().collect();
        let mates: Vec<(u64, &String)> = self
            .members_of_local_groups(local)
            .into_iter()
            .filter_map(|id| peers.get(&id).map(|addr| (id, addr)))
            .collect();
        self.count_learn("meta_group", mates.len());
        let asks = mates
            .into_iter()
            .map(|(id, addr)| async move { self.groups_of_peer(id, addr).await.map(|g| (id, g)) });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The groups peer `id` at `addr` runs, if it answers.
    async fn groups_of_peer(&self, id: u64, addr: &str) -> Option<Vec<GroupReplica>> {
        let url = format!("{}/internal/v1/index/groups", addr.trim_end_matches('/'));
        let groups = self.get_json::<Vec<GroupReplica>>(id, &url).await;
        if groups.is_none() {
            tracing::debug!(peer = id, "peer did not say which index groups it runs");
        }
        groups
    }

    /// A peer's JSON answer to an internal GET, if it gives one in time.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, peer: u64, url: &str) -> Option<T> {
        let request = self.fleet.http().get(url).timeout(LEARN_TIMEOUT);
        let sent = self.fleet.send(&peer.to_string(), request).await;
        match sent {
            Ok(r) if r.status().is_success() => r.json::<T>().await.ok(),
            _ => None,
        }
    }

    fn count_learn(&self, source: &str, asked: usize) {
        let m = &self.metrics;
        m.directory_learns
            .get_or_create(&crate::metrics::DirectorySourceLabels {
                source: source.into(),
            })
            .inc();
        m.directory_peers_asked.inc_by(asked as u64);
    }

    /// Every member (voter or learner) of the data groups running here, as their replicas
    /// here know them.
    fn members_of_local_groups(&self, local: &[GroupId]) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        for &group in local.iter().filter(|g| **g != super::store::INDEX_GROUP) {
            if let Some(runtime) = self.runtime_now(group) {
                let m = runtime.raft.metrics().borrow().clone();
                out.extend(m.membership_config.membership().nodes().map(|(id, _)| *id));
            }
        }
        out
    }

    /// The data groups running here whose other members all answered, none running the group,
    /// for [`ORPHANED_FOR`] (the group no longer exists: it was absorbed while this replica,
    /// moved away, was not told).
    fn orphaned(&self, answers: &[(u64, Vec<GroupReplica>)], local: &[GroupId]) -> Vec<GroupId> {
        let answered: BTreeMap<u64, &Vec<GroupReplica>> = answers
            .iter()
            .map(|(peer, groups)| (*peer, groups))
            .collect();
        let mut orphans = self
            .remote
            .orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut found = BTreeMap::new();
        for &group in local.iter().filter(|g| **g != super::store::INDEX_GROUP) {
            let Some(runtime) = self.runtime_now(group) else {
                continue;
            };
            let others: Vec<u64> = {
                let m = runtime.raft.metrics().borrow().clone();
                let config = m.membership_config.membership();
                config
                    .nodes()
                    .map(|(id, _)| *id)
                    .filter(|id| *id != self.id)
                    .collect()
            };
            let orphaned = !others.is_empty()
                && others.iter().all(|id| {
                    answered
                        .get(id)
                        .is_some_and(|groups| groups.iter().all(|g| g.group != group))
                });
            if orphaned {
                found.insert(group, orphans.get(&group).copied().unwrap_or(now));
            }
        }
        *orphans = found;
        orphans
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= ORPHANED_FOR)
            .map(|(g, _)| *g)
            .collect()
    }

    /// The other gateways: the listed peers and every member of the meta group (gateways added
    /// since this one started), by id.
    pub(super) fn known_peers(&self) -> Vec<(u64, String)> {
        let m = self.raft.metrics().borrow().clone();
        let mut peers = self.peers.clone();
        for (id, node) in m.membership_config.membership().nodes() {
            peers.entry(*id).or_insert_with(|| node.addr.clone());
        }
        peers.into_iter().filter(|(id, _)| *id != self.id).collect()
    }

    /// Runs `reads` on a replica of `group`, a group this gateway does not run: its leader
    /// first, then its other members, learning the directory again between rounds. `None`: the
    /// group no longer owns some key read (the caller routes again).
    pub async fn read_remote(
        &self,
        group: GroupId,
        reads: Vec<RemoteRead>,
    ) -> Result<Option<Vec<ReadValue>>, ConsensusError> {
        let started = Instant::now();
        let mut last_error = String::from("no replica answered");
        loop {
            let Some(known) = self.remote_group(group) else {
                return Err(ConsensusError::NoGroup(
                    group,
                    "no peer runs it any more".into(),
                ));
            };
            for member in known.members().into_iter().filter(|m| *m != self.id) {
                match self.forward(group, member, "read", &reads).await {
                    Forwarded::Done(RemoteAnswer::Values(values))
                        if values.len() == reads.len() =>
                    {
                        self.metrics.remote_reads.inc();
                        return Ok(Some(values));
                    }
                    Forwarded::Done(RemoteAnswer::Values(_)) => {
                        last_error = format!("gateway {member} answered the wrong number of reads");
                    }
                    Forwarded::Done(RemoteAnswer::Moved) => {
                        self.learn_remote_groups().await;
                        return Ok(None);
                    }
                    Forwarded::NotLeader | Forwarded::NotMember => {
                        last_error = format!("gateway {member} runs no replica of group {group}");
                    }
                    Forwarded::Failed(e) => last_error = e,
                }
            }
            if started.elapsed() > LEADER_WAIT {
                return Err(ConsensusError::NoLeader(LEADER_WAIT, last_error));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.learn_remote_groups().await;
        }
    }

    /// Serves `reads` of `group` for another gateway from this replica, once past its read
    /// barrier; `NotLeader` if it runs no replica of the group.
    pub async fn read_here(&self, group: GroupId, reads: &[RemoteRead]) -> Forwarded<RemoteAnswer> {
        if !self.host.runs(group) {
            return Forwarded::NotLeader;
        }
        match self.read_barrier_of(group).await {
            Ok(()) => {}
            Err(ConsensusError::NoGroup(..)) => return Forwarded::NotLeader,
            Err(e) => return Forwarded::Failed(e.to_string()),
        }
        let Some(owned) = self.host.ranges_of(group) else {
            return Forwarded::NotLeader;
        };
        match remote::answer(self.engine.as_ref(), &owned, reads) {
            Ok(answer) => Forwarded::Done(answer),
            Err(e) => Forwarded::Failed(e.to_string()),
        }
    }

    /// Up to `limit` entries of `[start, end)`, each part read where its group is: from `local`
    /// (this replica) for the groups in `passed`, whose read barriers the caller has passed, or
    /// from a replica of a remote group. `None`: the keys moved (the caller routes again).
    /// Blocking (runs the remote reads on the current runtime).
    ///
    /// A part owned by a local group not in `passed` is moved too: the group started here after
    /// the caller routed (born of a split this replica applied since), and its replica holds
    /// the keys as of the split, not what was written to the group since.
    pub fn scan_routed(
        &self,
        local: &dyn KvEngine,
        passed: &BTreeSet<GroupId>,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Option<Entries>, RoutedError> {
        let Some(segments) = self.segments(start, end) else {
            return Ok(None);
        };
        if segments
            .iter()
            .any(|s| s.local && !passed.contains(&s.group))
        {
            return Ok(None);
        }
        let mut out: Entries = Vec::new();
        for seg in segments {
            let left = limit.saturating_sub(out.len());
            if left == 0 {
                break;
            }
            let mut got = if seg.local {
                local.scan(&seg.start, &seg.end, left)?
            } else {
                let read = RemoteRead::Scan {
                    start: seg.start,
                    end: seg.end,
                    limit: left as u64,
                };
                match self.read_remote_blocking(seg.group, read)? {
                    Some(v) => v.into_entries(),
                    None => return Ok(None),
                }
            };
            out.append(&mut got);
        }
        Ok(Some(out))
    }

    /// One remote read from a blocking thread; `None`: moved.
    pub fn read_remote_blocking(
        &self,
        group: GroupId,
        read: RemoteRead,
    ) -> Result<Option<ReadValue>, RoutedError> {
        let answer = tokio::runtime::Handle::current()
            .block_on(self.read_remote(group, vec![read]))
            .map_err(|e| match e {
                ConsensusError::NoGroup(..) => RoutedError::Moved,
                e => RoutedError::Consensus(e),
            })?;
        Ok(answer.and_then(|v| v.into_iter().next()))
    }
}

/// Why a routed read failed.
#[derive(Debug, thiserror::Error)]
pub enum RoutedError {
    /// The local engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// No replica of a remote group answered.
    #[error(transparent)]
    Consensus(#[from] ConsensusError),
    /// The group is gone (merged): route again.
    #[error("the keys moved to another index group")]
    Moved,
}

/// What a caller of the engine interface sees of a routed read: the engine's error, or
/// `Moved` (route again), or the replicated layer unavailable.
impl From<RoutedError> for EngineError {
    fn from(e: RoutedError) -> Self {
        match e {
            RoutedError::Engine(e) => e,
            RoutedError::Moved => EngineError::Moved,
            RoutedError::Consensus(e) => EngineError::Unavailable(e.to_string()),
        }
    }
}
