//! Prometheus metrics of a gateway. One registry per process, passed in, never global.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use cairn_raft::metrics::{DirectorySourceLabels, OutcomeLabels, RaftMetrics};
use cairn_transport::listener::ListenerMetrics;
use cairn_transport::server::RejectedFamily;

/// Labels of an S3 request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// S3 operation (`PutObject`...), `Unknown` when the request failed before routing.
    pub operation: String,
    /// HTTP status.
    pub status: u16,
}

/// Labels of an S3 latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// S3 operation.
    pub operation: String,
}

/// Labels of per-bucket lifecycle metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BucketLabels {
    /// Bucket name.
    pub bucket: String,
}

/// Labels of access-key lookups.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// `cached`, `read` (from the index) or `throttled` (refused without reading).
    pub result: String,
}

/// Labels of per-storage-class metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    /// Storage class name.
    pub class: String,
}

/// Lifecycle metrics, per bucket.
#[derive(Default)]
pub struct LifecycleMetrics {
    /// Versions and uploads evaluated.
    pub scanned: Family<BucketLabels, Counter>,
    /// Versions re-encoded into another storage class.
    pub transitioned: Family<BucketLabels, Counter>,
    /// Current versions expired.
    pub expired: Family<BucketLabels, Counter>,
    /// Noncurrent versions deleted.
    pub noncurrent_expired: Family<BucketLabels, Counter>,
    /// Expired delete markers removed.
    pub markers_removed: Family<BucketLabels, Counter>,
    /// Incomplete multipart uploads aborted.
    pub uploads_aborted: Family<BucketLabels, Counter>,
    /// Object bytes re-encoded by transitions.
    pub bytes_moved: Family<BucketLabels, Counter>,
    /// End of the last finished run (Unix seconds).
    pub last_run: Family<BucketLabels, Gauge>,
    /// Transitions that failed (storage unavailable, verification mismatch).
    pub failures: Family<BucketLabels, Counter>,
}

/// Labels of a partition split.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SplitLabels {
    /// `load`, `size` or `manual`.
    pub reason: String,
}

/// Labels of per-partition gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Partition id.
    pub partition: String,
}

/// A gauge holding a float.
pub type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Metrics of the index partitions (splits and merges count where they were committed).
#[derive(Default)]
pub struct PartitionMetrics {
    /// Splits committed by this gateway, by reason.
    pub splits: Family<SplitLabels, Counter>,
    /// Merges committed by this gateway.
    pub merges: Counter,
    /// Reads per second (decayed) of each partition: this gateway's, plus on the leader the
    /// reads the others report.
    pub reads_per_second: Family<PartitionLabels, FloatGauge>,
    /// Committed writes per second (decayed) of each partition.
    pub writes_per_second: Family<PartitionLabels, FloatGauge>,
}

impl PartitionMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "index_partition_splits",
            "Index partition splits this gateway committed, by reason",
            self.splits.clone(),
        );
        registry.register(
            "index_partition_merges",
            "Index partition merges this gateway committed",
            self.merges.clone(),
        );
        registry.register(
            "index_partition_reads_per_second",
            "Reads per second (decayed) of each index partition whose group this gateway leads (every gateway's reads, reported to the leader)",
            self.reads_per_second.clone(),
        );
        registry.register(
            "index_partition_writes_per_second",
            "Writes per second (decayed) of each index partition whose group this gateway leads (every gateway's writes, reported to the leader)",
            self.writes_per_second.clone(),
        );
    }
}

