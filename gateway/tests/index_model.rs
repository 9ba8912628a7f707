//! Random sequences of operations against the index agree with a `BTreeMap` model: put / delete /
//! list (with prefixes, delimiters and pagination) and partition splits and merges in an
//! unversioned bucket, and the same plus
//! versioning changes, version reads, permanent deletes, version listings and restarts in a
//! bucket whose versioning state changes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use cairn_gateway::index::keys;
use cairn_gateway::index::list::{ListEntry, ListQuery, VersionQuery};
use cairn_gateway::index::records::{Blob, BucketRecord, ObjectData, ObjectRecord, Versioning};
use cairn_gateway::index::{
    Deleted, Index, IndexOptions, Stamp, VersionRef, WriteCondition, version,
};
use cairn_kv::{KvEngine, MemEngine};
use proptest::prelude::*;

mod common;
use common::inline_record as record;

#[derive(Debug, Clone)]
enum Op {
    Put(String, u8),
    Delete(String),
    List {
        prefix: String,
        delimiter: Option<String>,
        page: usize,
    },
    /// Split the partition holding this key there.
    Split(String),
    /// Merge the `n`th object partition (modulo their count) with its right neighbour.
    Merge(usize),
}

fn key() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop::sample::select(vec!["a", "b", "/", "ü", "-"]), 1..6)
        .prop_map(|p| p.concat())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (key(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => key().prop_map(Op::Delete),
        1 => (
            prop::sample::select(vec!["", "a", "a/", "b"]),
            prop::sample::select(vec![None, Some("/"), Some("b")]),
            1usize..6
        )
            .prop_map(|(p, d, page)| Op::List {
                prefix: p.to_string(),
                delimiter: d.map(str::to_string),
                page
            }),
        1 => key().prop_map(Op::Split),
        1 => (0usize..8).prop_map(Op::Merge),
    ]
}

/// Every partition's range scanned on its own: together they hold exactly the model's keys, each
/// once, in order (a split or merge never loses or duplicates a key); and the map survives a
/// reopen.
fn check_partitions(engine: &Arc<MemEngine>, idx: &Index, model: &BTreeMap<String, u8>) {
    let map = idx.partition_map();
    map.validate().unwrap();
    let bucket_prefix = keys::objects_of("b");
    let mut seen = Vec::new();
    for p in &map.partitions {
        for (k, _) in engine.scan(&p.start, &p.end_bound(), usize::MAX).unwrap() {
            assert!(p.contains(&k));
            if k.starts_with(&bucket_prefix) {
                seen.push(k);
            }
        }
    }
    let expected: Vec<Vec<u8>> = model.keys().map(|k| keys::object("b", k)).collect();
    assert_eq!(seen, expected);
    let reopened = Index::new(engine.clone(), IndexOptions::default());
    assert_eq!(reopened.partition_map(), map);
}

fn bucket(name: &str) -> BucketRecord {
    BucketRecord::new(name, "o", 0)
}

/// The common prefix `k` rolls up into, if any.
fn rolled<'a>(k: &'a str, prefix: &str, delimiter: Option<&str>) -> Option<&'a str> {
    let d = delimiter?;
    k[prefix.len()..]
        .find(d)
        .map(|i| &k[..prefix.len() + i + d.len()])
}

/// What a full listing (all pages) should return.
fn model_list(m: &BTreeMap<String, u8>, prefix: &str, delimiter: Option<&str>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for k in m.keys().filter(|k| k.starts_with(prefix)) {
        match rolled(k, prefix, delimiter) {
            Some(cp) => out.insert(format!("P:{cp}")),
            None => out.insert(format!("K:{k}={}", m[k])),
        };
    }
    // Keys and prefixes interleave in byte order of the key/prefix itself.
    let mut v: Vec<String> = out.into_iter().collect();
    v.sort_by(|a, b| a[2..].split('=').next().cmp(&b[2..].split('=').next()));
    v
}

