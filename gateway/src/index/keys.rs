//! Key encoding of the index. One keyspace, ordered as S3 lists: a one-byte table tag, then the
//! bucket, a 0 byte (bucket names never contain one), then the object key bytes.
//!
//! `O` keys hold the *current* entry of each object key (possibly a delete marker), so lists of
//! current objects stay one scan whatever the number of versions. Noncurrent versions live under
//! their own tag (`V`, bucket, 0, escaped key, terminator, inverted sequence), newest first, so the
//! versions of one key are one contiguous range and a version id (which carries its sequence) is
//! one point lookup.

/// Table tags (first key byte).
pub mod tag {
    /// Buckets: `B` bucket.
    pub const BUCKET: u8 = b'B';
    /// Bucket configuration documents (lifecycle, replication): `C` bucket 0 name.
    pub const CONFIG: u8 = b'C';
    /// Garbage (blobs to delete): `G` due-time (u64 BE ms) object-id.
    pub const GARBAGE: u8 = b'G';
    /// Access keys: `K` access-key-id.
    pub const ACCESS_KEY: u8 = b'K';
    /// Index metadata (partition map, format version): `M` name.
    pub const META: u8 = b'M';
    /// Current object entries: `O` bucket 0 key.
    pub const OBJECT: u8 = b'O';
    /// Uploaded parts: `P` upload-id part-number (u32 BE).
    pub const PART: u8 = b'P';
    /// Multipart uploads in progress: `U` bucket 0 key 0 upload-id.
    pub const UPLOAD: u8 = b'U';
    /// Noncurrent object versions: `V` bucket 0 escaped-key 0 0 (u64::MAX - sequence, BE).
    pub const VERSION: u8 = b'V';
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

/// Prefix of every noncurrent version of `key` (newest first under it).
pub fn versions_of_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = versions_of(bucket);
    escaped_key(&mut k, key);
    k
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
    let (body, seq) = rest.split_at(rest.len().checked_sub(8)?);
    let body = body.strip_suffix(&[0, 0])?;
    let mut key = Vec::with_capacity(body.len());
    let mut it = body.iter();
    while let Some(&b) = it.next() {
        key.push(b);
        if b == 0 && it.next() != Some(&0xff) {
            return None;
        }
    }
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
    with_tag(
        tag::UPLOAD,
        &[bucket.as_bytes(), key.as_bytes(), upload_id.as_bytes()],
    )
}

/// Prefix of every upload record of `bucket`.
pub fn uploads_of(bucket: &str) -> Vec<u8> {
    let mut k = with_tag(tag::UPLOAD, &[bucket.as_bytes()]);
    k.push(0);
    k
}

/// Key of one part of an upload.
pub fn part(upload_id: &str, part_number: u32) -> Vec<u8> {
    let mut k = parts_of(upload_id);
    k.extend_from_slice(&part_number.to_be_bytes());
    k
}

/// Prefix of every part of an upload (the id, then a 0, so no upload's prefix covers another's).
pub fn parts_of(upload_id: &str) -> Vec<u8> {
    let mut k = with_tag(tag::PART, &[upload_id.as_bytes()]);
    k.push(0);
    k
}

/// Key of an access key record.
pub fn access_key(id: &str) -> Vec<u8> {
    with_tag(tag::ACCESS_KEY, &[id.as_bytes()])
}

/// Key of a garbage record: due time first, so the collector scans in due order.
pub fn garbage(due_ms: u64, object_id: &[u8; 16]) -> Vec<u8> {
    let mut k = vec![tag::GARBAGE];
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(object_id);
    k
}

/// Key of a metadata record.
pub fn meta(name: &str) -> Vec<u8> {
    with_tag(tag::META, &[name.as_bytes()])
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The smallest key greater than `key`.
pub fn after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
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
        assert!(part("u", 2) < part("u", 10));
        assert!(part("u", 10000) < prefix_end(&parts_of("u")).unwrap());
        assert!(!part("uX", 1).starts_with(&parts_of("u")));
    }
}
