//! Listing of current objects and of versions: prefix, delimiter (common prefixes), marker and page
//! size, over any [`KvEngine`], in S3's byte-lexicographic order.
//!
//! Position is an exclusive *marker*: the last key or common prefix returned (or the client's
//! `marker` / `start-after`). Keys after it are listed; a common prefix is listed only if it sorts
//! after the marker, so resuming from a common prefix skips every key under it.
//!
//! Both listings walk the current entries (`O`), one per key whatever its number of versions; a
//! version listing then reads each listed key's noncurrent versions (`V`), one range per key.

use super::keys;
use super::records::{self, ObjectRecord, RecordError};
use super::version::{self, VersionRef};
use cairn_kv::{EngineError, KvEngine};

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up to the first occurrence of this after the prefix.
    pub delimiter: Option<String>,
    /// Only keys (and common prefixes) sorting after this.
    pub marker: Option<String>,
    /// Most entries (keys + common prefixes) to return.
    pub max_keys: usize,
}

/// One entry of a page, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListEntry<V> {
    /// An object key and its value.
    Object(String, V),
    /// A common prefix.
    Prefix(String),
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage<V> {
    /// Keys and common prefixes, in order.
    pub entries: Vec<ListEntry<V>>,
    /// More entries follow.
    pub truncated: bool,
    /// The marker to resume after (the last entry), when truncated.
    pub next_marker: Option<String>,
}

/// Most records one scan of a listing reads. A scan reads one more than the page still needs
/// (so a full page knows whether anything follows), never more than this: a listing of 100 keys
/// reads about 100 records, not a thousand, and records can carry inline object bodies.
const SCAN_BATCH: usize = 1000;

/// Records the next scan of a walk reads when `wanted` more steps fill the page.
fn scan_limit(wanted: usize) -> usize {
    wanted.saturating_add(1).min(SCAN_BATCH)
}

/// One step of a walk over the keys of a listing.
enum Step<V> {
    /// A key that is listed, with its decoded value.
    Object(String, V),
    /// A common prefix (listed at its first listed key).
    Prefix(String),
}

