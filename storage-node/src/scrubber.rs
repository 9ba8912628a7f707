//! The scrubber: a named background worker that walks every shard at a bounded rate, verifies every
//! block, and repairs what it finds broken.
//!
//! Two kinds of damage are found and repaired:
//! - blocks of this node's own shards that fail their checksum: the shard is rebuilt from the peers
//!   named in its header (good local blocks are kept) and replaced atomically;
//! - shards of the same object that are missing or corrupt on other nodes. Checking every peer for
//!   every shard would cost k+m requests per shard, so each holder checks only its *successors* in
//!   the placement ring (index i checks i+1, and goes on past each one it finds broken): every shard
//!   index of an object is checked by exactly one healthy predecessor, with one HEAD per shard.
//!
//! Progress (the cursor and the counters of the pass) is persisted in `scrub-state.json`, so a
//! restarted node resumes its pass instead of starting over; the last finished pass is kept for
//! `GET /v1/scrub` and decides when the next automatic pass is due.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::client::ClientError;
use crate::format::ShardSpec;
use crate::ids::ShardIndex;
use crate::ingest::{IngestError, store_stream};
use crate::metrics::NodeMetrics;
use crate::repair::{LocalCopy, RepairError, Repairer, take_cause};
use crate::store::{ShardKey, ShardStore, StoreError, blocking};

/// How the scrubber paces itself.
#[derive(Debug, Clone)]
pub struct ScrubConfig {
    /// Bytes verified per second at most; 0 means unlimited.
    pub rate: u64,
    /// Time from the end of one automatic pass to the start of the next.
    pub interval: Duration,
    /// Shards younger than this are not checked against their peers: the writer of the object may
    /// still be storing the other shards.
    pub repair_grace: Duration,
}

/// Counters of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassStats {
    /// Unix seconds the pass started.
    pub started_at: u64,
    /// Unix seconds the pass finished; `None` while it runs.
    pub finished_at: Option<u64>,
    /// Own shards verified.
    pub shards_checked: u64,
    /// Payload bytes verified.
    pub bytes_verified: u64,
    /// Own shards with at least one bad block or a bad header.
    pub corrupt_shards: u64,
    /// Own blocks that failed their checksum.
    pub corrupt_blocks: u64,
    /// Successor shards on peers found missing or corrupt.
    pub broken_peer_shards: u64,
    /// Shards rebuilt and stored (own and peers').
    pub repaired: u64,
    /// Shards that could not be rebuilt because too few healthy shards remain.
    pub unrepairable: u64,
    /// Repairs that failed for another reason (a write or I/O error); retried next pass.
    pub repair_errors: u64,
    /// Last shard finished; the pass resumes after it.
    pub cursor: Option<ShardKey>,
}

/// What `GET /v1/scrub` reports and `scrub-state.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubStatus {
    /// The pass under way, if any.
    pub current: Option<PassStats>,
    /// The last finished pass.
    pub last: Option<PassStats>,
    /// Passes finished since the data directory was created.
    pub passes_completed: u64,
}

impl ScrubStatus {
    /// `true` while a pass runs (or waits to resume after a restart).
    pub fn running(&self) -> bool {
        self.current.is_some()
    }
}

/// The API's handle on the worker: read status, start a pass now.
#[derive(Clone)]
pub struct ScrubHandle {
    status: Arc<Mutex<ScrubStatus>>,
    trigger: Arc<Notify>,
}

impl ScrubHandle {
    /// A snapshot of the status.
    pub fn status(&self) -> ScrubStatus {
        self.status.lock().expect("scrub status lock").clone()
    }

    /// Asks for a pass now; `false` if one is already running.
    pub fn start_now(&self) -> bool {
        if self.status().running() {
            return false;
        }
        self.trigger.notify_one();
        true
    }
}

/// The worker. Create with [`Scrubber::new`], hand out [`Scrubber::handle`], then `run` it.
pub struct Scrubber {
    store: Arc<ShardStore>,
    metrics: Arc<NodeMetrics>,
    repairer: Repairer,
    config: ScrubConfig,
    state_path: PathBuf,
    status: Arc<Mutex<ScrubStatus>>,
    trigger: Arc<Notify>,
}

