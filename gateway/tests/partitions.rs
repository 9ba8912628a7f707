//! Load-based partitioning through a real gateway: a hot prefix of sequential timestamp keys (the
//! pattern S3's request-rate guide warns about) drives splits; every key stays listed, in order,
//! through the splits and through the merges that follow once the load stops. Manual splits and
//! merges go through the admin API. Thresholds are lowered so a debug build reaches them.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;

/// Writes per second that make a partition hot in this test.
const WRITE_THRESHOLD: f64 = 20.0;
/// Objects written (bounded load).
const OBJECTS: usize = 600;

fn fleet_args(dir: &std::path::Path) -> cairn_gateway::config::DevArgs {
    let mut args = common::dev_args(dir.to_path_buf());
    let g = &mut args.gateway;
    g.split_write_threshold = WRITE_THRESHOLD;
    g.split_read_threshold = 1e9;
    g.split_cooldown = Duration::from_secs(2);
    g.partition_load_half_life = Duration::from_secs(1);
    g.merge_quiet_period = Duration::from_secs(2);
    args
}

struct Admin {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    async fn partitions(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/admin/v1/partitions", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn count(&self) -> usize {
        self.partitions().await["partitions"]
            .as_array()
            .unwrap()
            .len()
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}/admin/v1/partitions/{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// Every key of the bucket, page by page (pages of 37 so pages straddle partition boundaries).
async fn list_all(s3: &aws_sdk_s3::Client) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("hot")
            .max_keys(37)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return keys;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_timestamp_prefix_splits_and_everything_stays_listed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let args = fleet_args(dir.path());
    let fleet = common::TestFleet::start_with(dir, args).await;
    let s3 = fleet.client();
    let admin = Admin {
        url: fleet.admin(),
        token: fleet.fleet.secrets.admin_token.clone(),
        http: reqwest::Client::new(),
    };
    s3.create_bucket().bucket("hot").send().await.unwrap();
    assert_eq!(
        admin.count().await,
        2,
        "meta partition and one object partition"
    );

    // Sequential timestamp keys from 4 writers, claimed in order: an append stream, five times
    // the write threshold, for about six seconds.
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut writers = Vec::new();
    for _ in 0..4 {
        let (s3, next) = (s3.clone(), next.clone());
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= OBJECTS || Instant::now() > deadline {
                    return written;
                }
                let key = format!(
                    "logs/2026-11-23T10:{:02}:{:02}.{:03}Z",
                    i / 6000,
                    (i / 100) % 60,
                    i % 100 * 10
                );
                s3.put_object()
                    .bucket("hot")
                    .key(&key)
                    .body(ByteStream::from(key.clone().into_bytes()))
                    .send()
                    .await
                    .unwrap();
                written.push(key);
                // Paced (about 100 writes/s in all) so the load lasts several rebalancing ticks.
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }));
    }
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    written.sort();
    assert_eq!(written.len(), OBJECTS, "the load loop hit its time bound");

    let after_load = admin.partitions().await;
    let parts = after_load["partitions"].as_array().unwrap().len();
    assert!(parts >= 3, "no split under the hot prefix: {after_load}");
    let splits = common::metric(
        &fleet.endpoint(),
        "cairn_index_partition_splits_total{reason=\"load\"}",
    )
    .await;
    assert!(splits >= 1.0, "splits metric {splits}");
    // Writes were counted against the object partitions, and the admin API shows them.
    let load = after_load["load"].as_array().unwrap();
    assert_eq!(load.len(), parts);
    assert!(
        load.iter()
            .any(|l| l["writesPerSecond"].as_f64().unwrap() > 0.0)
    );

    // Every key, once, in order, across the partition boundaries; and a delimiter list.
    assert_eq!(list_all(&s3).await, written);
    let rolled = s3
        .list_objects_v2()
        .bucket("hot")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<_> = rolled
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["logs/"]);
    for key in [&written[0], &written[OBJECTS / 2], &written[OBJECTS - 1]] {
        let got = s3.get_object().bucket("hot").key(key).send().await.unwrap();
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes(),
            key.as_bytes()
        );
    }

    // Load gone: the cold partitions merge back into one, and nothing is lost on the way.
    let merge_deadline = Instant::now() + Duration::from_secs(90);
    while admin.count().await > 2 {
        assert!(
            Instant::now() < merge_deadline,
            "{}",
            admin.partitions().await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let merges = common::metric(&fleet.endpoint(), "cairn_index_partition_merges_total").await;
    assert!(merges >= 1.0);
    assert_eq!(list_all(&s3).await, written);

    // Manual split through the admin API at a chosen key, and a refused one.
    let map = admin.partitions().await;
    let object_partition = map["partitions"][1]["id"].as_u64().unwrap();
    let split = admin
        .post(
            &format!("{object_partition}/split"),
            serde_json::json!({"bucket": "hot", "key": &written[100]}),
        )
        .await;
    assert_eq!(split.status(), 200);
    let again = admin
        .post(
            &format!("{object_partition}/split"),
            serde_json::json!({"bucket": "hot", "key": &written[200]}),
        )
        .await;
    assert_eq!(again.status(), 409, "the key is in the other half now");
    assert_eq!(admin.count().await, 3);
    assert_eq!(list_all(&s3).await, written);
    let merged = admin
        .post(&format!("{object_partition}/merge"), serde_json::json!({}))
        .await;
    assert_eq!(merged.status(), 200);
    assert_eq!(admin.count().await, 2);
}
