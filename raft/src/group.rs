//! One Raft group's runtime on this gateway: the read-index rounds that batch its read
//! barriers, the watch that follows its leader into the metrics and the logs, and the membership
//! reconciler that runs while this gateway leads it. [`super::Consensus`] starts one for every
//! group the gateway hosts, as the group appears (at start, or born of a split).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openraft::error::ClientWriteError;
use openraft::error::RaftError;
use openraft::{BasicNode, Raft, ServerState};
use tokio::sync::{mpsc, oneshot};

use super::command::{Batches, Command};
use super::proposal::{Outcome, Proposal};
use super::store::{GroupId, INDEX_GROUP};
use super::{
    Consensus, Forwarded, Hello, PeerStatus, ReadIndexWaiter, TypeConfig, membership, retiring,
};
use crate::metrics::RaftMetrics;
use cairn_kv::RocksEngine;

/// One group's handles: its Raft, where its read barriers queue, and whether its leader here is
/// handing the leadership over.
pub(super) struct GroupRuntime {
    pub(super) raft: Raft<TypeConfig>,
    pub(super) read_index_waiters: mpsc::UnboundedSender<ReadIndexWaiter>,
    /// Where this leader's proposals queue for their round ([`proposal_rounds`]).
    pub(super) proposal_waiters: mpsc::UnboundedSender<ProposalWaiter>,
    /// Set while this leader hands over the leadership: it refuses proposals and read-index
    /// requests (their callers retry), so nothing resets the followers' election timers.
    pub(super) stepping_down: Arc<AtomicBool>,
    /// The members this leader was asked to give the group (a replica move, or a merge).
    pub(super) align: Arc<super::placement::AlignTarget>,
}

/// Serves read barriers in rounds: every barrier waiting when a round starts shares that
/// round's read index. That is still linearizable (the index is asked after each of them began)
/// and costs one leader confirmation per round instead of one per operation.
pub(super) async fn read_index_rounds(
    consensus: std::sync::Weak<Consensus>,
    group: GroupId,
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
        let index = c.fetch_read_index(group).await;
        drop(c);
        for w in round {
            let _ = w.send(index.clone());
        }
    }
}

/// A proposal waiting for its round, and where its outcome goes.
pub(super) type ProposalWaiter = (Proposal, oneshot::Sender<Forwarded<Outcome>>);

/// Most proposals one log entry carries (an entry travels whole in one AppendEntries).
const MAX_PROPOSALS_PER_ENTRY: usize = 64;

/// Rounds of one group in flight at once: while one entry is replicated and applied, the next
/// can be appended (one at a time, the leader idled between rounds on a fast disk).
pub(super) const ROUNDS_IN_FLIGHT: usize = 2;

/// Commits a group's proposals on its leader in rounds: the proposals waiting when a round
/// starts go into one log entry ([`Batches`]); [`ROUNDS_IN_FLIGHT`] of these tasks share the
/// queue, so a round starts while another is replicated and applied. openraft 0.9 waits for each entry's append to be synced before it takes the next write, so
/// a group commits about one entry per fsync; rounds put every proposal that queued meanwhile
/// into the next one instead of one proposal per fsync.
pub(super) async fn proposal_rounds(
    raft: Raft<TypeConfig>,
    waiting: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<ProposalWaiter>>>,
    metrics: Arc<RaftMetrics>,
) {
    loop {
        let round = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else {
                return;
            };
            let mut round = vec![first];
            while round.len() < MAX_PROPOSALS_PER_ENTRY {
                match waiting.try_recv() {
                    Ok(w) => round.push(w),
                    Err(_) => break,
                }
            }
            round
        };
        let (mut proposals, answers): (Vec<_>, Vec<_>) = round.into_iter().unzip();
        let command = match proposals.len() {
            1 => Command::Batch(proposals.remove(0)),
            _ => Command::Batches(Batches { batches: proposals }),
        };
        metrics.proposal_entries.inc();
        let written = raft.client_write(command).await;
        for (i, to) in answers.into_iter().enumerate() {
            let _ = to.send(outcome_of(&written, i));
        }
    }
}

