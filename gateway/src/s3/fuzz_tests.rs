//! Property tests with arbitrary and mutated inputs for every parser a client reaches (the
//! stable toolchain's stand-in for fuzz targets; they run in `cargo test` with a bounded number
//! of cases): Range headers, the XML bodies of DeleteObjects, CompleteMultipartUpload,
//! lifecycle and tagging (s3s parses, Cairn converts and validates), and the admin API's JSON.
//! The property is always the same: no input panics, and what is accepted is well-formed.

use proptest::prelude::*;
use s3s::dto::{BucketLifecycleConfiguration, CompletedMultipartUpload, Delete, Tagging};
use s3s::xml::{Deserialize, Deserializer};

use crate::bucket_config::lifecycle::LifecycleConfiguration;
use crate::bucket_config::replication::ReplicationConfiguration;

const LIFECYCLE: &str = r#"<LifecycleConfiguration><Rule><ID>r</ID><Status>Enabled</Status><Filter><And><Prefix>logs/</Prefix><Tag><Key>a</Key><Value>b</Value></Tag><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan></And></Filter><Transition><Days>30</Days><StorageClass>STANDARD</StorageClass></Transition><Expiration><Days>365</Days></Expiration><NoncurrentVersionExpiration><NoncurrentDays>7</NoncurrentDays><NewerNoncurrentVersions>2</NewerNoncurrentVersions></NoncurrentVersionExpiration><AbortIncompleteMultipartUpload><DaysAfterInitiation>3</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>"#;
const TAGGING: &str = r#"<Tagging><TagSet><Tag><Key>team</Key><Value>data</Value></Tag><Tag><Key>env</Key><Value>prod</Value></Tag></TagSet></Tagging>"#;
const DELETE: &str = r#"<Delete><Quiet>true</Quiet><Object><Key>a/b.txt</Key><VersionId>v1</VersionId></Object><Object><Key>c</Key></Object></Delete>"#;
const COMPLETE: &str = r#"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"abc"</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part><Part><PartNumber>2</PartNumber><ETag>"def"</ETag></Part></CompleteMultipartUpload>"#;

/// `seed` with bytes flipped, inserted, removed and cut off as `edits` say.
fn mutate(seed: &str, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut b = seed.as_bytes().to_vec();
    for &(at, op, byte) in edits {
        if b.is_empty() {
            break;
        }
        let at = at % b.len();
        match op % 4 {
            0 => b[at] = byte,
            1 => b.insert(at, byte),
            2 => {
                b.remove(at);
            }
            _ => b.truncate(at),
        }
    }
    b
}

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    let mut d = Deserializer::new(bytes);
    T::deserialize(&mut d).ok()
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn range_headers_never_panic_and_stay_inside_the_object(header in "[ -~]{0,40}", size in 0u64..1_000_000) {
        if let Ok(r) = s3s::dto::Range::parse(&header)
            && let Ok(range) = r.check(size)
        {
            prop_assert!(range.start <= range.end && range.end <= size);
        }
        let bytes_form = format!("bytes={header}");
        if let Ok(r) = s3s::dto::Range::parse(&bytes_form)
            && let Ok(range) = r.check(size)
        {
            prop_assert!(range.start <= range.end && range.end <= size);
        }
    }

    #[test]
    fn lifecycle_xml_never_panics(e in edits()) {
        let bytes = mutate(LIFECYCLE, &e);
        if let Some(c) = parse::<BucketLifecycleConfiguration>(&bytes)
            && let Ok(cfg) = super::lifecycle::from_dto(c)
            && let Ok(valid) = cfg.validate(&|c| c == "STANDARD", "STANDARD")
        {
            // What validates is stored as JSON and read back as itself.
            let json = serde_json::to_string(&valid).unwrap();
            let back: LifecycleConfiguration = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, valid);
        }
    }

    #[test]
    fn tagging_xml_never_panics(e in edits()) {
        let bytes = mutate(TAGGING, &e);
        if let Some(t) = parse::<Tagging>(&bytes)
            && let Ok(tags) = super::tag_set::from_xml(&t.tag_set)
        {
            prop_assert!(tags.len() <= 10);
        }
    }

    #[test]
    fn delete_and_complete_xml_never_panic(e in edits()) {
        let bytes = mutate(DELETE, &e);
        if let Some(d) = parse::<Delete>(&bytes) {
            for o in &d.objects {
                let _ = super::check_key(&o.key);
            }
        }
        let bytes = mutate(COMPLETE, &e);
        let _ = parse::<CompletedMultipartUpload>(&bytes);
    }

    #[test]
    fn admin_json_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..300), e in edits()) {
        let _ = serde_json::from_slice::<serde_json::Value>(&raw);
        let doc = r#"{"Rules":[{"ID":"r","Status":"Enabled","Filter":{"Prefix":"a/"},"Expiration":{"Days":3}}]}"#;
        let bytes = mutate(doc, &e);
        if let Ok(c) = serde_json::from_slice::<LifecycleConfiguration>(&bytes) {
            let _ = c.validate(&|c| c == "STANDARD", "STANDARD");
        }
        let repl = r#"{"Rules":[{"ID":"r","Priority":1,"Status":"Enabled","Filter":{"Prefix":""},"DeleteMarkerReplication":{"Status":"Disabled"},"Destination":{"Bucket":"arn:aws:s3:::b","Endpoint":"http://h:1","Credentials":{"AccessKeyId":"A","SecretAccessKey":"S"}}}]}"#;
        let bytes = mutate(repl, &e);
        if let Ok(c) = serde_json::from_slice::<ReplicationConfiguration>(&bytes) {
            let _ = c.validate();
        }
        for doc in [r#"{"name":"app","buckets":["b"]}"#, r#"{"maxBytes":10,"maxObjects":2}"#, r#"{"zone":"a","endpoint":"http://h:1"}"#, r#"{"ids":[1,2]}"#] {
            let bytes = mutate(doc, &e);
            let _ = serde_json::from_slice::<crate::admin::CreateKey>(&bytes);
            let _ = serde_json::from_slice::<crate::index::records::Quota>(&bytes);
            let _ = serde_json::from_slice::<serde_json::Value>(&bytes);
        }
    }
}
