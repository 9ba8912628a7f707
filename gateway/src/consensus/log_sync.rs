//! Group commit of Raft log appends: every group's appends on a gateway are written to RocksDB
//! at once (readable, not yet durable), and one thread syncs the write-ahead log for all that
//! were written since its last sync, then tells each group's Raft that its entries are durable.
//!
//! Why: with a synced write per append, each append held a runtime worker for its fsync (the
//! gateway has one per core), and every group paid its own. On two cores, a hot range split into
//! four groups took about 480 PUTs/s against 790 in one group (`docs/multi-raft.md`, "Timing").
//!
//! Correctness rests on the log being one write-ahead log: an append's write is ordered after
//! every earlier write of the database, so a sync started after it covers it and all before it.
//! openraft counts an entry only once its [`LogFlushed`] callback reports it, and a crash loses
//! at most a tail of unsynced writes (a prefix of the log survives, never a hole). Writes that
//! must be durable before they return (votes, truncation, purges) stay synced writes, which sync
//! every earlier append too.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Weak};

use openraft::storage::LogFlushed;
use prometheus_client::metrics::counter::Counter;
use rocksdb::DB;

use super::TypeConfig;

/// What a gateway counts of its log syncs (cloned into its metrics registry).
#[derive(Clone, Debug, Default)]
pub struct LogSyncMetrics {
    /// Syncs of the write-ahead log made for appends.
    pub syncs: Counter,
    /// Appends those syncs made durable (appends / syncs: how many each sync served).
    pub appends: Counter,
}

/// Syncs the write-ahead log of one database for the appends of all its groups. Dropping the
/// last clone ends the thread.
#[derive(Clone)]
pub struct LogSync {
    waiting: Sender<LogFlushed<TypeConfig>>,
}

impl LogSync {
    /// Starts the syncing thread of `db` (held weakly: the thread never keeps the database
    /// open, so a gateway stopped and reopened on the same directory finds it unlocked).
    pub fn start(db: &Arc<DB>, metrics: LogSyncMetrics) -> std::io::Result<Self> {
        let (waiting, appended) = mpsc::channel();
        let db = Arc::downgrade(db);
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || sync_appends(db, appended, metrics))?;
        Ok(Self { waiting })
    }

    /// Reports `callback` once the write-ahead log is synced past this moment: call it right
    /// after the append's (unsynced) write returned.
    pub fn when_durable(&self, callback: LogFlushed<TypeConfig>) {
        if let Err(mpsc::SendError(callback)) = self.waiting.send(callback) {
            // The thread is gone (it never exits while a sender lives; kept for safety).
            callback.log_io_completed(Err(std::io::Error::other("raft log sync stopped")));
        }
    }
}

/// The thread: waits for an append, takes every append that arrived meanwhile, syncs once and
/// reports them all, in the order they were written.
fn sync_appends(db: Weak<DB>, appended: Receiver<LogFlushed<TypeConfig>>, metrics: LogSyncMetrics) {
    let mut batch = Vec::new();
    while let Ok(first) = appended.recv() {
        batch.push(first);
        batch.extend(appended.try_iter());
        let synced = match db.upgrade() {
            Some(db) => db.flush_wal(true).map_err(|e| e.to_string()),
            None => Err("the index database is closed".to_string()),
        };
        if let Err(e) = &synced {
            tracing::error!(error = %e, appends = batch.len(), "raft log sync failed");
        }
        metrics.syncs.inc();
        metrics.appends.inc_by(batch.len() as u64);
        for callback in batch.drain(..) {
            callback.log_io_completed(synced.clone().map_err(std::io::Error::other));
        }
    }
}