/// Walks the keys under `base` (an index key prefix such as [`keys::objects_of`]) that start with
/// `prefix` and sort after `marker`, rolling keys up into common prefixes at `delimiter`. `decode`
/// returns `None` for keys that are not listed (delete markers): they are skipped and do not make
/// a common prefix appear. `visit` returns `false` to stop; `wanted` says how many more steps it
/// can take (each scan reads [`scan_limit`] of it).
#[allow(clippy::too_many_arguments)]
fn walk<V, E>(
    engine: &dyn KvEngine,
    base: &[u8],
    prefix: &str,
    delimiter: Option<&str>,
    marker: Option<&str>,
    mut decode: impl FnMut(&[u8]) -> Result<Option<V>, E>,
    mut visit: impl FnMut(Step<V>) -> Result<bool, E>,
    wanted: impl Fn() -> usize,
) -> Result<(), E>
where
    E: From<EngineError>,
{
    let full = |suffix: &[u8]| [base, suffix].concat();
    let Some(end) = keys::prefix_end(&full(prefix.as_bytes())) else {
        return Ok(());
    };
    let delimiter = delimiter.filter(|d| !d.is_empty());
    // Inclusive scan start, in index-key bytes.
    let mut pos = full(prefix.as_bytes());
    if let Some(m) = marker {
        let after_marker = keys::after(&full(m.as_bytes()));
        if after_marker > pos {
            pos = after_marker;
        }
    }
    'scan: while pos < end {
        let batch = engine.scan(&pos, &end, scan_limit(wanted()))?;
        if batch.is_empty() {
            break;
        }
        for (k, v) in batch {
            let key_bytes = &k[base.len()..];
            let Ok(key) = std::str::from_utf8(key_bytes) else {
                pos = keys::after(&k);
                continue;
            };
            let rolled = delimiter.and_then(|d| {
                let rest = &key[prefix.len()..];
                rest.find(d).map(|i| &key[..prefix.len() + i + d.len()])
            });
            if let Some(cp) = rolled {
                let listed_already = marker.is_some_and(|m| cp <= m);
                if !listed_already {
                    if decode(&v)?.is_none() {
                        pos = keys::after(&k);
                        continue;
                    }
                    if !visit(Step::Prefix(cp.to_string()))? {
                        return Ok(());
                    }
                }
                match keys::prefix_end(&full(cp.as_bytes())) {
                    Some(next) => pos = next,
                    None => break 'scan,
                }
                continue 'scan;
            }
            pos = keys::after(&k);
            if let Some(value) = decode(&v)?
                && !visit(Step::Object(key.to_string(), value))?
            {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Lists the keys under `base` (an index key prefix such as [`keys::objects_of`]), decoding values
/// with `decode`, which returns `None` for keys that are not to be listed (delete markers).
pub fn list<V, E>(
    engine: &dyn KvEngine,
    base: &[u8],
    q: &ListQuery,
    decode: impl FnMut(&[u8]) -> Result<Option<V>, E>,
) -> Result<ListPage<V>, E>
where
    E: From<EngineError>,
{
    let mut entries = Vec::new();
    let mut more = false;
    let listed = std::cell::Cell::new(0);
    walk(
        engine,
        base,
        &q.prefix,
        q.delimiter.as_deref(),
        q.marker.as_deref(),
        decode,
        |step| {
            if entries.len() == q.max_keys {
                more = true;
                return Ok(false);
            }
            entries.push(match step {
                Step::Object(k, v) => ListEntry::Object(k, v),
                Step::Prefix(p) => ListEntry::Prefix(p),
            });
            listed.set(entries.len());
            Ok(true)
        },
        || q.max_keys - listed.get(),
    )?;
    // With max-keys 0 there is no last entry to resume after: never truncated.
    let next_marker = entries
        .last()
        .filter(|_| more)
        .map(|e| entry_name(e).to_string());
    Ok(ListPage {
        truncated: next_marker.is_some(),
        entries,
        next_marker,
    })
}

fn entry_name<V>(e: &ListEntry<V>) -> &str {
    match e {
        ListEntry::Object(k, _) => k,
        ListEntry::Prefix(p) => p,
    }
}

/// What to list of a bucket's versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up to the first occurrence of this after the prefix.
    pub delimiter: Option<String>,
    /// Resume after this key (or common prefix)...
    pub key_marker: Option<String>,
    /// ...or, with a key marker, after this version of it.
    pub version_marker: Option<VersionRef>,
    /// Most entries (versions + common prefixes) to return.
    pub max_keys: usize,
}

/// One version in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedVersion {
    /// The version (a delete marker or an object).
    pub record: ObjectRecord,
    /// `true` for the current version of its key.
    pub latest: bool,
}

/// One page of a version listing: per key, newest version first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPage {
    /// Versions and common prefixes, in order.
    pub entries: Vec<ListEntry<ListedVersion>>,
    /// More entries follow.
    pub truncated: bool,
    /// When truncated: the key (or common prefix) to resume after...
    pub next_key_marker: Option<String>,
    /// ...and the version of it (as clients write it; absent after a common prefix).
    pub next_version_marker: Option<String>,
}

/// A version-id marker that names no version of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVersionMarker;

