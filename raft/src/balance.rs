//! Spreading group leaderships over the gateways. A split hands the new group to the voter
//! carrying the least leadership load, but elections after a failure pile leaderships onto the
//! survivors, and a gateway that comes back leads nothing. The meta group's leader moves one
//! leadership at a time from the gateway with the heaviest leaderships to a voter of that group
//! with at least two groups' weight less, until no such move is left.
//!
//! A leadership weighs 1, plus [`LOAD_WEIGHT`] per unit of its group's pressure (its measured
//! rate over the split threshold), so a hot group is not moved onto a gateway it would overload
//! and cold groups move off the gateway leading a hot one instead. Idle fleets balance counts.
//! The planner is pure, so every rule is unit tested.

use std::collections::{BTreeMap, BTreeSet};

use super::GroupStatus;
use super::store::GroupId;

/// Each group's pressure: its measured reads and writes per second over the split thresholds
/// (1.0: at a threshold), as the planning gateway measured or was told them.
pub type Pressure = BTreeMap<GroupId, f64>;

/// What a group at its split threshold weighs beyond an idle one.
pub const LOAD_WEIGHT: f64 = 10.0;

/// The weight of `group`'s leadership.
pub fn weight(pressure: &Pressure, group: GroupId) -> f64 {
    1.0 + LOAD_WEIGHT * pressure.get(&group).copied().unwrap_or(0.0).max(0.0)
}

/// Each gateway's leadership load: the weights of the groups it leads (0 for a voter leading
/// none).
fn loads(groups: &[GroupStatus], pressure: &Pressure) -> BTreeMap<u64, f64> {
    let mut led: BTreeMap<u64, f64> = BTreeMap::new();
    for g in groups {
        for v in &g.voters {
            led.entry(*v).or_default();
        }
        if let Some(l) = g.leader {
            *led.entry(l).or_default() += weight(pressure, g.group);
        }
    }
    led
}

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

/// The next leadership to move among `groups`, if one is worth it: from the gateway with the
/// heaviest leaderships (ties: smallest id) to the lightest voter of one of its groups, when
/// that voter stays at least as light as the gateway it relieves (its load plus twice the
/// group's weight is at most the other's, so a move never just swaps the imbalance). Among such
/// moves, the one leaving the lighter maximum, then the lightest voter (ties: smallest ids).
/// Gateways in `excluded` (retiring, or gone) are never given a leadership; the `fixed` group's
/// leadership counts but never moves (the meta group: its leader runs the rebalancer and keeps
/// the load figures).
pub fn next_move(
    groups: &[GroupStatus],
    excluded: &BTreeSet<u64>,
    fixed: GroupId,
    pressure: &Pressure,
) -> Option<Move> {
    let led = loads(groups, pressure);
    let (&from, &most) = led
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))?;
    groups
        .iter()
        .filter(|g| g.leader == Some(from) && g.group != fixed)
        .filter_map(|g| {
            let (to, lightest) = g
                .voters
                .iter()
                .filter(|v| **v != from && !excluded.contains(v))
                .map(|v| (*v, led[v]))
                .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))?;
            let w = weight(pressure, g.group);
            // A small tolerance: weights are sums of floats.
            (lightest + 2.0 * w <= most + 1e-9)
                .then(|| ((most - w).max(lightest + w), lightest, g.group, to))
        })
        .min_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(a.1.total_cmp(&b.1))
                .then((a.2, a.3).cmp(&(b.2, b.3)))
        })
        .map(|(_, _, group, to)| Move { group, from, to })
}

