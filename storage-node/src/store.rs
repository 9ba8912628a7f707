//! The durable shard store: one file per shard, written atomically, verified on every read.
//!
//! Writes go to `tmp/`, are fsynced, renamed into `shards/<2 hex>/<object id>.<index>` and the
//! directory is fsynced, so a shard is either wholly there or not at all. Leftover temporary files
//! (a crash mid-write) are removed when the store opens. I/O here is blocking; async callers run it
//! on a blocking thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::format::{FormatError, PREAMBLE_LEN, ShardHeader, ShardSpec};
use crate::ids::{ObjectId, ShardIndex};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such shard.
    #[error("shard {object}.{index} not found")]
    NotFound { object: ObjectId, index: ShardIndex },
    /// The shard exists but fails its checksums; its bytes are never returned.
    #[error("shard {object}.{index} is corrupt: {detail}")]
    Corrupt {
        object: ObjectId,
        index: ShardIndex,
        detail: String,
    },
    /// Not enough free space (or the reserve would be crossed); nothing was stored.
    #[error("disk full: {needed} bytes needed, {available} available above the reserve")]
    DiskFull { needed: u64, available: u64 },
    /// The shard description is invalid.
    #[error(transparent)]
    InvalidSpec(#[from] FormatError),
    /// The body was shorter or longer than the spec requires.
    #[error("shard body must be {expected} bytes, got {got}")]
    WrongLength { expected: u64, got: u64 },
    /// A requested byte range lies outside the shard.
    #[error("range {start}..{end} outside shard of {len} bytes")]
    BadRange { start: u64, end: u64, len: u64 },
    /// Any other I/O failure.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Runs blocking store I/O on a blocking thread (a panic there becomes an I/O error).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
}

/// Store settings.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Free bytes always kept on the filesystem; writes that would cross it fail with `DiskFull`.
    pub min_free_bytes: u64,
}

/// One entry of a shard listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardKey {
    /// The object.
    pub object_id: ObjectId,
    /// The shard index.
    pub shard_index: ShardIndex,
}

/// The shard files under one data directory.
#[derive(Debug)]
pub struct ShardStore {
    shards_dir: PathBuf,
    tmp_dir: PathBuf,
    options: StoreOptions,
    tmp_counter: AtomicU64,
    /// Shard files present (counted at open, kept current by put and delete).
    stored_shards: AtomicU64,
    /// Bytes of those files.
    stored_bytes: AtomicU64,
}

impl ShardStore {
    /// Opens (creating if needed) the store under `root` and removes leftover temporary files.
    pub fn open(root: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let shards_dir = root.join("shards");
        let tmp_dir = root.join("tmp");
        fs::create_dir_all(&shards_dir)?;
        fs::create_dir_all(&tmp_dir)?;
        let mut removed = 0;
        for entry in fs::read_dir(&tmp_dir)? {
            fs::remove_file(entry?.path())?;
            removed += 1;
        }
        if removed > 0 {
            tracing::warn!(removed, "removed temporary shard files left by a crash");
            sync_dir(&tmp_dir)?;
        }
        let (shards, bytes) = inventory(&shards_dir)?;
        Ok(Self {
            shards_dir,
            tmp_dir,
            options,
            tmp_counter: AtomicU64::new(0),
            stored_shards: AtomicU64::new(shards),
            stored_bytes: AtomicU64::new(bytes),
        })
    }

    /// (shard files, bytes) currently stored.
    pub fn stored(&self) -> (u64, u64) {
        (
            self.stored_shards.load(Ordering::Relaxed),
            self.stored_bytes.load(Ordering::Relaxed),
        )
    }

    fn shard_path(&self, object: &ObjectId, index: ShardIndex) -> PathBuf {
        let hex = object.to_hex();
        self.shards_dir
            .join(&hex[..2])
            .join(format!("{hex}.{index}"))
    }

    /// Bytes free for shards: available space minus the reserve.
    pub fn available_bytes(&self) -> Result<u64, StoreError> {
        let (avail, _) = fs_space(&self.shards_dir)?;
        Ok(avail.saturating_sub(self.options.min_free_bytes))
    }

