//! Prometheus metrics of a storage node. One registry per node, passed in, never global.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use cairn_transport::listener::ListenerMetrics;
use cairn_transport::server::{RejectedFamily, counting_into};

/// Labels of an HTTP request metric: the route (not the raw path, to bound cardinality).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Matched route, e.g. `/v1/shards/{object}/{index}`.
    pub endpoint: String,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: u16,
}

/// Labels of a per-endpoint latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// Matched route.
    pub endpoint: String,
}

/// Every metric the node exports.
pub struct NodeMetrics {
    registry: Registry,
    /// Requests by endpoint, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by endpoint.
    pub latency: Family<EndpointLabels, Histogram>,
    /// Shards written (acknowledged).
    pub shards_written: Counter,
    /// Payload bytes written (acknowledged).
    pub bytes_written: Counter,
    /// Payload bytes served.
    pub bytes_read: Counter,
    /// Reads refused because a shard failed its checksums.
    pub corrupt_reads: Counter,
    /// Writes refused for lack of space.
    pub disk_full_rejections: Counter,
    /// Free bytes on the data filesystem (updated at scrape).
    pub disk_free: Gauge,
    /// Used bytes on the data filesystem (updated at scrape).
    pub disk_used: Gauge,
    /// Shard files stored (updated at scrape).
    pub shards_stored: Gauge,
    /// Bytes of shard files stored (updated at scrape).
    pub shard_bytes_stored: Gauge,
    /// Own shards verified by the scrubber.
    pub scrub_shards_checked: Counter,
    /// Payload bytes verified by the scrubber.
    pub scrub_bytes_verified: Counter,
    /// Own shards found with a bad header or bad blocks.
    pub scrub_corrupt_shards: Counter,
    /// Own blocks found failing their checksum.
    pub scrub_corrupt_blocks: Counter,
    /// Successor shards found missing or corrupt on peers.
    pub scrub_broken_peer_shards: Counter,
    /// Shards rebuilt and stored.
    pub scrub_shards_repaired: Counter,
    /// Shards that cannot be rebuilt (too few healthy shards left).
    pub scrub_unrepairable: Counter,
    /// Repairs that failed for another reason and will be retried.
    pub scrub_repair_errors: Counter,
    /// Passes finished.
    pub scrub_passes: Counter,
    /// 1 while a pass runs.
    pub scrub_running: Gauge,
    /// Unix time the last pass finished.
    pub scrub_last_pass_completed: Gauge,
    /// Requests to `/v1` refused for a missing or bad fleet signature, by reason.
    pub auth_rejected: RejectedFamily,
    /// The API listener's connections.
    pub listener: ListenerMetrics,
}

impl NodeMetrics {
    /// Registers every metric under the `cairn` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cairn");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let m = Self {
            requests: requests.clone(),
            latency: latency.clone(),
            shards_written: Counter::default(),
            bytes_written: Counter::default(),
            bytes_read: Counter::default(),
            corrupt_reads: Counter::default(),
            disk_full_rejections: Counter::default(),
            disk_free: Gauge::default(),
            disk_used: Gauge::default(),
            shards_stored: Gauge::default(),
            shard_bytes_stored: Gauge::default(),
            scrub_shards_checked: Counter::default(),
            scrub_bytes_verified: Counter::default(),
            scrub_corrupt_shards: Counter::default(),
            scrub_corrupt_blocks: Counter::default(),
            scrub_broken_peer_shards: Counter::default(),
            scrub_shards_repaired: Counter::default(),
            scrub_unrepairable: Counter::default(),
            scrub_repair_errors: Counter::default(),
            scrub_passes: Counter::default(),
            scrub_running: Gauge::default(),
            scrub_last_pass_completed: Gauge::default(),
            auth_rejected: RejectedFamily::default(),
            listener: ListenerMetrics::default(),
            registry: Registry::default(),
        };
        registry.register(
            "node_auth_rejected",
            "Requests refused for a missing or bad fleet signature, by reason",
            m.auth_rejected.clone(),
        );
        m.listener.register(&mut registry, "node");
        registry.register(
            "node_http_requests",
            "HTTP requests by endpoint, method, status",
            requests,
        );
        registry.register(
            "node_http_request_duration_seconds",
            "HTTP request latency",
            latency,
        );
        registry.register(
            "shards_written",
            "Shards written and acknowledged",
            m.shards_written.clone(),
        );
        registry.register(
            "shard_bytes_written",
            "Shard payload bytes acknowledged",
            m.bytes_written.clone(),
        );
        registry.register(
            "shard_bytes_read",
            "Shard payload bytes served",
            m.bytes_read.clone(),
        );
        registry.register(
            "corrupt_reads",
            "Reads refused because a block failed its checksum",
            m.corrupt_reads.clone(),
        );
        registry.register(
            "disk_full_rejections",
            "Writes refused for lack of space",
            m.disk_full_rejections.clone(),
        );
        registry.register(
            "disk_free_bytes",
            "Free bytes on the data filesystem",
            m.disk_free.clone(),
        );
        registry.register(
            "disk_used_bytes",
            "Used bytes on the data filesystem",
            m.disk_used.clone(),
        );
        let counters: [(&str, &str, &Counter); 9] = [
            (
                "scrub_shards_checked",
                "Own shards verified by the scrubber",
                &m.scrub_shards_checked,
            ),
            (
                "scrub_bytes_verified",
                "Payload bytes verified by the scrubber",
                &m.scrub_bytes_verified,
            ),
            (
                "scrub_corrupt_shards",
                "Own shards found with a bad header or bad blocks",
                &m.scrub_corrupt_shards,
            ),
            (
                "scrub_corrupt_blocks",
                "Own blocks found failing their checksum",
                &m.scrub_corrupt_blocks,
            ),
            (
                "scrub_broken_peer_shards",
                "Successor shards found missing or corrupt on peers",
                &m.scrub_broken_peer_shards,
            ),
            (
                "scrub_shards_repaired",
                "Shards rebuilt from peers and stored",
                &m.scrub_shards_repaired,
            ),
            (
                "scrub_unrepairable_shards",
                "Shards that cannot be rebuilt: too few healthy shards left",
                &m.scrub_unrepairable,
            ),
            (
                "scrub_repair_errors",
                "Repairs that failed for another reason (retried next pass)",
                &m.scrub_repair_errors,
            ),
            ("scrub_passes", "Scrub passes finished", &m.scrub_passes),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        let gauges: [(&str, &str, &Gauge); 4] = [
            ("shards_stored", "Shard files stored", &m.shards_stored),
            (
                "shard_bytes_stored",
                "Bytes of shard files stored",
                &m.shard_bytes_stored,
            ),
            (
                "scrub_running",
                "1 while a scrub pass runs",
                &m.scrub_running,
            ),
            (
                "scrub_last_pass_completed_timestamp_seconds",
                "Unix time the last scrub pass finished",
                &m.scrub_last_pass_completed,
            ),
        ];
        for (name, help, g) in gauges {
            registry.register(name, help, g.clone());
        }
        Self { registry, ..m }
    }

    /// Counts a request refused for its fleet signature.
    pub fn count_auth_rejection(&self, reason: &'static str) {
        counting_into(self.auth_rejected.clone())(reason);
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}
