//! Index record formats. Every value starts with a format byte, then JSON; a reader decodes the
//! versions it knows through an explicit migration chain ([`decode`]) and refuses others, so a
//! newer gateway can read every record an older one wrote.

use std::collections::BTreeMap;

use crate::integrity::StripeDigests;
use cairn_storage_node::codec::ErasureProfile;
use cairn_storage_node::format::{PlacementEntry, ShardSpec};
use cairn_storage_node::ids::{ObjectId, ShardIndex};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Format byte of records written today.
pub const FORMAT_V1: u8 = 1;

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The format byte is one this gateway does not know.
    #[error("record format {0} is not supported")]
    UnsupportedFormat(u8),
    /// The record is empty or its body does not parse.
    #[error("malformed record: {0}")]
    Malformed(String),
}

/// Serialises a record in the current format.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    serde_json::to_writer(&mut out, record).expect("records serialise");
    out
}

/// Parses a record of any supported format.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => {
            serde_json::from_slice(body).map_err(|e| RecordError::Malformed(e.to_string()))
        }
        Some((&other, _)) => Err(RecordError::UnsupportedFormat(other)),
        None => Err(RecordError::Malformed("empty record".into())),
    }
}

/// Object data erasure-coded onto storage nodes: everything needed to find and decode its shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBlob {
    /// Id shared by every shard of this blob; never reused.
    pub object_id: ObjectId,
    /// The erasure profile.
    pub profile: ErasureProfile,
    /// Object bytes per stripe.
    pub stripe_size: u32,
    /// Bytes of the blob.
    pub length: u64,
    /// Holder of each shard index.
    pub placement: Vec<PlacementEntry>,
    /// A digest of every stripe's data, recorded at write time: what a read returns must match
    /// it ([`crate::integrity`]). Empty for blobs written before it was recorded.
    #[serde(default, skip_serializing_if = "StripeDigests::is_empty")]
    pub stripe_digests: StripeDigests,
}

impl StoredBlob {
    /// Bytes its shards take on the storage nodes (payload, without the shard file headers).
    pub fn stored_bytes(&self) -> u64 {
        let (k, n) = (
            self.profile.data_shards(),
            self.profile.total_shards() as u64,
        );
        let stripe = u64::from(self.stripe_size.max(1));
        let shard = |len: u64| cairn_storage_node::codec::shard_len(len as usize, k) as u64;
        let (full, rest) = (self.length / stripe, self.length % stripe);
        let mut total = full * shard(stripe) * n;
        if rest > 0 {
            total += shard(rest) * n;
        }
        total
    }

    /// The shard description of shard `index`.
    pub fn shard_spec(&self, index: usize) -> ShardSpec {
        ShardSpec {
            object_id: self.object_id,
            shard_index: ShardIndex(index as u8),
            profile: self.profile,
            stripe_size: self.stripe_size,
            object_length: self.length,
            placement: self.placement.clone(),
        }
    }
}

/// Where the bytes of an object (or part) are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blob {
    /// Small data kept in the index entry itself (replicated with it).
    Inline(#[serde(with = "b64")] Vec<u8>),
    /// Erasure-coded shards on storage nodes.
    Stored(StoredBlob),
}

impl Blob {
    /// Bytes of data.
    pub fn len(&self) -> u64 {
        match self {
            Blob::Inline(d) => d.len() as u64,
            Blob::Stored(s) => s.length,
        }
    }

    /// `true` for zero bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored blob, if the data is not inline.
    pub fn stored(&self) -> Option<&StoredBlob> {
        match self {
            Blob::Stored(s) => Some(s),
            Blob::Inline(_) => None,
        }
    }
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// An additional checksum (as the `x-amz-checksum-*` headers carry it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChecksum {
    /// `CRC32`, `CRC32C`, `SHA1`, `SHA256` or `CRC64NVME`.
    pub algorithm: String,
    /// Base64 value; for multipart objects the composite `…-N` form.
    pub value: String,
    /// `FULL_OBJECT` or `COMPOSITE`.
    pub kind: String,
}

/// Standard content headers stored with an object and returned on GET/HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentHeaders {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Expires` (HTTP date, as sent).
    pub expires: Option<String>,
}

