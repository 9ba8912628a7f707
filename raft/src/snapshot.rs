//! Snapshots of the replicated index as files, streamed: building one iterates a consistent
//! RocksDB view into a file, sending it reads the file in chunks, installing one reads it back in
//! batches. Memory stays bounded whatever the size of the index.
//!
//! File format: `CAIRNSNAP3\n`, the metadata (u32 BE length + JSON), the group's key ranges (u32
//! BE length + JSON), the group's state (u32 BE length + JSON [`GroupState`]: whether it is
//! frozen), then one record per index entry (u32 BE key length, key, u32 BE value length, value), then an end record (key length
//! `u32::MAX`, u64 BE entry count, u32 BE CRC32C of every record byte before it). A truncated or
//! corrupted transfer is refused before the index is touched. Version 2 files (`CAIRNSNAP2\n`) have no
//! group state (a group that is not frozen); version 1 files (`CAIRNSNAP1\n`) no ranges either: they
//! hold the ranges of the group installing them (every key, when they were written).
//!
//! A snapshot carries the keys of the group's [`KeyRanges`] only, and installing one replaces
//! those ranges and the installing group's own, nothing else: a replica that missed a split
//! drops the keys its group handed on with it. Installing takes several
//! batches: an `installing` marker (the
//! snapshot's file, kept until done) is written first, synced, and cleared by the last batch, so a
//! crash in between is finished from the file when the gateway starts again.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use openraft::{BasicNode, SnapshotMeta};
use rocksdb::{DB, WriteBatch, WriteOptions};

use cairn_kv::KeyRanges;

const MAGIC_V1: &[u8] = b"CAIRNSNAP1\n";
const MAGIC_V2: &[u8] = b"CAIRNSNAP2\n";
const MAGIC: &[u8] = b"CAIRNSNAP3\n";
const END: u32 = u32::MAX;
/// Entries per batch while installing.
const INSTALL_BATCH: usize = 10_000;

type Meta = SnapshotMeta<u64, BasicNode>;

/// Why a snapshot file could not be written, read or installed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// File I/O failed.
    #[error("snapshot file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The file is not a complete, intact snapshot.
    #[error("snapshot file {0} is truncated or corrupt: {1}")]
    Corrupt(PathBuf, String),
}

/// What a snapshot says of its group besides its keys and ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupState {
    /// The log index of the group's freeze, if it is frozen (a merge under way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<u64>,
}

/// Where a snapshot lives, as recorded in the Raft state (`snapshot`, `installing`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredSnapshot {
    /// Its metadata.
    pub meta: Meta,
    /// Its file name in the snapshot directory.
    pub file: String,
}

