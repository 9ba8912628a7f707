//! What the end-to-end suites share: a fleet directory that stops its fleet when dropped, S3
//! clients, and the admin API's views of replication, partitions and replica digests.
#![allow(dead_code)] // each suite uses some of these

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use cairn_e2e::fleet::{self, FleetFile, FleetSpec};

/// The bucket the suites write to.
pub const BUCKET: &str = "shared";
/// The fleet's directory. Dropped (also when a test fails), it stops every process of the fleet
/// before the directory goes, so a failing test leaves nothing running.
pub struct FleetDir {
    dir: tempfile::TempDir,
    stopped: bool,
}

impl FleetDir {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            stopped: false,
        }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops the fleet, checking that it stopped.
    pub fn down(&mut self) {
        self.stopped = true;
        fleet::down(self.path(), Duration::from_secs(10)).unwrap();
    }
}

impl Drop for FleetDir {
    fn drop(&mut self) {
        if !self.stopped && self.path().join("fleet.json").exists() {
            let _ = fleet::down(self.path(), Duration::from_secs(5));
        }
        // A failed test shows the end of each gateway's log (CI keeps nothing else), and its
        // whole fleet (logs, data) is kept for a look when CAIRN_E2E_KEEP names a directory.
        if std::thread::panicking() {
            print_gateway_log_tails(self.path());
        }
        if std::thread::panicking()
            && let Some(keep) = std::env::var_os("CAIRN_E2E_KEEP")
        {
            let to = std::path::Path::new(&keep).join(format!("fleet-{}", std::process::id()));
            let copied = std::process::Command::new("cp")
                .arg("-r")
                .arg(self.path())
                .arg(&to)
                .status();
            eprintln!("kept the failed fleet in {} ({copied:?})", to.display());
        }
    }
}

/// Prints the warnings and errors (at most the last 30) of every gateway log under `dir`.
fn print_gateway_log_tails(dir: &std::path::Path) {
    let Ok(logs) = std::fs::read_dir(dir.join("logs")) else {
        return;
    };
    let mut paths: Vec<_> = logs
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("gw-"))
        })
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let notable: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        eprintln!(
            "---- {} (warnings and errors, last 30) ----",
            path.display()
        );
        for line in &notable[notable.len().saturating_sub(30)..] {
            eprintln!("{}", line.chars().take(400).collect::<String>());
        }
    }
}

/// The directory with the cairn binaries, or `None` (saying that `test` is skipped) without them.
pub fn fleet_binaries(test: &str) -> Option<std::path::PathBuf> {
    let bin_dir = fleet::default_bin_dir();
    if bin_dir.join("cairn-gateway").exists() && bin_dir.join("cairn-storage-node").exists() {
        return Some(bin_dir);
    }
    eprintln!(
        "SKIPPED {test} test: {} lacks the cairn binaries (run cargo test --workspace)",
        bin_dir.display()
    );
    None
}

/// Starts `gateways` gateways with `gateway_args` and two storage nodes in each of three zones,
/// from `base_port` on.
pub fn fleet_of(
    dir: &FleetDir,
    bin_dir: std::path::PathBuf,
    gateways: usize,
    base_port: u16,
    gateway_args: Vec<String>,
) -> FleetFile {
    fleet::up(&FleetSpec {
        dir: dir.path().to_path_buf(),
        bin_dir,
        gateways,
        zones: 3,
        nodes_per_zone: 2,
        base_port,
        gateway_args,
    })
    .unwrap()
}

pub fn client(endpoint: &str, f: &FleetFile) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            &f.access_key,
            &f.secret_key,
            None,
            None,
            "t",
        ))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Gateway `g`'s view of the index group (`GET /admin/v1/partitions`), if it answers.
pub async fn replication(f: &FleetFile, g: usize) -> Option<serde_json::Value> {
    let resp = reqwest::Client::new()
        .get(format!("{}/admin/v1/partitions", f.gateways[g].admin))
        .bearer_auth(&f.admin_token)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = resp.json().await.ok()?;
    body.get("replication").cloned()
}