/// One part of a completed multipart object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    /// The part number the client gave.
    pub part_number: u32,
    /// The part's ETag (hex MD5, no quotes).
    pub etag: String,
    /// The part's data.
    pub blob: Blob,
    /// The part's additional checksum, if it had one.
    pub checksum: Option<StoredChecksum>,
}

/// The bytes of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectData {
    /// One blob (PutObject, CopyObject).
    Single(Blob),
    /// The parts of a completed multipart upload, in order (a manifest: no data was copied).
    Multipart(Vec<PartRef>),
}

impl ObjectData {
    /// Bytes the data takes: shards on storage nodes, plus inline bytes (kept in the index).
    pub fn stored_bytes(&self) -> u64 {
        let blob = |b: &Blob| match b {
            Blob::Inline(d) => d.len() as u64,
            Blob::Stored(s) => s.stored_bytes(),
        };
        match self {
            ObjectData::Single(b) => blob(b),
            ObjectData::Multipart(parts) => parts.iter().map(|p| blob(&p.blob)).sum(),
        }
    }

    /// Every stored blob (to free them).
    pub fn stored_blobs(&self) -> Vec<&StoredBlob> {
        match self {
            ObjectData::Single(b) => b.stored().into_iter().collect(),
            ObjectData::Multipart(parts) => parts.iter().filter_map(|p| p.blob.stored()).collect(),
        }
    }
}

/// The tags of an object version, key → value (at most 10, validated by the S3 layer).
pub type ObjectTags = BTreeMap<String, String>;

/// One version of an object key: the current entry (`O`) or a noncurrent version (`V`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Bytes of the object.
    pub size: u64,
    /// ETag without quotes: hex MD5, or `hex(md5 of part md5s)-N` for multipart.
    pub etag: String,
    /// Milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
    /// Version id (`None` = the null version, as in an unversioned bucket).
    #[serde(default)]
    pub version_id: Option<String>,
    /// `true` for a delete marker (versioned buckets; no data).
    #[serde(default)]
    pub delete_marker: bool,
    /// Position among the versions of the key, assigned by the index at commit (each new version
    /// of a key gets the current one's plus one; entries written before versioning have 0).
    #[serde(default)]
    pub seq: u64,
    /// On the current entry only: the sequence number of the noncurrent *null* version of the key,
    /// if there is one (a key has at most one null version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_version_seq: Option<u64>,
    /// On noncurrent versions only: when the next newer version replaced it (Unix ms), the clock of
    /// noncurrent-version lifecycle rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_since_ms: Option<i64>,
    /// The storage class.
    pub storage_class: String,
    /// Content headers.
    pub headers: ContentHeaders,
    /// `x-amz-meta-*` (names lowercase, without the prefix).
    pub user_metadata: BTreeMap<String, String>,
    /// Additional checksum, if the client sent one.
    pub checksum: Option<StoredChecksum>,
    /// Object tags; changed in place by PutObjectTagging (no new version). Absent when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: ObjectTags,
    /// The data.
    pub data: ObjectData,
}

impl ObjectRecord {
    /// A delete marker made at `now_ms` (the index assigns its sequence and version id).
    pub fn delete_marker(now_ms: i64) -> Self {
        Self {
            size: 0,
            etag: String::new(),
            last_modified_ms: now_ms,
            version_id: None,
            delete_marker: true,
            seq: 0,
            null_version_seq: None,
            noncurrent_since_ms: None,
            storage_class: String::new(),
            headers: ContentHeaders::default(),
            user_metadata: BTreeMap::new(),
            checksum: None,
            tags: ObjectTags::new(),
            data: ObjectData::Single(Blob::Inline(Vec::new())),
        }
    }

    /// This version as stored once a newer one (made at `since_ms`) replaced it.
    pub fn into_noncurrent(mut self, since_ms: i64) -> Self {
        self.null_version_seq = None;
        self.noncurrent_since_ms = Some(since_ms);
        self
    }
}

