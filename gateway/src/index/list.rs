//! Listing of current objects: prefix, delimiter (common prefixes), marker and page size, over any
//! [`KvEngine`], in S3's byte-lexicographic order.
//!
//! Position is an exclusive *marker*: the last key or common prefix returned (or the client's
//! `marker` / `start-after`). Keys after it are listed; a common prefix is listed only if it sorts
//! after the marker, so resuming from a common prefix skips every key under it.

use super::engine::{EngineError, KvEngine};
use super::keys;

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

const SCAN_BATCH: usize = 1000;

/// Lists the keys under `base` (an index key prefix such as [`keys::objects_of`]), decoding values
/// with `decode`.
pub fn list<V, E>(
    engine: &dyn KvEngine,
    base: &[u8],
    q: &ListQuery,
    mut decode: impl FnMut(&[u8]) -> Result<V, E>,
) -> Result<ListPage<V>, E>
where
    E: From<EngineError>,
{
    let mut entries = Vec::new();
    let full = |suffix: &[u8]| [base, suffix].concat();
    let end = match keys::prefix_end(&full(q.prefix.as_bytes())) {
        Some(e) => e,
        None => return Ok(empty_page()),
    };
    // Inclusive scan start, in index-key bytes.
    let mut pos = full(q.prefix.as_bytes());
    if let Some(m) = &q.marker {
        let after_marker = keys::after(&full(m.as_bytes()));
        if after_marker > pos {
            pos = after_marker;
        }
    }
    'scan: while pos < end {
        let batch = engine.scan(&pos, &end, SCAN_BATCH)?;
        if batch.is_empty() {
            break;
        }
        for (k, v) in batch {
            let key_bytes = &k[base.len()..];
            let Ok(key) = std::str::from_utf8(key_bytes) else {
                pos = keys::after(&k);
                continue;
            };
            let rolled = q
                .delimiter
                .as_deref()
                .filter(|d| !d.is_empty())
                .and_then(|d| {
                    let rest = &key[q.prefix.len()..];
                    rest.find(d).map(|i| &key[..q.prefix.len() + i + d.len()])
                });
            if let Some(cp) = rolled {
                let skip_to = keys::prefix_end(&full(cp.as_bytes()));
                let listed_already = q.marker.as_deref().is_some_and(|m| cp <= m);
                if !listed_already {
                    if entries.len() == q.max_keys {
                        return Ok(truncated_page(entries));
                    }
                    entries.push(ListEntry::Prefix(cp.to_string()));
                }
                match skip_to {
                    Some(next) => pos = next,
                    None => break 'scan,
                }
                continue 'scan;
            }
            if entries.len() == q.max_keys {
                return Ok(truncated_page(entries));
            }
            entries.push(ListEntry::Object(key.to_string(), decode(&v)?));
            pos = keys::after(&k);
        }
    }
    Ok(ListPage {
        entries,
        truncated: false,
        next_marker: None,
    })
}

fn empty_page<V>() -> ListPage<V> {
    ListPage {
        entries: Vec::new(),
        truncated: false,
        next_marker: None,
    }
}

fn truncated_page<V>(entries: Vec<ListEntry<V>>) -> ListPage<V> {
    let next_marker = entries.last().map(|e| match e {
        ListEntry::Object(k, _) => k.clone(),
        ListEntry::Prefix(p) => p.clone(),
    });
    ListPage {
        truncated: next_marker.is_some(),
        entries,
        next_marker,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::index::engine::{MemEngine, WriteOp};

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
        list(e, &keys::objects_of("b"), q, |_| Ok::<(), EngineError>(())).unwrap()
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

    impl ListQuery {
        fn clone_without_marker(&self) -> ListQuery {
            ListQuery {
                marker: None,
                ..self.clone()
            }
        }
    }
}