/// Lists the versions of `bucket` (a version-id marker of `null` must name an existing null
/// version). Reads the current entry of each key (`O`) and then its noncurrent versions (`V`).
pub fn list_versions<E>(
    engine: &dyn KvEngine,
    bucket: &str,
    q: &VersionQuery,
) -> Result<Result<VersionPage, UnknownVersionMarker>, E>
where
    E: From<EngineError> + From<RecordError>,
{
    let mut page = Pager {
        entries: Vec::new(),
        max: q.max_keys,
        more: false,
    };
    let decode = |v: &[u8]| records::decode::<ObjectRecord>(v).map_err(E::from);
    // First the rest of the versions of the marker key, if a version-id marker says where.
    if let (Some(km), Some(vm)) = (&q.key_marker, &q.version_marker) {
        let rolled = q
            .delimiter
            .as_deref()
            .filter(|d| !d.is_empty())
            .is_some_and(|d| km.starts_with(&q.prefix) && km[q.prefix.len()..].contains(d));
        if km.starts_with(&q.prefix)
            && !rolled
            && let Some(cur) = engine.get(&keys::object(bucket, km))?
        {
            let cur = decode(&cur)?;
            let bound = match vm {
                VersionRef::Id(id) => id.seq(),
                VersionRef::Null if cur.version_id.is_none() => cur.seq,
                VersionRef::Null => match cur.null_version_seq {
                    Some(s) => s,
                    None => return Ok(Err(UnknownVersionMarker)),
                },
            };
            if !page.push_key(engine, bucket, km, cur, Some(bound), &decode)? {
                return Ok(Ok(page.finish()));
            }
        }
    }
    let room = std::cell::Cell::new(page.max - page.entries.len());
    walk(
        engine,
        &keys::objects_of(bucket),
        &q.prefix,
        q.delimiter.as_deref(),
        q.key_marker.as_deref(),
        |v| decode(v).map(Some),
        |step| {
            let go_on = match step {
                Step::Prefix(p) => page.push(ListEntry::Prefix(p)),
                Step::Object(key, cur) => {
                    page.push_key(engine, bucket, &key, cur, None, &decode)?
                }
            };
            room.set(page.max - page.entries.len());
            Ok(go_on)
        },
        || room.get(),
    )?;
    Ok(Ok(page.finish()))
}

/// Collects one page; `push` answers `false` (and notes that more entries exist) once it is full.
struct Pager {
    entries: Vec<ListEntry<ListedVersion>>,
    max: usize,
    more: bool,
}

impl Pager {
    fn push(&mut self, e: ListEntry<ListedVersion>) -> bool {
        if self.entries.len() == self.max {
            self.more = true;
            return false;
        }
        self.entries.push(e);
        true
    }

    fn push_version(&mut self, key: &str, record: ObjectRecord, latest: bool) -> bool {
        self.push(ListEntry::Object(
            key.to_string(),
            ListedVersion { record, latest },
        ))
    }

    /// Pushes the versions of `key`, whose current entry was read as `cur`: `cur` and then the
    /// noncurrent versions, only those older than sequence `bound` when a version-id marker gives
    /// one. The current entry is read again afterwards: if a write changed it meanwhile (a new
    /// version, or the current one deleted and the next promoted), the key is listed again from the
    /// new state, so a page neither repeats nor misses a version.
    fn push_key<E: From<EngineError>>(
        &mut self,
        engine: &dyn KvEngine,
        bucket: &str,
        key: &str,
        mut cur: ObjectRecord,
        bound: Option<u64>,
        decode: &impl Fn(&[u8]) -> Result<ObjectRecord, E>,
    ) -> Result<bool, E> {
        const ATTEMPTS: usize = 8;
        for attempt in 1..=ATTEMPTS {
            let (mark, more) = (self.entries.len(), self.more);
            let (seq, id) = (cur.seq, cur.version_id.clone());
            let mut go_on = true;
            if bound.is_none_or(|b| seq < b) {
                go_on = self.push_version(key, cur, true);
            }
            if go_on {
                let start = match bound {
                    Some(b) => keys::after(&keys::version(bucket, key, b)),
                    None => keys::versions_of_key(bucket, key),
                };
                go_on = self.push_noncurrent(engine, bucket, key, start, seq, decode)?;
            }
            if attempt == ATTEMPTS {
                return Ok(go_on);
            }
            match engine.get(&keys::object(bucket, key))? {
                Some(v) => {
                    let now = decode(&v)?;
                    if now.seq == seq && now.version_id == id {
                        return Ok(go_on);
                    }
                    cur = now;
                }
                // Every version went meanwhile: list none.
                None => {
                    self.entries.truncate(mark);
                    self.more = more;
                    return Ok(true);
                }
            }
            self.entries.truncate(mark);
            self.more = more;
        }
        unreachable!("the last attempt returns")
    }