/// The voter of `parent` that should lead a group split off it: the one with the lightest
/// leaderships (ties: not the parent's leader, then the smallest id).
pub fn lightest_voter(
    parent: &GroupStatus,
    groups: &[GroupStatus],
    pressure: &Pressure,
) -> Option<u64> {
    let led = loads(groups, pressure);
    let load = |v: u64| led.get(&v).copied().unwrap_or(0.0);
    parent.voters.iter().copied().min_by(|a, b| {
        load(*a)
            .total_cmp(&load(*b))
            .then((parent.leader == Some(*a)).cmp(&(parent.leader == Some(*b))))
            .then(a.cmp(b))
    })
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
        while let Some(m) = next_move(&groups, &none, 0, &Pressure::new()) {
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
        assert_eq!(
            next_move(&groups, &BTreeSet::new(), 0, &Pressure::new()),
            None
        );
        // 2 against 1 against 0: one moves to the idle gateway.
        let groups = [
            group(1, 1, &[1, 2, 3]),
            group(2, 1, &[1, 2, 3]),
            group(3, 2, &[1, 2, 3]),
        ];
        assert_eq!(
            next_move(&groups, &BTreeSet::new(), 0, &Pressure::new()),
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
            next_move(&groups, &BTreeSet::new(), 0, &Pressure::new()),
            Some(Move {
                group: 1,
                from: 1,
                to: 2
            })
        );
        assert_eq!(
            next_move(&groups, &BTreeSet::from([2]), 0, &Pressure::new()),
            Some(Move {
                group: 1,
                from: 1,
                to: 3
            })
        );
        assert_eq!(
            next_move(&groups, &BTreeSet::from([2, 3]), 0, &Pressure::new()),
            None
        );
        // A gateway that votes in none of the leader's groups cannot take one.
        let groups = [
            group(1, 1, &[1, 2]),
            group(2, 1, &[1, 2]),
            group(3, 2, &[2, 4]),
        ];
        assert_eq!(
            next_move(&groups, &BTreeSet::new(), 0, &Pressure::new()),
            None
        );
        // The fixed group counts, but another group moves instead.
        let groups = [group(1, 1, &[1, 2, 3]), group(2, 1, &[1, 2, 3])];
        assert_eq!(
            next_move(&groups, &BTreeSet::new(), 1, &Pressure::new()),
            Some(Move {
                group: 2,
                from: 1,
                to: 2
            })
        );
        assert_eq!(
            next_move(&groups[..1], &BTreeSet::new(), 1, &Pressure::new()),
            None
        );
        // Groups without a leader count for nobody.
        let mut leaderless = group(4, 1, &[1, 2, 3]);
        leaderless.leader = None;
        assert_eq!(
            next_move(&[leaderless], &BTreeSet::new(), 0, &Pressure::new()),
            None
        );
    }

    #[test]
    fn cold_leaderships_move_off_the_gateway_leading_a_hot_group_and_the_hot_one_stays() {
        let voters = [1, 2, 3];
        // Gateway 1 leads the hot group 1 (twice the threshold) and the cold 2 and 3; gateway 2
        // leads 4. By count alone, group 1 (the lowest id) would move to gateway 3.
        let mut groups = vec![
            group(1, 1, &voters),
            group(2, 1, &voters),
            group(3, 1, &voters),
            group(4, 2, &voters),
        ];
        let hot = Pressure::from([(1, 2.0)]);
        let counted = next_move(&groups, &BTreeSet::new(), 0, &Pressure::new()).unwrap();
        assert_eq!((counted.group, counted.to), (1, 3));
        let mut moves = 0;
        while let Some(m) = next_move(&groups, &BTreeSet::new(), 0, &hot) {
            assert_ne!(m.group, 1, "the hot group stays");
            let g = groups.iter_mut().find(|g| g.group == m.group).unwrap();
            g.leader = Some(m.to);
            moves += 1;
            assert!(moves <= 4, "moves never end");
        }
        let led_by_1: Vec<GroupId> = groups
            .iter()
            .filter(|g| g.leader == Some(1))
            .map(|g| g.group)
            .collect();
        assert_eq!(led_by_1, vec![1], "{groups:?}");
        // Two hot groups on one gateway: one moves to an idle voter.
        let groups = [group(1, 1, &voters), group(2, 1, &voters)];
        let both = Pressure::from([(1, 1.0), (2, 1.0)]);
        let m = next_move(&groups, &BTreeSet::new(), 0, &both).unwrap();
        assert_eq!((m.from, m.to), (1, 2));
    }

    #[test]
    fn a_split_off_group_goes_to_the_voter_with_the_lightest_leaderships() {
        let voters = [1, 2, 3];
        let groups = [
            group(1, 1, &voters),
            group(2, 2, &voters),
            group(3, 2, &voters),
        ];
        // By count gateway 3 (leading nothing); so too with load.
        assert_eq!(
            lightest_voter(&groups[0], &groups, &Pressure::new()),
            Some(3)
        );
        // Gateway 1 leads the hot parent and gateway 3 another hot group: gateway 2's two cold
        // ones weigh less.
        let mut with_hot = groups.to_vec();
        with_hot.push(group(4, 3, &voters));
        let hot = Pressure::from([(1, 1.0), (4, 1.0)]);
        assert_eq!(lightest_voter(&with_hot[0], &with_hot, &hot), Some(2));
        // Ties: not the parent's leader.
        let tied = [group(1, 1, &[1, 2]), group(2, 2, &[1, 2])];
        assert_eq!(lightest_voter(&tied[0], &tied, &Pressure::new()), Some(2));
    }
}
