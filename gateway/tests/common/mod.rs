//! A dev fleet (six real storage-node servers and a gateway, in this process, on loopback ports)
//! for integration tests, and an `aws-sdk-s3` client for it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use cairn_gateway::config::{DevArgs, GatewayArgs};
use cairn_gateway::dev::DevFleet;

/// `n` consecutive free ports below the kernel's ephemeral range (so no outgoing connection can
/// take one of them while a test restarts a server on it).
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Wrapping inside 20000..32000 (the ephemeral range starts at 32768).
    let offset = (std::process::id() % 500) as u16 * 24;
    loop {
        let start = 20_000 + (offset + NEXT.fetch_add(n, Ordering::Relaxed)) % (12_000 - n);
        if (start..start + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return start;
        }
    }
}

/// Logs (warnings and up, or `RUST_LOG`) into the test's captured output, shown when it fails.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,aws_smithy=warn".into()),
        )
        .try_init();
}

/// Settings of a test fleet; tweak before [`TestFleet::start`].
pub fn dev_args(data: PathBuf) -> DevArgs {
    let base = free_ports(8);
    DevArgs {
        data,
        node_base_port: base,
        scrub_rate: 0,
        scrub_interval: std::time::Duration::from_secs(3600),
        gateway: GatewayArgs {
            listen: format!("127.0.0.1:{}", base + 6).parse().unwrap(),
            admin_listen: format!("127.0.0.1:{}", base + 7).parse().unwrap(),
            inline_threshold: 64 * 1024,
            stripe_size: 1 << 20,
            data_shards: 4,
            parity_shards: 2,
            storage_classes: Vec::new(),
            lifecycle_day_length: std::time::Duration::from_secs(86_400),
            lifecycle_rate: 1000,
            failpoint_merge_crash_file: None,
            tls_cert: None,
            tls_key: None,
            gc_delay: std::time::Duration::from_millis(200),
            gc_interval: std::time::Duration::from_millis(200),
            upload_timeout: std::time::Duration::from_secs(3600),
            region: "us-east-1".into(),
            domain: None,
            split_write_threshold: 3500.0,
            split_read_threshold: 5500.0,
            split_size_limit: 512 << 20,
            split_cooldown: std::time::Duration::from_secs(30),
            merge_quiet_period: std::time::Duration::from_secs(600),
            partition_load_half_life: std::time::Duration::from_secs(10),
            max_connections: 4096,
            header_timeout: std::time::Duration::from_secs(30),
            stall_timeout: std::time::Duration::from_secs(60),
            allow_sigv2: false,
            // The suites read metrics on the S3 port (e2e/tests/security.rs checks the default).
            public_metrics: true,
        },
    }
}

/// A running fleet and its temporary directory.
pub struct TestFleet {
    pub fleet: DevFleet,
    pub args: DevArgs,
    pub dir: tempfile::TempDir,
}

impl TestFleet {
    /// A fleet with default test settings.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let args = dev_args(dir.path().to_path_buf());
        Self::start_with(dir, args).await
    }

    /// A fleet with the given settings (whose data dir should be inside `dir`).
    pub async fn start_with(dir: tempfile::TempDir, args: DevArgs) -> Self {
        init_tracing();
        let fleet = cairn_gateway::dev::start(&args)
            .await
            .expect("dev fleet starts");
        Self { fleet, args, dir }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.fleet.gateway.s3_addr)
    }

    pub fn admin(&self) -> String {
        format!("http://{}", self.fleet.gateway.admin_addr)
    }

    /// A client with the root credentials.
    pub fn client(&self) -> aws_sdk_s3::Client {
        client(
            &self.endpoint(),
            &self.fleet.secrets.access_key,
            &self.fleet.secrets.secret_key,
        )
    }
}

