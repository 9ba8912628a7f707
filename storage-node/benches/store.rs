//! Durable shard-write and verified-read throughput of the shard store on the disk under `--dir`
//! (default: a temporary directory under the current one), to hold against
//! `dd if=/dev/zero of=FILE bs=1M count=1024 conv=fdatasync` on the same disk.
//!
//! Run: `cargo bench -p cairn-storage-node --bench store [-- --dir DIR --mib N]`.
//! Each write streams N MiB into one shard (1 MiB blocks, CRC32C per block), fsyncs, renames and
//! fsyncs the directory, exactly as an acknowledged PUT does.

use std::time::Instant;

use cairn_storage_node::codec::ErasureProfile;
use cairn_storage_node::format::{PlacementEntry, ShardSpec};
use cairn_storage_node::ids::{ObjectId, ShardIndex};
use cairn_storage_node::store::{ShardStore, StoreOptions};

/// Yields `len` bytes of a fixed pattern without holding them in memory.
struct Pattern {
    left: u64,
}

impl std::io::Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let mib: u64 = arg("--mib").and_then(|s| s.parse().ok()).unwrap_or(1024);
    let base = arg("--dir").unwrap_or_else(|| ".".into());
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let store = ShardStore::open(dir.path(), StoreOptions::default()).expect("store");
    // k = 1: the shard payload equals the object, so N MiB of object = N MiB written.
    let profile = ErasureProfile::new(1, 1).expect("profile");
    let placement = vec![
        PlacementEntry {
            node: "bench".parse().expect("id"),
            endpoint: "http://127.0.0.1:1".into(),
        };
        2
    ];
    println!("| run | write MB/s (fsync'd) | verified read MB/s |");
    println!("|---|---:|---:|");
    for run in 0..3u8 {
        let spec = ShardSpec {
            object_id: ObjectId::from_bytes([run; 16]),
            shard_index: ShardIndex(0),
            profile,
            stripe_size: 1 << 20,
            object_length: mib << 20,
            placement: placement.clone(),
        };
        let t = Instant::now();
        store
            .put(spec.clone(), &mut Pattern { left: mib << 20 })
            .expect("put");
        let write = (mib << 20) as f64 / t.elapsed().as_secs_f64() / 1e6;
        let t = Instant::now();
        let file = store
            .open_shard(spec.object_id, spec.shard_index)
            .expect("open");
        file.verify().expect("verify");
        let read = (mib << 20) as f64 / t.elapsed().as_secs_f64() / 1e6;
        println!("| {run} | {write:.0} | {read:.0} |");
        store
            .delete(spec.object_id, spec.shard_index)
            .expect("delete");
    }
}
