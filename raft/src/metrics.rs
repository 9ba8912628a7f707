//! What the replicated layer counts: proposals, barriers, terms and leaderships, the directory of
//! where groups run, log syncs. The gateway registers them in its registry
//! ([`RaftMetrics::register`]); nothing here is global.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of replicated-index proposals.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `applied`, `conflict` (its guard failed; the operation runs again) or `failed`.
    pub outcome: String,
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
    pub log_sync: crate::log_sync::LogSyncMetrics,
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
    /// Adds every metric to `registry` (the gateway's).
    pub fn register(&self, registry: &mut Registry) {
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