const STATE_FILE: &str = "scrub-state.json";
/// Shards per listing page.
const PAGE: usize = 256;
/// How often a running pass persists its cursor.
const PERSIST_EVERY: Duration = Duration::from_secs(5);
/// A rebuild that produces no block for this long is given up (each block's fetches have
/// their own deadlines; this bounds the whole).
const REBUILD_STALL: Duration = Duration::from_secs(300);

impl Scrubber {
    /// Loads the persisted state from `data_dir` (a missing or unreadable file starts afresh).
    pub fn new(
        data_dir: &Path,
        store: Arc<ShardStore>,
        metrics: Arc<NodeMetrics>,
        repairer: Repairer,
        config: ScrubConfig,
    ) -> Self {
        let state_path = data_dir.join(STATE_FILE);
        let status = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "unreadable scrub state, starting afresh");
                ScrubStatus::default()
            }),
            Err(_) => ScrubStatus::default(),
        };
        if let Some(last) = status.last.as_ref().and_then(|l| l.finished_at) {
            metrics.scrub_last_pass_completed.set(last as i64);
        }
        Self {
            store,
            metrics,
            repairer,
            config,
            state_path,
            status: Arc::new(Mutex::new(status)),
            trigger: Arc::new(Notify::new()),
        }
    }

    /// A handle for the API.
    pub fn handle(&self) -> ScrubHandle {
        ScrubHandle {
            status: self.status.clone(),
            trigger: self.trigger.clone(),
        }
    }

    fn snapshot(&self) -> ScrubStatus {
        self.status.lock().expect("scrub status lock").clone()
    }

    /// Runs passes until `shutdown` turns true: resumes an interrupted pass at once, otherwise
    /// starts one when the interval has passed since the last or when asked through the handle.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let started = SystemTime::now();
        loop {
            if self.snapshot().running() {
                if !self.pass(&mut shutdown).await {
                    return;
                }
                continue;
            }
            let due = self
                .snapshot()
                .last
                .and_then(|l| l.finished_at)
                .map_or(started, |t| UNIX_EPOCH + Duration::from_secs(t))
                + self.config.interval;
            let wait = due
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.trigger.notified() => {}
                _ = shutdown.changed() => return,
            }
            self.status.lock().expect("scrub status lock").current = Some(PassStats {
                started_at: unix_now(),
                ..PassStats::default()
            });
            self.persist();
        }
    }

    /// Runs (or resumes) the current pass; `false` if stopped by shutdown.
    async fn pass(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut stats = self.snapshot().current.unwrap_or_default();
        tracing::info!(resume_after = ?stats.cursor, "scrub pass started");
        self.metrics.scrub_running.set(1);
        let mut pacer = Pacer::new(self.config.rate);
        let mut persisted = Instant::now();
        loop {
            let store = self.store.clone();
            let cursor = stats.cursor.clone();
            let page = match blocking(move || store.list(cursor.as_ref(), PAGE)).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "scrub cannot list shards; retrying later");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            };
            if page.is_empty() {
                break;
            }
            for key in page {
                if *shutdown.borrow() {
                    self.publish(&stats, true);
                    self.metrics.scrub_running.set(0);
                    return false;
                }
                self.scrub_shard(&key, &mut stats, &mut pacer).await;
                stats.cursor = Some(key);
                let persist = persisted.elapsed() >= PERSIST_EVERY;
                self.publish(&stats, persist);
                if persist {
                    persisted = Instant::now();
                }
            }
        }
        stats.finished_at = Some(unix_now());
        stats.cursor = None;
        tracing::info!(
            shards = stats.shards_checked,
            bytes = stats.bytes_verified,
            corrupt_shards = stats.corrupt_shards,
            repaired = stats.repaired,
            unrepairable = stats.unrepairable,
            "scrub pass finished"
        );
        {
            let mut st = self.status.lock().expect("scrub status lock");
            st.current = None;
            st.last = Some(stats.clone());
            st.passes_completed += 1;
        }
        self.persist();
        self.metrics.scrub_running.set(0);
        self.metrics.scrub_passes.inc();
        self.metrics
            .scrub_last_pass_completed
            .set(stats.finished_at.unwrap_or_default() as i64);
        true
    }

    fn publish(&self, stats: &PassStats, persist: bool) {
        self.status.lock().expect("scrub status lock").current = Some(stats.clone());
        if persist {
            self.persist();
        }
    }

    fn persist(&self) {
        let status = self.snapshot();
        let bytes = serde_json::to_vec_pretty(&status).expect("status serialises");
        if let Err(e) = write_atomically(&self.state_path, &bytes) {
            tracing::warn!(error = %e, "cannot persist scrub state");
        }
    }

    /// Verifies one own shard, repairs it if needed, then checks its successors on the peers.
    async fn scrub_shard(&self, key: &ShardKey, stats: &mut PassStats, pacer: &mut Pacer) {
        let (object, index) = (key.object_id, key.shard_index);
        let span = tracing::info_span!("scrub", %object, %index);
        tracing::Instrument::instrument(self.scrub_one(key, stats, pacer), span).await;
    }

    async fn scrub_one(&self, key: &ShardKey, stats: &mut PassStats, pacer: &mut Pacer) {
        let (object, index) = (key.object_id, key.shard_index);
        let store = self.store.clone();
        let file = match blocking(move || store.open_shard(object, index)).await {
            Ok(f) => Arc::new(f),
            Err(StoreError::NotFound { .. }) => return, // deleted since the listing
            Err(e @ StoreError::Corrupt { .. }) => {
                // Without a readable header we do not know the peers; the predecessor in the
                // placement ring finds this shard broken on its pass and rebuilds it.
                stats.corrupt_shards += 1;
                self.metrics.scrub_corrupt_shards.inc();
                tracing::error!(error = %e, "shard header corrupt; awaiting rebuild by a peer");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open shard for scrubbing");
                return;
            }
        };
        let geometry = file.header().spec.geometry();
        let mut bad_blocks = BTreeSet::new();
        for b in 0..geometry.block_count() {
            let f = file.clone();
            match blocking(move || f.read_block(b)).await {
                Ok(_) => {}
                Err(StoreError::Corrupt { .. }) => {
                    bad_blocks.insert(b);
                }
                Err(e) => {
                    tracing::error!(block = b, error = %e, "cannot read block for scrubbing");
                    return;
                }
            }
            let len = geometry.block_len(b);
            stats.bytes_verified += len;
            self.metrics.scrub_bytes_verified.inc_by(len);
            pacer.consume(len).await;
        }
        stats.shards_checked += 1;
        self.metrics.scrub_shards_checked.inc();
        let spec = file.header().spec.clone();
        if !bad_blocks.is_empty() {
            stats.corrupt_shards += 1;
            stats.corrupt_blocks += bad_blocks.len() as u64;
            self.metrics.scrub_corrupt_shards.inc();
            self.metrics
                .scrub_corrupt_blocks
                .inc_by(bad_blocks.len() as u64);
            tracing::error!(blocks = ?bad_blocks, "corrupt blocks found; rebuilding from peers");
            let local = LocalCopy {
                file: file.clone(),
                bad_blocks,
            };
            let outcome = self.repair_own(spec.clone(), local).await;
            self.count(outcome, stats);
        }
        if file.age().unwrap_or_default() >= self.config.repair_grace {
            self.check_successors(&spec, stats).await;
        }
    }

    fn count(&self, outcome: Result<(), RepairError>, stats: &mut PassStats) {
        match outcome {
            Ok(()) => {
                stats.repaired += 1;
                self.metrics.scrub_shards_repaired.inc();
                tracing::info!("shard repaired");
            }
            Err(e) if e.is_unrepairable() => {
                stats.unrepairable += 1;
                self.metrics.scrub_unrepairable.inc();
                tracing::error!(error = %e, "shard is unrepairable; data left untouched");
            }
            Err(e) => {
                stats.repair_errors += 1;
                self.metrics.scrub_repair_errors.inc();
                tracing::warn!(error = %e, "repair failed; will retry next pass");
            }
        }
    }

    /// Rebuilds this node's damaged shard and replaces it atomically.
    async fn repair_own(&self, spec: ShardSpec, local: LocalCopy) -> Result<(), RepairError> {
        let (stream, cause) = self.repairer.rebuild(spec.clone(), Some(local));
        let written = store_stream(self.store.clone(), spec, Box::pin(stream), REBUILD_STALL).await;
        match written {
            Ok(_) => Ok(()),
            Err(IngestError::Store(e)) => Err(take_cause(&cause).unwrap_or(RepairError::Store(e))),
            Err(e) => Err(take_cause(&cause).unwrap_or(RepairError::Write(e.to_string()))),
        }
    }

    /// Walks the placement ring after this shard: each successor that is missing or corrupt on
    /// its holder is rebuilt and stored there, until a healthy one (or an unreachable or
    /// unregistered holder).
    async fn check_successors(&self, spec: &ShardSpec, stats: &mut PassStats) {
        let n = spec.profile.total_shards();
        let me = usize::from(spec.shard_index.0);
        for step in 1..n {
            let j = (me + step) % n;
            let index = ShardIndex(j as u8);
            let Some(holder) = self.repairer.holder(spec, j) else {
                tracing::debug!(peer_index = j, holder = %spec.placement[j].node, "successor holder is not a registered node; healing is the gateway's job");
                return;
            };
            match holder.head_shard(spec.object_id, index).await {
                Ok(Some(_)) => return,
                Ok(None) | Err(ClientError::Api { .. }) => {
                    stats.broken_peer_shards += 1;
                    self.metrics.scrub_broken_peer_shards.inc();
                    tracing::warn!(peer_index = j, holder = %spec.placement[j].node, "peer shard missing or corrupt; rebuilding it");
                    let target = spec.for_index(index);
                    let (stream, cause) = self.repairer.rebuild(target.clone(), None);
                    let put = holder
                        .put_shard_within(&target, reqwest::Body::wrap_stream(stream))
                        .await;
                    let outcome = put.map(|_| ()).map_err(|e| {
                        take_cause(&cause).unwrap_or(RepairError::Write(e.to_string()))
                    });
                    self.count(outcome, stats);
                }
                Err(e) => {
                    tracing::debug!(peer_index = j, error = %e, "successor holder unreachable; healing is the gateway's job");
                    return;
                }
            }
        }
    }
}

