//! The lifecycle worker: a named background task that applies every bucket's lifecycle rules.
//!
//! A *run* walks one bucket's current versions, then its noncurrent versions, then its multipart
//! uploads, evaluating the rules (`rules.rs`) and acting through compare-and-set index mutations.
//! Its progress (phase, cursor, counters, blobs being written) is stored in the index after every
//! batch and every action, so a gateway that restarts resumes the run where it was: what was done
//! is not done again (the rules no longer call for it, or the compare-and-set refuses), nothing is
//! skipped (the cursor only moves past entries already handled), and the blobs of a transition cut
//! short are freed at once. Runs are paced to `rate` evaluations per second.
//!
//! A transition re-encodes the version's data into the target class's profile: it reads the old
//! blob, writes a new one (protected by an intent until it commits), checks the MD5 of what was
//! read against the version's ETag and reads the new blob back to check it, and only then switches
//! the index entry in one batch that also frees the old blob. Until that batch the old data is
//! served; after it the new one is, and the old shards stay until the GC delay has passed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use s3s::crypto::{Checksum, Md5};
use tokio::sync::watch;

use super::rules::{self, CurrentAction, LifecycleClock, NoncurrentAction, VersionFacts};
use crate::bucket_config::lifecycle::LifecycleConfiguration;
use crate::data::DataError;
use crate::data::reader::BlobReader;
use crate::data::writer::BlobWriter;
use crate::index::records::{
    Blob, BucketRecord, LifecycleCounters, LifecyclePhase, LifecycleProgress, LifecycleRun,
    ObjectData, ObjectRecord, PartRef, StoredBlob,
};
use crate::index::{Index, IndexError, Intent, Stamp, now_ms};
use crate::metrics::{BucketLabels, GatewayMetrics};
use crate::s3::ClassWriters;

/// Entries read per index call.
const BATCH: usize = 100;

/// Why a lifecycle action or run failed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Reading or writing shards failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A rule names a class this gateway has no writer for.
    #[error("storage class {0} is not configured")]
    UnknownClass(String),
    /// Data read or written back did not match its checksum.
    #[error("blob {object}: {what} MD5 {got} differs from {expected}")]
    Verification {
        object: String,
        what: &'static str,
        expected: String,
        got: String,
    },
}

/// How the worker runs.
#[derive(Debug, Clone, Copy)]
pub struct LifecycleOptions {
    /// The length of a lifecycle day.
    pub clock: LifecycleClock,
    /// Pause between passes over every bucket.
    pub interval: Duration,
    /// Most versions and uploads evaluated per second (0: no limit).
    pub rate: u32,
    /// Failpoint for crash tests: abort the process once this many transitions have written
    /// their new shards, before the index switches to them (the worst moment to crash).
    pub crash_after_written: Option<u64>,
}

impl LifecycleOptions {
    /// Options for days of length `day`: a pass every tenth of a day, between 200 ms and an hour,
    /// so rules act within a tenth of a day of being due.
    pub fn for_day(day: Duration, rate: u32) -> Self {
        Self {
            clock: LifecycleClock::with_day(day),
            interval: (day / 10).clamp(Duration::from_millis(200), Duration::from_secs(3600)),
            rate,
            crash_after_written: None,
        }
    }
}

/// Paces evaluations to a rate.
struct Pacer {
    rate: u32,
    start: Instant,
    done: u64,
}

impl Pacer {
    fn new(rate: u32) -> Self {
        Self {
            rate,
            start: Instant::now(),
            done: 0,
        }
    }