/// Every metric the gateway exports.
pub struct GatewayMetrics {
    registry: Registry,
    /// S3 requests by operation and status.
    pub requests: Family<RequestLabels, Counter>,
    /// S3 request latency by operation (to response headers).
    pub latency: Family<OperationLabels, Histogram>,
    /// Object bytes received.
    pub bytes_in: Counter,
    /// Object bytes sent.
    pub bytes_out: Counter,
    /// Reads that had to use parity shards.
    pub degraded_reads: Counter,
    /// Stripes reconstructed from parity.
    pub reconstructions: Counter,
    /// Stripes whose data did not match the digest recorded at write time (a shard returned
    /// wrong bytes).
    pub integrity_failures: Counter,
    /// Writes acknowledged with fewer than k+m shards.
    pub degraded_writes: Counter,
    /// Shards written.
    pub shards_written: Counter,
    /// Objects and parts stored inline in the index.
    pub objects_inline: Counter,
    /// Objects and parts stored erasure-coded.
    pub objects_erasure_coded: Counter,
    /// Garbage records waiting (blobs to free) in the groups this gateway leads.
    pub gc_queue: Gauge,
    /// Blobs freed by the garbage collector.
    pub gc_blobs_freed: Counter,
    /// Approximate index size on disk (at scrape).
    pub index_bytes: Gauge,
    /// Index partitions (at scrape).
    pub partitions: Gauge,
    /// Storage nodes up (at scrape).
    pub nodes_up: Gauge,
    /// Storage nodes in this gateway's registry (at scrape).
    pub nodes_known: Gauge,
    /// Raw bytes stored per object byte of each storage class ((k+m)/k), in thousandths.
    pub class_overhead: Family<ClassLabels, Gauge>,
    /// Lifecycle runs.
    pub lifecycle: LifecycleMetrics,
    /// The replicated index.
    pub raft: std::sync::Arc<RaftMetrics>,
    /// Index partitions: splits, merges, per-partition rates.
    pub partition: PartitionMetrics,
    /// Internal requests (`/internal/v1`) refused for a missing or bad fleet signature.
    pub internal_auth_rejected: RejectedFamily,
    /// Admin requests refused for a missing or wrong token or signature, by reason.
    pub admin_auth_rejected: RejectedFamily,
    /// Access-key lookups of S3 requests, by how they were answered.
    pub key_lookups: Family<LookupLabels, Counter>,
    /// The S3 listener's connections.
    pub s3_listener: ListenerMetrics,
    /// The admin listener's connections.
    pub admin_listener: ListenerMetrics,
}