/// The fields of an [`ObjectRecord`] a listing shows, decoded from the same bytes. The rest
/// (content headers, metadata, tags and above all the data: an object under the inline
/// threshold, 64 KiB by default, is kept base64 in its record) is stepped over by the parser
/// without being copied or decoded, so a page of small objects costs its keys, not their bodies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListedObject {
    /// Bytes of the object.
    pub size: u64,
    /// ETag without quotes.
    pub etag: String,
    /// Milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
    /// `true` for a delete marker (not listed).
    #[serde(default)]
    pub delete_marker: bool,
    /// The storage class.
    pub storage_class: String,
    /// The additional checksum's algorithm, if the client sent one.
    #[serde(default)]
    pub checksum: Option<ListedChecksum>,
}

/// The part of a [`StoredChecksum`] a listing shows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListedChecksum {
    /// `CRC32`, `CRC32C`, `SHA1`, `SHA256` or `CRC64NVME`.
    pub algorithm: String,
}

/// The versioning state of a bucket. Once enabled it can be suspended, never unversioned again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    /// Never enabled: one (null) version per key, overwritten in place.
    #[default]
    Unversioned,
    /// Every write makes a new version; deletes make delete markers.
    Enabled,
    /// Writes make the null version (replacing the previous null one); older versions are kept.
    Suspended,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The upload id.
    pub upload_id: String,
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Milliseconds since the Unix epoch.
    pub initiated_ms: i64,
    /// Storage class of the object to be.
    pub storage_class: String,
    /// Content headers of the object to be.
    pub headers: ContentHeaders,
    /// User metadata of the object to be.
    pub user_metadata: BTreeMap<String, String>,
    /// Checksum algorithm every part must carry, if the client chose one.
    pub checksum_algorithm: Option<String>,
    /// `COMPOSITE` or `FULL_OBJECT`, when an algorithm was chosen.
    #[serde(default)]
    pub checksum_type: Option<String>,
    /// Tags of the object to be (`x-amz-tagging`), applied on Complete.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: ObjectTags,
}

/// An uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    /// Part number (1..=10000).
    pub part_number: u32,
    /// Hex MD5 of the part.
    pub etag: String,
    /// Milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
    /// The part's data.
    pub blob: Blob,
    /// Additional checksum of the part.
    pub checksum: Option<StoredChecksum>,
}

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    /// Bucket name.
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Access key id of the creator (the owner).
    pub owner: String,
    /// Versioning state.
    #[serde(default)]
    pub versioning: Versioning,
    /// The bucket has a lifecycle configuration (so reads need not look for one otherwise).
    #[serde(default)]
    pub lifecycle: bool,
    /// Limits of the bucket itself (whoever writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// The storage class of writes that name none (`None`: STANDARD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_storage_class: Option<String>,
    /// Tells this bucket from an earlier one of the same name (random, set at creation; 0 for
    /// buckets created before it existed): fences of a deleted bucket never block a new one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub incarnation: u64,
    /// The deletion under way, if any (see `Index::delete_bucket`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleting: Option<Deletion>,
    /// Nonces of deletions that failed or were given up: their fences block nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub void_fences: Vec<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl BucketRecord {
    /// A new bucket: unversioned, without configuration, of a fresh incarnation.
    pub fn new(name: &str, owner: &str, created_ms: i64) -> Self {
        Self {
            name: name.to_string(),
            created_ms,
            owner: owner.to_string(),
            versioning: Versioning::Unversioned,
            lifecycle: false,
            quota: None,
            default_storage_class: None,
            incarnation: rand::random::<u64>().max(1),
            deleting: None,
            void_fences: Vec::new(),
        }
    }

    /// Whether a fence with `nonce` of incarnation `incarnation` blocks writes to this bucket.
    pub fn fenced_by(&self, fence: &FenceRecord, nonce: u64) -> bool {
        fence.incarnation == self.incarnation && !self.void_fences.contains(&nonce)
    }
}

/// A bucket deletion under way: its fences carry `nonce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    /// The nonce of the deletion's fences.
    pub nonce: u64,
    /// When it began (Unix ms): a deletion stuck for long (its gateway died) is given up.
    pub since_ms: i64,
}

