//! Random sequences of put / delete / list (with prefixes, delimiters and pagination) against the
//! index agree with a `BTreeMap` model.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cairn_gateway::index::engine::MemEngine;
use cairn_gateway::index::list::{ListEntry, ListQuery};
use cairn_gateway::index::records::{Blob, BucketRecord, ContentHeaders, ObjectData, ObjectRecord};
use cairn_gateway::index::{Index, IndexOptions, WriteCondition};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put(String, u8),
    Delete(String),
    List {
        prefix: String,
        delimiter: Option<String>,
        page: usize,
    },
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
    ]
}

fn record(v: u8) -> ObjectRecord {
    ObjectRecord {
        size: 1,
        etag: format!("{v:02x}"),
        last_modified_ms: 0,
        version_id: None,
        delete_marker: false,
        storage_class: "STANDARD".into(),
        headers: ContentHeaders::default(),
        user_metadata: BTreeMap::new(),
        checksum: None,
        data: ObjectData::Single(Blob::Inline(vec![v])),
    }
}

/// What a full listing (all pages) should return.
fn model_list(m: &BTreeMap<String, u8>, prefix: &str, delimiter: Option<&str>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for k in m.keys().filter(|k| k.starts_with(prefix)) {
        match delimiter.and_then(|d| k[prefix.len()..].find(d).map(|i| (i, d))) {
            Some((i, d)) => out.insert(format!("P:{}", &k[..prefix.len() + i + d.len()])),
            None => out.insert(format!("K:{k}={}", m[k])),
        };
    }
    // Keys and prefixes interleave in byte order of the key/prefix itself.
    let mut v: Vec<String> = out.into_iter().collect();
    v.sort_by(|a, b| a[2..].split('=').next().cmp(&b[2..].split('=').next()));
    v
}

async fn index_list(idx: &Index, prefix: &str, delimiter: Option<&str>, page: usize) -> Vec<String> {
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
                ListEntry::Object(k, r) => format!("K:{k}={}", u8::from_str_radix(&r.etag, 16).unwrap()),
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
            let idx = Index::new(Arc::new(MemEngine::default()), IndexOptions::default());
            idx.create_bucket(BucketRecord { name: "b".into(), created_ms: 0, owner: "o".into() }).await.unwrap();
            // A neighbouring bucket whose keys must never show up.
            idx.create_bucket(BucketRecord { name: "b-x".into(), created_ms: 0, owner: "o".into() }).await.unwrap();
            idx.put_object("b-x", "a", record(0), WriteCondition::None, vec![]).await.unwrap();
            let mut model: BTreeMap<String, u8> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        let old = idx.put_object("b", &k, record(v), WriteCondition::None, vec![]).await.unwrap();
                        assert_eq!(old.map(|r| r.etag), model.insert(k, v).map(|v| format!("{v:02x}")));
                    }
                    Op::Delete(k) => {
                        let old = idx.delete_object("b", &k, WriteCondition::None).await.unwrap();
                        assert_eq!(old.is_some(), model.remove(&k).is_some());
                    }
                    Op::List { prefix, delimiter, page } => {
                        let got = index_list(&idx, &prefix, delimiter.as_deref(), page).await;
                        assert_eq!(got, model_list(&model, &prefix, delimiter.as_deref()), "prefix {prefix:?} delimiter {delimiter:?} page {page}");
                    }
                }
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
