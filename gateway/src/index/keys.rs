//! Key encoding of the index. One keyspace, ordered as S3 lists: a one-byte table tag, then the
//! bucket, a 0 byte (bucket names never contain one), then the object key bytes.
//!
//! `O` keys hold the *current* entry of each object key (possibly a delete marker), so lists of
//! current objects stay one scan whatever the number of versions. Noncurrent versions live under
//! their own tag (`V`, bucket, 0, escaped key, terminator, inverted sequence), newest first, so the
//! versions of one key are one contiguous range and a version id (which carries its sequence) is
//! one point lookup.
//!
//! Every record that belongs to one object key — its current entry (`O`), noncurrent versions
//! (`V`), multipart uploads (`U`) and their parts (`P`), and the garbage and intent records of
//! its blobs (`G`) — carries the bucket and the key right after its tag, so it has a *route*: the
//! `O` key of that object ([`route`]). Partitions are ranges of routes, and a range of routes is
//! one contiguous key range in each of those tables ([`table_ranges`]). So every batch an object
//! operation writes falls in one partition, whichever table it touches, and a partition's data
//! can be scanned, snapshotted and measured table by table. Everything else (buckets,
//! configuration, access keys, storage nodes, index metadata) routes to itself and lives in the meta partition.

/// The version of this key layout, recorded in the engine ([`cairn_kv::RocksEngine::open`]
/// refuses another). 2: every record of an object (versions, uploads, parts, garbage) carries its
/// bucket and key, so it routes to one partition.
pub const KEY_LAYOUT: u32 = 2;

/// Table tags (first key byte).
pub mod tag {
    /// Buckets: `B` bucket.
    pub const BUCKET: u8 = b'B';
    /// Bucket configuration documents (lifecycle, replication): `C` bucket 0 name.
    pub const CONFIG: u8 = b'C';
    /// Bucket fences (a deletion under way; see `Index::delete_bucket`): `F` bucket 0
    /// escaped-key 0 0 nonce (u64 BE), where the key is the first of the group's routes in the
    /// bucket.
    pub const FENCE: u8 = b'F';
    /// Garbage and intents (blobs to delete when due): `G` bucket 0 escaped-key 0 0 due-time
    /// (u64 BE ms) object-id.
    pub const GARBAGE: u8 = b'G';
    /// Access keys: `K` access-key-id.
    pub const ACCESS_KEY: u8 = b'K';
    /// Index metadata (partition map, format version): `M` name.
    pub const META: u8 = b'M';
    /// The storage-node registry: `N` node-id.
    pub const STORAGE_NODE: u8 = b'N';
    /// Current object entries: `O` bucket 0 key.
    pub const OBJECT: u8 = b'O';
    /// Uploaded parts: `P` bucket 0 escaped-key 0 0 upload-id 0 part-number (u32 BE).
    pub const PART: u8 = b'P';
    /// Multipart uploads in progress: `U` bucket 0 escaped-key 0 0 upload-id.
    pub const UPLOAD: u8 = b'U';
    /// Noncurrent object versions: `V` bucket 0 escaped-key 0 0 (u64::MAX - sequence, BE).
    pub const VERSION: u8 = b'V';

    /// Tables whose records belong to an object key (and so to a data partition).
    pub const DATA: [u8; 6] = [FENCE, GARBAGE, OBJECT, PART, UPLOAD, VERSION];
}

