//! Erasure-coding throughput: our `Codec` (reed-solomon-erasure inside) vs raw reed-solomon-simd vs
//! reed-solomon-erasure 6 (simd-accel), single thread, 1 MiB stripes.
//!
//! Run: `cargo bench -p cairn-storage-node --bench codec [-- --seconds F]`.
//! MB/s counts 10^6 bytes of stripe *data* (not parity) per second. "reconstruct" loses the
//! first m data shards (the most expensive case) and restores them.
//!
//! The rows differ in what they include, on purpose:
//! - `cairn Codec` is what the storage node pays: splitting/padding the stripe into owned
//!   shards and returning owned parity (encode); allocating the restored shards (reconstruct).
//! - `reed-solomon-simd raw` encodes pre-split shards and only borrows the engine's output,
//!   which shows what the wrapper's copies cost.
//! - `reed-solomon-erasure` encodes pre-split shards in place; its reconstruct allocates the
//!   restored shards (like ours) and caches the inverted matrix per erasure pattern.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cairn_storage_node::codec::{Codec, ErasureProfile, shard_len};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use reed_solomon_erasure::galois_8::ReedSolomon;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

/// Bytes of data per stripe.
const STRIPE: usize = 1_048_576;
/// Profiles measured, as (k, m).
const PROFILES: [(u8, u8); 3] = [(4, 2), (6, 3), (10, 4)];

fn main() {
    let seconds = parse_seconds();
    let budget = Duration::from_secs_f64(seconds);
    // A short warm-up fills caches, grows engine buffers and lets the CPU clock settle.
    let warmup = Duration::from_secs_f64((seconds / 5.0).min(0.25));

    let mut data = vec![0u8; STRIPE];
    StdRng::seed_from_u64(0x5eed).fill_bytes(&mut data);

    println!("stripe = {STRIPE} bytes of data, {seconds} s per measurement, single thread");
    println!();
    println!("| crate | profile | encode MB/s | reconstruct MB/s |");
    println!("|---|---|---:|---:|");
    for (k, m) in PROFILES {
        let profile = ErasureProfile::new(k, m).expect("valid profile");
        let rows = [
            (
                "cairn Codec (reed-solomon-erasure)",
                bench_codec(profile, &data, warmup, budget),
            ),
            (
                "reed-solomon-simd raw",
                bench_simd_raw(profile, &data, warmup, budget),
            ),
            (
                "reed-solomon-erasure 6",
                bench_erasure(profile, &data, warmup, budget),
            ),
        ];
        for (name, (enc, rec)) in rows {
            println!("| {name} | {profile} | {enc:.0} | {rec:.0} |");
        }
    }
}

/// `--seconds F` (default 1.0); everything else (e.g. cargo's `--bench`) is ignored.
fn parse_seconds() -> f64 {
    let mut seconds = 1.0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = if arg == "--seconds" {
            args.next()
        } else {
            arg.strip_prefix("--seconds=").map(str::to_owned)
        };
        if let Some(v) = value {
            match v.parse::<f64>() {
                Ok(s) if s > 0.0 && s.is_finite() => seconds = s,
                _ => eprintln!("ignoring invalid --seconds value {v:?}"),
            }
        }
    }
    seconds
}

/// Runs `f` for `warmup`, then for at least `budget`; returns MB/s of stripe data.
fn throughput(warmup: Duration, budget: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    while start.elapsed() < warmup {
        f();
    }
    let start = Instant::now();
    let mut iterations = 0u64;
    let elapsed = loop {
        f();
        iterations += 1;
        let elapsed = start.elapsed();
        if elapsed >= budget {
            break elapsed;
        }
    };
    iterations as f64 * STRIPE as f64 / elapsed.as_secs_f64() / 1e6
}