async fn index_list(
    idx: &Index,
    prefix: &str,
    delimiter: Option<&str>,
    page: usize,
) -> Vec<String> {
    let mut q = ListQuery {
        prefix: prefix.into(),
        delimiter: delimiter.map(str::to_string),
        marker: None,
        max_keys: page,
    };
    let mut out = Vec::new();
    for _ in 0..1000 {
        let p = idx.list_objects("b", q.clone()).await.unwrap();
        for e in p.entries {
            out.push(match e {
                ListEntry::Object(k, r) => {
                    format!("K:{k}={}", u8::from_str_radix(&r.etag, 16).unwrap())
                }
                ListEntry::Prefix(p) => format!("P:{p}"),
            });
        }
        if !p.truncated {
            return out;
        }
        q.marker = p.next_marker;
    }
    panic!("listing did not end");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn index_agrees_with_model(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let engine = Arc::new(MemEngine::default());
            let idx = Index::new(engine.clone(), IndexOptions::default());
            idx.create_bucket(bucket("b")).await.unwrap();
            // A neighbouring bucket whose keys must never show up.
            idx.create_bucket(bucket("b-x")).await.unwrap();
            idx.put_object("b-x", "a", record(0), WriteCondition::None, vec![], Stamp::now()).await.unwrap();
            let mut model: BTreeMap<String, u8> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        let w = idx.put_object("b", &k, record(v), WriteCondition::None, vec![], Stamp::now()).await.unwrap();
                        assert_eq!(w.previous.map(|r| r.etag), model.insert(k, v).map(|v| format!("{v:02x}")));
                        assert_eq!(w.version_id, None);
                    }
                    Op::Delete(k) => {
                        let d = idx.delete_object("b", &k, WriteCondition::None, Stamp::now()).await.unwrap();
                        let Deleted::Removed(old) = d else { panic!("a marker in an unversioned bucket") };
                        assert_eq!(old.is_some(), model.remove(&k).is_some());
                    }
                    Op::List { prefix, delimiter, page } => {
                        let got = index_list(&idx, &prefix, delimiter.as_deref(), page).await;
                        assert_eq!(got, model_list(&model, &prefix, delimiter.as_deref()), "prefix {prefix:?} delimiter {delimiter:?} page {page}");
                    }
                    Op::Split(k) => {
                        let at = keys::object("b", &k);
                        let p = idx.partition_map().lookup(&at).clone();
                        let done = idx.split_partition(p.id, at.clone()).await;
                        assert_eq!(done.is_ok(), at != p.start, "{done:?}");
                        check_partitions(&engine, &idx, &model);
                    }
                    Op::Merge(n) => {
                        let map = idx.partition_map();
                        let objects: Vec<_> = map.partitions.iter().filter(|p| !p.is_meta()).collect();
                        let left = objects[n % objects.len()];
                        let done = idx.merge_partitions(left.id).await;
                        assert_eq!(done.is_ok(), left.end.is_some(), "{done:?}");
                        check_partitions(&engine, &idx, &model);
                    }
                }
            }
            check_partitions(&engine, &idx, &model);
            Ok::<(), TestCaseError>(())
        })?;
    }
}

// ---- versions ----

/// One version in the model: its id (`None` = null) and a value (`None` = delete marker).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ver {
    id: Option<String>,
    value: Option<u8>,
}

#[derive(Debug, Clone)]
enum VOp {
    Put(String, u8),
    Delete(String),
    /// Deletes the `n`th version (newest first, modulo the count) of the key permanently; with
    /// `bogus`, a well-formed id the key never had.
    DeleteVersion(String, usize, bool),
    GetVersion(String, usize),
    SetVersioning(Versioning),
    ListVersions {
        prefix: String,
        delimiter: Option<String>,
        page: usize,
    },
    List {
        prefix: String,
        delimiter: Option<String>,
        page: usize,
    },
    /// A new `Index` over the same engine: nothing may live only in memory.
    Restart,
}

fn vkey() -> impl Strategy<Value = String> {
    // Few distinct keys, so keys get many versions; a 0 byte exercises the version-key escaping.
    proptest::collection::vec(prop::sample::select(vec!["a", "b", "/", "\u{0}"]), 1..4)
        .prop_map(|p| p.concat())
}

