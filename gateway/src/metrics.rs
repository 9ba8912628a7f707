//! Prometheus metrics of a gateway. One registry per process, passed in, never global.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

/// Labels of replicated-index proposals.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `applied`, `conflict` (its guard failed; the operation runs again) or `failed`.
    pub outcome: String,
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

/// Metrics of the replicated index (all zero on a gateway that keeps its index alone).
pub struct RaftMetrics {
    /// Proposals this gateway made, by outcome.
    pub proposals: Family<OutcomeLabels, Counter>,
    /// Time from proposing to the leader's answer (committed on a majority and applied).
    pub commit_seconds: Histogram,
    /// Time an operation waited for its read barrier.
    pub read_barrier_seconds: Histogram,
    /// Changes of leader seen by this gateway.
    pub leader_changes: Counter,
    /// Current Raft term.
    pub term: Gauge,
    /// 1 while this gateway leads.
    pub is_leader: Gauge,
    /// Last log index applied to this replica.
    pub applied_index: Gauge,
    /// Voting members of the group.
    pub voters: Gauge,
    /// Members holding a replica without a vote.
    pub learners: Gauge,
    /// Listed gateways the leader has not heard from for longer than the grace period (0 on
    /// other gateways).
    pub gone_peers: Gauge,
    /// Gateways being drained of their index votes (`PUT /admin/v1/index/retiring`), as the
    /// leader last read the committed set (0 on other gateways).
    pub retiring_peers: Gauge,
    /// Index groups this gateway hosts a replica of.
    pub groups: Gauge,
    /// Index groups this gateway leads.
    pub groups_led: Gauge,
    /// Reads this gateway had a replica of a group it does not run serve.
    pub remote_reads: Counter,
    /// Times this gateway learned where the index groups run, by how: `meta_group` (the layout
    /// recorded in its replica of the meta group, and its own groups' members) or `every_peer`.
    pub directory_learns: Family<DirectorySourceLabels, Counter>,
    /// Gateways asked while learning where the index groups run.
    pub directory_peers_asked: Counter,
    /// Batches of layout records (where index groups run) this gateway wrote as the leader of
    /// the groups they describe.
    pub layout_publications: Counter,
    /// Syncs of the Raft log, and the appends they made durable (all groups share them).
    pub log_sync: crate::consensus::log_sync::LogSyncMetrics,
    /// Log entries this gateway proposed carrying guarded batches (proposals / entries: how
    /// many each entry coalesced).
    pub proposal_entries: Counter,
}

/// Whom a gateway asked where the index groups run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectorySourceLabels {
    /// `meta_group` or `every_peer`.
    pub source: String,
}

impl Default for RaftMetrics {
    fn default() -> Self {
        Self {
            proposals: Family::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            read_barrier_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            leader_changes: Counter::default(),
            term: Gauge::default(),
            is_leader: Gauge::default(),
            applied_index: Gauge::default(),
            voters: Gauge::default(),
            learners: Gauge::default(),
            gone_peers: Gauge::default(),
            retiring_peers: Gauge::default(),
            groups: Gauge::default(),
            groups_led: Gauge::default(),
            remote_reads: Counter::default(),
            directory_learns: Family::default(),
            directory_peers_asked: Counter::default(),
            layout_publications: Counter::default(),
            log_sync: Default::default(),
            proposal_entries: Counter::default(),
        }
    }
}

impl RaftMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "index_raft_proposals",
            "Replicated index batches this gateway proposed, by outcome",
            self.proposals.clone(),
        );
        registry.register(
            "index_raft_commit_duration_seconds",
            "Time from proposing a batch to its commit and apply on the leader",
            self.commit_seconds.clone(),
        );
        registry.register(
            "index_raft_read_barrier_duration_seconds",
            "Time an index operation waited until its replica caught up with the leader",
            self.read_barrier_seconds.clone(),
        );
        registry.register(
            "index_remote_reads",
            "Index reads served for this gateway by a replica of a group it does not run",
            self.remote_reads.clone(),
        );
        registry.register(
            "index_directory_learns",
            "Times this gateway learned where the index groups run, by how (meta_group: the recorded layout and its groups' members; every_peer)",
            self.directory_learns.clone(),
        );
        registry.register(
            "index_directory_peers_asked",
            "Gateways asked while learning where the index groups run",
            self.directory_peers_asked.clone(),
        );
        registry.register(
            "index_layout_publications",
            "Batches of records of where index groups run that this gateway wrote to the meta group, as the groups' leader",
            self.layout_publications.clone(),
        );
        registry.register(
            "index_raft_proposal_entries",
            "Log entries this gateway proposed as a group's leader carrying guarded batches (several coalesce into one)",
            self.proposal_entries.clone(),
        );
        registry.register(
            "index_raft_log_syncs",
            "Syncs of the Raft log's write-ahead log made for appends (every group's appends share them)",
            self.log_sync.syncs.clone(),
        );
        registry.register(
            "index_raft_log_appends_synced",
            "Raft log appends (of every group) made durable by those syncs",
            self.log_sync.appends.clone(),
        );
        registry.register(
            "index_raft_leader_changes",
            "Leader changes this gateway observed",
            self.leader_changes.clone(),
        );
        let gauges: [(&str, &str, &Gauge); 9] = [
            (
                "index_raft_term",
                "Current Raft term of the index group",
                &self.term,
            ),
            (
                "index_raft_is_leader",
                "1 while this gateway leads the index group",
                &self.is_leader,
            ),
            (
                "index_raft_applied_index",
                "Last log index applied to this replica",
                &self.applied_index,
            ),
            (
                "index_raft_voters",
                "Voting members of the index group",
                &self.voters,
            ),
            (
                "index_raft_learners",
                "Members of the index group holding a replica without a vote",
                &self.learners,
            ),
            (
                "index_raft_gone_peers",
                "Listed gateways unreachable for longer than the grace period (on the leader)",
                &self.gone_peers,
            ),
            (
                "index_groups",
                "Index Raft groups (partitions) this gateway hosts a replica of",
                &self.groups,
            ),
            (
                "index_groups_led",
                "Index Raft groups this gateway leads",
                &self.groups_led,
            ),
            (
                "index_raft_retiring_peers",
                "Gateways being drained of their index votes before a scale-down (on the leader)",
                &self.retiring_peers,
            ),
        ];
        for (name, help, g) in gauges {
            registry.register(name, help, g.clone());
        }
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
    pub raft: RaftMetrics,
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
            raft: RaftMetrics::default(),
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