/// A bucket fence: no new object of the bucket's incarnation may be written in the group
/// holding it (the bucket is being deleted; see `Index::delete_bucket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRecord {
    /// The incarnation of the bucket being deleted.
    pub incarnation: u64,
}

/// Limits of a bucket's current objects. Enforced against a usage figure a few seconds old, as
/// MinIO does, so concurrent writers through several gateways can overshoot a little.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Most bytes of current objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Most current objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_objects: Option<u64>,
}

/// An access key and what it may touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    /// Access key id.
    pub access_key_id: String,
    /// Secret.
    pub secret_key: String,
    /// Human-readable name.
    pub name: String,
    /// Buckets this key may use; `None` = all (an admin key).
    pub buckets: Option<Vec<String>>,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// A storage node registered in the meta partition: every gateway writes to the nodes registered
/// there, whichever nodes it was started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageNodeRecord {
    /// Node id.
    pub id: String,
    /// Zone.
    pub zone: String,
    /// Base URL of its API.
    pub endpoint: String,
    /// When it was (last) registered, milliseconds since the Unix epoch.
    pub registered_ms: i64,
}

/// Where a bucket's lifecycle runs stand, so a run interrupted by a crash resumes where it was
/// (stored with the bucket's configuration documents).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleProgress {
    /// The run under way (absent between runs).
    #[serde(default)]
    pub current: Option<LifecycleRun>,
    /// The last finished run.
    #[serde(default)]
    pub last: Option<LifecycleRun>,
    /// Totals over every finished run.
    #[serde(default)]
    pub totals: LifecycleCounters,
}

/// One pass of a bucket's lifecycle rules over its current versions, then its noncurrent
/// versions, then its multipart uploads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRun {
    /// When the run began (Unix ms).
    pub started_ms: i64,
    /// When it ended.
    #[serde(default)]
    pub finished_ms: Option<i64>,
    /// What it is walking.
    pub phase: LifecyclePhase,
    /// The last key done in this phase (current versions, uploads) ...
    #[serde(default)]
    pub cursor_key: Option<String>,
    /// ... and the last version (noncurrent versions) or upload id done.
    #[serde(default)]
    pub cursor_seq: Option<u64>,
    /// Upload id of the last upload done.
    #[serde(default)]
    pub cursor_upload: Option<String>,
    /// Noncurrent versions of `cursor_key` already walked (their count decides which are newer).
    #[serde(default)]
    pub cursor_rank: usize,
    /// What it did so far.
    #[serde(default)]
    pub counters: LifecycleCounters,
    /// Blobs being written by a transition, with their intents: a run resumed after a crash frees
    /// those whose transition never committed.
    #[serde(default)]
    pub in_flight: Vec<(super::Intent, StoredBlob)>,
}

/// The phases of a lifecycle run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LifecyclePhase {
    /// Current versions (`O`).
    Current,
    /// Noncurrent versions (`V`).
    Noncurrent,
    /// Multipart uploads (`U`).
    Uploads,
}

/// What lifecycle runs did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleCounters {
    /// Versions and uploads looked at.
    pub scanned: u64,
    /// Versions re-encoded into another storage class.
    pub transitioned: u64,
    /// Current versions expired (deleted, or hidden by a delete marker).
    pub expired: u64,
    /// Noncurrent versions deleted.
    pub noncurrent_expired: u64,
    /// Expired delete markers removed.
    pub markers_removed: u64,
    /// Incomplete multipart uploads aborted.
    pub uploads_aborted: u64,
    /// Object bytes re-encoded by transitions.
    pub bytes_moved: u64,
}

impl LifecycleCounters {
    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &LifecycleCounters) {
        self.scanned += other.scanned;
        self.transitioned += other.transitioned;
        self.expired += other.expired;
        self.noncurrent_expired += other.noncurrent_expired;
        self.markers_removed += other.markers_removed;
        self.uploads_aborted += other.uploads_aborted;
        self.bytes_moved += other.bytes_moved;
    }
}

