//! Shapes an index group from the configured gateways (`--peer`): `--index-replicas` of them
//! vote, spread over as many zones as the fleet has, and a voter gone for longer than the grace
//! period is replaced by a live gateway. The meta group is also followed by every other listed
//! gateway, as a learner (each needs the buckets, keys and partition map at hand). A data group
//! is *bounded*: it lives on its voters only, and gains a learner just while that learner
//! catches up to replace a voter (gone, retiring, or moved away to spread the groups: the
//! gateway hosting the fewest groups is chosen), so a fleet of many gateways does not apply
//! every write everywhere.
//!
//! The leader computes one [`Step`] at a time with [`next_step`] (pure, so every rule is unit
//! tested) and commits it before asking again. Two rules keep the group safe while it changes:
//! replacements vote before anyone stops voting, so the number of healthy voters never drops;
//! and a voter that is merely unreachable stays a voter until the grace period has passed (a
//! restart is not a change of shape), and even then only if a live replacement exists.

use std::collections::{BTreeMap, BTreeSet};

/// One membership change, in the order the leader makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Start replicating to a listed gateway that is not a member yet.
    AddLearner(u64, String),
    /// Make caught-up learners voters.
    Promote(BTreeSet<u64>),
    /// Make voters learners: gone ones once their replacements vote, extra ones beyond the
    /// replica count, and voters that are no longer listed.
    Demote(BTreeSet<u64>),
    /// Stop replicating to learners that are no longer listed.
    RemoveLearners(BTreeSet<u64>),
    /// The leader is retiring and every other change is made: let another voter take over
    /// (openraft 0.9 has no leader transfer, and a leader that removes itself keeps leading).
    StepDown,
}

/// A listed gateway as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Admin API base URL.
    pub addr: String,
    /// Its zone once it has answered (`""` when it runs without `--zone`).
    pub zone: Option<String>,
    /// Whether it answered the leader's last probe.
    pub reachable: bool,
    /// Whether it has not answered for longer than the grace period.
    pub gone: bool,
}

/// What the group should look like.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// The listed gateways by id.
    pub peers: BTreeMap<u64, Peer>,
    /// How many of them vote (fewer when fewer are listed).
    pub replicas: usize,
    /// The leader (kept voting when voters are dropped, so the group keeps its leader).
    pub leader: u64,
    /// Listed gateways about to leave (the operator drains them before a scale-down): they
    /// hand their votes, and the leadership, to the others (in a bounded group they then leave
    /// it; otherwise they keep a replica). A replica being moved away is retiring from its group.
    pub retiring: BTreeSet<u64>,
    /// Whether the group lives on its voters only (a data group), not on every listed gateway.
    pub bounded: bool,
    /// How many groups each gateway hosts, as it last said (a bounded group's new replica goes
    /// where there are fewest).
    pub hosted: BTreeMap<u64, usize>,
    /// Where a bounded group's new replicas must come from, while it is being moved.
    pub prefer: Option<BTreeSet<u64>>,
}

/// The membership as the leader sees it.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// Voting members.
    pub voters: BTreeSet<u64>,
    /// Learners (replicated to, not counted for quorum).
    pub learners: BTreeSet<u64>,
    /// Learners whose log matches the leader's closely enough to vote without stalling commits.
    pub caught_up: BTreeSet<u64>,
}

