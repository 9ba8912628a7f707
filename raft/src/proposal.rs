//! What the replicated index agrees on: a batch of writes guarded by the reads it was computed
//! from. An index operation runs on whichever gateway received the request, against that
//! gateway's replica; its batch commits only if, at its place in the log, everything it read is
//! still as it was. Every replica evaluates the guard at the same log position, so they all reach
//! the same verdict, and an operation that raced another (or ran on a replica a moment behind)
//! is refused and recomputed instead of committing over a state it never saw.

use serde::{Deserialize, Serialize};

use cairn_kv::KeyRanges;
use cairn_kv::{EngineError, Entries, KvEngine, WriteOp, b64};

/// MD5 of what a read returned; values themselves would make proposals as large as what they
/// read (scans especially).
pub type Digest = [u8; 16];

/// One read an operation made, with a digest of what it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadCheck {
    /// `get(key)` returned a value with this digest (`None`: no value).
    Get {
        #[serde(with = "b64")]
        key: Vec<u8>,
        digest: Option<Digest>,
    },
    /// `scan(start, end, limit)` returned entries with this digest.
    Scan {
        #[serde(with = "b64")]
        start: Vec<u8>,
        #[serde(with = "b64")]
        end: Vec<u8>,
        limit: u64,
        digest: Digest,
    },
}

/// A guarded batch: apply `ops` only if every check still holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The reads the batch was computed from.
    pub checks: Vec<ReadCheck>,
    /// The batch.
    pub ops: Vec<WriteOp>,
}

/// What applying a proposal did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The batch was applied (also the answer for Raft's own entries).
    #[default]
    Applied,
    /// A check failed; nothing was written.
    Conflict,
    /// The batch reads or writes keys the group no longer owns (it split since the batch was
    /// computed); nothing was written, and the batch goes to the group that owns them now.
    Moved,
}

/// Digest of one value.
pub fn value_digest(value: &[u8]) -> Digest {
    use md5::{Digest as _, Md5};
    let mut md5 = Md5::new();
    md5.update(value);
    md5.finalize().into()
}

/// Digest of a scan's result: each key and value, length-prefixed so boundaries count.
pub fn scan_digest(entries: &Entries) -> Digest {
    use md5::{Digest as _, Md5};
    let mut md5 = Md5::new();
    for (k, v) in entries {
        md5.update((k.len() as u64).to_be_bytes());
        md5.update(k);
        md5.update((v.len() as u64).to_be_bytes());
        md5.update(v);
    }
    md5.finalize().into()
}

impl ReadCheck {
    /// The check for a `get` that returned `value`.
    pub fn get(key: &[u8], value: Option<&[u8]>) -> Self {
        ReadCheck::Get {
            key: key.to_vec(),
            digest: value.map(value_digest),
        }
    }

    /// The check for a `scan` that returned `entries`.
    pub fn scan(start: &[u8], end: &[u8], limit: usize, entries: &Entries) -> Self {
        ReadCheck::Scan {
            start: start.to_vec(),
            end: end.to_vec(),
            limit: limit as u64,
            digest: scan_digest(entries),
        }
    }

    /// Whether the read returns the same now.
    pub fn holds(&self, engine: &dyn KvEngine) -> Result<bool, EngineError> {
        Ok(match self {
            ReadCheck::Get { key, digest } => {
                engine.get(key)?.as_deref().map(value_digest) == *digest
            }
            ReadCheck::Scan {
                start,
                end,
                limit,
                digest,
            } => {
                let limit = usize::try_from(*limit).unwrap_or(usize::MAX);
                scan_digest(&engine.scan(start, end, limit)?) == *digest
            }
        })
    }
}

impl Proposal {
    /// Whether every key the batch writes and every read it was computed from lie in `owned`.
    pub fn within(&self, owned: &KeyRanges) -> bool {
        let writes = self.ops.iter().all(|op| match op {
            WriteOp::Put(k, _) | WriteOp::Delete(k) => owned.contains(k),
        });
        let reads = self.checks.iter().all(|c| match c {
            ReadCheck::Get { key, .. } => owned.contains(key),
            ReadCheck::Scan { start, end, .. } => owned.contains_scan(start, end),
        });
        writes && reads
    }