/// The index of the gateway that leads, once all of `alive` agree on one.
pub async fn leader(f: &FleetFile, alive: &[usize]) -> usize {
    // Generous: debug builds on two shared cores, and CI runs these fleets side by side.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut seen = BTreeSet::new();
        for &g in alive {
            let id = replication(f, g).await.and_then(|r| r["leader"].as_u64());
            seen.insert(id);
        }
        if seen.len() == 1
            && let Some(Some(id)) = seen.first()
        {
            return *id as usize - 1;
        }
        assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn body_of(key: &str) -> Vec<u8> {
    // Small bodies are kept inline in the index, larger ones erasure-coded: both kinds.
    let len = if key.ends_with('0') { 200_000 } else { 1_000 };
    key.bytes().cycle().take(len).collect()
}

pub async fn list_all(s3: &aws_sdk_s3::Client) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .max_keys(100)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return keys;
        }
    }
}

/// Every acknowledged key is listed and readable byte-exactly through every gateway in
/// `through`; the listing is sorted, has no duplicates and nothing never written.
pub async fn check_everything(
    f: &FleetFile,
    through: &[usize],
    acked: &BTreeSet<String>,
    attempted: &BTreeSet<String>,
) {
    for &g in through {
        let s3 = client(&f.gateways[g].s3, f);
        let listed = list_all(&s3).await;
        let mut sorted = listed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            listed, sorted,
            "gateway {g}: list out of order or duplicated"
        );
        let listed: BTreeSet<String> = listed.into_iter().collect();
        let missing: Vec<_> = acked.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "gateway {g} lost acknowledged keys: {missing:?}"
        );
        let unknown: Vec<_> = listed.difference(attempted).collect();
        assert!(
            unknown.is_empty(),
            "gateway {g} lists keys never written: {unknown:?}"
        );
        for key in acked.iter().step_by(7) {
            let got = s3
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .unwrap();
            let bytes = got.body.collect().await.unwrap().into_bytes();
            assert!(bytes == body_of(key), "gateway {g}: {key} differs");
        }
    }
    replicas_identical(f, through).await;
}