    /// Streams a shard body from `body` into a durable shard file; returns the header written.
    /// The body must be exactly the payload length the spec implies. Replaces an existing shard.
    /// Blocking, reading `body` as it goes: for bodies already in memory or on disk. Bodies that
    /// arrive over the network go through [`ShardStore::begin`] block by block instead, so no
    /// thread waits on a socket.
    pub fn put(&self, spec: ShardSpec, body: &mut dyn Read) -> Result<ShardHeader, StoreError> {
        let mut writer = self.begin(spec)?;
        let geometry = writer.spec.geometry();
        let mut block = Vec::with_capacity(geometry.full_block_len() as usize);
        for i in 0..geometry.block_count() {
            block.resize(geometry.block_len(i) as usize, 0);
            let n = read_full(body, &mut block)?;
            if n < block.len() {
                return Err(StoreError::WrongLength {
                    expected: geometry.shard_payload_len(),
                    got: writer.written + n as u64,
                });
            }
            writer.write_block(&block)?;
        }
        let mut extra = [0u8; 1];
        if read_full(body, &mut extra)? > 0 {
            return Err(StoreError::WrongLength {
                expected: geometry.shard_payload_len(),
                got: writer.written + 1,
            });
        }
        self.commit(writer)
    }

    /// Starts writing a shard: checks the spec and the free space, and opens a temporary file.
    /// Feed it every block in order ([`ShardWriter::write_block`]), then [`ShardStore::commit`];
    /// a writer dropped before that leaves nothing behind.
    pub fn begin(&self, spec: ShardSpec) -> Result<ShardWriter, StoreError> {
        spec.validate()?;
        let geometry = spec.geometry();
        let header_len = spec.header_len();
        let needed = header_len + geometry.shard_payload_len();
        let available = self.available_bytes()?;
        if needed > available {
            return Err(StoreError::DiskFull { needed, available });
        }
        let tmp = self.tmp_dir.join(format!(
            "{}.{}.{}.tmp",
            spec.object_id,
            spec.shard_index,
            self.tmp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut file| {
                // Room for the header, which is only known once every block's checksum is.
                file.write_all(&vec![0u8; header_len as usize])?;
                Ok(file)
            });
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(no_space(e.into(), needed));
            }
        };
        Ok(ShardWriter {
            checksums: Vec::with_capacity(geometry.block_count() as usize),
            spec,
            file: Some(file),
            tmp,
            needed,
            written: 0,
            committed: false,
        })
    }

    /// Finishes a shard: writes its header, fsyncs it and renames it into place (replacing an
    /// existing one), then fsyncs the directory.
    pub fn commit(&self, mut writer: ShardWriter) -> Result<ShardHeader, StoreError> {
        let geometry = writer.spec.geometry();
        if writer.checksums.len() as u64 != geometry.block_count() {
            return Err(StoreError::WrongLength {
                expected: geometry.shard_payload_len(),
                got: writer.written,
            });
        }
        let needed = writer.needed;
        let header = ShardHeader {
            spec: writer.spec.clone(),
            block_checksums: std::mem::take(&mut writer.checksums),
        };
        self.install(&mut writer, &header)
            .map_err(|e| no_space(e, needed))?;
        Ok(header)
    }

    fn install(&self, writer: &mut ShardWriter, header: &ShardHeader) -> Result<(), StoreError> {
        let file = writer
            .file
            .take()
            .expect("an uncommitted writer has its file");
        file.write_all_at(&header.encode(), 0)?;
        file.sync_all()?;
        drop(file);
        let dest = self.shard_path(&header.spec.object_id, header.spec.shard_index);
        let parent = dest.parent().expect("shard paths have a parent");
        if !parent.exists() {
            fs::create_dir_all(parent)?;
            sync_dir(&self.shards_dir)?;
        }
        let replaced = fs::metadata(&dest).ok().map(|m| m.len());
        fs::rename(&writer.tmp, &dest)?;
        writer.committed = true;
        sync_dir(parent)?;
        match replaced {
            Some(old) => {
                self.stored_bytes.fetch_sub(old, Ordering::Relaxed);
            }
            None => {
                self.stored_shards.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.stored_bytes
            .fetch_add(writer.needed, Ordering::Relaxed);
        Ok(())
    }

    /// Opens a shard for reading, verifying its header.
    pub fn open_shard(&self, object: ObjectId, index: ShardIndex) -> Result<ShardFile, StoreError> {
        let path = self.shard_path(&object, index);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { object, index });
            }
            Err(e) => return Err(e.into()),
        };
        let corrupt = |detail: String| StoreError::Corrupt {
            object,
            index,
            detail,
        };
        let file_len = file.metadata()?.len();
        let mut preamble = [0u8; PREAMBLE_LEN];
        if file_len < PREAMBLE_LEN as u64 {
            return Err(corrupt("file shorter than a header".into()));
        }
        file.read_exact_at(&mut preamble, 0)?;
        let header_len =
            ShardHeader::header_len_from_preamble(&preamble).map_err(|e| corrupt(e.to_string()))?;
        if file_len < header_len as u64 {
            return Err(corrupt("file shorter than its header".into()));
        }
        let mut bytes = vec![0u8; header_len];
        file.read_exact_at(&mut bytes, 0)?;
        let header = ShardHeader::decode(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if header.spec.object_id != object || header.spec.shard_index != index {
            return Err(corrupt("header names another shard".into()));
        }
        let expected = header_len as u64 + header.spec.geometry().shard_payload_len();
        if file_len != expected {
            return Err(corrupt(format!(
                "file is {file_len} bytes, header implies {expected}"
            )));
        }
        Ok(ShardFile {
            file,
            header,
            header_len: header_len as u64,
        })
    }

    /// Removes a shard; `false` if it did not exist.
    pub fn delete(&self, object: ObjectId, index: ShardIndex) -> Result<bool, StoreError> {
        let path = self.shard_path(&object, index);
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => {
                self.stored_shards.fetch_sub(1, Ordering::Relaxed);
                self.stored_bytes.fetch_sub(len, Ordering::Relaxed);
                sync_dir(path.parent().expect("shard paths have a parent"))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Up to `limit` shards in (object id, index) order, strictly after `after`.
    pub fn list(
        &self,
        after: Option<&ShardKey>,
        limit: usize,
    ) -> Result<Vec<ShardKey>, StoreError> {
        let mut out = Vec::new();
        let mut prefixes: Vec<String> = fs::read_dir(&self.shards_dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.len() == 2)
            .collect();
        prefixes.sort();
        let after_hex = after.map(|a| a.object_id.to_hex());
        for prefix in prefixes {
            if let Some(a) = &after_hex
                && prefix.as_str() < &a[..2]
            {
                continue;
            }
            let mut keys: Vec<ShardKey> = fs::read_dir(self.shards_dir.join(&prefix))?
                .filter_map(|e| parse_shard_name(&e.ok()?.file_name().into_string().ok()?))
                .filter(|k| {
                    after
                        .is_none_or(|a| (k.object_id, k.shard_index) > (a.object_id, a.shard_index))
                })
                .collect();
            keys.sort_by_key(|k| (k.object_id, k.shard_index));
            for k in keys {
                if out.len() == limit {
                    return Ok(out);
                }
                out.push(k);
            }
        }
        Ok(out)
    }
}

/// Counts the shard files and their bytes (at open; O(files) metadata reads).
fn inventory(shards_dir: &Path) -> io::Result<(u64, u64)> {
    let (mut shards, mut bytes) = (0, 0);
    for prefix in fs::read_dir(shards_dir)? {
        let prefix = prefix?;
        if !prefix.file_type()?.is_dir() {
            continue;
        }
        for entry in fs::read_dir(prefix.path())? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .and_then(parse_shard_name)
                .is_some()
            {
                shards += 1;
                bytes += entry.metadata()?.len();
            }
        }
    }
    Ok((shards, bytes))
}