    async fn tick(&mut self) {
        self.done += 1;
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.done as f64 / f64::from(self.rate));
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The worker.
#[derive(Clone)]
pub struct LifecycleWorker {
    index: Index,
    writers: Arc<ClassWriters>,
    reader: BlobReader,
    metrics: Arc<GatewayMetrics>,
    options: LifecycleOptions,
    /// Transitions that wrote their shards (for the failpoint).
    written: Arc<std::sync::atomic::AtomicU64>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn facts<'a>(key: &'a str, r: &'a ObjectRecord) -> VersionFacts<'a> {
    VersionFacts {
        key,
        size: r.size,
        tags: &r.tags,
        storage_class: &r.storage_class,
        last_modified_ms: r.last_modified_ms,
        delete_marker: r.delete_marker,
        transitionable: !r.delete_marker && !r.data.stored_blobs().is_empty(),
    }
}

/// A counter of a run (and its metric).
#[derive(Debug, Clone, Copy)]
enum Count {
    Scanned,
    Transitioned,
    Expired,
    NoncurrentExpired,
    MarkersRemoved,
    UploadsAborted,
    BytesMoved,
}

/// What one bucket run is doing, with the progress record it saves.
struct BucketRun<'a> {
    bucket: &'a str,
    cfg: &'a LifecycleConfiguration,
    progress: LifecycleProgress,
    run: LifecycleRun,
    labels: BucketLabels,
}

impl LifecycleWorker {
    /// A worker over the index and data path; `writers` has one writer per storage class.
    pub fn new(
        index: Index,
        writers: Arc<ClassWriters>,
        reader: BlobReader,
        metrics: Arc<GatewayMetrics>,
        options: LifecycleOptions,
    ) -> Self {
        Self {
            index,
            writers,
            reader,
            metrics,
            options,
            written: Arc::default(),
        }
    }

