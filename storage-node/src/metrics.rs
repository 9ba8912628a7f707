//! Prometheus metrics of a storage node. One registry per node, passed in, never global.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
            registry: Registry::default(),
        };
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
        Self { registry, ..m }
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