fn parse_shard_name(name: &str) -> Option<ShardKey> {
    let (id, index) = name.split_once('.')?;
    Some(ShardKey {
        object_id: id.parse().ok()?,
        shard_index: index.parse().ok()?,
    })
}

/// A shard being written: a temporary file, removed if the writer is dropped uncommitted.
#[derive(Debug)]
pub struct ShardWriter {
    spec: ShardSpec,
    file: Option<File>,
    tmp: PathBuf,
    checksums: Vec<u32>,
    needed: u64,
    written: u64,
    committed: bool,
}

impl ShardWriter {
    /// The shard being written.
    pub fn spec(&self) -> &ShardSpec {
        &self.spec
    }

    /// Length of the next block expected, `None` once every block is written.
    pub fn next_block_len(&self) -> Option<u64> {
        let g = self.spec.geometry();
        let i = self.checksums.len() as u64;
        (i < g.block_count()).then(|| g.block_len(i))
    }

    /// Appends the next block (exactly [`ShardWriter::next_block_len`] bytes).
    pub fn write_block(&mut self, block: &[u8]) -> Result<(), StoreError> {
        let g = self.spec.geometry();
        if self.next_block_len() != Some(block.len() as u64) {
            return Err(StoreError::WrongLength {
                expected: g.shard_payload_len(),
                got: self.written + block.len() as u64,
            });
        }
        let file = self
            .file
            .as_mut()
            .expect("an uncommitted writer has its file");
        file.write_all(block)
            .map_err(|e| no_space(e.into(), self.needed))?;
        self.checksums.push(crc32c::crc32c(block));
        self.written += block.len() as u64;
        Ok(())
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// `DiskFull` for an I/O error that says so.
fn no_space(e: StoreError, needed: u64) -> StoreError {
    match e {
        StoreError::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => StoreError::DiskFull {
            needed,
            available: 0,
        },
        other => other,
    }
}

/// An open shard whose header has been verified.
#[derive(Debug)]
pub struct ShardFile {
    file: File,
    header: ShardHeader,
    header_len: u64,
}

impl ShardFile {
    /// The verified header.
    pub fn header(&self) -> &ShardHeader {
        &self.header
    }

    /// Time since the shard file was last written.
    pub fn age(&self) -> io::Result<std::time::Duration> {
        let modified = self.file.metadata()?.modified()?;
        Ok(modified.elapsed().unwrap_or_default())
    }

    /// Payload bytes (all blocks).
    pub fn payload_len(&self) -> u64 {
        self.header.spec.geometry().shard_payload_len()
    }

    /// Reads block `i` and checks it against its checksum.
    pub fn read_block(&self, i: u64) -> Result<Vec<u8>, StoreError> {
        let g = self.header.spec.geometry();
        let mut buf = vec![0u8; g.block_len(i) as usize];
        self.file
            .read_exact_at(&mut buf, self.header_len + g.block_offset(i))?;
        if crc32c::crc32c(&buf) != self.header.block_checksums[i as usize] {
            let spec = &self.header.spec;
            return Err(StoreError::Corrupt {
                object: spec.object_id,
                index: spec.shard_index,
                detail: format!("block {i} fails its checksum"),
            });
        }
        Ok(buf)
    }

    /// Reads payload bytes `start..end`, verifying every block it touches.
    pub fn read_range(&self, start: u64, end: u64) -> Result<Vec<u8>, StoreError> {
        let len = self.payload_len();
        if start > end || end > len {
            return Err(StoreError::BadRange { start, end, len });
        }
        let g = self.header.spec.geometry();
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut pos = start;
        while pos < end {
            let b = g.block_of(pos);
            let block = self.read_block(b)?;
            let off = (pos - g.block_offset(b)) as usize;
            let take = ((end - pos) as usize).min(block.len() - off);
            out.extend_from_slice(&block[off..off + take]);
            pos += take as u64;
        }
        Ok(out)
    }

    /// Verifies every block; returns the payload bytes checked.
    pub fn verify(&self) -> Result<u64, StoreError> {
        let g = self.header.spec.geometry();
        for i in 0..g.block_count() {
            self.read_block(i)?;
        }
        Ok(self.payload_len())
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// (available, total) bytes of the filesystem holding `path`.
pub fn fs_space(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tests::sample_spec;

    fn payload(spec: &ShardSpec) -> Vec<u8> {
        (0..spec.geometry().shard_payload_len())
            .map(|i| (i * 31 % 251) as u8)
            .collect()
    }

    fn store() -> (tempfile::TempDir, ShardStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = ShardStore::open(dir.path(), StoreOptions::default()).unwrap();
        (dir, s)
    }

    #[test]
    fn put_then_read_every_range() {
        let (_d, s) = store();
        let spec = sample_spec(4, 2, 1000, 2500);
        let body = payload(&spec);
        s.put(spec.clone(), &mut body.as_slice()).unwrap();
        let f = s.open_shard(spec.object_id, spec.shard_index).unwrap();
        assert_eq!(f.read_range(0, body.len() as u64).unwrap(), body);
        for (a, b) in [(0, 1), (249, 251), (100, 600), (500, 626), (626, 626)] {
            assert_eq!(f.read_range(a, b).unwrap(), body[a as usize..b as usize]);
        }
        assert!(matches!(
            f.read_range(0, 627),
            Err(StoreError::BadRange { .. })
        ));
    }

    #[test]
    fn stored_counts_follow_put_replace_delete_and_reopen() {
        let (d, s) = store();
        let spec = sample_spec(4, 2, 1000, 2500);
        let file_len = spec.header_len() + spec.geometry().shard_payload_len();
        let body = payload(&spec);
        s.put(spec.clone(), &mut body.as_slice()).unwrap();
        s.put(spec.clone(), &mut body.as_slice()).unwrap();
        assert_eq!(s.stored(), (1, file_len));
        let other = spec.for_index(ShardIndex(2));
        s.put(other.clone(), &mut body.as_slice()).unwrap();
        assert_eq!(s.stored(), (2, 2 * file_len));
        assert!(s.delete(spec.object_id, spec.shard_index).unwrap());
        assert_eq!(s.stored(), (1, file_len));
        drop(s);
        let reopened = ShardStore::open(d.path(), StoreOptions::default()).unwrap();
        assert_eq!(reopened.stored(), (1, file_len));
    }

    #[test]
    fn wrong_lengths_leave_nothing_behind() {
        let (d, s) = store();
        let spec = sample_spec(4, 2, 1000, 2500);
        let body = payload(&spec);
        let short = &body[..body.len() - 1];
        assert!(matches!(
            s.put(spec.clone(), &mut &short[..]),
            Err(StoreError::WrongLength { .. })
        ));
        let mut long = body.clone();
        long.push(0);
        assert!(matches!(
            s.put(spec.clone(), &mut long.as_slice()),
            Err(StoreError::WrongLength { .. })
        ));
        assert!(matches!(
            s.open_shard(spec.object_id, spec.shard_index),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn flipped_payload_byte_is_corruption_not_data() {
        let (d, s) = store();
        let spec = sample_spec(4, 2, 1000, 2500);
        let body = payload(&spec);
        s.put(spec.clone(), &mut body.as_slice()).unwrap();
        let path = d
            .path()
            .join("shards")
            .join("07")
            .join(format!("{}.1", spec.object_id));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let f = s.open_shard(spec.object_id, spec.shard_index).unwrap();
        assert_eq!(f.read_range(0, 500).unwrap(), body[..500]); // untouched blocks still serve
        assert!(matches!(
            f.read_range(0, 626),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(f.verify(), Err(StoreError::Corrupt { .. })));
        // A truncated file is caught before any block is read.
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(
            s.open_shard(spec.object_id, spec.shard_index),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn leftover_temporary_files_are_removed_on_open() {
        let (d, s) = store();
        drop(s);
        fs::write(d.path().join("tmp").join("x.tmp"), b"partial").unwrap();
        let _s = ShardStore::open(d.path(), StoreOptions::default()).unwrap();
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn reserve_refuses_writes_but_reads_go_on() {
        let (d, s) = store();
        let spec = sample_spec(2, 1, 64, 200);
        s.put(spec.clone(), &mut payload(&spec).as_slice()).unwrap();
        drop(s);
        let huge = StoreOptions {
            min_free_bytes: u64::MAX,
        };
        let s = ShardStore::open(d.path(), huge).unwrap();
        let other = spec.for_index(ShardIndex(2));
        assert!(matches!(
            s.put(other, &mut payload(&spec).as_slice()),
            Err(StoreError::DiskFull { .. })
        ));
        let f = s.open_shard(spec.object_id, spec.shard_index).unwrap();
        assert_eq!(f.verify().unwrap(), spec.geometry().shard_payload_len());
    }

    #[test]
    fn list_pages_in_order_and_delete_removes() {
        let (_d, s) = store();
        let mut keys = Vec::new();
        for b in [3u8, 200, 17] {
            for i in [0u8, 2] {
                let mut spec = sample_spec(2, 1, 64, 10);
                spec.object_id = ObjectId::from_bytes([b; 16]);
                spec.shard_index = ShardIndex(i);
                s.put(spec.clone(), &mut payload(&spec).as_slice()).unwrap();
                keys.push((spec.object_id, spec.shard_index));
            }
        }
        keys.sort();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = s.list(after.as_ref(), 4).unwrap();
            if page.is_empty() {
                break;
            }
            seen.extend(page.iter().map(|k| (k.object_id, k.shard_index)));
            after = page.last().cloned();
        }
        assert_eq!(seen, keys);
        assert!(s.delete(keys[0].0, keys[0].1).unwrap());
        assert!(!s.delete(keys[0].0, keys[0].1).unwrap());
        assert_eq!(s.list(None, 100).unwrap().len(), 5);
    }
}