    /// Runs passes until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(
            day_ms = self.options.clock.day_ms,
            interval_ms = self.options.interval.as_millis() as u64,
            rate = self.options.rate,
            "lifecycle worker started"
        );
        loop {
            if let Err(e) = self.pass(&shutdown).await {
                tracing::warn!(error = %e, "lifecycle pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.options.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass: a run over every bucket that has a lifecycle configuration and whose
    /// lifecycle runs here ([`Index::runs_lifecycle_of`]: with a replicated index, on the leader
    /// of the group holding the bucket's first keys), resuming runs that were interrupted.
    pub async fn pass(&self, shutdown: &watch::Receiver<bool>) -> Result<(), LifecycleError> {
        for b in self.index.list_buckets().await? {
            if *shutdown.borrow() {
                return Ok(());
            }
            if !b.lifecycle || !self.index.runs_lifecycle_of(&b.name) {
                continue;
            }
            let Some(cfg) = self.index.get_lifecycle(&b.name).await? else {
                continue;
            };
            if let Err(e) = self.bucket(&b, &cfg, shutdown).await {
                tracing::warn!(bucket = %b.name, error = %e, "lifecycle run stopped; it resumes on the next pass");
            }
        }
        Ok(())
    }

    async fn save(&self, r: &mut BucketRun<'_>) -> Result<(), LifecycleError> {
        r.progress.current = Some(r.run.clone());
        self.index
            .put_lifecycle_progress(r.bucket, &r.progress)
            .await?;
        Ok(())
    }

    async fn bucket(
        &self,
        b: &BucketRecord,
        cfg: &LifecycleConfiguration,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), LifecycleError> {
        let mut progress = self.index.lifecycle_progress(&b.name).await?;
        let run = match progress.current.take() {
            Some(mut run) => {
                if !run.in_flight.is_empty() {
                    let freed = self
                        .index
                        .abandon_pending(std::mem::take(&mut run.in_flight), now_ms())
                        .await?;
                    tracing::info!(bucket = %b.name, freed, "resuming an interrupted lifecycle run");
                }
                run
            }
            None => LifecycleRun {
                started_ms: now_ms(),
                finished_ms: None,
                phase: LifecyclePhase::Current,
                cursor_key: None,
                cursor_seq: None,
                cursor_upload: None,
                cursor_rank: 0,
                counters: LifecycleCounters::default(),
                in_flight: Vec::new(),
            },
        };
        let mut r = BucketRun {
            bucket: &b.name,
            cfg,
            progress,
            run,
            labels: BucketLabels {
                bucket: b.name.clone(),
            },
        };
        let mut pacer = Pacer::new(self.options.rate);
        loop {
            // Stopping, or the bucket's run moved to another gateway (a new group leader), which
            // resumes it from the progress saved here.
            if *shutdown.borrow() || !self.index.runs_lifecycle_of(r.bucket) {
                return self.save(&mut r).await;
            }
            let phase_done = match r.run.phase {
                LifecyclePhase::Current => self.current_batch(&mut r, &mut pacer).await?,
                LifecyclePhase::Noncurrent => self.noncurrent_batch(&mut r, &mut pacer).await?,
                LifecyclePhase::Uploads => self.uploads_batch(&mut r, &mut pacer).await?,
            };
            if phase_done {
                r.run.cursor_key = None;
                r.run.cursor_seq = None;
                r.run.cursor_upload = None;
                r.run.cursor_rank = 0;
                match r.run.phase {
                    LifecyclePhase::Current => r.run.phase = LifecyclePhase::Noncurrent,
                    LifecyclePhase::Noncurrent => r.run.phase = LifecyclePhase::Uploads,
                    LifecyclePhase::Uploads => break,
                }
            }
            self.save(&mut r).await?;
        }
        let end = now_ms();
        r.run.finished_ms = Some(end);
        r.progress.totals.add(&r.run.counters);
        let c = r.run.counters;
        r.progress.last = Some(r.run.clone());
        r.progress.current = None;
        self.index
            .put_lifecycle_progress(r.bucket, &r.progress)
            .await?;
        self.metrics
            .lifecycle
            .last_run
            .get_or_create(&r.labels)
            .set(end / 1000);
        tracing::debug!(bucket = %b.name, ?c, "lifecycle run finished");
        Ok(())
    }

    fn count(&self, r: &mut BucketRun<'_>, what: Count, n: u64) {
        let (c, m) = (&mut r.run.counters, &self.metrics.lifecycle);
        let (field, family) = match what {
            Count::Scanned => (&mut c.scanned, &m.scanned),
            Count::Transitioned => (&mut c.transitioned, &m.transitioned),
            Count::Expired => (&mut c.expired, &m.expired),
            Count::NoncurrentExpired => (&mut c.noncurrent_expired, &m.noncurrent_expired),
            Count::MarkersRemoved => (&mut c.markers_removed, &m.markers_removed),
            Count::UploadsAborted => (&mut c.uploads_aborted, &m.uploads_aborted),
            Count::BytesMoved => (&mut c.bytes_moved, &m.bytes_moved),
        };
        *field += n;
        family.get_or_create(&r.labels).inc_by(n);
    }

    /// One batch of current versions; `true` when there are no more.
    async fn current_batch(
        &self,
        r: &mut BucketRun<'_>,
        pacer: &mut Pacer,
    ) -> Result<bool, LifecycleError> {
        let entries = self
            .index
            .scan_current(r.bucket, r.run.cursor_key.clone(), BATCH)
            .await?;
        if entries.is_empty() {
            return Ok(true);
        }
        for e in entries {
            pacer.tick().await;
            self.count(r, Count::Scanned, 1);
            let action = rules::evaluate_current(
                r.cfg,
                &facts(&e.key, &e.record),
                e.only_version,
                now_ms(),
                self.options.clock,
            );
            let acted = match action {
                None => false,
                Some(CurrentAction::Expire { rule_id }) => {
                    let done = self
                        .index
                        .expire_current(
                            r.bucket,
                            &e.key,
                            e.record.seq,
                            &e.record.tags,
                            Stamp::now(),
                        )
                        .await?;
                    if done {
                        tracing::debug!(bucket = r.bucket, key = %e.key, %rule_id, "expired");
                        self.count(r, Count::Expired, 1);
                    }
                    done
                }
                Some(CurrentAction::RemoveExpiredMarker { rule_id }) => {
                    let done = self
                        .index
                        .remove_expired_marker(r.bucket, &e.key, e.record.seq)
                        .await?;
                    if done {
                        tracing::debug!(bucket = r.bucket, key = %e.key, %rule_id, "expired delete marker removed");
                        self.count(r, Count::MarkersRemoved, 1);
                    }
                    done
                }
                Some(CurrentAction::Transition {
                    storage_class,
                    rule_id,
                }) => {
                    self.transition(r, &e.key, &e.record, &storage_class, &rule_id)
                        .await
                }
            };
            r.run.cursor_key = Some(e.key);
            if acted {
                self.save(r).await?;
            }
        }
        Ok(false)
    }

    /// One batch of noncurrent versions; `true` when there are no more.
    async fn noncurrent_batch(
        &self,
        r: &mut BucketRun<'_>,
        pacer: &mut Pacer,
    ) -> Result<bool, LifecycleError> {
        let after = r.run.cursor_key.clone().zip(r.run.cursor_seq);
        let entries = self.index.scan_noncurrent(r.bucket, after, BATCH).await?;
        if entries.is_empty() {
            return Ok(true);
        }
        for (key, rec) in entries {
            pacer.tick().await;
            self.count(r, Count::Scanned, 1);
            let newer = if r.run.cursor_key.as_deref() == Some(key.as_str()) {
                r.run.cursor_rank
            } else {
                0
            };
            let since = rec.noncurrent_since_ms.unwrap_or(rec.last_modified_ms);
            let action = rules::evaluate_noncurrent(
                r.cfg,
                &facts(&key, &rec),
                since,
                newer,
                now_ms(),
                self.options.clock,
            );
            let acted = match action {
                None => false,
                Some(NoncurrentAction::Expire { rule_id }) => {
                    let done = self
                        .index
                        .expire_noncurrent(
                            r.bucket,
                            &key,
                            rec.seq,
                            rec.version_id.clone(),
                            &rec.tags,
                            Stamp::now(),
                        )
                        .await?;
                    if done {
                        tracing::debug!(bucket = r.bucket, %key, seq = rec.seq, %rule_id, "noncurrent version expired");
                        self.count(r, Count::NoncurrentExpired, 1);
                    }
                    done
                }
                Some(NoncurrentAction::Transition {
                    storage_class,
                    rule_id,
                }) => {
                    self.transition(r, &key, &rec, &storage_class, &rule_id)
                        .await
                }
            };
            r.run.cursor_key = Some(key);
            r.run.cursor_seq = Some(rec.seq);
            r.run.cursor_rank = newer + 1;
            if acted {
                self.save(r).await?;
            }
        }
        Ok(false)
    }

    /// One batch of multipart uploads; `true` when there are no more.
    async fn uploads_batch(
        &self,
        r: &mut BucketRun<'_>,
        pacer: &mut Pacer,
    ) -> Result<bool, LifecycleError> {
        let uploads = self
            .index
            .list_uploads(
                r.bucket,
                "",
                r.run.cursor_key.clone(),
                r.run.cursor_upload.clone(),
                BATCH,
            )
            .await?;
        if uploads.is_empty() {
            return Ok(true);
        }
        for u in uploads {
            pacer.tick().await;
            self.count(r, Count::Scanned, 1);
            let due =
                rules::evaluate_upload(r.cfg, &u.key, u.initiated_ms, now_ms(), self.options.clock);
            let mut acted = false;
            if let Some(rule_id) = due {
                match self.index.abort_upload(&u, now_ms()).await {
                    Ok(()) => {
                        tracing::debug!(bucket = r.bucket, key = %u.key, upload = %u.upload_id, %rule_id, "incomplete upload aborted");
                        self.count(r, Count::UploadsAborted, 1);
                        acted = true;
                    }
                    // Completed or aborted meanwhile.
                    Err(IndexError::NoSuchUpload(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            r.run.cursor_key = Some(u.key);
            r.run.cursor_upload = Some(u.upload_id);
            if acted {
                self.save(r).await?;
            }
        }
        Ok(false)
    }

    /// Re-encodes version `rec` of `key` into `class`; `true` if the index switched to the new
    /// data. Failures are logged and counted: the next run tries again.
    async fn transition(
        &self,
        r: &mut BucketRun<'_>,
        key: &str,
        rec: &ObjectRecord,
        class: &str,
        rule_id: &str,
    ) -> bool {
        let mut written = Vec::new();
        let outcome = self.try_transition(r, key, rec, class, &mut written).await;
        let committed = matches!(outcome, Ok(true));
        if !committed && !written.is_empty() {
            // Whatever was written and not committed is garbage now.
            if let Err(e) = self.index.abandon_pending(written, now_ms()).await {
                tracing::warn!(error = %e, "could not free the blobs of a failed transition now; their intents free them later");
            }
        }
        r.run.in_flight.clear();
        match outcome {
            Ok(true) => {
                tracing::debug!(bucket = r.bucket, %key, seq = rec.seq, %class, %rule_id, "transitioned");
                self.count(r, Count::Transitioned, 1);
                self.count(r, Count::BytesMoved, rec.size);
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(bucket = r.bucket, %key, %class, error = %e, "transition failed");
                self.metrics
                    .lifecycle
                    .failures
                    .get_or_create(&r.labels)
                    .inc();
                false
            }
        }
    }

    async fn try_transition(
        &self,
        r: &mut BucketRun<'_>,
        key: &str,
        rec: &ObjectRecord,
        class: &str,
        written: &mut Vec<(Intent, StoredBlob)>,
    ) -> Result<bool, LifecycleError> {
        let writer = self
            .writers
            .get(class)
            .ok_or_else(|| LifecycleError::UnknownClass(class.to_string()))?;
        let new = match &rec.data {
            ObjectData::Single(Blob::Stored(b)) => {
                let nb = self
                    .reencode(r, key, b, writer, Some(&rec.etag), written)
                    .await?;
                ObjectData::Single(Blob::Stored(nb))
            }
            ObjectData::Single(Blob::Inline(_)) => return Ok(false),
            ObjectData::Multipart(parts) => {
                let mut out = Vec::with_capacity(parts.len());
                for p in parts {
                    let blob = match &p.blob {
                        Blob::Stored(b) => Blob::Stored(
                            self.reencode(r, key, b, writer, Some(&p.etag), written)
                                .await?,
                        ),
                        inline => inline.clone(),
                    };
                    out.push(PartRef { blob, ..p.clone() });
                }
                ObjectData::Multipart(out)
            }
        };
        if let Some(n) = self.options.crash_after_written {
            let done = self
                .written
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            if done >= n {
                tracing::error!("failpoint: crashing after writing a transition's shards");
                std::process::abort();
            }
        }
        let intents = written.iter().map(|(i, _)| i.clone()).collect();
        Ok(self
            .index
            .transition_version(
                r.bucket,
                key,
                rec.seq,
                rec.data.clone(),
                &rec.tags,
                new,
                class,
                intents,
                Stamp::now(),
            )
            .await?)
    }

    /// Writes a copy of `src` with `writer`'s profile and checks it: the MD5 of what was read
    /// against `expected` (when it is a plain MD5), and the new blob read back against that.
    async fn reencode(
        &self,
        r: &mut BucketRun<'_>,
        key: &str,
        src: &StoredBlob,
        writer: &BlobWriter,
        expected: Option<&str>,
        written: &mut Vec<(Intent, StoredBlob)>,
    ) -> Result<StoredBlob, LifecycleError> {
        let mut blob = writer.plan(src.length)?;
        let intent = self.index.intent_for(r.bucket, key, &blob, now_ms());
        // Noted before the intent exists, so a crash at any point leaves it findable.
        r.run.in_flight.push((intent.clone(), blob.clone()));
        self.save(r).await?;
        self.index.record_intent_as(&intent, &blob).await?;
        written.push((intent, blob.clone()));
        let mut md5 = Md5::new();
        let source = Box::pin(self.reader.read(src, 0..src.length));
        blob.stripe_digests = writer.write(&blob, source, |c| md5.update(c)).await?;
        let read = hex(md5.finalize().as_ref());
        if let Some(e) = expected.filter(|e| is_md5_hex(e))
            && !e.eq_ignore_ascii_case(&read)
        {
            return Err(LifecycleError::Verification {
                object: src.object_id.to_string(),
                what: "source",
                expected: e.to_string(),
                got: read,
            });
        }
        let mut back = Md5::new();
        let mut stream = Box::pin(self.reader.read(&blob, 0..blob.length));
        while let Some(chunk) = stream.next().await {
            back.update(&chunk?);
        }
        let back = hex(back.finalize().as_ref());
        if back != read {
            return Err(LifecycleError::Verification {
                object: blob.object_id.to_string(),
                what: "re-encoded",
                expected: read,
                got: back,
            });
        }
        Ok(blob)
    }
}