    /// Pushes the noncurrent versions of `key` from index key `start` on, those older than the
    /// current entry's sequence `below` (a version that became noncurrent after the current entry
    /// was read, and was current again by the time it was read again, is listed once, as current).
    fn push_noncurrent<E: From<EngineError>>(
        &mut self,
        engine: &dyn KvEngine,
        bucket: &str,
        key: &str,
        mut start: Vec<u8>,
        below: u64,
        decode: &impl Fn(&[u8]) -> Result<ObjectRecord, E>,
    ) -> Result<bool, E> {
        let end = keys::prefix_end(&keys::versions_of_key(bucket, key)).expect("tagged prefix");
        loop {
            // One more than fits, so a full page knows whether anything follows.
            let room = (self.max - self.entries.len()).min(SCAN_BATCH) + 1;
            let batch = engine.scan(&start, &end, room)?;
            let Some((last, _)) = batch.last() else {
                return Ok(true);
            };
            start = keys::after(last);
            let n = batch.len();
            for (_, v) in batch {
                let v = decode(&v)?;
                if v.seq < below && !self.push_version(key, v, false) {
                    return Ok(false);
                }
            }
            if n < room {
                return Ok(true);
            }
        }
    }

    fn finish(self) -> VersionPage {
        let last = self.entries.last().filter(|_| self.more);
        let (next_key_marker, next_version_marker) = match last {
            Some(ListEntry::Object(k, v)) => (
                Some(k.clone()),
                Some(version::display(v.record.version_id.as_deref()).to_string()),
            ),
            Some(ListEntry::Prefix(p)) => (Some(p.clone()), None),
            None => (None, None),
        };
        VersionPage {
            truncated: next_key_marker.is_some(),
            entries: self.entries,
            next_key_marker,
            next_version_marker,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use cairn_kv::{MemEngine, WriteOp};

    /// The model: S3's listing rules over a plain sorted set.
    fn model(keys: &BTreeSet<String>, q: &ListQuery) -> (Vec<ListEntry<()>>, bool) {
        let mut out: Vec<ListEntry<()>> = Vec::new();
        for k in keys {
            if !k.starts_with(&q.prefix) || q.marker.as_ref().is_some_and(|m| k <= m) {
                continue;
            }
            let cp = q
                .delimiter
                .as_deref()
                .filter(|d| !d.is_empty())
                .and_then(|d| {
                    k[q.prefix.len()..]
                        .find(d)
                        .map(|i| k[..q.prefix.len() + i + d.len()].to_string())
                });
            let entry = match cp {
                Some(cp) if q.marker.as_ref().is_some_and(|m| cp.as_str() <= m.as_str()) => {
                    continue;
                }
                Some(cp) => ListEntry::Prefix(cp),
                None => ListEntry::Object(k.clone(), ()),
            };
            if out.last() != Some(&entry) {
                out.push(entry);
            }
        }
        // With max-keys 0 there is no last entry to resume after: never truncated.
        let truncated = out.len() > q.max_keys && q.max_keys > 0;
        out.truncate(q.max_keys);
        (out, truncated)
    }

    fn engine_with(keys: &BTreeSet<String>) -> MemEngine {
        let e = MemEngine::default();
        let mut ops: Vec<WriteOp> = keys
            .iter()
            .map(|k| WriteOp::Put(keys::object("b", k), vec![]))
            .collect();
        // Neighbouring buckets must never leak into a listing.
        ops.push(WriteOp::Put(keys::object("a", "x"), vec![]));
        ops.push(WriteOp::Put(keys::object("b-c", "a"), vec![]));
        e.write(ops).unwrap();
        e
    }

    fn run(e: &MemEngine, q: &ListQuery) -> ListPage<()> {
        list(e, &keys::objects_of("b"), q, |_| {
            Ok::<_, EngineError>(Some(()))
        })
        .unwrap()
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        // A small alphabet with the delimiter makes prefixes and collisions common.
        proptest::collection::vec(
            prop::sample::select(vec!["a", "b", "/", "é", "z", "-"]),
            0..6,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn one_page_matches_the_model(
            keys in proptest::collection::btree_set(key_strategy(), 0..40),
            prefix in prop::sample::select(vec!["", "a", "a/", "b/a", "é"]),
            delimiter in prop::sample::select(vec![None, Some("/"), Some("a/"), Some("é")]),
            marker in proptest::option::of(key_strategy()),
            max_keys in 0usize..12,
        ) {
            let e = engine_with(&keys);
            let q = ListQuery {
                prefix: prefix.to_string(),
                delimiter: delimiter.map(str::to_string),
                marker,
                max_keys,
            };
            let page = run(&e, &q);
            let (expected, truncated) = model(&keys, &q);
            prop_assert_eq!(&page.entries, &expected);
            prop_assert_eq!(page.truncated, truncated);
        }

        #[test]
        fn paging_visits_everything_once(
            keys in proptest::collection::btree_set(key_strategy(), 0..40),
            delimiter in prop::sample::select(vec![None, Some("/")]),
            max_keys in 1usize..5,
        ) {
            let e = engine_with(&keys);
            let mut q = ListQuery { delimiter: delimiter.map(str::to_string), max_keys, ..Default::default() };
            let mut all = Vec::new();
            for _ in 0..100 {
                let page = run(&e, &q);
                all.extend(page.entries);
                if !page.truncated { break; }
                q.marker = page.next_marker;
            }
            let (expected, _) = model(&keys, &ListQuery { max_keys: usize::MAX, ..q.clone() }.clone_without_marker());
            prop_assert_eq!(all, expected);
        }
    }

    /// An engine that counts the records its scans return.
    struct Counting<'a>(&'a MemEngine, std::sync::atomic::AtomicUsize);

    impl KvEngine for Counting<'_> {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
            self.0.get(key)
        }
        fn write(&self, ops: Vec<WriteOp>) -> Result<(), EngineError> {
            self.0.write(ops)
        }
        fn scan(&self, s: &[u8], e: &[u8], limit: usize) -> Result<cairn_kv::Entries, EngineError> {
            let found = self.0.scan(s, e, limit)?;
            self.1
                .fetch_add(found.len(), std::sync::atomic::Ordering::Relaxed);
            Ok(found)
        }
        fn approximate_size(&self) -> u64 {
            0
        }
        fn approximate_range_size(&self, _: &[u8], _: &[u8]) -> u64 {
            0
        }
    }