/// Our wrapper: `encode_stripe` and `reconstruct` with the first m data shards missing.
fn bench_codec(
    profile: ErasureProfile,
    data: &[u8],
    warmup: Duration,
    budget: Duration,
) -> (f64, f64) {
    let m = profile.parity_shards();
    let mut codec = Codec::new(profile);
    let encode = throughput(warmup, budget, || {
        black_box(codec.encode_stripe(black_box(data)).expect("encode"));
    });

    let full = codec.encode_stripe(data).expect("encode");
    let mut shards: Vec<Option<Vec<u8>>> = full.iter().cloned().map(Some).collect();
    let reconstruct = throughput(warmup, budget, || {
        for slot in &mut shards[..m] {
            *slot = None;
        }
        codec
            .reconstruct(black_box(&mut shards))
            .expect("reconstruct");
    });
    assert!(
        shards.iter().zip(&full).all(|(s, f)| s.as_ref() == Some(f)),
        "Codec restored wrong bytes"
    );
    (encode, reconstruct)
}

/// reed-solomon-simd used directly on pre-split shards, borrowing its output.
fn bench_simd_raw(
    profile: ErasureProfile,
    data: &[u8],
    warmup: Duration,
    budget: Duration,
) -> (f64, f64) {
    let (k, m) = (profile.data_shards(), profile.parity_shards());
    let len = shard_len(data.len(), k);
    let originals = split(data, k, len);

    let mut encoder = ReedSolomonEncoder::new(k, m, len).expect("encoder");
    let encode = throughput(warmup, budget, || {
        for shard in &originals {
            encoder
                .add_original_shard(black_box(shard))
                .expect("add original");
        }
        let result = encoder.encode().expect("encode");
        for parity in result.recovery_iter() {
            black_box(parity);
        }
    });

    let recovery: Vec<Vec<u8>> = {
        for shard in &originals {
            encoder.add_original_shard(shard).expect("add original");
        }
        encoder
            .encode()
            .expect("encode")
            .recovery_iter()
            .map(<[u8]>::to_vec)
            .collect()
    };
    let mut decoder = ReedSolomonDecoder::new(k, m, len).expect("decoder");
    let reconstruct = throughput(warmup, budget, || {
        decoder.reset(k, m, len).expect("reset");
        for (i, shard) in originals.iter().enumerate().skip(m) {
            decoder
                .add_original_shard(i, black_box(shard))
                .expect("add original");
        }
        for (j, shard) in recovery.iter().enumerate() {
            decoder
                .add_recovery_shard(j, black_box(shard))
                .expect("add recovery");
        }
        let result = decoder.decode().expect("decode");
        for restored in result.restored_original_iter() {
            black_box(restored);
        }
    });
    (encode, reconstruct)
}

/// reed-solomon-erasure 6 (GF(2^8), simd-accel): in-place encode, `reconstruct` on `Option<Vec<u8>>`.
fn bench_erasure(
    profile: ErasureProfile,
    data: &[u8],
    warmup: Duration,
    budget: Duration,
) -> (f64, f64) {
    let (k, m) = (profile.data_shards(), profile.parity_shards());
    let len = shard_len(data.len(), k);
    let rs = ReedSolomon::new(k, m).expect("reed-solomon-erasure profile");
    let mut shards = split(data, k, len);
    shards.resize(k + m, vec![0u8; len]);

    let encode = throughput(warmup, budget, || {
        rs.encode(black_box(&mut shards)).expect("encode");
    });

    let full = shards.clone();
    let mut partial: Vec<Option<Vec<u8>>> = full.iter().cloned().map(Some).collect();
    let reconstruct = throughput(warmup, budget, || {
        for slot in &mut partial[..m] {
            *slot = None;
        }
        rs.reconstruct(black_box(&mut partial))
            .expect("reconstruct");
    });
    assert!(
        partial
            .iter()
            .zip(&full)
            .all(|(s, f)| s.as_ref() == Some(f)),
        "reed-solomon-erasure restored wrong bytes"
    );
    (encode, reconstruct)
}

/// Splits `data` into k zero-padded shards of `len` bytes (same layout as `Codec::encode_stripe`).
fn split(data: &[u8], k: usize, len: usize) -> Vec<Vec<u8>> {
    (0..k)
        .map(|i| {
            let mut shard = vec![0u8; len];
            let start = (i * len).min(data.len());
            let end = ((i + 1) * len).min(data.len());
            shard[..end - start].copy_from_slice(&data[start..end]);
            shard
        })
        .collect()
}