fn listing() -> impl Strategy<Value = (String, Option<String>, usize)> {
    (
        prop::sample::select(vec!["", "a", "a/", "b"]),
        prop::sample::select(vec![None, Some("/"), Some("\u{0}")]),
        1usize..6,
    )
        .prop_map(|(p, d, page)| (p.to_string(), d.map(str::to_string), page))
}

fn vop() -> impl Strategy<Value = VOp> {
    prop_oneof![
        6 => (vkey(), any::<u8>()).prop_map(|(k, v)| VOp::Put(k, v)),
        3 => vkey().prop_map(VOp::Delete),
        3 => (vkey(), 0usize..8, prop::bool::weighted(0.1)).prop_map(|(k, n, b)| VOp::DeleteVersion(k, n, b)),
        2 => (vkey(), 0usize..8).prop_map(|(k, n)| VOp::GetVersion(k, n)),
        1 => prop::sample::select(vec![Versioning::Enabled, Versioning::Suspended]).prop_map(VOp::SetVersioning),
        2 => listing().prop_map(|(prefix, delimiter, page)| VOp::ListVersions { prefix, delimiter, page }),
        1 => listing().prop_map(|(prefix, delimiter, page)| VOp::List { prefix, delimiter, page }),
        1 => Just(VOp::Restart),
    ]
}

fn vref(id: &Option<String>) -> VersionRef {
    match id {
        None => VersionRef::Null,
        Some(id) => VersionRef::parse(id).unwrap(),
    }
}

fn show(key: &str, id: Option<&str>, value: Option<u8>, latest: bool) -> String {
    format!(
        "V:{key}:{}:{}:{latest}",
        version::display(id),
        value.map_or("marker".to_string(), |v| v.to_string())
    )
}

fn model_versions(
    m: &BTreeMap<String, Vec<Ver>>,
    prefix: &str,
    delimiter: Option<&str>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (k, versions) in m.iter().filter(|(k, _)| k.starts_with(prefix)) {
        match rolled(k, prefix, delimiter) {
            Some(cp) => {
                let p = format!("P:{cp}");
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            None => {
                for (i, v) in versions.iter().enumerate() {
                    out.push(show(k, v.id.as_deref(), v.value, i == 0));
                }
            }
        }
    }
    out
}

fn model_current(m: &BTreeMap<String, Vec<Ver>>) -> BTreeMap<String, u8> {
    m.iter()
        .filter_map(|(k, v)| v[0].value.map(|x| (k.clone(), x)))
        .collect()
}

async fn index_versions(
    idx: &Index,
    prefix: &str,
    delimiter: Option<&str>,
    page: usize,
) -> Vec<String> {
    let mut q = VersionQuery {
        prefix: prefix.into(),
        delimiter: delimiter.map(str::to_string),
        key_marker: None,
        version_marker: None,
        max_keys: page,
    };
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let p = idx.list_versions("b", q.clone()).await.unwrap();
        assert!(p.entries.len() <= page);
        for e in p.entries {
            out.push(match e {
                ListEntry::Object(k, v) => {
                    let value = (!v.record.delete_marker).then(|| v.record.data_byte());
                    show(&k, v.record.version_id.as_deref(), value, v.latest)
                }
                ListEntry::Prefix(p) => format!("P:{p}"),
            });
        }
        if !p.truncated {
            return out;
        }
        q.key_marker = p.next_key_marker;
        q.version_marker = p
            .next_version_marker
            .map(|v| VersionRef::parse(&v).unwrap());
    }
    panic!("version listing did not end");
}

trait DataByte {
    fn data_byte(&self) -> u8;
}