/// What a `client_write` answered for the `i`th guarded batch of its entry (0 for any other
/// command), as the leader forwards it.
pub(super) fn outcome_of(
    written: &Result<
        openraft::raft::ClientWriteResponse<TypeConfig>,
        RaftError<u64, ClientWriteError<u64, BasicNode>>,
    >,
    i: usize,
) -> Forwarded<Outcome> {
    match written {
        Ok(resp) => match resp.data.get(i) {
            Some(outcome) => Forwarded::Done(*outcome),
            None => Forwarded::Failed(format!("no outcome for batch {i} of the entry")),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Forwarded::NotLeader,
        Err(e) => Forwarded::Failed(e.to_string()),
    }
}

/// Follows a group's Raft state into the metrics (the gauges are the meta group's; leader
/// changes count in every group), and logs every change of leader.
pub(super) async fn observe(
    id: u64,
    group: GroupId,
    raft: Raft<TypeConfig>,
    metrics: Arc<RaftMetrics>,
) {
    let mut rx = raft.metrics();
    drop(raft);
    let mut leader = None;
    loop {
        {
            let m = rx.borrow_and_update();
            let r = &metrics;
            if group == INDEX_GROUP {
                r.term.set(m.current_term as i64);
                r.is_leader.set(i64::from(m.current_leader == Some(id)));
                r.applied_index
                    .set(m.last_applied.map(|l| l.index as i64).unwrap_or(0));
                r.voters
                    .set(m.membership_config.membership().voter_ids().count() as i64);
                r.learners
                    .set(m.membership_config.membership().learner_ids().count() as i64);
            }
            if m.current_leader != leader {
                if m.current_leader.is_some() {
                    r.leader_changes.inc();
                }
                if leader == Some(id) {
                    r.groups_led.dec();
                }
                if m.current_leader == Some(id) {
                    r.groups_led.inc();
                }
                tracing::info!(
                    gateway = id,
                    group,
                    term = m.current_term,
                    leader = ?m.current_leader,
                    previous = ?leader,
                    "index leader changed"
                );
                leader = m.current_leader;
            }
        }
        if rx.changed().await.is_err() {
            if leader == Some(id) {
                metrics.groups_led.dec();
            }
            return;
        }
    }
}

/// What the membership reconciler works from.
pub(super) struct Reconciler {
    pub(super) group: GroupId,
    pub(super) raft: Raft<TypeConfig>,
    pub(super) id: u64,
    pub(super) zone: String,
    /// The listed gateways: id → admin URL.
    pub(super) peers: BTreeMap<u64, String>,
    pub(super) replicas: usize,
    pub(super) grace: Duration,
    /// Signs calls to peers.
    pub(super) fleet: cairn_transport::FleetClient,
    pub(super) metrics: Arc<RaftMetrics>,
    /// This replica of the index, which holds the retiring set (see [`Consensus::retire`]).
    pub(super) engine: Arc<RocksEngine>,
    /// See [`GroupRuntime::stepping_down`].
    pub(super) stepping_down: Arc<AtomicBool>,
    /// See [`GroupRuntime::align`].
    pub(super) align: Arc<super::placement::AlignTarget>,
    /// The gateway's replicated index: a group other than the meta group reads the retiring
    /// set after the meta group's read barrier.
    pub(super) consensus: std::sync::Weak<Consensus>,
}

impl Reconciler {
    /// Hands the leadership to another voter (this gateway is retiring); see [`step_down`].
    async fn step_down(&self) {
        match step_down(self.id, &self.raft, &self.stepping_down).await {
            Some(leader) => {
                tracing::info!(
                    group = self.group,
                    leader,
                    "handed the index leadership over (this gateway is retiring)"
                )
            }
            None => {
                tracing::warn!(
                    group = self.group,
                    "no other gateway took over the index leadership; leading on"
                )
            }
        }
    }

    /// Asks every other listed gateway for its zone (and how many groups it hosts) at once;
    /// `None` for those that do not answer within a short timeout.
    async fn probe(&self) -> BTreeMap<u64, Option<Hello>> {
        let asks =
            self.peers
                .iter()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, addr)| async move {
                    let url = format!("{addr}/internal/v1/index/hello");
                    let request = self
                        .fleet
                        .http()
                        .get(&url)
                        .timeout(Duration::from_millis(800));
                    let answer = self.fleet.send(&id.to_string(), request).await;
                    let hello = match answer {
                        Ok(r) if r.status().is_success() => r.json::<Hello>().await.ok(),
                        _ => None,
                    };
                    // A gateway answering with another id is misconfigured: it does not count as seen.
                    (*id, hello.filter(|h| h.id == *id))
                });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .collect()
    }
}

/// Hands the leadership of `raft`'s group (led by `id`) to another voter: stops heartbeats,
/// refuses new proposals and read-index requests (`stepping_down`; callers retry), and does not
/// stand for election, so the followers' leases and then their election timers run out and one
/// of them takes over (openraft 0.9 has no leader transfer; a voter told to campaign goes first,
/// see `Consensus::hand_over`). Gives up after a few seconds (no other voter could win) and
/// leads on. Returns the new leader.
pub(super) async fn step_down(
    id: u64,
    raft: &Raft<TypeConfig>,
    stepping_down: &AtomicBool,
) -> Option<u64> {
    const HANDOVER_WAIT: Duration = Duration::from_secs(5);
    stepping_down.store(true, Ordering::Release);
    let config = raft.runtime_config();
    config.elect(false);
    config.heartbeat(false);
    let handed = raft
        .wait(Some(HANDOVER_WAIT))
        .metrics(
            |m| m.current_leader.is_some_and(|l| l != id),
            "another index leader",
        )
        .await;
    config.heartbeat(true);
    config.elect(true);
    stepping_down.store(false, Ordering::Release);
    handed.ok().and_then(|m| m.current_leader)
}

