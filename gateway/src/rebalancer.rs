//! The background task that splits and merges index partitions by load (see
//! `index::partition::policy`), gives up bucket deletions whose gateway died midway, balances
//! the index groups' leaderships over the gateways, and keeps the per-partition gauges current.
//! Every gateway runs it: each reports the load it served to the partitions' leaders and splits
//! the partitions whose groups it leads; the meta group's leader also merges cold neighbours.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::index::{Index, Rebalanced};
use crate::metrics::{GatewayMetrics, PartitionLabels, SplitLabels};

/// Splits and merges partitions every `interval`.
pub struct Rebalancer {
    index: Index,
    metrics: Arc<GatewayMetrics>,
    interval: Duration,
}

impl Rebalancer {
    /// A rebalancer of `index`.
    pub fn new(index: Index, metrics: Arc<GatewayMetrics>, interval: Duration) -> Self {
        Self {
            index,
            metrics,
            interval,
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        /// How often stuck bucket deletions are looked for.
        const DELETION_SWEEP: Duration = Duration::from_secs(30);
        /// How often one group leadership may move to balance them.
        const LEADER_BALANCE: Duration = Duration::from_secs(5);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut swept = tokio::time::Instant::now();
        let mut balanced = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if swept.elapsed() >= DELETION_SWEEP && self.index.runs_background_work() {
                swept = tokio::time::Instant::now();
                if let Err(e) = self
                    .index
                    .give_up_stale_deletions(crate::index::now_ms())
                    .await
                {
                    tracing::debug!(error = %e, "stuck bucket deletions not looked for");
                }
            }
            if let Err(e) = self.index.report_load().await {
                tracing::debug!(error = %e, "load not reported to the leaders");
            }
            if balanced.elapsed() >= LEADER_BALANCE
                && let Some(c) = self.index.consensus()
            {
                balanced = tokio::time::Instant::now();
                c.balance_leaders(&self.index.group_pressure()).await;
                self.index.balance_replicas().await;
            }
            match self.index.rebalance_once().await {
                Ok(Some(change)) => record(&self.metrics, &change),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "partition rebalancing skipped this tick"),
            }
            self.publish_rates();
        }
    }

    /// Sets the per-partition gauges of the partitions led here (only those that exist now):
    /// one series per partition fleet-wide, with its leader's whole figures.
    fn publish_rates(&self) {
        let m = &self.metrics.partition;
        m.reads_per_second.clear();
        m.writes_per_second.clear();
        for s in self.index.partition_stats_led_here() {
            let labels = PartitionLabels {
                partition: s.id.to_string(),
            };
            m.reads_per_second
                .get_or_create(&labels)
                .set(s.reads_per_second);
            m.writes_per_second
                .get_or_create(&labels)
                .set(s.writes_per_second);
        }
    }
}

/// Logs and counts a committed split or merge.
pub fn record(metrics: &GatewayMetrics, change: &Rebalanced) {
    let m = &metrics.partition;
    match change {
        Rebalanced::Split {
            id,
            right,
            at,
            reason,
            map_version,
        } => {
            let reason = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            m.splits
                .get_or_create(&SplitLabels {
                    reason: reason.clone(),
                })
                .inc();
            tracing::info!(
                partition = %id,
                new_partition = %right,
                at = %crate::index::keys::readable(at),
                reason,
                map_version,
                "index partition split"
            );
        }
        Rebalanced::Merged {
            left,
            right,
            map_version,
        } => {
            m.merges.inc();
            tracing::info!(partition = %left, merged = %right, map_version, "index partitions merged");
        }
    }
}