fn with_tag(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.push(tag);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

/// Key of a bucket record.
pub fn bucket(name: &str) -> Vec<u8> {
    with_tag(tag::BUCKET, &[name.as_bytes()])
}

/// First key after every bucket record.
pub fn buckets_end() -> Vec<u8> {
    vec![tag::BUCKET + 1]
}

/// Key of the current entry of `key` in `bucket`.
pub fn object(bucket: &str, key: &str) -> Vec<u8> {
    with_tag(tag::OBJECT, &[bucket.as_bytes(), key.as_bytes()])
}

/// Prefix of every object entry of `bucket`.
pub fn objects_of(bucket: &str) -> Vec<u8> {
    let mut k = with_tag(tag::OBJECT, &[bucket.as_bytes()]);
    k.push(0);
    k
}

/// The object key with every 0 byte escaped as `0 0xff`, then the terminator `0 0`: the encoding
/// sorts as the keys do, and no key's encoding is a prefix of another's (keys may contain 0).
fn escaped_key(out: &mut Vec<u8>, key: &str) {
    for &b in key.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// `tag`, the bucket, a 0 byte and the escaped key with its terminator: the prefix of every
/// record of the object in table `tag` (other than `O`).
fn object_prefix(tag: u8, bucket: &str, key: &str) -> Vec<u8> {
    let mut k = with_tag(tag, &[bucket.as_bytes()]);
    k.push(0);
    escaped_key(&mut k, key);
    k
}

/// Splits `bytes` (an escaped key, its terminator, then anything) into the key's bytes and the
/// rest; `None` if there is no terminator.
fn unescape_key(bytes: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut key = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0 {
            match bytes.get(i + 1) {
                Some(0) => return Some((key, &bytes[i + 2..])),
                Some(0xff) => {
                    key.push(0);
                    i += 2;
                    continue;
                }
                _ => return None,
            }
        }
        key.push(b);
        i += 1;
    }
    None
}

/// Prefix of every noncurrent version of `key` (newest first under it).
pub fn versions_of_key(bucket: &str, key: &str) -> Vec<u8> {
    object_prefix(tag::VERSION, bucket, key)
}

/// Key of the noncurrent version of `key` with sequence number `seq`.
pub fn version(bucket: &str, key: &str, seq: u64) -> Vec<u8> {
    let mut k = versions_of_key(bucket, key);
    k.extend_from_slice(&(u64::MAX - seq).to_be_bytes());
    k
}

/// Prefix of every noncurrent version of `bucket`.
pub fn versions_of(bucket: &str) -> Vec<u8> {
    let mut k = with_tag(tag::VERSION, &[bucket.as_bytes()]);
    k.push(0);
    k
}

/// The object key and sequence number of a noncurrent-version key of `bucket` (`None` if `k` is
/// not one).
pub fn parse_version(bucket: &str, k: &[u8]) -> Option<(String, u64)> {
    let rest = k.strip_prefix(versions_of(bucket).as_slice())?;
    let (key, seq) = unescape_key(rest)?;
    let inverted = u64::from_be_bytes(seq.try_into().ok()?);
    Some((String::from_utf8(key).ok()?, u64::MAX - inverted))
}

/// Key of a bucket configuration document (`lifecycle`, `replication`).
pub fn config(bucket: &str, name: &str) -> Vec<u8> {
    with_tag(tag::CONFIG, &[bucket.as_bytes(), name.as_bytes()])
}

/// Prefix of every configuration document of `bucket`.
pub fn configs_of(bucket: &str) -> Vec<u8> {
    let mut k = with_tag(tag::CONFIG, &[bucket.as_bytes()]);
    k.push(0);
    k
}

/// Key of a multipart upload record.
pub fn upload(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut k = uploads_of_key(bucket, key);
    k.extend_from_slice(upload_id.as_bytes());
    k
}

/// Prefix of every upload record of `bucket`.
pub fn uploads_of(bucket: &str) -> Vec<u8> {
    let mut k = with_tag(tag::UPLOAD, &[bucket.as_bytes()]);
    k.push(0);
    k
}

/// Prefix of every upload record of `key` in `bucket`.
pub fn uploads_of_key(bucket: &str, key: &str) -> Vec<u8> {
    object_prefix(tag::UPLOAD, bucket, key)
}

/// Prefix of the upload records of every key of `bucket` that starts with `prefix`.
pub fn uploads_with_prefix(bucket: &str, prefix: &str) -> Vec<u8> {
    let mut k = uploads_of(bucket);
    let mut escaped = Vec::new();
    escaped_key(&mut escaped, prefix);
    escaped.truncate(escaped.len() - 2);
    k.extend_from_slice(&escaped);
    k
}

/// Key of one part of an upload.
pub fn part(bucket: &str, key: &str, upload_id: &str, part_number: u32) -> Vec<u8> {
    let mut k = parts_of(bucket, key, upload_id);
    k.extend_from_slice(&part_number.to_be_bytes());
    k
}

/// Prefix of every part of an upload (the id, then a 0, so no upload's prefix covers another's).
pub fn parts_of(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut k = object_prefix(tag::PART, bucket, key);
    k.extend_from_slice(upload_id.as_bytes());
    k.push(0);
    k
}

/// Key of the fence with `nonce` at `route` (an object route, `O` bucket 0 key-bytes): a fence
/// routes to where it is put, so the group owning that route holds it.
pub fn fence_at(route: &[u8], nonce: u64) -> Option<Vec<u8>> {
    let tail = route.strip_prefix(&[tag::OBJECT])?;
    let sep = tail.iter().position(|&b| b == 0)?;
    let mut k = vec![tag::FENCE];
    k.extend_from_slice(&tail[..=sep]);
    for &b in &tail[sep + 1..] {
        k.push(b);
        if b == 0 {
            k.push(0xff);
        }
    }
    k.extend_from_slice(&[0, 0]);
    k.extend_from_slice(&nonce.to_be_bytes());
    Some(k)
}

/// The nonce of a fence key.
pub fn fence_nonce(k: &[u8]) -> Option<u64> {
    let at = k.len().checked_sub(8)?;
    Some(u64::from_be_bytes(k[at..].try_into().ok()?))
}

/// The bucket of an object route (`O` bucket 0 key), if `route` names one.
pub fn route_bucket(route: &[u8]) -> Option<&[u8]> {
    let tail = route.strip_prefix(&[tag::OBJECT])?;
    let sep = tail.iter().position(|&b| b == 0)?;
    Some(&tail[..sep])
}

/// The key range of table `t` holding the records whose route is in `[start, end)` (`end`
/// `None`: to the table's end).
pub fn table_range(t: u8, start: &[u8], end: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
    let s = table_bound(t, start);
    let e = match end {
        Some(e) => table_bound(t, e),
        None => vec![t + 1],
    };
    (s, e)
}

/// Key of an access key record.
pub fn access_key(id: &str) -> Vec<u8> {
    with_tag(tag::ACCESS_KEY, &[id.as_bytes()])
}

/// Key of a storage node's registration.
pub fn storage_node(id: &str) -> Vec<u8> {
    with_tag(tag::STORAGE_NODE, &[id.as_bytes()])
}

/// Key of a garbage (or intent) record of a blob of `key` in `bucket`: it lives with the object,
/// so the batch that frees or commits the blob stays in the object's partition.
pub fn garbage(bucket: &str, key: &str, due_ms: u64, object_id: &[u8; 16]) -> Vec<u8> {
    let mut k = object_prefix(tag::GARBAGE, bucket, key);
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(object_id);
    k
}

/// The garbage record key `k` with its due time changed to `due_ms` (same object, same blob).
pub fn garbage_due_at(k: &[u8], due_ms: u64) -> Vec<u8> {
    let mut out = k.to_vec();
    let at = out.len().saturating_sub(24);
    out[at..at + 8].copy_from_slice(&due_ms.to_be_bytes());
    out
}

/// The due time of a garbage record key.
pub fn garbage_due(k: &[u8]) -> Option<u64> {
    let at = k.len().checked_sub(24)?;
    Some(u64::from_be_bytes(k[at..at + 8].try_into().ok()?))
}

/// The route of an index key: the `O` key of the object its record belongs to, or the key itself
/// for records of no object (meta partition). Partitions are ranges of routes.
pub fn route(k: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    match k.first() {
        Some(&t) if t != tag::OBJECT && tag::DATA.contains(&t) => {
            let rest = &k[1..];
            let Some(sep) = rest.iter().position(|&b| b == 0) else {
                return Cow::Borrowed(k);
            };
            let Some((key, _)) = unescape_key(&rest[sep + 1..]) else {
                return Cow::Borrowed(k);
            };
            let mut r = Vec::with_capacity(2 + sep + key.len());
            r.push(tag::OBJECT);
            r.extend_from_slice(&rest[..=sep]);
            r.extend_from_slice(&key);
            Cow::Owned(r)
        }
        _ => Cow::Borrowed(k),
    }
}

/// Where the records of table `t` whose route is at least `route_bound` begin (an `O` key or
/// the start of the object routes).
fn table_bound(t: u8, route_bound: &[u8]) -> Vec<u8> {
    let tail = route_bound.strip_prefix(&[tag::OBJECT]).unwrap_or(&[]);
    if t == tag::OBJECT {
        let mut k = vec![tag::OBJECT];
        k.extend_from_slice(tail);
        return k;
    }
    let mut k = vec![t];
    match tail.iter().position(|&b| b == 0) {
        // bucket 0 key: the key is escaped as in the table (without its terminator, so every key
        // it is a prefix of sorts after).
        Some(sep) => {
            k.extend_from_slice(&tail[..=sep]);
            let key = &tail[sep + 1..];
            for &b in key {
                k.push(b);
                if b == 0 {
                    k.push(0xff);
                }
            }
        }
        // A bound inside the bucket names sorts the same in every table.
        None => k.extend_from_slice(tail),
    }
    k
}

/// The key ranges `[start, end)`, one per data table, holding every record whose route is in
/// `[start, end)` (`end` `None`: no upper bound). `start` must be at least the first object
/// route (`O`).
pub fn table_ranges(start: &[u8], end: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    tag::DATA
        .iter()
        .map(|&t| table_range(t, start, end))
        .filter(|(s, e)| s < e)
        .collect()
}

/// The key ranges of the meta partition: every key outside the data tables.
pub fn meta_ranges() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut from = Vec::new();
    for t in tag::DATA {
        out.push((from, vec![t]));
        from = vec![t + 1];
    }
    out.push((from, vec![0xff; 8]));
    out.retain(|(s, e)| s < e);
    out
}