/// Spreads reads so the average stays at or below `rate` bytes per second.
struct Pacer {
    rate: u64,
    // tokio's clock, so tests can run paced passes in paused time.
    started: tokio::time::Instant,
    bytes: u64,
}

impl Pacer {
    fn new(rate: u64) -> Self {
        Self {
            rate,
            started: tokio::time::Instant::now(),
            bytes: 0,
        }
    }

    async fn consume(&mut self, n: u64) {
        if self.rate == 0 {
            return;
        }
        self.bytes += n;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Writes `bytes` to `path` via a synced temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pacer_holds_the_rate() {
        let mut p = Pacer::new(1000);
        let t0 = tokio::time::Instant::now();
        for _ in 0..10 {
            p.consume(500).await;
        }
        // 5000 bytes at 1000 B/s: five seconds of (virtual) time.
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(4900) && took <= Duration::from_millis(5100),
            "{took:?}"
        );
    }

    #[test]
    fn status_round_trips_through_json() {
        let s = ScrubStatus {
            current: Some(PassStats {
                started_at: 5,
                shards_checked: 3,
                cursor: Some(ShardKey {
                    object_id: crate::ids::ObjectId::from_bytes([1; 16]),
                    shard_index: ShardIndex(2),
                }),
                ..Default::default()
            }),
            last: None,
            passes_completed: 7,
        };
        let back: ScrubStatus = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert!(back.running());
    }
}