/// An `aws-sdk-s3` client over plain HTTP with path-style addressing.
pub fn client(endpoint: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "test"))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Like [`client`], without retries (each call is one request, so a test sees exactly what the
/// gateway answered) and with every call bounded by `timeout`.
pub fn client_no_retry(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    timeout: std::time::Duration,
) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::retry::RetryConfig;
    use aws_sdk_s3::config::timeout::TimeoutConfig;
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "test"))
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(timeout)
                .connect_timeout(std::time::Duration::from_secs(5))
                .build(),
        )
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The HTTP status and S3 error code of a failed SDK call (no status for a failure without a
/// response: timeout, connection error...).
pub fn error_status<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> (Option<u16>, Option<String>)
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = match e {
        aws_sdk_s3::error::SdkError::ServiceError(s) => s.err().code().map(str::to_string),
        _ => None,
    };
    (status, code)
}

/// The value of the unlabelled sample `name` on `http://ADDR/metrics` (0 if absent).
pub async fn metric(s3_endpoint: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{s3_endpoint}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse::<f64>().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// Every shard file under a storage node's data directory, as (object id hex, shard index, path).
pub fn shard_files(node_data_dir: &std::path::Path) -> Vec<(String, u8, PathBuf)> {
    let mut out = Vec::new();
    let Ok(prefixes) = std::fs::read_dir(node_data_dir.join("shards")) else {
        return out;
    };
    for p in prefixes.flatten() {
        let Ok(files) = std::fs::read_dir(p.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if let Some((id, idx)) = name.rsplit_once('.')
                && let Ok(idx) = idx.parse::<u8>()
            {
                out.push((id.to_string(), idx, f.path()));
            }
        }
    }
    out.sort();
    out
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An object record of one inline byte `v` (its ETag `v` in hex), for tests driving the index
/// directly.
pub fn inline_record(v: u8) -> cairn_gateway::index::records::ObjectRecord {
    use cairn_gateway::index::records::{Blob, ContentHeaders, ObjectData, ObjectRecord};
    ObjectRecord {
        size: 1,
        etag: format!("{v:02x}"),
        last_modified_ms: 0,
        version_id: None,
        delete_marker: false,
        seq: 0,
        null_version_seq: None,
        noncurrent_since_ms: None,
        storage_class: "STANDARD".into(),
        headers: ContentHeaders::default(),
        user_metadata: std::collections::BTreeMap::new(),
        checksum: None,
        tags: Default::default(),
        data: ObjectData::Single(Blob::Inline(vec![v])),
    }
}

/// The keys of bucket `b` under `prefix`, listed through `idx` in pages of `page`, following
/// the markers.
pub async fn index_keys(
    idx: &cairn_gateway::index::Index,
    prefix: &str,
    page: usize,
) -> Vec<String> {
    use cairn_gateway::index::list::{ListEntry, ListQuery};
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let q = ListQuery {
            prefix: prefix.to_string(),
            delimiter: None,
            marker: marker.clone(),
            max_keys: page,
        };
        let got = idx.list_objects("b", q).await.unwrap();
        for e in &got.entries {
            if let ListEntry::Object(k, _) = e {
                out.push(k.clone());
            }
        }
        if !got.truncated {
            return out;
        }
        marker = got.next_marker;
    }
}

/// A stored (erasure-coded) blob description with id bytes `id`, placed on six made-up nodes:
/// for index tests that need blob references (garbage, intents), never read.
pub fn stored_blob(id: u8) -> cairn_gateway::index::records::StoredBlob {
    use cairn_storage_node::codec::ErasureProfile;
    use cairn_storage_node::format::PlacementEntry;
    use cairn_storage_node::ids::ObjectId;
    cairn_gateway::index::records::StoredBlob {
        object_id: ObjectId::from_bytes([id; 16]),
        profile: ErasureProfile::new(4, 2).unwrap(),
        stripe_size: 1 << 20,
        length: 100_000,
        placement: (0..6)
            .map(|i| PlacementEntry {
                node: format!("n{i}").parse().unwrap(),
                endpoint: format!("http://127.0.0.1:{}", 7000 + i),
            })
            .collect(),
        stripe_digests: Default::default(),
    }
}