/// Waits until, group by group, every gateway of `gateways` holding a replica of the group
/// reports it at the same applied index, then checks that those replicas hold exactly the same
/// records (`GET /admin/v1/index/digest`). Every group must be held by the gateways that hold
/// the meta group (all of them) or, for data groups, by three of them or by all when fewer.
pub async fn replicas_identical(f: &FleetFile, gateways: &[usize]) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // group → [(gateway, applied index, group digest)]
        let mut by_group: BTreeMap<u64, Vec<(u64, serde_json::Value, serde_json::Value)>> =
            BTreeMap::new();
        let mut map_versions = BTreeSet::new();
        let mut unanswered = false;
        for &g in gateways {
            // A digest waits for every group's read barrier: one that does not come within
            // 10 s is asked again until the deadline (and said, so a slow one shows in the
            // test's output), as the replicas are what this checks.
            let d = match digest(&http, f, g).await {
                Ok(d) => d,
                Err(e) => {
                    assert!(Instant::now() < deadline, "gateway {g} digest: {e}");
                    eprintln!("gateway {g} digest: {e}; asking again");
                    unanswered = true;
                    break;
                }
            };
            map_versions.insert(d["map_version"].to_string());
            for group in d["groups"].as_array().cloned().unwrap_or_default() {
                let id = group["group"].as_u64().unwrap();
                let at = group["applied_index"].clone();
                by_group.entry(id).or_default().push((g as u64, at, group));
            }
        }
        let settled = !unanswered
            && map_versions.len() == 1
            && by_group.iter().all(|(id, replicas)| {
                let wanted = if *id == 1 {
                    gateways.len()
                } else {
                    gateways.len().min(3)
                };
                let at: BTreeSet<String> = replicas.iter().map(|r| r.1.to_string()).collect();
                replicas.len() >= wanted && at.len() == 1
            });
        if settled {
            for (id, replicas) in &by_group {
                let (first_gateway, _, first) = &replicas[0];
                for (g, _, d) in &replicas[1..] {
                    assert_eq!(
                        d, first,
                        "gateways {g} and {first_gateway} applied group {id} to the same index \
                         but hold different records"
                    );
                }
            }
            let held: Vec<(u64, Vec<u64>)> = by_group
                .iter()
                .map(|(id, r)| (*id, r.iter().map(|x| x.0).collect()))
                .collect();
            eprintln!("replicas identical, group by group (on gateways): {held:?}");
            return;
        }
        let positions: Vec<_> = by_group
            .iter()
            .map(|(id, r)| {
                (
                    *id,
                    r.iter().map(|x| (x.0, x.1.clone())).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert!(
            Instant::now() < deadline,
            "replicas never at the same applied indexes: {positions:?} (map versions \
             {map_versions:?})"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Gateway `g`'s digest of its index replicas (`GET /admin/v1/index/digest`).
async fn digest(
    http: &reqwest::Client,
    f: &FleetFile,
    g: usize,
) -> Result<serde_json::Value, String> {
    let resp = http
        .get(format!("{}/admin/v1/index/digest", f.gateways[g].admin))
        .bearer_auth(&f.admin_token)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        return Err(format!(
            "HTTP {status}: {}",
            resp.text().await.unwrap_or_default()
        ));
    }
    resp.json().await.map_err(|e| e.to_string())
}

/// Every group of the fleet as gateway `g` sees it: those it runs (`replication.groups`) and
/// those only other gateways run (`replication.remote_groups`).
pub async fn fleet_groups(f: &FleetFile, g: usize) -> Vec<serde_json::Value> {
    let Some(r) = replication(f, g).await else {
        return Vec::new();
    };
    let mut all = r["groups"].as_array().cloned().unwrap_or_default();
    all.extend(r["remote_groups"].as_array().cloned().unwrap_or_default());
    all
}

/// Gateway `g`'s per-partition load (`load` of `GET /admin/v1/partitions`).
pub async fn partition_load(f: &FleetFile, g: usize) -> Vec<serde_json::Value> {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/admin/v1/partitions", f.gateways[g].admin))
        .bearer_auth(&f.admin_token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["load"].as_array().unwrap().clone()
}

/// Gateway `g`'s partition map (`version`, `next_id`, `partitions`), read after its read barrier.
pub async fn partition_map(f: &FleetFile, g: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = reqwest::Client::new()
            .get(format!("{}/admin/v1/partitions", f.gateways[g].admin))
            .bearer_auth(&f.admin_token)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(resp) = resp
            && let Ok(mut body) = resp.json::<serde_json::Value>().await
            && let Some(obj) = body.as_object_mut()
        {
            obj.remove("replication");
            obj.remove("load");
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "gateway {g} serves no partition map"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The voters gateway `g` reports, once it answers.
/// Gateway `g`'s view of `(voters, learners)`, once it answers and every index group it hosts
/// (a partition each) has those same members: a change is made group by group.
pub async fn members(f: &FleetFile, g: usize) -> Option<(BTreeSet<u64>, BTreeSet<u64>)> {
    let r = replication(f, g).await?;
    let meta = (id_set(&r, "voters")?, id_set(&r, "learners")?);
    let groups = r["groups"].as_array()?;
    let agree = groups.iter().all(|group| {
        Some(&meta.0) == id_set(group, "voters").as_ref()
            && Some(&meta.1) == id_set(group, "learners").as_ref()
    });
    agree.then_some(meta)
}

/// The gateway ids listed in `field` of a replication status; `None` without that field (a
/// status leaves out an empty `retiring`).
pub fn id_set(status: &serde_json::Value, field: &str) -> Option<BTreeSet<u64>> {
    Some(
        status[field]
            .as_array()?
            .iter()
            .filter_map(|v| v.as_u64())
            .collect(),
    )
}

/// `POST /admin/v1/partitions/{path}` with `body` through gateway `g`.
pub async fn post_partitions(
    f: &FleetFile,
    g: usize,
    path: String,
    body: serde_json::Value,
) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!(
            "{}/admin/v1/partitions/{path}",
            f.gateways[g].admin
        ))
        .bearer_auth(&f.admin_token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
}

/// Splits the last partition at `key` of `bucket` through gateway `g`; returns the partition's
/// id.
pub async fn split_last(f: &FleetFile, g: usize, bucket: &str, key: &str) -> serde_json::Value {
    let map = partition_map(f, g).await;
    let last = map["partitions"].as_array().unwrap().last().unwrap()["id"].clone();
    let body = serde_json::json!({"bucket": bucket, "key": key});
    let split = post_partitions(f, g, format!("{last}/split"), body).await;
    assert!(split.is_success(), "split: HTTP {split}");
    last
}

/// The object groups (all but the meta group) gateway `g` hosts.
pub async fn data_groups(f: &FleetFile, g: usize) -> usize {
    replication(f, g)
        .await
        .and_then(|r| r["groups"].as_array().cloned())
        .map_or(0, |groups| {
            groups
                .iter()
                .filter(|g| g["objects_from"].is_string())
                .count()
        })
}

/// PUTs `key` of [`BUCKET`] (its body from [`body_of`]) through `s3`; the SDK's error, if any.
pub async fn put(s3: &aws_sdk_s3::Client, key: &str) -> Result<(), String> {
    s3.put_object()
        .bucket(BUCKET)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body_of(key)))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}
