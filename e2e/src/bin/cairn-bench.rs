//! `cairn-bench`: an S3 load generator for any endpoint and credentials.
//!
//! Runs one workload (put, get, head, list, delete or mixed) at a fixed concurrency, bounded by a
//! duration and an operation count, and prints ops/s, MB/s and p50/p90/p99 latency. Objects for
//! get/head/delete/mixed are prepared first (outside the measured window).
//!
//! Example: `cairn-bench --endpoint http://127.0.0.1:9000 --op put --size 1M --concurrency 8 --duration 20s`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use cairn_e2e::stats::Stats;
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    Put,
    Get,
    Head,
    List,
    Delete,
    /// 60% get, 30% put, 5% head, 5% list.
    Mixed,
}

/// How object keys are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KeyOrder {
    Sequential,
    Hashed,
}

/// S3 load generator.
#[derive(Debug, Parser)]
#[command(name = "cairn-bench", version)]
struct Args {
    /// S3 endpoint URL; several (comma-separated) spread the workers over them (one gateway
    /// each, round robin).
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL_S3",
        default_value = "http://127.0.0.1:9000",
        value_delimiter = ','
    )]
    endpoint: Vec<String>,
    /// Prefix of list requests (`--op list`).
    #[arg(long, default_value = "bench/")]
    list_prefix: String,
    /// Delimiter of list requests (`--op list`), e.g. `/`.
    #[arg(long)]
    list_delimiter: Option<String>,
    /// Access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    /// Secret key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY")]
    secret_key: String,
    /// Region used for signing.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// Bucket (created if missing).
    #[arg(long, default_value = "cairn-bench")]
    bucket: String,
    /// Workload.
    #[arg(long, value_enum, default_value = "put")]
    op: Op,
    /// Object size (e.g. 4K, 1M, 64M).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    size: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Longest measured time.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Most operations in the measured window.
    #[arg(long, default_value_t = 100_000)]
    max_ops: u64,
    /// Objects prepared for get/head/delete/mixed.
    #[arg(long, default_value_t = 64)]
    objects: u64,
    /// Key names: `sequential` (`bench/00000000`, ...: an append stream, every write at the end
    /// of the keyspace) or `hashed` (`bench/` then 16 hex digits of a hash of the number: one
    /// hot prefix whose writes spread over its whole range).
    #[arg(long, value_enum, default_value = "sequential")]
    keys: KeyOrder,
    /// Disable the SDK's default request checksums (CRC32).
    #[arg(long)]
    no_checksums: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (n, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    n.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("not a size: {s}"))
}

fn client(a: &Args, endpoint: &str) -> aws_sdk_s3::Client {
    let mut conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(a.region.clone()))
        .credentials_provider(Credentials::new(
            &a.access_key,
            &a.secret_key,
            None,
            None,
            "bench",
        ))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http());
    if a.no_checksums {
        conf = conf.request_checksum_calculation(
            aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
        );
    }
    aws_sdk_s3::Client::from_conf(conf.build())
}

fn key(a: &Args, i: u64) -> String {
    match a.keys {
        KeyOrder::Sequential => format!("bench/{i:08}"),
        KeyOrder::Hashed => format!("bench/{:016x}", splitmix64(i)),
    }
}

/// A bijective mix of `i` (SplitMix64's finaliser): distinct numbers give distinct keys.
fn splitmix64(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

async fn one(
    s3: &aws_sdk_s3::Client,
    a: &Args,
    op: Op,
    i: u64,
    body: &Bytes,
) -> Result<u64, String> {
    let err = |e: String| e;
    match op {
        Op::Put => {
            s3.put_object()
                .bucket(&a.bucket)
                .key(key(a, i))
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .map_err(|e| err(format!("{e:?}")))?;
            Ok(a.size)
        }
        Op::Get => {
            let r = s3
                .get_object()
                .bucket(&a.bucket)
                .key(key(a, i % a.objects))
                .send()
                .await
                .map_err(|e| err(format!("{e:?}")))?;
            let data = r.body.collect().await.map_err(|e| e.to_string())?;
            Ok(data.into_bytes().len() as u64)
        }
        Op::Head => {
            s3.head_object()
                .bucket(&a.bucket)
                .key(key(a, i % a.objects))
                .send()
                .await
                .map_err(|e| err(format!("{e:?}")))?;
            Ok(0)
        }
        Op::List => {
            s3.list_objects_v2()
                .bucket(&a.bucket)
                .prefix(&a.list_prefix)
                .set_delimiter(a.list_delimiter.clone())
                .max_keys(100)
                .send()
                .await
                .map_err(|e| err(format!("{e:?}")))?;
            Ok(0)
        }
        Op::Delete => {
            s3.delete_object()
                .bucket(&a.bucket)
                .key(key(a, i))
                .send()
                .await
                .map_err(|e| err(format!("{e:?}")))?;
            Ok(0)
        }
        Op::Mixed => unreachable!("mixed picks a concrete op"),
    }
}

fn pick_mixed(i: u64) -> Op {
    match rand::random_range(0..100u32) {
        0..60 => Op::Get,
        60..90 if i > 0 => Op::Put,
        90..95 => Op::Head,
        _ => Op::List,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Arc::new(Args::parse());
    let clients: Vec<_> = a.endpoint.iter().map(|e| client(&a, e)).collect();
    let s3 = clients[0].clone();
    if s3.head_bucket().bucket(&a.bucket).send().await.is_err() {
        s3.create_bucket().bucket(&a.bucket).send().await?;
    }
    let body: Bytes = (0..a.size)
        .map(|i| (i * 31 % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let prepare = matches!(a.op, Op::Get | Op::Head | Op::Delete | Op::Mixed);
    if prepare {
        let n = if a.op == Op::Delete {
            a.max_ops.min(10_000)
        } else {
            a.objects
        };
        eprintln!("preparing {n} objects of {} bytes...", a.size);
        for i in 0..n {
            one(&s3, &a, Op::Put, i, &body).await?;
        }
    }
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + a.duration;
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..a.concurrency {
        let s3 = clients[w % clients.len()].clone();
        let (a, next, body) = (a.clone(), next.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= a.max_ops {
                    break;
                }
                let op = if a.op == Op::Mixed {
                    pick_mixed(i)
                } else {
                    a.op
                };
                let t = Instant::now();
                match one(&s3, &a, op, i, &body).await {
                    Ok(bytes) => stats.record(t.elapsed(), bytes),
                    Err(e) => {
                        if stats.errors == 0 {
                            eprintln!("error: {e}");
                        }
                        stats.errors += 1;
                    }
                }
            }
            stats
        }));
    }
    let mut stats = Stats::default();
    for w in workers {
        stats.merge(w.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "op={:?} size={} concurrency={} ops={} errors={} time={:.1}s",
        a.op,
        a.size,
        a.concurrency,
        stats.ops(),
        stats.errors,
        secs
    );
    println!(
        "ops/s={:.1} MB/s={:.1} p50={:.2}ms p90={:.2}ms p99={:.2}ms",
        stats.ops() as f64 / secs,
        stats.bytes as f64 / secs / 1e6,
        ms(stats.percentile(50.0)),
        ms(stats.percentile(90.0)),
        ms(stats.percentile(99.0))
    );
    if stats.errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}
