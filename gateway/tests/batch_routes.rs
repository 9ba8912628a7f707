//! Every batch an object operation writes stays with one object: all its keys route
//! ([`keys::route`]) to the same `O` key. That is what lets a partition own each of its objects
//! whole — versions, uploads, parts and the garbage of their blobs — so no operation ever has to
//! commit in two partitions. The only batches that touch several objects remove or reschedule
//! garbage records, which are independent of each other and may be split by partition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use cairn_gateway::index::keys;
use cairn_gateway::index::records::{
    Blob, BucketRecord, ContentHeaders, ObjectData, ObjectRecord, PartRecord, PartRef,
    UploadRecord, Versioning,
};
use cairn_gateway::index::{Index, IndexOptions, Stamp, VersionRef, WriteCondition};
use cairn_kv::{EngineError, Entries, KvEngine, MemEngine, WriteOp};

mod common;
use common::stored_blob;

/// The in-memory engine, recording the keys of every batch written.
#[derive(Default)]
struct Recording {
    inner: MemEngine,
    batches: Mutex<Vec<Vec<Vec<u8>>>>,
}

impl KvEngine for Recording {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.inner.get(key)
    }
    fn write(&self, ops: Vec<WriteOp>) -> Result<(), EngineError> {
        let keys = ops
            .iter()
            .map(|op| match op {
                WriteOp::Put(k, _) | WriteOp::Delete(k) => k.clone(),
            })
            .collect();
        self.batches.lock().unwrap().push(keys);
        self.inner.write(ops)
    }
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, EngineError> {
        self.inner.scan(start, end, limit)
    }
    fn approximate_size(&self) -> u64 {
        self.inner.approximate_size()
    }
    fn approximate_range_size(&self, start: &[u8], end: &[u8]) -> u64 {
        self.inner.approximate_range_size(start, end)
    }
}

impl Recording {
    /// Takes the batches written since the last call.
    fn take(&self) -> Vec<Vec<Vec<u8>>> {
        std::mem::take(&mut self.batches.lock().unwrap())
    }
}

fn is_data(k: &[u8]) -> bool {
    k.first().is_some_and(|t| keys::tag::DATA.contains(t))
}

/// Asserts the batches written since the last check each stay with one object (or are all
/// bookkeeping outside the data tables); `garbage_only` allows batches of garbage records only.
fn check(engine: &Recording, what: &str, garbage_only: bool) {
    let batches = engine.take();
    assert!(!batches.is_empty(), "{what}: wrote nothing");
    for batch in batches {
        let routes: BTreeSet<Vec<u8>> = batch
            .iter()
            .filter(|k| is_data(k))
            .map(|k| keys::route(k).into_owned())
            .collect();
        let data = batch.iter().filter(|k| is_data(k)).count();
        if data == 0 {
            continue;
        }
        assert_eq!(
            data,
            batch.len(),
            "{what}: a batch mixes object records and bookkeeping: {batch:?}"
        );
        if garbage_only && batch.iter().all(|k| k.first() == Some(&keys::tag::GARBAGE)) {
            continue;
        }
        assert_eq!(routes.len(), 1, "{what}: a batch spans objects: {batch:?}");
    }
}

/// An object record holding `data` (ETag "00").
fn record(data: ObjectData) -> ObjectRecord {
    ObjectRecord {
        data,
        ..common::inline_record(0)
    }
}

