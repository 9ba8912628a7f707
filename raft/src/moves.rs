//! Asking a group's leader to give the group other members ([`placement`]), and the meta
//! leader's replica moves that spread data groups over the gateways.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::placement::{self, Align};
use super::store::{GroupId, INDEX_GROUP};
use super::{Consensus, ConsensusError, Forwarded, leads};

/// A move not done in this long is given up (the planner may choose again).
const MOVE_WAIT: Duration = Duration::from_secs(60);

impl Consensus {
    /// Asks `group`'s leader (here or forwarded) to move the group onto `members`.
    pub async fn align(
        &self,
        group: GroupId,
        members: BTreeSet<u64>,
    ) -> Result<(), ConsensusError> {
        let body = Align {
            members: members.clone(),
        };
        self.at_leader(group, "align", &body, || {
            self.align_here(group, members.clone())
        })
        .await
    }

    /// Takes `members` as `group`'s target, if this gateway leads it.
    pub async fn align_here(&self, group: GroupId, members: BTreeSet<u64>) -> Forwarded<()> {
        if group == INDEX_GROUP {
            return Forwarded::Failed("the meta group lives on every gateway".into());
        }
        let runtime = match self.runtime(group).await {
            Ok(r) => r,
            Err(e) => return Forwarded::Failed(e.to_string()),
        };
        if !leads(self.id, &runtime.raft) || runtime.stepping_down.load(Ordering::Acquire) {
            return Forwarded::NotLeader;
        }
        runtime.align.set(members);
        Forwarded::Done(())
    }

    /// The voters and learners of `group`: from the replica here (its runtime started if it is
    /// new), or as learned.
    pub async fn members_of(&self, group: GroupId) -> Option<(BTreeSet<u64>, BTreeSet<u64>)> {
        if let Ok(r) = self.runtime(group).await {
            let m = r.raft.metrics().borrow().clone();
            let config = m.membership_config.membership();
            return Some((config.voter_ids().collect(), config.learner_ids().collect()));
        }
        self.remote_group(group).map(|g| {
            (
                g.voters.iter().copied().collect(),
                g.learners.iter().copied().collect(),
            )
        })
    }

    /// On the meta leader: moves one replica of a data group towards the gateways hosting the
    /// lightest replicas (by count and `pressure`, [`placement::next_move`]), one move at a
    /// time in the whole fleet, none while gateways drain, and only of groups that are
    /// `settled` (not about to merge: a merge moves the groups itself). A move is over when
    /// done, after [`MOVE_WAIT`], or once a gateway of its target stops answering. Returns the
    /// move asked for now, if any.
    pub async fn balance_replicas(
        &self,
        settled: &(dyn Fn(GroupId) -> bool + Send + Sync),
        pressure: &super::balance::Pressure,
    ) -> Option<placement::Move> {
        if !self.is_leader() {
            return None;
        }
        let retiring = self.retiring_here();
        if !retiring.is_empty() {
            return None;
        }
        self.refresh_remote_groups().await;
        let statuses: Vec<_> = self
            .fleet_group_statuses()
            .into_iter()
            .filter(|g| g.group == INDEX_GROUP || settled(g.group))
            .collect();
        let gateways: BTreeMap<u64, placement::Gateway> = self
            .peer_views
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|p| {
                let live = p.reachable && !p.gone;
                (
                    p.id,
                    placement::Gateway {
                        zone: p.zone.clone(),
                        live,
                    },
                )
            })
            .collect();
        let in_flight = self
            .moving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((m, since)) = in_flight {
            let done = statuses.iter().any(|g| {
                g.group == m.group
                    && g.learners.is_empty()
                    && g.voters.iter().copied().collect::<BTreeSet<_>>() == m.members
            });
            let gone = !statuses.iter().any(|g| g.group == m.group) || !settled(m.group);
            // A target member that stopped answering: the group's leader drops the target.
            let lost = m
                .members
                .iter()
                .any(|id| gateways.get(id).is_none_or(|g| !g.live));
            if done || gone || lost || since.elapsed() > MOVE_WAIT {
                tracing::info!(
                    group = m.group,
                    from = m.from,
                    to = m.to,
                    done,
                    lost,
                    "index replica move over"
                );
                *self.moving.lock().unwrap_or_else(|e| e.into_inner()) = None;
            } else {
                // Keep the target fresh at the group's leader (a new leader learns it too).
                if let Err(e) = self.align(m.group, m.members.clone()).await {
                    tracing::debug!(group = m.group, error = %e, "replica move not confirmed");
                }
                return None;
            }
        }
        let m = placement::next_move(&statuses, &gateways, INDEX_GROUP, pressure)?;
        match self.align(m.group, m.members.clone()).await {
            Ok(()) => {
                tracing::info!(
                    group = m.group,
                    from = m.from,
                    to = m.to,
                    "moving an index replica to spread the groups"
                );
                *self.moving.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((m.clone(), Instant::now()));
                Some(m)
            }
            Err(e) => {
                tracing::debug!(group = m.group, error = %e, "replica move not asked");
                None
            }
        }
    }
}