impl DataByte for ObjectRecord {
    fn data_byte(&self) -> u8 {
        match &self.data {
            ObjectData::Single(Blob::Inline(d)) => d[0],
            other => panic!("unexpected data {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn versions_agree_with_model(ops in proptest::collection::vec(vop(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let engine = Arc::new(MemEngine::default());
            let mut idx = Index::new(engine.clone(), IndexOptions::default());
            idx.create_bucket(bucket("b")).await.unwrap();
            idx.create_bucket(bucket("b-x")).await.unwrap();
            idx.set_versioning("b-x", Versioning::Enabled).await.unwrap();
            idx.put_object("b-x", "a", record(0), WriteCondition::None, vec![], Stamp::now()).await.unwrap();
            let mut state = Versioning::Unversioned;
            let mut model: BTreeMap<String, Vec<Ver>> = BTreeMap::new();
            let mut seen_ids: HashSet<String> = HashSet::new();
            let mut clock = 0i64;
            let mut fresh_id = |id: &Option<String>| {
                if let Some(id) = id {
                    assert!(seen_ids.insert(id.clone()), "version id {id} reused");
                }
            };
            for op in ops {
                clock += 1;
                let stamp = Stamp::at(clock, clock as u64 * 7919);
                match op {
                    VOp::Put(k, v) => {
                        let w = idx.put_object("b", &k, record(v), WriteCondition::None, vec![], stamp).await.unwrap();
                        assert_eq!(w.versioning, state);
                        assert_eq!(w.version_id.is_some(), state == Versioning::Enabled);
                        fresh_id(&w.version_id);
                        let versions = model.entry(k).or_default();
                        match state {
                            Versioning::Unversioned => versions.clear(),
                            Versioning::Suspended => versions.retain(|x| x.id.is_some()),
                            Versioning::Enabled => {}
                        }
                        versions.insert(0, Ver { id: w.version_id, value: Some(v) });
                    }
                    VOp::Delete(k) => {
                        let d = idx.delete_object("b", &k, WriteCondition::None, stamp).await.unwrap();
                        match (state, d) {
                            (Versioning::Unversioned, Deleted::Removed(old)) => {
                                assert_eq!(old.is_some(), model.remove(&k).is_some());
                            }
                            (Versioning::Unversioned, d) => panic!("{d:?} in an unversioned bucket"),
                            (_, Deleted::Marker { version_id }) => {
                                assert_eq!(version_id.is_some(), state == Versioning::Enabled);
                                fresh_id(&version_id);
                                let versions = model.entry(k).or_default();
                                if state == Versioning::Suspended {
                                    versions.retain(|x| x.id.is_some());
                                }
                                versions.insert(0, Ver { id: version_id, value: None });
                            }
                            (_, d) => panic!("{d:?} in a versioned bucket"),
                        }
                    }
                    VOp::DeleteVersion(k, n, bogus) => {
                        let target = match model.get(&k) {
                            Some(vs) if !bogus => Some(vs[n % vs.len()].clone()),
                            _ => None,
                        };
                        let r = match &target {
                            Some(t) => vref(&t.id),
                            None => VersionRef::Id(cairn_gateway::index::VersionId::new(n as u64 + 1, 42)),
                        };
                        let removed = idx.delete_version("b", &k, r, stamp).await.unwrap();
                        match target {
                            Some(t) => {
                                let removed = removed.expect("the version existed");
                                assert_eq!(removed.version_id, t.id);
                                assert_eq!(removed.delete_marker, t.value.is_none());
                                let versions = model.get_mut(&k).unwrap();
                                versions.retain(|x| x.id != t.id);
                                if versions.is_empty() {
                                    model.remove(&k);
                                }
                            }
                            None => assert_eq!(removed, None),
                        }
                    }
                    VOp::GetVersion(k, n) => {
                        let Some(vs) = model.get(&k) else {
                            assert_eq!(idx.get_object("b", &k).await.unwrap(), None);
                            continue;
                        };
                        let want = &vs[n % vs.len()];
                        let (rec, latest) = idx.get_version("b", &k, vref(&want.id)).await.unwrap().expect("version exists");
                        assert_eq!(latest, n % vs.len() == 0);
                        assert_eq!(rec.version_id, want.id);
                        assert_eq!((!rec.delete_marker).then(|| rec.data_byte()), want.value);
                        let cur = idx.get_object("b", &k).await.unwrap().unwrap();
                        assert_eq!(cur.version_id, vs[0].id);
                    }
                    VOp::SetVersioning(s) => {
                        idx.set_versioning("b", s).await.unwrap();
                        state = s;
                    }
                    VOp::ListVersions { prefix, delimiter, page } => {
                        let got = index_versions(&idx, &prefix, delimiter.as_deref(), page).await;
                        assert_eq!(got, model_versions(&model, &prefix, delimiter.as_deref()), "prefix {prefix:?} delimiter {delimiter:?} page {page}");
                    }
                    VOp::List { prefix, delimiter, page } => {
                        let got = index_list(&idx, &prefix, delimiter.as_deref(), page).await;
                        assert_eq!(got, model_list(&model_current(&model), &prefix, delimiter.as_deref()));
                    }
                    VOp::Restart => {
                        idx = Index::new(engine.clone(), IndexOptions::default());
                    }
                }
            }
            // Everything the model holds is there, and the neighbour was never touched.
            assert_eq!(index_versions(&idx, "", None, 1000).await, model_versions(&model, "", None));
            assert_eq!(idx.list_versions("b-x", VersionQuery { max_keys: 10, ..Default::default() }).await.unwrap().entries.len(), 1);
            Ok::<(), TestCaseError>(())
        })?;
    }
}