/// The directory of snapshot files of the index at `index_path` (a sibling of the index).
pub fn dir_of(index_path: &Path) -> PathBuf {
    let name = index_path
        .file_name()
        .map(|n| format!("{}-raft-snapshots", n.to_string_lossy()))
        .unwrap_or_else(|| "raft-snapshots".into());
    index_path.with_file_name(name)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes every entry of `snap` (the default column family) in `ranges` with `meta` and the
/// group's `state` to `path`, synced.
pub fn write(
    snap: &rocksdb::Snapshot<'_>,
    ranges: &KeyRanges,
    state: &GroupState,
    meta: &Meta,
    path: &Path,
) -> Result<u64, SnapshotError> {
    let file = File::create(path).map_err(io(path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let meta_json = serde_json::to_vec(meta).expect("snapshot meta serialises");
    out.write_all(MAGIC).map_err(io(path))?;
    out.write_all(&(meta_json.len() as u32).to_be_bytes())
        .map_err(io(path))?;
    out.write_all(&meta_json).map_err(io(path))?;
    let ranges_json = serde_json::to_vec(ranges).expect("key ranges serialise");
    out.write_all(&(ranges_json.len() as u32).to_be_bytes())
        .map_err(io(path))?;
    out.write_all(&ranges_json).map_err(io(path))?;
    let state_json = serde_json::to_vec(state).expect("group state serialises");
    out.write_all(&(state_json.len() as u32).to_be_bytes())
        .map_err(io(path))?;
    out.write_all(&state_json).map_err(io(path))?;
    let (mut crc, mut count) = (0u32, 0u64);
    for item in ranges.entries(snap) {
        let (k, v) = item?;
        for part in [&k[..], &v[..]] {
            let len = (part.len() as u32).to_be_bytes();
            crc = crc32c::crc32c_append(crc, &len);
            crc = crc32c::crc32c_append(crc, part);
            out.write_all(&len).map_err(io(path))?;
            out.write_all(part).map_err(io(path))?;
        }
        count += 1;
    }
    out.write_all(&END.to_be_bytes()).map_err(io(path))?;
    out.write_all(&count.to_be_bytes()).map_err(io(path))?;
    out.write_all(&crc.to_be_bytes()).map_err(io(path))?;
    let file = out.into_inner().map_err(|e| io(path)(e.into_error()))?;
    file.sync_all().map_err(io(path))?;
    Ok(count)
}

/// A snapshot file's head: metadata, key ranges (`None` in a version 1 file) and group state.
type Head = (Meta, Option<KeyRanges>, GroupState);

/// Reads a snapshot file: its head, then each entry through `each` (with the file's ranges), then
/// checks the end record. `each` sees entries before the check, so callers that must not act on
/// a corrupt file run a checking pass first.
fn read(
    path: &Path,
    mut each: impl FnMut(Vec<u8>, Vec<u8>, Option<&KeyRanges>) -> Result<(), SnapshotError>,
) -> Result<Head, SnapshotError> {
    let corrupt = |why: &str| SnapshotError::Corrupt(path.to_path_buf(), why.to_string());
    let file = File::open(path).map_err(io(path))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; MAGIC.len()];
    input
        .read_exact(&mut magic)
        .map_err(|_| corrupt("no header"))?;
    if magic != MAGIC && magic != MAGIC_V2 && magic != MAGIC_V1 {
        return Err(corrupt("not a snapshot file"));
    }
    let mut u32_buf = [0u8; 4];
    let mut read_u32 = |input: &mut BufReader<File>| -> Result<u32, SnapshotError> {
        input
            .read_exact(&mut u32_buf)
            .map_err(|_| corrupt("truncated"))?;
        Ok(u32::from_be_bytes(u32_buf))
    };
    let meta_len = read_u32(&mut input)? as usize;
    let mut meta_json = vec![0u8; meta_len];
    input
        .read_exact(&mut meta_json)
        .map_err(|_| corrupt("truncated metadata"))?;
    let meta: Meta = serde_json::from_slice(&meta_json).map_err(|e| corrupt(&e.to_string()))?;
    let ranges = if magic != MAGIC_V1 {
        let len = read_u32(&mut input)? as usize;
        let mut json = vec![0u8; len];
        input
            .read_exact(&mut json)
            .map_err(|_| corrupt("truncated key ranges"))?;
        Some(serde_json::from_slice(&json).map_err(|e| corrupt(&e.to_string()))?)
    } else {
        None
    };
    let state = if magic == MAGIC {
        let len = read_u32(&mut input)? as usize;
        let mut json = vec![0u8; len];
        input
            .read_exact(&mut json)
            .map_err(|_| corrupt("truncated group state"))?;
        serde_json::from_slice(&json).map_err(|e| corrupt(&e.to_string()))?
    } else {
        GroupState::default()
    };
    let (mut crc, mut count) = (0u32, 0u64);
    loop {
        let klen = read_u32(&mut input)?;
        if klen == END {
            break;
        }
        let mut parts = [Vec::new(), Vec::new()];
        for (i, part) in parts.iter_mut().enumerate() {
            let len = if i == 0 { klen } else { read_u32(&mut input)? };
            crc = crc32c::crc32c_append(crc, &len.to_be_bytes());
            *part = vec![0u8; len as usize];
            input
                .read_exact(part)
                .map_err(|_| corrupt("truncated entry"))?;
            crc = crc32c::crc32c_append(crc, part);
        }
        let [k, v] = parts;
        each(k, v, ranges.as_ref())?;
        count += 1;
    }
    let mut tail = [0u8; 12];
    input
        .read_exact(&mut tail)
        .map_err(|_| corrupt("truncated end record"))?;
    let want_count = u64::from_be_bytes(tail[..8].try_into().expect("8 bytes"));
    let want_crc = u32::from_be_bytes(tail[8..].try_into().expect("4 bytes"));
    if want_count != count || want_crc != crc {
        return Err(corrupt("entry count or checksum mismatch"));
    }
    Ok((meta, ranges, state))
}

/// The key ranges a snapshot says it holds, read from the start of its bytes (the first chunk
/// of a transfer): `None` when `start` is not a version 2 or 3 head or too short to hold its
/// ranges.
/// What a host checks before it lets a transfer begin; the install still checks the whole file.
pub fn ranges_in_head(start: &[u8]) -> Option<KeyRanges> {
    let rest = start
        .strip_prefix(MAGIC)
        .or_else(|| start.strip_prefix(MAGIC_V2))?;
    let field = |at: &[u8]| -> Option<(usize, usize)> {
        let len = u32::from_be_bytes(at.get(..4)?.try_into().ok()?) as usize;
        (at.len() >= 4 + len).then_some((4, 4 + len))
    };
    let (_, meta_end) = field(rest)?;
    let rest = &rest[meta_end..];
    let (from, to) = field(rest)?;
    serde_json::from_slice(&rest[from..to]).ok()
}

/// Checks a snapshot file end to end; its metadata and key ranges (`None`: a version 1 file).
pub fn verify(path: &Path) -> Result<(Meta, Option<KeyRanges>), SnapshotError> {
    read(path, |_, _, _| Ok(())).map(|(meta, ranges, _)| (meta, ranges))
}

/// Replaces the keys of the group (`ranges`, what it owns now) and of the snapshot's key ranges
/// (`ranges` for a version 1 file) in the index (default column family) of `db` with the snapshot
/// in `path`, and records its position and ranges as the group's; `state` is the Raft state
/// column family, `keys` the group's state keys to write. Keys outside both are left alone, and a
/// snapshot holding one outside its own ranges is refused before anything is written. Returns the
/// ranges the group now owns and its state.
pub fn install(
    db: &DB,
    state: &rocksdb::ColumnFamily,
    keys: &StateKeys,
    ranges: &KeyRanges,
    stored: &StoredSnapshot,
    path: &Path,
) -> Result<(KeyRanges, GroupState), SnapshotError> {
    let (_, in_file, group_state) = read(path, |k, _, in_file| {
        if in_file.unwrap_or(ranges).contains(&k) {
            Ok(())
        } else {
            Err(SnapshotError::Corrupt(
                path.to_path_buf(),
                "an entry outside the group's key ranges".into(),
            ))
        }
    })?;
    let owned_before = ranges;
    let ranges = in_file.unwrap_or_else(|| ranges.clone());
    let mut synced = WriteOptions::default();
    synced.set_sync(true);
    db.put_cf_opt(state, &keys.installing, json(stored), &synced)?;
    let mut batch = WriteBatch::default();
    // The group's keys before and after: what it no longer owns (a split it skipped handed them
    // on) must not linger here unowned, beside what the snapshot replaces.
    for (start, end) in owned_before.union(&ranges).iter() {
        batch.delete_range(start, end);
    }
    let mut pending = 0;
    read(path, |k, v, _| {
        batch.put(k, v);
        pending += 1;
        if pending >= INSTALL_BATCH {
            db.write(std::mem::take(&mut batch))?;
            pending = 0;
        }
        Ok(())
    })?;
    batch.put_cf(state, &keys.applied, json(&stored.meta.last_log_id));
    batch.put_cf(state, &keys.membership, json(&stored.meta.last_membership));
    batch.put_cf(state, &keys.snapshot, json(stored));
    batch.put_cf(state, &keys.ranges, json(&ranges));
    match group_state.frozen {
        Some(at) => batch.put_cf(state, &keys.frozen, json(&at)),
        None => batch.delete_cf(state, &keys.frozen),
    }
    batch.delete_cf(state, &keys.installing);
    db.write_opt(batch, &synced)?;
    Ok((ranges, group_state))
}

/// The Raft state keys (of one group) an install writes.
pub struct StateKeys {
    /// Last applied log id.
    pub applied: Vec<u8>,
    /// Membership.
    pub membership: Vec<u8>,
    /// The current snapshot ([`StoredSnapshot`]).
    pub snapshot: Vec<u8>,
    /// An install under way ([`StoredSnapshot`]).
    pub installing: Vec<u8>,
    /// The key ranges the group owns ([`KeyRanges`]).
    pub ranges: Vec<u8>,
    /// The log index of the group's freeze, if it is frozen.
    pub frozen: Vec<u8>,
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("raft state serialises")
}

/// Removes the snapshot files of one group (`tag` after the file's kind: `snapshot-{tag}…`) in
/// `dir` other than `keep`, and its finished or abandoned transfers (a transfer under way is
/// newer than a minute and stays). Other groups' files are left alone.
pub fn remove_others(dir: &Path, tag: &str, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(60));
        let of_group = |kind: &str| name.starts_with(&format!("{kind}{tag}"));
        let old_snapshot = of_group("snapshot-") && name != keep;
        let old_transfer = (of_group("receiving-") || of_group("building-snapshot-")) && stale;
        if old_snapshot || old_transfer {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use cairn_kv::{KvEngine, RocksEngine, WriteOp};

    const STATE: &str = "raft_state";
    fn keys() -> StateKeys {
        StateKeys {
            applied: b"applied".to_vec(),
            membership: b"membership".to_vec(),
            snapshot: b"snapshot".to_vec(),
            installing: b"installing".to_vec(),
            ranges: b"ranges".to_vec(),
            frozen: b"frozen".to_vec(),
        }
    }

    fn entries(n: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..n)
            .map(|i| {
                // Keys with 0 bytes and values of varied length, as the index has.
                let k = format!("Ob\0key{i:05}").into_bytes();
                let v = vec![(i % 251) as u8; (i % 300) as usize];
                (k, v)
            })
            .collect()
    }

    fn engine_with(dir: &Path, rows: &[(Vec<u8>, Vec<u8>)]) -> RocksEngine {
        let e = RocksEngine::open(dir, crate::schema::test_keys::LAYOUT).unwrap();
        let ops = rows
            .iter()
            .map(|(k, v)| WriteOp::Put(k.clone(), v.clone()))
            .collect();
        e.write(ops).unwrap();
        e
    }

    fn meta(index: u64) -> Meta {
        SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                index,
            )),
            last_membership: Default::default(),
            snapshot_id: format!("{index}-1"),
        }
    }

    fn everything() -> KeyRanges {
        KeyRanges::everything()
    }

    /// Installs `stored` (at `file`) as a group owning every key.
    fn install_everything(
        db: &DB,
        stored: &StoredSnapshot,
        file: &Path,
    ) -> Result<KeyRanges, SnapshotError> {
        let state = db.cf_handle(STATE).unwrap();
        install(db, state, &keys(), &everything(), stored, file).map(|(owned, _)| owned)
    }

    fn all(e: &RocksEngine) -> Vec<(Vec<u8>, Vec<u8>)> {
        e.scan(b"", &[0xff; 8], usize::MAX).unwrap()
    }

    #[test]
    fn a_snapshot_replaces_the_index_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let rows = entries(25_000);
        let source = engine_with(&tmp.path().join("a"), &rows);
        let file = tmp.path().join("snap.bin");
        let db = source.db();
        assert_eq!(
            write(
                &db.snapshot(),
                &everything(),
                &GroupState::default(),
                &meta(7),
                &file
            )
            .unwrap(),
            25_000
        );
        assert_eq!(verify(&file).unwrap().0.snapshot_id, "7-1");

        // The target holds other keys, all of which must go.
        let target = engine_with(&tmp.path().join("b"), &entries(3)[..1]);
        target
            .write(vec![WriteOp::Put(b"Zstale".to_vec(), b"x".to_vec())])
            .unwrap();
        let tdb = target.db();
        let stored = StoredSnapshot {
            meta: meta(7),
            file: "snap.bin".into(),
        };
        install_everything(&tdb, &stored, &file).unwrap();
        assert_eq!(all(&target), rows);
        let state = tdb.cf_handle(STATE).unwrap();
        assert!(tdb.get_cf(state, &keys().installing).unwrap().is_none());
        let applied: Option<openraft::LogId<u64>> =
            serde_json::from_slice(&tdb.get_cf(state, &keys().applied).unwrap().unwrap()).unwrap();
        assert_eq!(applied.unwrap().index, 7);
    }

    #[test]
    fn a_snapshot_of_some_ranges_carries_and_replaces_those_ranges_only() {
        use crate::schema::test_keys as keys;
        let tmp = tempfile::tempdir().unwrap();
        // A partition of routes [b/k, b/m): its object and version records, among others'.
        let (start, end) = (keys::object("b", "k"), keys::object("b", "m"));
        let part = KeyRanges::new(keys::table_ranges(&start, Some(&end)));
        let row = |k: Vec<u8>, v: &str| (k, v.as_bytes().to_vec());
        let inside_source = vec![
            row(keys::object("b", "k1"), "new k1"),
            row(keys::object("b", "l"), "new l"),
            row(keys::version("b", "l", 4), "new l v4"),
        ];
        let outside_source = vec![
            row(keys::bucket("b"), "source bucket"),
            row(keys::object("b", "a"), "source a"),
            row(keys::object("b", "m"), "source m"),
            row(keys::version("b", "z", 1), "source z v1"),
        ];
        let source = engine_with(
            &tmp.path().join("a"),
            &[inside_source.clone(), outside_source].concat(),
        );
        let file = tmp.path().join("snap.bin");
        let count = write(
            &source.db().snapshot(),
            &part,
            &GroupState::default(),
            &meta(5),
            &file,
        )
        .unwrap();
        assert_eq!(count, inside_source.len() as u64);

        // The target's keys of the range are replaced (a stale one goes); the others stay.
        let outside_target = vec![
            row(keys::bucket("b"), "target bucket"),
            row(keys::object("b", "a"), "target a"),
            row(keys::object("b", "m"), "target m"),
        ];
        let target = engine_with(
            &tmp.path().join("b"),
            &[
                vec![row(keys::object("b", "kstale"), "stale")],
                outside_target.clone(),
            ]
            .concat(),
        );
        let tdb = target.db();
        let stored = StoredSnapshot {
            meta: meta(5),
            file: "snap.bin".into(),
        };
        let state = tdb.cf_handle(STATE).unwrap();
        install(&tdb, state, &keys(), &part, &stored, &file).unwrap();
        let mut want = [inside_source, outside_target].concat();
        want.sort();
        assert_eq!(all(&target), want);

        // A version 1 file (no ranges of its own: the installing group's) holding keys outside
        // the installing group's ranges is refused untouched.
        let whole = tmp.path().join("whole.bin");
        write(
            &source.db().snapshot(),
            &everything(),
            &GroupState::default(),
            &meta(6),
            &whole,
        )
        .unwrap();
        let v2 = std::fs::read(&whole).unwrap();
        std::fs::write(&whole, as_version_1(&v2)).unwrap();
        let before = all(&target);
        let stored = StoredSnapshot {
            meta: meta(6),
            file: "whole.bin".into(),
        };
        let err = install(&tdb, state, &keys(), &part, &stored, &whole);
        assert!(matches!(err, Err(SnapshotError::Corrupt(..))), "{err:?}");
        assert_eq!(all(&target), before);

        // A version 2 (or 3) file says which ranges it holds: installing it makes them the
        // group's.
        std::fs::write(&whole, &v2).unwrap();
        let (owned, _) = install(&tdb, state, &keys(), &part, &stored, &whole).unwrap();
        assert_eq!(owned, everything());
        assert_eq!(all(&target), all(&source));
        let recorded = tdb.get_cf(state, &keys().ranges).unwrap().unwrap();
        assert_eq!(
            serde_json::from_slice::<KeyRanges>(&recorded).unwrap(),
            everything()
        );
    }

    #[test]
    fn a_replica_that_missed_a_split_drops_the_keys_handed_on_when_it_installs_the_narrower_snapshot()
     {
        use crate::schema::test_keys as keys;
        let tmp = tempfile::tempdir().unwrap();
        // The group owned routes [b/a, b/z) and split at b/m; another group owns b/z on.
        let part = |from: &str, to: &str| {
            KeyRanges::new(keys::table_ranges(
                &keys::object("b", from),
                Some(&keys::object("b", to)),
            ))
        };
        let (before, after) = (part("a", "z"), part("a", "m"));
        let row = |k: Vec<u8>, v: &str| (k, v.as_bytes().to_vec());
        let kept = vec![
            row(keys::object("b", "c"), "new c"),
            row(keys::version("b", "c", 2), "new c v2"),
        ];
        let source = engine_with(&tmp.path().join("a"), &kept);
        let file = tmp.path().join("snap.bin");
        write(
            &source.db().snapshot(),
            &after,
            &GroupState::default(),
            &meta(8),
            &file,
        )
        .unwrap();

        // The lagging replica still owns [b/a, b/z): its keys from b/m on were handed on with
        // the split it never applied; the next group's and the meta keys are not its own.
        let others = vec![
            row(keys::bucket("b"), "bucket"),
            row(keys::object("b", "z1"), "next group's"),
        ];
        let handed = vec![
            row(keys::object("b", "m1"), "handed"),
            row(keys::version("b", "q", 1), "handed v1"),
        ];
        let target = engine_with(
            &tmp.path().join("b"),
            &[
                vec![row(keys::object("b", "cstale"), "stale")],
                handed,
                others.clone(),
            ]
            .concat(),
        );
        let tdb = target.db();
        let stored = StoredSnapshot {
            meta: meta(8),
            file: "snap.bin".into(),
        };
        let state = tdb.cf_handle(STATE).unwrap();
        let (owned, _) = install(&tdb, state, &keys(), &before, &stored, &file).unwrap();
        assert_eq!(owned, after);
        let mut want = [kept, others].concat();
        want.sort();
        assert_eq!(all(&target), want);
    }

    #[test]
    fn the_ranges_of_a_transfer_are_read_from_its_first_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let source = engine_with(&tmp.path().join("a"), &entries(50));
        let file = tmp.path().join("snap.bin");
        let part = KeyRanges::new(vec![(b"Ob\0key00010".to_vec(), b"Ob\0key00020".to_vec())]);
        write(
            &source.db().snapshot(),
            &part,
            &GroupState::default(),
            &meta(4),
            &file,
        )
        .unwrap();
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(ranges_in_head(&bytes), Some(part.clone()));
        let at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        let meta_end = MAGIC.len() + 4 + at(MAGIC.len());
        let head_end = meta_end + 4 + at(meta_end);
        assert_eq!(ranges_in_head(&bytes[..head_end]), Some(part));
        // Cut inside the ranges, a version 1 head, or not a snapshot at all: nothing to go by.
        assert_eq!(ranges_in_head(&bytes[..head_end - 1]), None);
        assert_eq!(ranges_in_head(&as_version_1(&bytes)), None);
        assert_eq!(ranges_in_head(b"hello"), None);
    }

    /// The same snapshot in the version 1 format: no key ranges and no group state after the
    /// metadata.
    fn as_version_1(v3: &[u8]) -> Vec<u8> {
        let at = |i: usize| u32::from_be_bytes(v3[i..i + 4].try_into().unwrap()) as usize;
        let meta_end = MAGIC.len() + 4 + at(MAGIC.len());
        let ranges_end = meta_end + 4 + at(meta_end);
        let state_end = ranges_end + 4 + at(ranges_end);
        [MAGIC_V1, &v3[MAGIC.len()..meta_end], &v3[state_end..]].concat()
    }

    /// The same snapshot in the version 2 format: no group state after the key ranges.
    fn as_version_2(v3: &[u8]) -> Vec<u8> {
        let at = |i: usize| u32::from_be_bytes(v3[i..i + 4].try_into().unwrap()) as usize;
        let meta_end = MAGIC.len() + 4 + at(MAGIC.len());
        let ranges_end = meta_end + 4 + at(meta_end);
        let state_end = ranges_end + 4 + at(ranges_end);
        [MAGIC_V2, &v3[MAGIC.len()..ranges_end], &v3[state_end..]].concat()
    }

    #[test]
    fn a_frozen_group_stays_frozen_through_its_snapshot_and_older_files_are_not_frozen() {
        let tmp = tempfile::tempdir().unwrap();
        let source = engine_with(&tmp.path().join("a"), &entries(50));
        let target = engine_with(&tmp.path().join("b"), &[]);
        let (tdb, file) = (target.db(), tmp.path().join("frozen.bin"));
        let state = tdb.cf_handle(STATE).unwrap();
        let frozen = GroupState { frozen: Some(9) };
        write(
            &source.db().snapshot(),
            &everything(),
            &frozen,
            &meta(9),
            &file,
        )
        .unwrap();
        let stored = StoredSnapshot {
            meta: meta(9),
            file: "frozen.bin".into(),
        };
        let (_, got) = install(&tdb, state, &keys(), &everything(), &stored, &file).unwrap();
        assert_eq!(got, frozen);
        let recorded = tdb.get_cf(state, &keys().frozen).unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<u64>(&recorded).unwrap(), 9);
        assert_eq!(all(&target), all(&source));
        assert_eq!(
            ranges_in_head(&std::fs::read(&file).unwrap()),
            Some(everything())
        );
        // The same snapshot as version 2: not frozen, and installing it thaws the group.
        let v2 = as_version_2(&std::fs::read(&file).unwrap());
        assert_eq!(ranges_in_head(&v2), Some(everything()));
        std::fs::write(&file, v2).unwrap();
        let (_, got) = install(&tdb, state, &keys(), &everything(), &stored, &file).unwrap();
        assert_eq!(got, GroupState::default());
        assert!(tdb.get_cf(state, &keys().frozen).unwrap().is_none());
        assert_eq!(all(&target), all(&source));
    }

    #[test]
    fn a_corrupt_or_truncated_file_is_refused_before_the_index_is_touched() {
        let tmp = tempfile::tempdir().unwrap();
        let source = engine_with(&tmp.path().join("a"), &entries(500));
        let file = tmp.path().join("snap.bin");
        write(
            &source.db().snapshot(),
            &everything(),
            &GroupState::default(),
            &meta(3),
            &file,
        )
        .unwrap();
        let good = std::fs::read(&file).unwrap();
        let target_rows = entries(2);
        let target = engine_with(&tmp.path().join("b"), &target_rows);
        let tdb = target.db();
        let stored = StoredSnapshot {
            meta: meta(3),
            file: "snap.bin".into(),
        };
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x40;
        for bad in [
            flipped,
            good[..good.len() - 5].to_vec(),
            good[..good.len() / 3].to_vec(),
        ] {
            std::fs::write(&file, &bad).unwrap();
            let err = install_everything(&tdb, &stored, &file);
            assert!(matches!(err, Err(SnapshotError::Corrupt(..))), "{err:?}");
            assert_eq!(all(&target), target_rows);
        }
    }

    #[test]
    fn an_interrupted_install_is_finished_when_the_state_machine_opens() {
        let tmp = tempfile::tempdir().unwrap();
        let rows = entries(2_000);
        let source = engine_with(&tmp.path().join("a"), &rows);
        let index_path = tmp.path().join("index");
        let target = engine_with(&index_path, &entries(3));
        let dir = dir_of(&index_path);
        std::fs::create_dir_all(&dir).unwrap();
        write(
            &source.db().snapshot(),
            &everything(),
            &GroupState::default(),
            &meta(9),
            &dir.join("snapshot-9-1.bin"),
        )
        .unwrap();
        // A crash after the marker and part of the entries: the marker, and a half-replaced index.
        let tdb = target.db();
        let stored = StoredSnapshot {
            meta: meta(9),
            file: "snapshot-9-1.bin".into(),
        };
        // The index group's own marker key, as the state machine writes it.
        use crate::store::{GroupKeys, INDEX_GROUP};
        let marker = GroupKeys::new(INDEX_GROUP).snapshot_keys().installing;
        tdb.put_cf(tdb.cf_handle(STATE).unwrap(), &marker, json(&stored))
            .unwrap();
        target
            .write(vec![WriteOp::Put(rows[5].0.clone(), rows[5].1.clone())])
            .unwrap();
        let engine = Arc::new(target);
        crate::store::StateMachine::open(
            engine.clone(),
            Arc::new(crate::schema::FlatSchema),
            INDEX_GROUP,
        )
        .unwrap();
        assert_eq!(all(&engine), rows);
    }
}