    /// Whether a check reads one of the `written` keys (a read that may see them).
    pub fn reads_any(&self, written: &std::collections::BTreeSet<Vec<u8>>) -> bool {
        self.checks.iter().any(|c| match c {
            ReadCheck::Get { key, .. } => written.contains(key),
            ReadCheck::Scan { start, end, .. } => written
                .range::<[u8], _>((
                    std::ops::Bound::Included(start.as_slice()),
                    std::ops::Bound::Excluded(end.as_slice()),
                ))
                .next()
                .is_some(),
        })
    }

    /// The keys the batch writes.
    pub fn written_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.ops.iter().map(|op| match op {
            WriteOp::Put(k, _) | WriteOp::Delete(k) => k.as_slice(),
        })
    }

    /// Whether every check holds against `engine`.
    pub fn holds(&self, engine: &dyn KvEngine) -> Result<bool, EngineError> {
        for c in &self.checks {
            if !c.holds(engine)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_kv::MemEngine;

    fn put(k: &str, v: &str) -> WriteOp {
        WriteOp::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    #[test]
    fn checks_see_changes_to_what_was_read_and_only_that() {
        let e = MemEngine::default();
        e.write(vec![put("a", "1"), put("b", "2")]).unwrap();
        let get_a = ReadCheck::get(b"a", e.get(b"a").unwrap().as_deref());
        let get_x = ReadCheck::get(b"x", None);
        let scan = ReadCheck::scan(b"a", b"c", 10, &e.scan(b"a", b"c", 10).unwrap());
        let first = ReadCheck::scan(b"a", b"c", 1, &e.scan(b"a", b"c", 1).unwrap());
        for c in [&get_a, &get_x, &scan, &first] {
            assert!(c.holds(&e).unwrap());
        }
        // Outside everything read: all still hold.
        e.write(vec![put("z", "9")]).unwrap();
        for c in [&get_a, &get_x, &scan, &first] {
            assert!(c.holds(&e).unwrap());
        }
        // Inside the scan but past its limit of one: only the full scan changes.
        e.write(vec![put("b", "3")]).unwrap();
        assert!(!scan.holds(&e).unwrap());
        assert!(first.holds(&e).unwrap());
        assert!(get_a.holds(&e).unwrap());
        // A key that was absent appears; a value is rewritten with the same bytes (still holds).
        e.write(vec![put("x", "0"), put("a", "1")]).unwrap();
        assert!(!get_x.holds(&e).unwrap());
        assert!(get_a.holds(&e).unwrap());
        e.write(vec![WriteOp::Delete(b"a".to_vec())]).unwrap();
        assert!(!get_a.holds(&e).unwrap());
        assert!(!first.holds(&e).unwrap());
    }

    #[test]
    fn a_batch_reads_a_written_key_through_a_get_or_a_scan_over_it() {
        let written: std::collections::BTreeSet<Vec<u8>> = [b"m".to_vec()].into();
        let reading = |c: ReadCheck| Proposal {
            checks: vec![c],
            ops: vec![],
        };
        assert!(reading(ReadCheck::get(b"m", None)).reads_any(&written));
        assert!(!reading(ReadCheck::get(b"n", None)).reads_any(&written));
        assert!(reading(ReadCheck::scan(b"a", b"z", 1, &vec![])).reads_any(&written));
        assert!(reading(ReadCheck::scan(b"m", b"n", 1, &vec![])).reads_any(&written));
        // The end is excluded, and a range wholly before or after misses.
        assert!(!reading(ReadCheck::scan(b"a", b"m", 1, &vec![])).reads_any(&written));
        assert!(!reading(ReadCheck::scan(b"m\0", b"z", 1, &vec![])).reads_any(&written));
        assert!(!Proposal::default().reads_any(&written));
    }

    #[test]
    fn proposals_round_trip_through_json() {
        let p = Proposal {
            checks: vec![
                ReadCheck::get(b"\x00k", Some(b"v")),
                ReadCheck::scan(b"a", b"\xff", usize::MAX, &vec![]),
            ],
            ops: vec![put("k", "v"), WriteOp::Delete(vec![0, 255])],
        };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Proposal>(&text).unwrap(), p);
    }
}