/// What the leader remembers of a listed gateway between ticks.
#[derive(Debug, Clone)]
struct Sighting {
    zone: Option<String>,
    reachable: bool,
    /// How many groups it hosted when it last answered.
    hosted: usize,
    /// When it last answered, or when this gateway started leading (a new leader gives every
    /// gateway a full grace period).
    seen: Instant,
}

/// On the leader, moves the membership one step at a time towards the shape [`membership`]
/// derives from the listed gateways, their zones and their liveness. Ends when Raft stops.
pub(super) async fn reconcile_membership(
    r: Reconciler,
    views: Arc<std::sync::Mutex<Vec<PeerStatus>>>,
) {
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
        let meta = r.group == INDEX_GROUP;
        if m.current_leader != Some(r.id) || m.state != ServerState::Leader {
            leading = false;
            if meta {
                r.metrics.gone_peers.set(0);
                r.metrics.retiring_peers.set(0);
            }
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
                hosted: 0,
                seen: now,
            });
            s.reachable = answer.is_some();
            if let Some(hello) = answer {
                s.zone = Some(hello.zone);
                s.hosted = hello.groups;
                s.seen = now;
            }
        }
        let hosted_here = r
            .consensus
            .upgrade()
            .map_or(0, |c| c.host().directory().len());
        sightings.insert(
            r.id,
            Sighting {
                zone: Some(r.zone.clone()),
                reachable: true,
                hosted: hosted_here,
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
        if meta {
            r.metrics.gone_peers.set(gone as i64);
        }
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
            tracing::debug!(group = r.group, error = %e, "leadership not confirmed; membership waits");
            continue;
        }
        // The set is the meta group's record: another group reads it after that group's
        // barrier.
        if !meta {
            let Some(c) = r.consensus.upgrade() else {
                return;
            };
            if let Err(e) = c.read_barrier().await {
                tracing::debug!(group = r.group, error = %e, "meta group not reachable; membership waits");
                continue;
            }
        }
        let retiring = match retiring::read(r.engine.as_ref()) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the retiring gateways; membership waits");
                continue;
            }
        };
        if meta {
            r.metrics.retiring_peers.set(retiring.len() as i64);
        }
        let config = m.membership_config.membership();
        // Asked to move the group (a replica move, a merge): members outside the target retire
        // from it, and new replicas come from the target only.
        let mut prefer = r.align.get().filter(|_| !meta);
        // A target naming a gateway that does not answer cannot be reached, and while it holds,
        // the members outside it retire and no replacement may come from elsewhere: a group
        // whose move or merge was under way when a member died would wait for the target to
        // lapse. It is dropped; the planner asks again once the fleet is whole.
        if let Some(target) = &prefer
            && let Some(lost) = target
                .iter()
                .find(|id| peers.get(id).is_none_or(|p| !p.reachable || p.gone))
        {
            tracing::info!(
                group = r.group,
                ?target,
                lost,
                "dropping an align target naming a gateway that does not answer"
            );
            r.align.clear();
            prefer = None;
        }
        let mut retiring = retiring;
        if let Some(target) = &prefer {
            retiring.extend(
                config
                    .nodes()
                    .map(|(id, _)| *id)
                    .filter(|id| !target.contains(id)),
            );
        }
        let desired = membership::Desired {
            hosted: peers.keys().map(|id| (*id, sightings[id].hosted)).collect(),
            peers,
            replicas: r.replicas,
            leader: r.id,
            retiring,
            // Every gateway needs the meta group at hand; data groups live on their voters.
            bounded: !meta,
            prefer,
        };
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
        // No replica is added while a merge is under way: the absorbing group's replicas apply
        // the absorb from their own frozen copy of its neighbour, which a replica added now to
        // one group and not yet to the other would lack (the merge checks the members before
        // it freezes and again before it absorbs; this keeps them from changing in between).
        if matches!(step, membership::Step::AddLearner(..))
            && r.consensus.upgrade().is_some_and(|c| c.host().merging())
        {
            tracing::debug!(
                group = r.group,
                "a merge is under way; the new replica waits"
            );
            continue;
        }
        tracing::info!(
            group = r.group,
            ?step,
            "changing the index group's membership"
        );
        let raft = &r.raft;
        let done = match step.clone() {
            membership::Step::AddLearner(peer, addr) => {
                let added = raft.add_learner(peer, BasicNode { addr }, false).await;
                // The log is purged past the entry adding it, so the new replica is sent a
                // snapshot next.
                if added.is_ok()
                    && let Some(c) = r.consensus.upgrade()
                    && let Err(e) = c.host().snapshot_for_new_replica(r.group).await
                {
                    tracing::debug!(group = r.group, error = %e, "no snapshot for the new replica yet");
                }
                added.map(|_| ())
            }
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
            Ok(()) => tracing::info!(group = r.group, ?step, "index group membership changed"),
            Err(RaftError::Fatal(e)) => {
                tracing::debug!(error = %e, "raft stopped; membership reconciler ends");
                return;
            }
            Err(e) => {
                tracing::warn!(group = r.group, ?step, error = %e, "membership change failed; will retry")
            }
        }
    }
}
