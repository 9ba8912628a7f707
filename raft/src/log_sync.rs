//! Group commit of Raft log appends: every group's appends on a gateway are written to RocksDB
//! at once (readable, not yet durable), and one thread syncs the write-ahead log for all that
//! were written since its last sync, then tells each group's Raft that its entries are durable.
//!
//! Why: with a synced write per append, each append held a runtime worker for its fsync (the
//! gateway has one per core), and every group paid its own. With 5 ms fsyncs, a hot range split
//! into four groups took 166 PUTs/s; sharing the syncs, 301 (`docs/multi-raft.md`, "Timing").
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
        let db: Weak<DB> = Arc::downgrade(db);
        let sync_wal = move || match db.upgrade() {
            Some(db) => db.flush_wal(true).map_err(|e| e.to_string()),
            None => Err("the index database is closed".to_string()),
        };
        let (waiting, appended) = mpsc::channel();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || sync_appends(sync_wal, appended, metrics))?;
        Ok(Self { waiting })
    }

    /// Reports `callback` once the write-ahead log is synced past this moment: call it right
    /// after the append's (unsynced) write returned.
    pub fn when_durable(&self, callback: LogFlushed<TypeConfig>) {
        if let Err(mpsc::SendError(callback)) = self.waiting.send(callback) {
            // The thread is gone (it never exits while a sender lives; kept for safety).
            Durable::report(callback, Err("raft log sync stopped".into()));
        }
    }
}

/// Something waiting for its append to be durable.
trait Durable {
    fn report(self, synced: Result<(), String>);
}

impl Durable for LogFlushed<TypeConfig> {
    fn report(self, synced: Result<(), String>) {
        self.log_io_completed(synced.map_err(std::io::Error::other));
    }
}

/// The thread: waits for an append, takes every append that arrived meanwhile, syncs once and
/// reports them all, in the order they were written. An append arriving during a sync waits
/// for the next one: the running sync may have started before its write.
fn sync_appends<D: Durable>(
    sync_wal: impl Fn() -> Result<(), String>,
    appended: Receiver<D>,
    metrics: LogSyncMetrics,
) {
    let mut batch = Vec::new();
    while let Ok(first) = appended.recv() {
        batch.push(first);
        batch.extend(appended.try_iter());
        let synced = sync_wal();
        if let Err(e) = &synced {
            tracing::error!(error = %e, appends = batch.len(), "raft log sync failed");
        }
        metrics.syncs.inc();
        metrics.appends.inc_by(batch.len() as u64);
        for waiting in batch.drain(..) {
            waiting.report(synced.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::Duration;

    /// A test append: reports which sync made it durable.
    struct Append(Sender<Result<(), String>>);

    impl Durable for Append {
        fn report(self, synced: Result<(), String>) {
            let _ = self.0.send(synced);
        }
    }

    #[test]
    fn an_append_is_reported_only_by_a_sync_that_started_after_it() {
        // Each sync announces that it started, then waits until the test lets it finish.
        let (started_tx, started) = mpsc::channel();
        let (finish, finish_rx) = mpsc::channel::<Result<(), String>>();
        let finish_rx = std::sync::Mutex::new(finish_rx);
        let sync_wal = move || {
            started_tx.send(()).unwrap();
            finish_rx.lock().unwrap().recv().unwrap()
        };
        let (waiting, appended) = mpsc::channel();
        let metrics = LogSyncMetrics::default();
        let counted = metrics.clone();
        let thread = std::thread::spawn(move || sync_appends(sync_wal, appended, metrics));
        let wait = Duration::from_secs(10);
        let append = || {
            let (tx, rx) = mpsc::channel();
            waiting.send(Append(tx)).unwrap();
            rx
        };

        let first = append();
        started.recv_timeout(wait).unwrap();
        // Written while the first sync runs: that sync does not cover it.
        let (second, third) = (append(), append());
        finish.send(Ok(())).unwrap();
        assert_eq!(first.recv_timeout(wait).unwrap(), Ok(()));
        assert_eq!(
            second.recv_timeout(Duration::from_millis(200)),
            Err(RecvTimeoutError::Timeout),
            "reported by a sync that started before it was written"
        );
        // The next sync covers both, and reports its failure to each.
        started.recv_timeout(wait).unwrap();
        finish.send(Err("disk gone".into())).unwrap();
        assert_eq!(second.recv_timeout(wait).unwrap(), Err("disk gone".into()));
        assert_eq!(third.recv_timeout(wait).unwrap(), Err("disk gone".into()));
        assert_eq!((counted.syncs.get(), counted.appends.get()), (2, 3));

        // The last sender gone, the thread ends.
        drop(waiting);
        thread.join().unwrap();
    }
}