/// The next change towards `desired`, if any.
pub fn next_step(desired: &Desired, current: &Current) -> Option<Step> {
    let peers = &desired.peers;
    let members: BTreeSet<u64> = current.voters.union(&current.learners).copied().collect();
    if !desired.bounded
        && let Some((id, peer)) = peers.iter().find(|(id, _)| !members.contains(id))
    {
        return Some(Step::AddLearner(*id, peer.addr.clone()));
    }
    let retiring = &desired.retiring;
    let staying = peers.keys().filter(|id| !retiring.contains(id)).count();
    let target = desired.replicas.clamp(1, staying.max(1));
    // Voters that will keep their vote: listed, not gone, not retiring.
    let healthy: BTreeSet<u64> = current
        .voters
        .iter()
        .filter(|id| peers.get(id).is_some_and(|p| !p.gone) && !retiring.contains(id))
        .copied()
        .collect();
    let zones_of = |ids: &BTreeSet<u64>| -> BTreeSet<String> {
        ids.iter()
            .filter_map(|id| peers.get(id).and_then(|p| p.zone.clone()))
            .collect()
    };
    let healthy_zones = zones_of(&healthy);
    // Learners that could vote now, those in zones without a healthy voter first.
    let mut candidates: Vec<(bool, u64)> = current
        .learners
        .iter()
        .filter(|id| current.caught_up.contains(id) && !retiring.contains(id))
        .filter_map(|id| {
            let p = peers.get(id)?;
            let zone = p.zone.as_ref().filter(|_| p.reachable && !p.gone)?;
            Some((healthy_zones.contains(zone), *id))
        })
        .collect();
    candidates.sort();
    // Learners that may vote once caught up (a bounded group keeps no others).
    let pending: BTreeSet<u64> = current
        .learners
        .iter()
        .filter(|id| peers.get(id).is_some_and(|p| p.reachable && !p.gone))
        .filter(|id| !retiring.contains(id))
        .copied()
        .collect();
    let zones_known = healthy.iter().all(|id| peers[id].zone.is_some());
    // Voters share a zone that a replica elsewhere could cover.
    let doubled = zones_known && healthy_zones.len() < healthy.len();
    if healthy.len() < target {
        // Too few healthy voters: promote one (nothing may stop voting until this is repaired).
        if let Some((_, id)) = candidates.first() {
            return Some(Step::Promote(BTreeSet::from([*id])));
        }
        if desired.bounded && healthy.len() + pending.len() < target {
            let covered = healthy_zones.union(&zones_of(&pending)).cloned().collect();
            if let Some(step) = add_replica(desired, &members, &covered, false) {
                return Some(step);
            }
        }
    } else {
        // A retiring leader is not demoted by itself: it steps down once the rest is done.
        let leader_retires = retiring.contains(&desired.leader);
        let departing: BTreeSet<u64> = current
            .voters
            .difference(&healthy)
            .filter(|id| !(leader_retires && **id == desired.leader))
            .copied()
            .collect();
        if !departing.is_empty() {
            return Some(Step::Demote(departing));
        }
        if leader_retires && current.voters.contains(&desired.leader) {
            return Some(Step::StepDown);
        }
        // Zones are compared only once every voter has told its own.
        if healthy.len() > target && zones_known {
            let keep = spread(&healthy, target, desired.leader, peers);
            return Some(Step::Demote(healthy.difference(&keep).copied().collect()));
        }
        // Voters share a zone while a caught-up learner sits in a zone without one: add it
        // (the step above then drops a voter of the doubled zone).
        if doubled && let Some((false, id)) = candidates.first() {
            return Some(Step::Promote(BTreeSet::from([*id])));
        }
        // A bounded group brings a replica into such a zone first.
        let fixing = pending.iter().any(|id| {
            peers[id]
                .zone
                .as_ref()
                .is_some_and(|z| !healthy_zones.contains(z))
        });
        if desired.bounded
            && doubled
            && !fixing
            && let Some(step) = add_replica(desired, &members, &healthy_zones, true)
        {
            return Some(step);
        }
    }
    // Learners of gateways no longer listed go; in a bounded group, every learner that is not
    // on its way to a vote the group needs (a demoted voter, a replacement no longer needed).
    let useful = |id: &u64| {
        pending.contains(id)
            && (healthy.len() < target
                || (doubled
                    && peers[id]
                        .zone
                        .as_ref()
                        .is_some_and(|z| !healthy_zones.contains(z))))
    };
    let stale: BTreeSet<u64> = current
        .learners
        .iter()
        .filter(|id| !peers.contains_key(id) || (desired.bounded && !useful(id)))
        .copied()
        .collect();
    (!stale.is_empty()).then_some(Step::RemoveLearners(stale))
}

