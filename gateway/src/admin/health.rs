//! The fleet's health as the operator reads it: index, nodes, repair backlog.

use std::sync::Arc;

use axum::extract::State;

use super::{AdminResult, AdminState};
pub use cairn_admin_api::Health;

/// The repair backlog and the unrepairable shards in the nodes' scrub reports.
pub fn repair_backlog(reports: &[cairn_storage_node::scrubber::ScrubStatus]) -> (u64, u64) {
    let mut backlog = 0u64;
    let mut unrepairable = 0u64;
    for r in reports {
        if let Some(c) = &r.current {
            let found = c.corrupt_shards + c.broken_peer_shards;
            backlog += found.saturating_sub(c.repaired + c.unrepairable);
            unrepairable += c.unrepairable;
        }
        if let Some(l) = &r.last {
            // A pass under way retries what the last one failed to repair.
            if r.current.is_none() {
                backlog += l.repair_errors;
            }
            unrepairable += l.unrepairable;
        }
    }
    (backlog, unrepairable)
}

pub(super) async fn health(State(state): State<Arc<AdminState>>) -> AdminResult<Health> {
    let total = state.nodes.len();
    let up = state.nodes.up_count();
    let writable = up >= state.write_quorum.min(total);
    let asks = state
        .nodes
        .up_clients()
        .into_iter()
        .map(|client| async move {
            tokio::time::timeout(std::time::Duration::from_secs(2), client.scrub_status())
                .await
                .ok()
                .and_then(Result::ok)
        });
    let reports: Vec<_> = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    let (repair_backlog, unrepairable_shards) = repair_backlog(&reports);
    let status = if up == total && repair_backlog == 0 {
        "ok"
    } else if writable && up >= state.read_quorum {
        "degraded"
    } else {
        "unavailable"
    };
    Ok(axum::Json(Health {
        status: status.into(),
        nodes_up: up,
        nodes_total: total,
        writable,
        repair_backlog,
        unrepairable_shards,
    }))
}

#[cfg(test)]
mod tests {
    use cairn_storage_node::scrubber::{PassStats, ScrubStatus};

    use super::repair_backlog;

    fn pass(corrupt: u64, broken: u64, repaired: u64, unrepairable: u64, errors: u64) -> PassStats {
        PassStats {
            corrupt_shards: corrupt,
            broken_peer_shards: broken,
            repaired,
            unrepairable,
            repair_errors: errors,
            ..Default::default()
        }
    }

    #[test]
    fn the_backlog_is_found_damage_not_yet_repaired() {
        assert_eq!(repair_backlog(&[]), (0, 0));
        let idle = ScrubStatus {
            current: None,
            last: Some(pass(3, 1, 3, 1, 0)),
            passes_completed: 1,
        };
        // Everything found was repaired or given up on: no backlog, one lost stripe's shard.
        assert_eq!(repair_backlog(std::slice::from_ref(&idle)), (0, 1));
        // A pass that found damage it has not repaired yet, and a node whose last pass failed
        // two repairs (waiting for the next pass).
        let busy = ScrubStatus {
            current: Some(pass(2, 2, 1, 0, 0)),
            last: Some(pass(0, 0, 0, 0, 5)),
            passes_completed: 4,
        };
        let failed = ScrubStatus {
            current: None,
            last: Some(pass(2, 0, 0, 0, 2)),
            passes_completed: 2,
        };
        assert_eq!(repair_backlog(&[idle, busy, failed]), (3 + 2, 1));
    }
}