impl GatewayMetrics {
    /// Registers every metric under the `cairn` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cairn");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 18))
        });
        registry.register(
            "s3_requests",
            "S3 requests by operation and status",
            requests.clone(),
        );
        registry.register(
            "s3_request_duration_seconds",
            "S3 request latency to the response headers, by operation",
            latency.clone(),
        );
        let m = Self {
            registry: Registry::default(),
            requests,
            latency,
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            degraded_reads: Counter::default(),
            reconstructions: Counter::default(),
            degraded_writes: Counter::default(),
            shards_written: Counter::default(),
            objects_inline: Counter::default(),
            objects_erasure_coded: Counter::default(),
            gc_queue: Gauge::default(),
            gc_blobs_freed: Counter::default(),
            index_bytes: Gauge::default(),
            partitions: Gauge::default(),
            nodes_up: Gauge::default(),
            nodes_known: Gauge::default(),
            class_overhead: Family::default(),
            lifecycle: LifecycleMetrics::default(),
            raft: Default::default(),
            partition: PartitionMetrics::default(),
            integrity_failures: Counter::default(),
            internal_auth_rejected: RejectedFamily::default(),
            admin_auth_rejected: RejectedFamily::default(),
            key_lookups: Family::default(),
            s3_listener: ListenerMetrics::default(),
            admin_listener: ListenerMetrics::default(),
        };
        let counters: [(&str, &str, &Counter); 9] = [
            ("s3_bytes_in", "Object bytes received", &m.bytes_in),
            ("s3_bytes_out", "Object bytes sent", &m.bytes_out),
            (
                "degraded_reads",
                "Reads that had to use parity shards",
                &m.degraded_reads,
            ),
            (
                "reconstructions",
                "Stripes reconstructed from parity",
                &m.reconstructions,
            ),
            (
                "degraded_writes",
                "Writes acknowledged with fewer than k+m shards",
                &m.degraded_writes,
            ),
            (
                "gateway_shards_written",
                "Shards written by this gateway",
                &m.shards_written,
            ),
            (
                "objects_inline",
                "Objects and parts stored inline in the index",
                &m.objects_inline,
            ),
            (
                "objects_erasure_coded",
                "Objects and parts stored erasure-coded",
                &m.objects_erasure_coded,
            ),
            (
                "gc_blobs_freed",
                "Blobs whose shards the garbage collector deleted",
                &m.gc_blobs_freed,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        let gauges: [(&str, &str, &Gauge); 5] = [
            (
                "gc_queue",
                "Blobs waiting in the part of the garbage queue this gateway collects (the groups it leads; summed over gateways, the fleet's)",
                &m.gc_queue,
            ),
            (
                "index_size_bytes",
                "Approximate index size on disk",
                &m.index_bytes,
            ),
            ("index_partitions", "Index partitions", &m.partitions),
            (
                "storage_nodes_up",
                "Storage nodes answering probes",
                &m.nodes_up,
            ),
            (
                "storage_nodes_known",
                "Storage nodes in the gateway's registry (configured or registered in the index)",
                &m.nodes_known,
            ),
        ];
        for (name, help, g) in gauges {
            registry.register(name, help, g.clone());
        }
        registry.register(
            "storage_class_overhead_permille",
            "Raw bytes stored per 1000 object bytes of a storage class ((k+m)/k x 1000)",
            m.class_overhead.clone(),
        );
        let l = &m.lifecycle;
        let lifecycle_counters: [(&str, &str, &Family<BucketLabels, Counter>); 8] = [
            (
                "lifecycle_scanned",
                "Versions and uploads lifecycle runs evaluated",
                &l.scanned,
            ),
            (
                "lifecycle_transitioned",
                "Versions lifecycle runs re-encoded into another storage class",
                &l.transitioned,
            ),
            (
                "lifecycle_expired",
                "Current versions lifecycle runs expired",
                &l.expired,
            ),
            (
                "lifecycle_noncurrent_expired",
                "Noncurrent versions lifecycle runs deleted",
                &l.noncurrent_expired,
            ),
            (
                "lifecycle_delete_markers_removed",
                "Expired delete markers lifecycle runs removed",
                &l.markers_removed,
            ),
            (
                "lifecycle_uploads_aborted",
                "Incomplete multipart uploads lifecycle runs aborted",
                &l.uploads_aborted,
            ),
            (
                "lifecycle_bytes_moved",
                "Object bytes lifecycle transitions re-encoded",
                &l.bytes_moved,
            ),
            (
                "lifecycle_failures",
                "Lifecycle actions that failed and will be retried",
                &l.failures,
            ),
        ];
        for (name, help, c) in lifecycle_counters {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "lifecycle_last_run_timestamp_seconds",
            "When the last lifecycle run of a bucket finished",
            l.last_run.clone(),
        );
        m.raft.register(&mut registry);
        m.partition.register(&mut registry);
        registry.register(
            "integrity_failures",
            "Stripes read whose data did not match the digest recorded at write time",
            m.integrity_failures.clone(),
        );
        registry.register(
            "internal_auth_rejected",
            "Internal requests refused for a missing or bad fleet signature, by reason",
            m.internal_auth_rejected.clone(),
        );
        registry.register(
            "s3_key_lookups",
            "Access-key lookups of S3 requests: cached, read from the index, or throttled",
            m.key_lookups.clone(),
        );
        registry.register(
            "admin_auth_rejected",
            "Admin API requests refused for a missing or wrong token or signature, by reason",
            m.admin_auth_rejected.clone(),
        );
        m.s3_listener.register(&mut registry, "s3");
        m.admin_listener.register(&mut registry, "admin");
        Self { registry, ..m }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}