/// Key of a metadata record.
pub fn meta(name: &str) -> Vec<u8> {
    with_tag(tag::META, &[name.as_bytes()])
}

pub use cairn_kv::{after, prefix_end};

/// An index key for people (logs, the admin API): `bucket/key` for an object entry, else the
/// key with bytes escaped.
pub fn readable(key: &[u8]) -> String {
    if let Some(rest) = key.strip_prefix(&[tag::OBJECT])
        && let Some(split) = rest.iter().position(|&b| b == 0)
    {
        let (bucket, object) = (&rest[..split], &rest[split + 1..]);
        return format!(
            "{}/{}",
            String::from_utf8_lossy(bucket),
            String::from_utf8_lossy(object)
        );
    }
    key.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_sort_as_s3_lists() {
        // Bucket "a" sorts wholly before bucket "a-b", and keys by bytes within a bucket.
        let mut keys = vec![
            object("a-b", "x"),
            object("a", "b"),
            object("a", "a/b"),
            object("a", "a"),
            object("a", "é"),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                object("a", "a"),
                object("a", "a/b"),
                object("a", "b"),
                object("a", "é"),
                object("a-b", "x"),
            ]
        );
        assert!(object("a", "zzz") < prefix_end(&objects_of("a")).unwrap());
        assert!(object("a-b", "") > prefix_end(&objects_of("a")).unwrap());
    }

    #[test]
    fn prefix_end_carries() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    #[test]
    fn versions_sort_newest_first_within_their_key_and_keys_in_s3_order() {
        assert!(version("b", "k", 5) < version("b", "k", 4));
        assert!(version("b", "k", 0) < prefix_end(&versions_of_key("b", "k")).unwrap());
        // Keys with 0 bytes and keys that extend others keep their own ranges and their order.
        let keys = ["a", "a\0", "a\0b", "a\u{1}", "ab", "b"];
        for w in keys.windows(2) {
            assert!(
                version("b", w[0], 0) < version("b", w[1], u64::MAX),
                "{w:?}"
            );
            assert!(!versions_of_key("b", w[1]).starts_with(&versions_of_key("b", w[0])));
        }
        for k in keys {
            assert_eq!(
                parse_version("b", &version("b", k, 42)),
                Some((k.to_string(), 42))
            );
        }
        assert_eq!(parse_version("c", &version("b", "k", 1)), None);
        assert!(!version("b-c", "k", 1).starts_with(&versions_of("b")));
    }

    #[test]
    fn parts_sort_by_number_and_stay_within_their_upload() {
        assert!(part("b", "k", "u", 2) < part("b", "k", "u", 10));
        assert!(part("b", "k", "u", 10000) < prefix_end(&parts_of("b", "k", "u")).unwrap());
        assert!(!part("b", "k", "uX", 1).starts_with(&parts_of("b", "k", "u")));
    }

    /// Every record of an object routes to its `O` key, and a route range selects exactly the
    /// records whose route is in it, table by table.
    #[test]
    fn records_route_to_their_object_and_route_ranges_select_them() {
        let objects = ["", "a", "a\0", "a\0b", "a\u{1}", "ab", "b", "é", "z\0"];
        let buckets = ["a", "a-b", "b"];
        let mut records = Vec::new();
        for b in buckets {
            for k in objects {
                let o = object(b, k);
                let all = [
                    o.clone(),
                    version(b, k, 7),
                    upload(b, k, "u1"),
                    part(b, k, "u1", 3),
                    garbage(b, k, 99, &[7; 16]),
                    fence_at(&o, 7).unwrap(),
                ];
                for r in &all {
                    assert_eq!(route(r).as_ref(), o.as_slice(), "{b:?} {k:?} {r:?}");
                }
                records.extend(all.into_iter().map(|r| (r, o.clone())));
            }
        }
        for meta in [
            bucket("b"),
            config("b", "lifecycle"),
            access_key("k"),
            meta("m"),
        ] {
            assert_eq!(route(&meta).as_ref(), meta.as_slice());
            assert!(meta_ranges().iter().any(|(s, e)| &meta >= s && &meta < e));
            assert!(
                !table_ranges(b"O", None)
                    .iter()
                    .any(|(s, e)| &meta >= s && &meta < e)
            );
        }
        let bounds: Vec<Vec<u8>> = vec![
            b"O".to_vec(),
            object("a", "a"),
            object("a", "a\0"),
            object("a", "ab"),
            after(&object("a", "a")),
            object("a-b", ""),
            b"Oa-".to_vec(),
            object("b", "z"),
        ];
        for (i, s) in bounds.iter().enumerate() {
            for e in bounds[i..].iter().map(Some).chain([None]) {
                let ranges = table_ranges(s, e.map(|e| e.as_slice()));
                for (r, o) in &records {
                    let want = o >= s && e.is_none_or(|e| o < e);
                    let got = ranges.iter().any(|(a, z)| r >= a && r < z);
                    assert_eq!(got, want, "{r:?} (route {o:?}) in [{s:?}, {e:?})");
                }
            }
        }
    }

    #[test]
    fn a_fence_routes_to_where_it_is_put_and_sorts_in_its_table_range() {
        for (b, k) in [("b", "k"), ("b", "k\0x"), ("b", ""), ("a-b", "é")] {
            let route = object(b, k);
            let f = fence_at(&route, 42).unwrap();
            assert_eq!(route_bucket(&route), Some(b.as_bytes()));
            assert_eq!(fence_nonce(&f), Some(42));
            assert_eq!(crate::index::keys::route(&f).as_ref(), route.as_slice());
            let (s, e) = table_range(tag::FENCE, &route, Some(&after(&route)));
            assert!(f >= s && f < e, "{b}/{k}");
            let (s, e) = table_range(tag::FENCE, &after(&route), None);
            assert!(!(f >= s && f < e), "{b}/{k} past its route");
        }
        assert_eq!(fence_at(b"Oabc", 1), None);
        assert_eq!(route_bucket(&bucket("b")), None);
    }

    #[test]
    fn object_keys_read_as_bucket_and_key() {
        assert_eq!(readable(&object("logs", "2026/11/23")), "logs/2026/11/23");
        assert_eq!(readable(&[b'G', 0, 1]), "G\\x00\\x01");
    }

    #[test]
    fn garbage_keys_carry_their_due_time() {
        let k = garbage("b", "k\0x", 42, &[1; 16]);
        assert_eq!(garbage_due(&k), Some(42));
        let later = garbage_due_at(&k, 4242);
        assert_eq!(garbage_due(&later), Some(4242));
        assert_eq!(later, garbage("b", "k\0x", 4242, &[1; 16]));
    }
}