/// A new replica for a bounded group: a listed, live, staying gateway that is not a member and
/// has told its zone, in a zone not in `covered` if there is one (only there if
/// `other_zone_only`), then hosting the fewest groups, then the smallest id.
fn add_replica(
    desired: &Desired,
    members: &BTreeSet<u64>,
    covered: &BTreeSet<String>,
    other_zone_only: bool,
) -> Option<Step> {
    let (id, peer) = desired
        .peers
        .iter()
        .filter(|(id, p)| {
            !members.contains(id) && !desired.retiring.contains(id) && p.reachable && !p.gone
        })
        .filter(|(id, _)| desired.prefer.as_ref().is_none_or(|p| p.contains(id)))
        .filter_map(|(id, p)| {
            let same_zone = covered.contains(p.zone.as_ref()?);
            (!(other_zone_only && same_zone)).then_some((id, p, same_zone))
        })
        .min_by_key(|(id, _, same_zone)| {
            let hosted = desired.hosted.get(id).copied().unwrap_or(0);
            (*same_zone, hosted, **id)
        })
        .map(|(id, p, _)| (id, p))?;
    Some(Step::AddLearner(*id, peer.addr.clone()))
}

/// `count` of `voters` covering as many zones as possible: the leader first, then by id, one per
/// zone before any zone gets a second.
fn spread(
    voters: &BTreeSet<u64>,
    count: usize,
    leader: u64,
    peers: &BTreeMap<u64, Peer>,
) -> BTreeSet<u64> {
    let mut order: Vec<u64> = voters.iter().copied().collect();
    order.sort_by_key(|id| (*id != leader, *id));
    let mut keep = BTreeSet::new();
    let mut zones = BTreeSet::new();
    for id in &order {
        if keep.len() < count && zones.insert(peers[id].zone.clone()) {
            keep.insert(*id);
        }
    }
    for id in &order {
        if keep.len() < count {
            keep.insert(*id);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Listed gateways as `(id, zone)`, all reachable.
    fn desired(peers: &[(u64, &str)], replicas: usize, leader: u64) -> Desired {
        Desired {
            peers: peers
                .iter()
                .map(|(id, zone)| {
                    let peer = Peer {
                        addr: format!("http://g{id}"),
                        zone: Some(zone.to_string()),
                        reachable: true,
                        gone: false,
                    };
                    (*id, peer)
                })
                .collect(),
            replicas,
            leader,
            retiring: BTreeSet::new(),
            bounded: false,
            hosted: BTreeMap::new(),
            prefer: None,
        }
    }

    /// [`desired`] for a bounded (data) group, with each gateway's hosted group count.
    fn bounded(peers: &[(u64, &str, usize)], replicas: usize, leader: u64) -> Desired {
        let zones: Vec<(u64, &str)> = peers.iter().map(|(id, z, _)| (*id, *z)).collect();
        Desired {
            bounded: true,
            hosted: peers.iter().map(|(id, _, n)| (*id, *n)).collect(),
            ..desired(&zones, replicas, leader)
        }
    }

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    fn current(voters: &[u64], learners: &[u64], caught_up: &[u64]) -> Current {
        Current {
            voters: set(voters),
            learners: set(learners),
            caught_up: set(caught_up),
        }
    }

    /// Applies `step` to `cur` as Raft would (a new learner counts as caught up at once).
    fn apply(cur: &mut Current, step: &Step) {
        match step {
            Step::AddLearner(id, _) => {
                cur.learners.insert(*id);
                cur.caught_up.insert(*id);
            }
            Step::Promote(ids) => {
                for id in ids {
                    cur.learners.remove(id);
                    cur.voters.insert(*id);
                }
            }
            Step::Demote(ids) => {
                for id in ids {
                    cur.voters.remove(id);
                    cur.learners.insert(*id);
                }
            }
            Step::RemoveLearners(ids) => {
                for id in ids {
                    cur.learners.remove(id);
                }
            }
            Step::StepDown => panic!("a step-down changes the leader, not the membership"),
        }
    }

    /// Runs steps until none is left (bounded), checking that the healthy voters never shrink.
    /// A step-down hands the leadership to the lowest staying voter.
    fn converge(d: &Desired, cur: Current) -> Current {
        converge_leader(d, cur).0
    }

    /// [`converge`], also returning the leader at the end.
    fn converge_leader(d: &Desired, mut cur: Current) -> (Current, u64) {
        let mut d = d.clone();
        let staying = |d: &Desired, id: &u64| {
            d.peers.get(id).is_some_and(|p| !p.gone) && !d.retiring.contains(id)
        };
        let healthy =
            |d: &Desired, cur: &Current| cur.voters.iter().filter(|id| staying(d, id)).count();
        let eligible = d.peers.keys().filter(|id| !d.retiring.contains(id)).count();
        let target = d.replicas.min(eligible);
        for _ in 0..20 {
            let healthy_before = healthy(&d, &cur);
            let Some(step) = next_step(&d, &cur) else {
                return (cur, d.leader);
            };
            if step == Step::StepDown {
                let next = cur.voters.iter().find(|id| staying(&d, id));
                d.leader = *next.expect("a staying voter to take over");
                continue;
            }
            apply(&mut cur, &step);
            let healthy_after = healthy(&d, &cur);
            assert!(
                healthy_after >= healthy_before.min(target),
                "{step:?} dropped healthy voters: {cur:?}"
            );
        }
        panic!("no fixed point: {cur:?}");
    }

    #[test]
    fn scale_up_adds_then_promotes_only_caught_up_learners() {
        let mut cur = current(&[0, 1], &[], &[]);
        let d = desired(&[(0, "a"), (1, "b"), (2, "c"), (3, "a")], 3, 0);
        assert_eq!(
            next_step(&d, &cur),
            Some(Step::AddLearner(2, "http://g2".into()))
        );
        cur.learners = set(&[2, 3]);
        // Nobody caught up yet: wait.
        assert_eq!(next_step(&d, &cur), None);
        cur.caught_up = set(&[3]);
        assert_eq!(next_step(&d, &cur), Some(Step::Promote(set(&[3]))));
        // A learner in a zone without a voter goes first.
        cur.caught_up = set(&[2, 3]);
        assert_eq!(next_step(&d, &cur), Some(Step::Promote(set(&[2]))));
        // Three voters in three zones; the fourth gateway stays a learner.
        let end = converge(&d, cur);
        assert_eq!(end.voters, set(&[0, 1, 2]));
        assert_eq!(end.learners, set(&[3]));
    }

    #[test]
    fn a_group_formed_with_every_gateway_voting_shrinks_to_one_voter_per_zone() {
        let d = desired(&[(1, "a"), (2, "a"), (3, "b"), (4, "c"), (5, "b")], 3, 2);
        let end = converge(&d, current(&[1, 2, 3, 4, 5], &[], &[]));
        // The leader (2) keeps voting; one voter per zone.
        assert_eq!(end.voters, set(&[2, 3, 4]));
        assert_eq!(end.learners, set(&[1, 5]));
        // With fewer zones than replicas, zones repeat.
        let d = desired(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")], 3, 1);
        let end = converge(&d, current(&[1, 2, 3, 4], &[], &[]));
        assert_eq!(end.voters, set(&[1, 2, 3]));
        // Until every voter told its zone, extras are kept.
        let mut d = desired(&[(1, "a"), (2, "a"), (3, "b"), (4, "c")], 3, 1);
        d.peers.get_mut(&4).unwrap().zone = None;
        assert_eq!(next_step(&d, &current(&[1, 2, 3, 4], &[], &[])), None);
    }

    #[test]
    fn voters_sharing_a_zone_make_room_for_a_learner_in_a_missing_zone() {
        let d = desired(&[(1, "a"), (2, "a"), (3, "b"), (4, "c")], 3, 1);
        let cur = current(&[1, 2, 3], &[4], &[4]);
        assert_eq!(next_step(&d, &cur), Some(Step::Promote(set(&[4]))));
        let end = converge(&d, cur);
        assert_eq!(end.voters, set(&[1, 3, 4]));
        assert_eq!(end.learners, set(&[2]));
    }

    #[test]
    fn a_voter_gone_past_the_grace_period_is_replaced_then_demoted() {
        let mut d = desired(&[(1, "a"), (2, "b"), (3, "c"), (4, "a")], 3, 1);
        let cur = current(&[1, 2, 3], &[4], &[4]);
        // Unreachable but within the grace period: nothing changes.
        d.peers.get_mut(&3).unwrap().reachable = false;
        assert_eq!(next_step(&d, &cur), None);
        // Gone: the learner votes first, then the gone voter stops.
        d.peers.get_mut(&3).unwrap().gone = true;
        assert_eq!(next_step(&d, &cur), Some(Step::Promote(set(&[4]))));
        let end = converge(&d, cur);
        assert_eq!(end.voters, set(&[1, 2, 4]));
        // It stays a learner (it is still listed) and catches up when it is back.
        assert_eq!(end.learners, set(&[3]));
    }

    #[test]
    fn a_gone_voter_without_a_live_replacement_keeps_its_vote() {
        let mut d = desired(&[(1, "a"), (2, "b"), (3, "c"), (4, "a")], 3, 1);
        d.peers.get_mut(&3).unwrap().gone = true;
        // The only learner is unreachable, or not caught up: no change.
        d.peers.get_mut(&4).unwrap().reachable = false;
        assert_eq!(next_step(&d, &current(&[1, 2, 3], &[4], &[4])), None);
        d.peers.get_mut(&4).unwrap().reachable = true;
        assert_eq!(next_step(&d, &current(&[1, 2, 3], &[4], &[])), None);
        // No learner at all (three gateways, one gone): still three voters.
        let mut d = desired(&[(1, "a"), (2, "b"), (3, "c")], 3, 1);
        d.peers.get_mut(&3).unwrap().gone = true;
        assert_eq!(next_step(&d, &current(&[1, 2, 3], &[], &[])), None);
    }

    #[test]
    fn scale_down_demotes_then_removes_unlisted_members() {
        let d = desired(&[(0, "a"), (1, "b"), (2, "c")], 3, 0);
        let end = converge(&d, current(&[0, 1, 2, 3, 4], &[], &[]));
        assert_eq!(end.voters, set(&[0, 1, 2]));
        assert!(end.learners.is_empty(), "{end:?}");
        // A listed gateway that still has to catch up blocks removing an unlisted voter.
        let cur = current(&[0, 1, 3], &[2], &[]);
        assert_eq!(next_step(&d, &cur), None);
        // Never every voter at once (a misconfigured list).
        let d = desired(&[(0, "a")], 3, 5);
        assert_eq!(
            next_step(&d, &current(&[5, 6], &[], &[])),
            Some(Step::AddLearner(0, "http://g0".into()))
        );
        assert_eq!(next_step(&d, &current(&[5, 6], &[0], &[])), None);
        let d = Desired {
            leader: 5,
            ..Default::default()
        };
        assert_eq!(
            next_step(&d, &current(&[5, 6], &[7], &[])),
            Some(Step::RemoveLearners(set(&[7])))
        );
    }

    #[test]
    fn retiring_gateways_hand_their_votes_and_the_leadership_to_the_others() {
        // Five gateways, three voting; the operator drains 3 and 4 (the leader) before shrinking
        // to three.
        let mut d = desired(&[(0, "a"), (1, "b"), (2, "c"), (3, "a"), (4, "b")], 3, 4);
        d.retiring = set(&[3, 4]);
        let cur = current(&[1, 3, 4], &[0, 2], &[0, 2]);
        // Replacements vote first (a zone without a staying voter first), ...
        assert_eq!(next_step(&d, &cur), Some(Step::Promote(set(&[0]))));
        let (end, leader) = converge_leader(&d, cur);
        // ... then the retiring voters stop voting, the leader last, after stepping down.
        assert_eq!(end.voters, set(&[0, 1, 2]));
        assert_eq!(
            end.learners,
            set(&[3, 4]),
            "they keep a replica until they are gone"
        );
        assert!(!d.retiring.contains(&leader));
        // The leader does not demote itself; with everything else done it steps down.
        let cur = current(&[0, 1, 2, 4], &[3], &[3]);
        assert_eq!(next_step(&d, &cur), Some(Step::StepDown));
    }

    #[test]
    fn retiring_never_leaves_the_group_without_a_voter_or_a_replacement() {
        // Shrinking to two gateways: the third voter goes without a replacement (two remain).
        let mut d = desired(&[(0, "a"), (1, "b"), (2, "c")], 3, 0);
        d.retiring = set(&[2]);
        assert_eq!(
            next_step(&d, &current(&[0, 1, 2], &[], &[])),
            Some(Step::Demote(set(&[2])))
        );
        // A replacement that has not caught up is waited for.
        let mut d = desired(&[(0, "a"), (1, "b"), (2, "c"), (3, "c")], 3, 0);
        d.retiring = set(&[2]);
        assert_eq!(next_step(&d, &current(&[0, 1, 2], &[3], &[])), None);
        // Everyone retiring: nothing changes (there would be no voter left).
        d.retiring = set(&[0, 1, 2, 3]);
        assert_eq!(next_step(&d, &current(&[0, 1, 2], &[3], &[3])), None);
        // A retiring learner is never promoted.
        let mut d = desired(&[(0, "a"), (1, "b"), (2, "c"), (3, "a")], 3, 0);
        d.peers.get_mut(&2).unwrap().gone = true;
        d.retiring = set(&[3]);
        assert_eq!(next_step(&d, &current(&[0, 1, 2], &[3], &[3])), None);
    }

    #[test]
    fn a_bounded_group_lives_on_its_voters_and_replaces_one_on_the_least_loaded_gateway() {
        // Five gateways; the group votes on 1, 2, 3. Nothing more is added.
        let mut d = bounded(
            &[
                (1, "a", 3),
                (2, "b", 3),
                (3, "c", 3),
                (4, "a", 5),
                (5, "c", 1),
            ],
            3,
            1,
        );
        assert_eq!(next_step(&d, &current(&[1, 2, 3], &[], &[])), None);
        // Learners left over (a formed group, a demoted voter) go.
        assert_eq!(
            next_step(&d, &current(&[1, 2, 3], &[4, 5], &[4, 5])),
            Some(Step::RemoveLearners(set(&[4, 5])))
        );
        // 3 (zone c) is gone: 5, in zone c and hosting fewest, replaces it.
        d.peers.get_mut(&3).unwrap().gone = true;
        let cur = current(&[1, 2, 3], &[], &[]);
        assert_eq!(
            next_step(&d, &cur),
            Some(Step::AddLearner(5, "http://g5".into()))
        );
        // While it catches up nothing else is added, and it is kept.
        assert_eq!(next_step(&d, &current(&[1, 2, 3], &[5], &[])), None);
        let end = converge(&d, cur);
        assert_eq!(end.voters, set(&[1, 2, 5]));
        assert!(end.learners.is_empty(), "the gone voter leaves: {end:?}");
        // Without a live gateway in zone c, the least loaded elsewhere is taken.
        d.peers.get_mut(&5).unwrap().reachable = false;
        assert_eq!(
            next_step(&d, &current(&[1, 2, 3], &[], &[])),
            Some(Step::AddLearner(4, "http://g4".into()))
        );
    }

    #[test]
    fn a_replica_moved_off_a_bounded_group_hands_over_its_vote_then_leaves() {
        let mut d = bounded(
            &[
                (1, "a", 4),
                (2, "b", 4),
                (3, "c", 4),
                (4, "a", 1),
                (5, "b", 1),
            ],
            3,
            1,
        );
        // Moving 2 away: retiring from this group only.
        d.retiring = set(&[2]);
        let cur = current(&[1, 2, 3], &[], &[]);
        assert_eq!(
            next_step(&d, &cur),
            Some(Step::AddLearner(5, "http://g5".into()))
        );
        let end = converge(&d, cur.clone());
        assert_eq!(end.voters, set(&[1, 3, 5]));
        assert!(end.learners.is_empty(), "{end:?}");
        // Moved onto given gateways (a merge wants its neighbour's): only those are taken.
        d.prefer = Some(set(&[1, 3, 4]));
        assert_eq!(
            next_step(&d, &cur),
            Some(Step::AddLearner(4, "http://g4".into()))
        );
        let end = converge(&d, cur);
        assert_eq!(end.voters, set(&[1, 3, 4]));
    }

    #[test]
    fn a_bounded_group_with_voters_sharing_a_zone_brings_in_one_from_a_missing_zone() {
        let d = bounded(&[(1, "a", 2), (2, "a", 2), (3, "b", 2), (4, "c", 9)], 3, 1);
        let cur = current(&[1, 2, 3], &[], &[]);
        assert_eq!(
            next_step(&d, &cur),
            Some(Step::AddLearner(4, "http://g4".into()))
        );
        // Kept while it catches up.
        assert_eq!(next_step(&d, &current(&[1, 2, 3], &[4], &[])), None);
        let end = converge(&d, cur);
        assert_eq!(end.voters, set(&[1, 3, 4]));
        assert!(end.learners.is_empty(), "{end:?}");
    }
}