    #[test]
    fn a_page_reads_about_as_many_records_as_it_lists() {
        let keys: BTreeSet<String> = (0..2000).map(|i| format!("k/{i:05}")).collect();
        let e = engine_with(&keys);
        let counting = Counting(&e, Default::default());
        let q = ListQuery {
            max_keys: 100,
            ..Default::default()
        };
        let page = list(&counting, &keys::objects_of("b"), &q, |_| {
            Ok::<_, EngineError>(Some(()))
        })
        .unwrap();
        assert_eq!(page.entries.len(), 100);
        assert!(page.truncated);
        // One more than the page, to know that more follow; not a batch of a thousand.
        let read = |c: &Counting<'_>| c.1.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(read(&counting), 101);
        // Rolled up at a delimiter, every key its own prefix: still about one record per entry.
        counting.1.store(0, std::sync::atomic::Ordering::Relaxed);
        let q = ListQuery {
            prefix: "k/".into(),
            delimiter: Some("0".into()),
            max_keys: 10,
            ..Default::default()
        };
        let page = list(&counting, &keys::objects_of("b"), &q, |_| {
            Ok::<_, EngineError>(Some(()))
        })
        .unwrap();
        assert_eq!(
            page.entries.len(),
            1,
            "every key under k/ rolls up into k/0"
        );
        assert!(read(&counting) <= 11, "read {}", read(&counting));
    }

    impl ListQuery {
        fn clone_without_marker(&self) -> ListQuery {
            ListQuery {
                marker: None,
                ..self.clone()
            }
        }
    }
}
