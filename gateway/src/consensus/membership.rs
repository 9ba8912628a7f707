//! Keeps the index group's membership equal to the configured gateways (`--peer`), so scaling
//! the fleet is a configuration change: the leader adds a listed gateway as a learner, promotes
//! it to voter once it has caught up, and removes members that are no longer listed. Members
//! that are listed but down are never removed: that is an outage, not a change of shape.

use std::collections::{BTreeMap, BTreeSet};

/// One membership change, in the order the leader makes them: new replicas join before any
/// leaves, so the group never shrinks below what it was while it changes shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Start replicating to a listed gateway that is not a member yet.
    AddLearner(u64, String),
    /// Make caught-up learners voters.
    Promote(BTreeSet<u64>),
    /// Remove voters that are no longer listed.
    RemoveVoters(BTreeSet<u64>),
    /// Stop replicating to learners that are no longer listed.
    RemoveLearners(BTreeSet<u64>),
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

/// The next change towards `desired` (gateway id → admin URL), if any.
pub fn next_step(desired: &BTreeMap<u64, String>, current: &Current) -> Option<Step> {
    let members: BTreeSet<u64> = current.voters.union(&current.learners).copied().collect();
    if let Some((id, addr)) = desired.iter().find(|(id, _)| !members.contains(id)) {
        return Some(Step::AddLearner(*id, addr.clone()));
    }
    let promote: BTreeSet<u64> = current
        .learners
        .iter()
        .filter(|id| desired.contains_key(id) && current.caught_up.contains(id))
        .copied()
        .collect();
    if !promote.is_empty() {
        return Some(Step::Promote(promote));
    }
    // Only once every listed gateway votes: removing first could leave too few voters.
    let listed_voting = desired.keys().all(|id| current.voters.contains(id));
    let gone: BTreeSet<u64> = current
        .voters
        .iter()
        .filter(|id| !desired.contains_key(id))
        .copied()
        .collect();
    if listed_voting && !gone.is_empty() && gone.len() < current.voters.len() {
        return Some(Step::RemoveVoters(gone));
    }
    let stale: BTreeSet<u64> = current
        .learners
        .iter()
        .filter(|id| !desired.contains_key(id))
        .copied()
        .collect();
    (!stale.is_empty()).then_some(Step::RemoveLearners(stale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(ids: &[u64]) -> BTreeMap<u64, String> {
        ids.iter().map(|i| (*i, format!("http://g{i}"))).collect()
    }

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn scale_up_adds_then_promotes_only_caught_up_learners() {
        let mut cur = Current {
            voters: set(&[0, 1, 2]),
            ..Default::default()
        };
        assert_eq!(next_step(&desired(&[0, 1, 2]), &cur), None);
        let want = desired(&[0, 1, 2, 3, 4]);
        assert_eq!(
            next_step(&want, &cur),
            Some(Step::AddLearner(3, "http://g3".into()))
        );
        cur.learners = set(&[3]);
        assert_eq!(
            next_step(&want, &cur),
            Some(Step::AddLearner(4, "http://g4".into()))
        );
        cur.learners = set(&[3, 4]);
        // Nobody caught up yet: wait.
        assert_eq!(next_step(&want, &cur), None);
        cur.caught_up = set(&[4]);
        assert_eq!(next_step(&want, &cur), Some(Step::Promote(set(&[4]))));
    }

    #[test]
    fn scale_down_removes_unlisted_members_never_listed_ones_that_are_down() {
        let cur = Current {
            voters: set(&[0, 1, 2, 3, 4]),
            ..Default::default()
        };
        assert_eq!(
            next_step(&desired(&[0, 1, 2]), &cur),
            Some(Step::RemoveVoters(set(&[3, 4])))
        );
        // A listed gateway that still has to join blocks removals.
        let cur = Current {
            voters: set(&[0, 1, 3]),
            learners: set(&[2]),
            caught_up: BTreeSet::new(),
        };
        assert_eq!(next_step(&desired(&[0, 1, 2]), &cur), None);
        // Never every voter at once (a misconfigured list).
        let cur = Current {
            voters: set(&[5, 6]),
            ..Default::default()
        };
        assert_eq!(
            next_step(&desired(&[0]), &cur),
            Some(Step::AddLearner(0, "http://g0".into()))
        );
        let cur = Current {
            voters: set(&[5, 6]),
            learners: set(&[7]),
            caught_up: BTreeSet::new(),
        };
        assert_eq!(
            next_step(&BTreeMap::new(), &cur),
            Some(Step::RemoveLearners(set(&[7])))
        );
    }
}