/// A version listing read while writers add versions and delete current ones shows every key's
/// versions once each, newest first, the first of them the latest.
#[test]
fn version_listings_stay_consistent_under_concurrent_writes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let idx = Index::new(Arc::new(MemEngine::default()), IndexOptions::default());
        idx.create_bucket(bucket("b")).await.unwrap();
        idx.set_versioning("b", Versioning::Enabled).await.unwrap();
        for v in 0..20 {
            idx.put_object(
                "b",
                "k",
                record(v),
                WriteCondition::None,
                vec![],
                Stamp::now(),
            )
            .await
            .unwrap();
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (idx, stop) = (idx.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u8;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n = n.wrapping_add(1);
                    idx.put_object(
                        "b",
                        "k",
                        record(n),
                        WriteCondition::None,
                        vec![],
                        Stamp::now(),
                    )
                    .await
                    .unwrap();
                    let cur = idx.get_object("b", "k").await.unwrap().unwrap();
                    let v = VersionRef::parse(cur.version_id.as_deref().unwrap()).unwrap();
                    idx.delete_version("b", "k", v, Stamp::now()).await.unwrap();
                }
            })
        };
        for _ in 0..2000 {
            let page = idx
                .list_versions(
                    "b",
                    VersionQuery {
                        max_keys: 1000,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let seqs: Vec<(u64, bool)> = page
                .entries
                .iter()
                .map(|e| match e {
                    ListEntry::Object(_, v) => (v.record.seq, v.latest),
                    ListEntry::Prefix(p) => panic!("prefix {p}"),
                })
                .collect();
            assert!(seqs.len() >= 20, "{seqs:?}");
            assert!(seqs[0].1 && seqs[1..].iter().all(|s| !s.1), "{seqs:?}");
            assert!(
                seqs.windows(2).all(|w| w[0].0 > w[1].0),
                "repeated or out of order: {seqs:?}"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.await.unwrap();
    });
}

/// A commit whose intent record was already collected (the upload outlived its timeout) is
/// refused, so no entry ever points at shards the garbage collector may have deleted.
#[tokio::test]
async fn commit_after_the_intent_was_collected_is_refused() {
    use cairn_gateway::index::IndexError;

    let idx = Index::new(Arc::new(MemEngine::default()), IndexOptions::default());
    idx.create_bucket(bucket("b")).await.unwrap();
    let blob = common::stored_blob(9);
    let mut rec = record(1);
    rec.data = ObjectData::Single(Blob::Stored(blob.clone()));
    // A live intent commits.
    let intent = idx.record_intent("b", "ok", &blob, 0).await.unwrap();
    idx.put_object(
        "b",
        "ok",
        rec.clone(),
        WriteCondition::None,
        vec![intent],
        Stamp::now(),
    )
    .await
    .unwrap();
    // An intent the collector already took does not.
    let intent = idx.record_intent("b", "late", &blob, 0).await.unwrap();
    let due: Vec<Vec<u8>> = idx
        .due_garbage(u64::MAX - 1, 100, None, usize::MAX)
        .await
        .unwrap()
        .due
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    idx.remove_garbage(due).await.unwrap();
    let err = idx
        .put_object(
            "b",
            "late",
            rec,
            WriteCondition::None,
            vec![intent],
            Stamp::now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, IndexError::IntentExpired), "{err:?}");
    assert!(idx.get_object("b", "late").await.unwrap().is_none());
}