#[tokio::test]
async fn every_object_operation_writes_within_one_object() {
    let engine = Arc::new(Recording::default());
    let idx = Index::new(engine.clone(), IndexOptions::default());
    idx.create_bucket(BucketRecord::new("b", "o", 0))
        .await
        .unwrap();
    engine.take();
    let now = Stamp::now();

    // Keys whose bytes would sort apart from their object in a table keyed differently.
    for (n, key) in ["a", "a\0b", "é/x", "z"].into_iter().enumerate() {
        let n = n as u8;
        let stored = stored_blob(10 + n);
        let intent = idx.record_intent("b", key, &stored, 0).await.unwrap();
        check(&engine, "record an intent", false);
        idx.put_object(
            "b",
            key,
            record(ObjectData::Single(Blob::Stored(stored))),
            WriteCondition::None,
            vec![intent],
            now,
        )
        .await
        .unwrap();
        check(&engine, "put with an intent", false);
        // Overwriting frees the old blob: the garbage record goes with the object.
        idx.put_object(
            "b",
            key,
            record(ObjectData::Single(Blob::Inline(vec![n]))),
            WriteCondition::None,
            vec![],
            now,
        )
        .await
        .unwrap();
        check(&engine, "overwrite", false);

        let upload = UploadRecord {
            upload_id: format!("up{n}"),
            bucket: "b".into(),
            key: key.into(),
            initiated_ms: 0,
            storage_class: "STANDARD".into(),
            headers: ContentHeaders::default(),
            user_metadata: BTreeMap::new(),
            checksum_algorithm: None,
            checksum_type: None,
            tags: Default::default(),
        };
        idx.create_upload(upload.clone()).await.unwrap();
        check(&engine, "create an upload", false);
        let mut parts = Vec::new();
        for part_number in 1..=2u32 {
            let stored = stored_blob(100 + 2 * n + part_number as u8);
            let intent = idx.record_intent("b", key, &stored, 0).await.unwrap();
            let part = PartRecord {
                part_number,
                etag: format!("{part_number:02x}"),
                last_modified_ms: 0,
                blob: Blob::Stored(stored),
                checksum: None,
            };
            idx.put_part(&upload, part.clone(), vec![intent])
                .await
                .unwrap();
            check(&engine, "put a part", false);
            parts.push(PartRef {
                part_number,
                etag: part.etag,
                blob: part.blob,
                checksum: None,
            });
        }
        // A part uploaded again frees the first one's blob.
        let again = PartRecord {
            part_number: 2,
            etag: "02".into(),
            last_modified_ms: 0,
            blob: Blob::Inline(vec![2]),
            checksum: None,
        };
        idx.put_part(&upload, again.clone(), vec![]).await.unwrap();
        check(&engine, "replace a part", false);
        parts[1].blob = again.blob;
        idx.complete_upload(
            &upload,
            record(ObjectData::Multipart(parts)),
            WriteCondition::None,
            now,
        )
        .await
        .unwrap();
        check(&engine, "complete an upload", false);

        let aborted = UploadRecord {
            upload_id: format!("ab{n}"),
            ..upload
        };
        idx.create_upload(aborted.clone()).await.unwrap();
        let stored = stored_blob(200 + n);
        let intent = idx.record_intent("b", key, &stored, 0).await.unwrap();
        let part = PartRecord {
            part_number: 1,
            etag: "01".into(),
            last_modified_ms: 0,
            blob: Blob::Stored(stored.clone()),
            checksum: None,
        };
        idx.put_part(&aborted, part, vec![intent]).await.unwrap();
        engine.take();
        idx.abort_upload(&aborted, 0).await.unwrap();
        check(&engine, "abort an upload", false);

        // An upload that failed gives its intent up.
        let stored = stored_blob(250 - n);
        let intent = idx.record_intent("b", key, &stored, 0).await.unwrap();
        engine.take();
        idx.abandon(intent, &stored, 0).await.unwrap();
        check(&engine, "abandon an intent", false);
    }

    idx.set_versioning("b", Versioning::Enabled).await.unwrap();
    engine.take();
    for key in ["a", "a\0b"] {
        let mut ids = Vec::new();
        for v in 0..3u8 {
            let w = idx
                .put_object(
                    "b",
                    key,
                    record(ObjectData::Single(Blob::Inline(vec![v]))),
                    WriteCondition::None,
                    vec![],
                    Stamp::now(),
                )
                .await
                .unwrap();
            check(&engine, "put a version", false);
            ids.push(w.version_id.unwrap());
        }
        idx.delete_object("b", key, WriteCondition::None, Stamp::now())
            .await
            .unwrap();
        check(&engine, "delete (a marker)", false);
        let v = VersionRef::parse(&ids[0]).unwrap();
        idx.delete_version("b", key, v, Stamp::now()).await.unwrap();
        check(&engine, "delete a version", false);
    }

    // The collector takes due garbage across objects, removed or retried in one batch.
    let due = idx
        .due_garbage(u64::MAX - 1, 1000, None, usize::MAX)
        .await
        .unwrap()
        .due;
    assert!(
        due.len() > 4,
        "garbage of several objects is due: {}",
        due.len()
    );
    let (first, rec) = due[0].clone();
    idx.retry_garbage_later(first, rec, 5).await.unwrap();
    check(&engine, "retry garbage later", true);
    idx.remove_garbage(due.into_iter().skip(1).map(|(k, _)| k).collect())
        .await
        .unwrap();
    check(&engine, "remove garbage", true);
}
