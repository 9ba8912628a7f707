//! Spreading group leaderships over the gateways. A split hands the new group to the gateway
//! leading the fewest groups, but elections after a failure pile leaderships onto the survivors,
//! and a gateway that comes back leads nothing. The meta group's leader moves one leadership at a
//! time from the gateway leading the most groups to a voter of that group leading at least two
//! fewer, until no such move is left. The planner is pure, so every rule is unit tested.

use std::collections::{BTreeMap, BTreeSet};

use super::GroupStatus;
use super::store::GroupId;

/// One leadership to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// The group.
    pub group: GroupId,
    /// Its leader now.
    pub from: u64,
    /// The voter to lead it.
    pub to: u64,
}

/// The next leadership to move among `groups`, if one is worth it: from the gateway leading the
/// most groups (ties: smallest id) to the voter of one of its groups leading the fewest (at least
/// two fewer, so a move never just swaps the imbalance; ties: smallest id). Gateways in `excluded`
/// (retiring, or gone) are never given a leadership; the `fixed` group's leadership counts but
/// never moves (the meta group: its leader runs the rebalancer and keeps the load figures).
pub fn next_move(groups: &[GroupStatus], excluded: &BTreeSet<u64>, fixed: GroupId) -> Option<Move> {
    let mut led: BTreeMap<u64, usize> = BTreeMap::new();
    for g in groups {
        for v in &g.voters {
            led.entry(*v).or_default();
        }
        if let Some(l) = g.leader {
            *led.entry(l).or_default() += 1;
        }
    }
    let (&from, &most) = led
        .iter()
        .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))?;
    groups
        .iter()
        .filter(|g| g.leader == Some(from) && g.group != fixed)
        .filter_map(|g| {
            let (to, fewest) = g
                .voters
                .iter()
                .filter(|v| **v != from && !excluded.contains(v))
                .map(|v| (*v, led[v]))
                .min_by_key(|(id, n)| (*n, *id))?;
            (fewest + 2 <= most).then_some((fewest, g.group, to))
        })
        .min()
        .map(|(_, group, to)| Move { group, from, to })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(group: GroupId, leader: u64, voters: &[u64]) -> GroupStatus {
        GroupStatus {
            group,
            leader: Some(leader),
            term: 1,
            applied_index: None,
            voters: voters.to_vec(),
            learners: Vec::new(),
            objects_from: None,
            objects_to: None,
            frozen: None,
            snapshot_index: None,
            purged_index: None,
        }
    }

    #[test]
    fn leaderships_piled_on_one_gateway_move_to_the_idle_ones_one_at_a_time() {
        let voters = [1, 2, 3];
        // Gateway 3 came back after a failure: 1 and 2 lead everything.
        let mut groups: Vec<GroupStatus> = (1..=6)
            .map(|g| group(g, if g % 2 == 0 { 2 } else { 1 }, &voters))
            .collect();
        let none = BTreeSet::new();
        let mut moves = 0;
        while let Some(m) = next_move(&groups, &none, 0) {
            assert_ne!(m.from, m.to);
            let g = groups.iter_mut().find(|g| g.group == m.group).unwrap();
            assert_eq!(g.leader, Some(m.from));
            g.leader = Some(m.to);
            moves += 1;
            assert!(moves <= 6, "moves never end");
        }
        let mut led = BTreeMap::new();
        for g in &groups {
            *led.entry(g.leader.unwrap()).or_insert(0) += 1;
        }
        assert_eq!(led, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
        assert_eq!(moves, 2);
    }

    #[test]
    fn an_imbalance_of_one_stays_and_leaders_move_only_to_voters_not_excluded() {
        // 2 against 1: moving would only swap the imbalance.
        let groups = [
            group(1, 1, &[1, 2]),
            group(2, 1, &[1, 2]),
            group(3, 2, &[1, 2]),
        ];
        assert_eq!(next_move(&groups, &BTreeSet::new(), 0), None);
        // 2 against 1 against 0: one moves to the idle gateway.
        let groups = [
            group(1, 1, &[1, 2, 3]),
            group(2, 1, &[1, 2, 3]),
            group(3, 2, &[1, 2, 3]),
        ];
        assert_eq!(
            next_move(&groups, &BTreeSet::new(), 0),
            Some(Move {
                group: 1,
                from: 1,
                to: 3
            })
        );
        // 3 against 0 against 0: to the smallest idle voter, unless it is excluded.
        let groups = [
            group(1, 1, &[1, 2, 3]),
            group(2, 1, &[1, 2, 3]),
            group(3, 1, &[1, 2, 3]),
        ];
        assert_eq!(
            next_move(&groups, &BTreeSet::new(), 0),
            Some(Move {
                group: 1,
                from: 1,
                to: 2
            })
        );
        assert_eq!(
            next_move(&groups, &BTreeSet::from([2]), 0),
            Some(Move {
                group: 1,
                from: 1,
                to: 3
            })
        );
        assert_eq!(next_move(&groups, &BTreeSet::from([2, 3]), 0), None);
        // A gateway that votes in none of the leader's groups cannot take one.
        let groups = [
            group(1, 1, &[1, 2]),
            group(2, 1, &[1, 2]),
            group(3, 2, &[2, 4]),
        ];
        assert_eq!(next_move(&groups, &BTreeSet::new(), 0), None);
        // The fixed group counts, but another group moves instead.
        let groups = [group(1, 1, &[1, 2, 3]), group(2, 1, &[1, 2, 3])];
        assert_eq!(
            next_move(&groups, &BTreeSet::new(), 1),
            Some(Move {
                group: 2,
                from: 1,
                to: 2
            })
        );
        assert_eq!(next_move(&groups[..1], &BTreeSet::new(), 1), None);
        // Groups without a leader count for nobody.
        let mut leaderless = group(4, 1, &[1, 2, 3]);
        leaderless.leader = None;
        assert_eq!(next_move(&[leaderless], &BTreeSet::new(), 0), None);
    }
}
