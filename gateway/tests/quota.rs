//! Bucket quotas through the admin API: uploads past the limit get `QuotaExceeded` (403), the
//! limit counts what was written since the last usage scan, and deletes count once the usage
//! is scanned again.

mod common;

use aws_sdk_s3::primitives::ByteStream;

async fn put(s3: &aws_sdk_s3::Client, key: &str, len: usize) -> Result<(), String> {
    s3.put_object()
        .bucket("quota")
        .key(key)
        .body(ByteStream::from(vec![7u8; len]))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&e).map(str::to_string);
            format!("{status:?} {code:?}")
        })
}

const REFUSED: &str = "Some(403) Some(\"QuotaExceeded\")";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_a_bucket_quota_are_refused() {
    let fleet = common::TestFleet::start().await;
    let s3 = fleet.client();
    s3.create_bucket().bucket("quota").send().await.unwrap();
    let admin = reqwest::Client::new();
    let url = format!("{}/admin/v1/buckets/quota/quota", fleet.admin());
    let token = fleet.fleet.secrets.admin_token.clone();
    let set = |body: serde_json::Value| admin.put(&url).bearer_auth(&token).json(&body).send();
    // (The fleet's health, with the scrubbers' repair backlog, while at it.)
    let health: serde_json::Value = admin
        .get(format!("{}/admin/v1/health", fleet.admin()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["repair_backlog"], 0, "{health}");
    assert_eq!(health["unrepairable_shards"], 0, "{health}");
    let r = set(serde_json::json!({})).await.unwrap();
    assert_eq!(r.status(), 400, "an empty quota is refused");
    let r = set(serde_json::json!({"maxBytes": 10_000, "maxObjects": 3}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got: serde_json::Value = admin
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        got,
        serde_json::json!({"maxBytes": 10_000, "maxObjects": 3})
    );

    put(&s3, "a", 4_000).await.unwrap();
    put(&s3, "b", 4_000).await.unwrap();
    assert_eq!(put(&s3, "c", 4_000).await.unwrap_err(), REFUSED, "bytes");
    put(&s3, "c", 1_000).await.unwrap();
    // An overwrite adds bytes but no object.
    put(&s3, "a", 500).await.unwrap();
    assert_eq!(put(&s3, "d", 10).await.unwrap_err(), REFUSED, "objects");
    // A multipart part past the byte limit is refused before it is stored.
    let up = s3
        .create_multipart_upload()
        .bucket("quota")
        .key("mp")
        .send()
        .await
        .unwrap();
    let part = s3
        .upload_part()
        .bucket("quota")
        .key("mp")
        .upload_id(up.upload_id().unwrap())
        .part_number(1)
        .body(ByteStream::from(vec![1u8; 5_000]))
        .send()
        .await;
    assert!(part.is_err(), "a part past the quota was stored");
    s3.abort_multipart_upload()
        .bucket("quota")
        .key("mp")
        .upload_id(up.upload_id().unwrap())
        .send()
        .await
        .unwrap();
    // Lifting the quota takes effect at once.
    let r = admin.delete(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 204);
    put(&s3, "d", 10).await.unwrap();

    // Deletes count once the usage is scanned again.
    set(serde_json::json!({"maxObjects": 3})).await.unwrap();
    assert_eq!(put(&s3, "e", 1).await.unwrap_err(), REFUSED);
    for k in ["a", "b"] {
        s3.delete_object()
            .bucket("quota")
            .key(k)
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(5_500)).await;
    put(&s3, "e", 1).await.unwrap();
    assert_eq!(put(&s3, "f", 1).await.unwrap_err(), REFUSED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_default_storage_class_applies_to_writes_that_name_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = common::dev_args(dir.path().join("data"));
    args.gateway.storage_classes =
        vec![cairn_gateway::storage_class::parse_storage_class("COLD=2+1").unwrap()];
    let fleet = common::TestFleet::start_with(dir, args).await;
    let s3 = fleet.client();
    s3.create_bucket().bucket("classy").send().await.unwrap();
    let admin = reqwest::Client::new();
    let url = format!("{}/admin/v1/buckets/classy/storage-class", fleet.admin());
    let token = fleet.fleet.secrets.admin_token.clone();
    let r = admin
        .put(&url)
        .bearer_auth(&token)
        .json(&serde_json::json!({"storageClass": "NOPE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "an unknown class is refused");
    let r = admin
        .put(&url)
        .bearer_auth(&token)
        .json(&serde_json::json!({"storageClass": "COLD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let class_of = |key: &'static str| {
        let s3 = s3.clone();
        async move {
            let h = s3
                .head_object()
                .bucket("classy")
                .key(key)
                .send()
                .await
                .unwrap();
            h.storage_class().map(|c| c.as_str().to_string())
        }
    };
    let body = || ByteStream::from(vec![3u8; 100_000]);
    s3.put_object()
        .bucket("classy")
        .key("default")
        .body(body())
        .send()
        .await
        .unwrap();
    assert_eq!(class_of("default").await.as_deref(), Some("COLD"));
    s3.put_object()
        .bucket("classy")
        .key("asked")
        .storage_class(aws_sdk_s3::types::StorageClass::Standard)
        .body(body())
        .send()
        .await
        .unwrap();
    assert_ne!(class_of("asked").await.as_deref(), Some("COLD"));
    let r = admin.delete(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 204);
    s3.put_object()
        .bucket("classy")
        .key("after")
        .body(body())
        .send()
        .await
        .unwrap();
    assert_ne!(class_of("after").await.as_deref(), Some("COLD"));
}