/// A blob whose shards are to be deleted once due: freed by an overwrite or delete, or written by
/// an upload that has not committed yet (the record is removed when it commits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GarbageRecord {
    /// The blob.
    pub blob: StoredBlob,
    /// Why it became garbage (for logs): `overwrite`, `delete`, `intent`, `abort`.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_unknown_formats_are_refused() {
        let rec = ObjectRecord {
            size: 3,
            etag: "abc".into(),
            last_modified_ms: 1,
            version_id: None,
            delete_marker: false,
            seq: 0,
            null_version_seq: None,
            noncurrent_since_ms: None,
            storage_class: "STANDARD".into(),
            headers: ContentHeaders::default(),
            user_metadata: BTreeMap::from([("a".into(), "b".into())]),
            checksum: None,
            tags: ObjectTags::from([("tier".into(), "cold".into())]),
            data: ObjectData::Single(Blob::Inline(vec![1, 2, 3])),
        };
        let bytes = encode(&rec);
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(decode::<ObjectRecord>(&bytes).unwrap(), rec);
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(matches!(
            decode::<ObjectRecord>(&future),
            Err(RecordError::UnsupportedFormat(9))
        ));
        assert!(decode::<ObjectRecord>(&[]).is_err());
    }

    #[test]
    fn a_listing_reads_its_fields_from_the_record_and_steps_over_the_data() {
        let rec = ObjectRecord {
            size: 70_000,
            etag: "abc".into(),
            last_modified_ms: 7,
            version_id: Some("v".into()),
            delete_marker: false,
            seq: 3,
            null_version_seq: None,
            noncurrent_since_ms: None,
            storage_class: "REDUCED_REDUNDANCY".into(),
            headers: ContentHeaders {
                content_type: Some("text/plain".into()),
                ..ContentHeaders::default()
            },
            user_metadata: BTreeMap::from([("a".into(), "b".into())]),
            checksum: Some(StoredChecksum {
                algorithm: "CRC32C".into(),
                value: "AAAAAA==".into(),
                kind: "FULL_OBJECT".into(),
            }),
            tags: ObjectTags::from([("tier".into(), "cold".into())]),
            data: ObjectData::Single(Blob::Inline(vec![b'"'; 70_000])),
        };
        let listed: ListedObject = decode(&encode(&rec)).unwrap();
        assert_eq!(
            listed,
            ListedObject {
                size: 70_000,
                etag: "abc".into(),
                last_modified_ms: 7,
                delete_marker: false,
                storage_class: "REDUCED_REDUNDANCY".into(),
                checksum: Some(ListedChecksum {
                    algorithm: "CRC32C".into()
                }),
            }
        );
        let marker: ListedObject = decode(&encode(&ObjectRecord::delete_marker(9))).unwrap();
        assert!(marker.delete_marker);
        // Records written before versioning (no `delete_marker`) list too.
        let old = br#"{"size":1,"etag":"e","last_modified_ms":5,"storage_class":"STANDARD","headers":{},"user_metadata":{},"checksum":null,"data":{"single":{"inline":"eA=="}}}"#;
        let listed: ListedObject = decode(&[&[FORMAT_V1][..], old].concat()).unwrap();
        assert_eq!(
            (listed.size, listed.delete_marker, listed.checksum),
            (1, false, None)
        );
    }

    #[test]
    fn records_written_before_versioning_still_decode() {
        let old = br#"{"size":1,"etag":"e","last_modified_ms":5,"storage_class":"STANDARD","headers":{},"user_metadata":{},"checksum":null,"data":{"single":{"inline":"eA=="}}}"#;
        let mut bytes = vec![FORMAT_V1];
        bytes.extend_from_slice(old);
        let rec: ObjectRecord = decode(&bytes).unwrap();
        assert!(
            rec.tags.is_empty(),
            "records written before tagging have no tags"
        );
        // Untagged records are written as before (no `tags` field).
        assert!(!String::from_utf8_lossy(&encode(&rec)).contains("\"tags\""));
        assert_eq!(
            (rec.version_id, rec.seq, rec.delete_marker),
            (None, 0, false)
        );
        let b: BucketRecord = decode(
            &[
                &[FORMAT_V1][..],
                br#"{"name":"b","created_ms":1,"owner":"o"}"#,
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(b.versioning, Versioning::Unversioned);
    }
}
