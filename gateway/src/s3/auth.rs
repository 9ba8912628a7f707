//! Credentials and access: the root key from configuration, bucket-scoped keys from the index
//! (through a small cache, so that neither valid nor unknown keys cost an index read per
//! request), and the access check that denies anonymous requests and keeps scoped keys inside
//! their buckets, for every bucket a request touches (a copy's source too).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{S3Result, s3_error};

use crate::index::Index;
use crate::index::records::AccessKeyRecord;
use crate::metrics::{GatewayMetrics, LookupLabels};

/// A key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct RootCredentials {
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
}

impl std::fmt::Debug for RootCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// How long a key read from the index is used without reading it again: a key deleted through
/// another gateway works here for at most this long (one deleted through this gateway stops at
/// once).
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Most keys remembered (known and unknown together); past it the cache starts afresh.
const KEY_CACHE_CAPACITY: usize = 100_000;
/// Index reads for keys not in the cache, per second at most. Beyond it an uncached key is
/// refused without reading the index, so a client spraying random keys cannot turn each
/// request into index (Raft) reads; real keys are cached after their first use.
const KEY_LOOKUPS_PER_SECOND: f64 = 50.0;

#[derive(Clone)]
enum Cached {
    Known(Arc<AccessKeyRecord>),
    Unknown,
}

struct KeyCacheState {
    entries: HashMap<String, (Cached, Instant)>,
    tokens: f64,
    refilled: Instant,
}

/// The access keys of the index, cached. Cheap to clone; one per gateway, shared by the
/// authenticator and the access check.
#[derive(Clone)]
pub struct AccessKeys {
    index: Index,
    state: Arc<Mutex<KeyCacheState>>,
    metrics: Arc<GatewayMetrics>,
}

/// What a key lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Answered from the cache.
    Cached,
    /// Read from the index.
    Read,
    /// Not in the cache, and the index reads of this second are used up.
    Throttled,
}

impl AccessKeys {
    /// The keys of `index`, counting lookups in `metrics`.
    pub fn new(index: Index, metrics: Arc<GatewayMetrics>) -> Self {
        Self {
            index,
            metrics,
            state: Arc::new(Mutex::new(KeyCacheState {
                entries: HashMap::new(),
                tokens: KEY_LOOKUPS_PER_SECOND,
                refilled: Instant::now(),
            })),
        }
    }

    fn cached(&self, id: &str) -> Option<Cached> {
        let state = self.state.lock().expect("key cache lock");
        match state.entries.get(id) {
            Some((c, at)) if at.elapsed() < KEY_CACHE_TTL => Some(c.clone()),
            _ => None,
        }
    }

    fn take_token(&self) -> bool {
        let mut s = self.state.lock().expect("key cache lock");
        let now = Instant::now();
        let refill = now.duration_since(s.refilled).as_secs_f64() * KEY_LOOKUPS_PER_SECOND;
        s.tokens = (s.tokens + refill).min(KEY_LOOKUPS_PER_SECOND);
        s.refilled = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn remember(&self, id: &str, c: Cached) {
        let mut s = self.state.lock().expect("key cache lock");
        if s.entries.len() >= KEY_CACHE_CAPACITY {
            s.entries.clear();
        }
        s.entries.insert(id.to_string(), (c, Instant::now()));
    }

    /// Forgets `id` (it was created or deleted through this gateway).
    pub fn forget(&self, id: &str) {
        self.state
            .lock()
            .expect("key cache lock")
            .entries
            .remove(id);
    }

    /// The key `id`, if it exists, and how that was found out.
    pub async fn get(&self, id: &str) -> S3Result<(Option<Arc<AccessKeyRecord>>, Lookup)> {
        let found = self.lookup(id).await?;
        let result = match found.1 {
            Lookup::Cached => "cached",
            Lookup::Read => "read",
            Lookup::Throttled => "throttled",
        };
        self.metrics
            .key_lookups
            .get_or_create(&LookupLabels {
                result: result.into(),
            })
            .inc();
        Ok(found)
    }

    async fn lookup(&self, id: &str) -> S3Result<(Option<Arc<AccessKeyRecord>>, Lookup)> {
        match self.cached(id) {
            Some(Cached::Known(k)) => return Ok((Some(k), Lookup::Cached)),
            Some(Cached::Unknown) => return Ok((None, Lookup::Cached)),
            None => {}
        }
        if !self.take_token() {
            return Ok((None, Lookup::Throttled));
        }
        let found = self.index.get_access_key(id).await?.map(Arc::new);
        self.remember(
            id,
            match &found {
                Some(k) => Cached::Known(k.clone()),
                None => Cached::Unknown,
            },
        );
        Ok((found, Lookup::Read))
    }
}

fn unknown_key() -> s3s::S3Error {
    s3_error!(
        InvalidAccessKeyId,
        "The AWS Access Key Id you provided does not exist in our records."
    )
}

/// Looks up secrets: the root key, then the index.
pub struct CairnAuth {
    root: RootCredentials,
    keys: AccessKeys,
}

impl CairnAuth {
    /// An authenticator for `root` and `keys`.
    pub fn new(root: RootCredentials, keys: AccessKeys) -> Self {
        Self { root, keys }
    }
}

#[async_trait::async_trait]
impl S3Auth for CairnAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.root.access_key {
            return Ok(SecretKey::from(self.root.secret_key.as_str()));
        }
        match self.keys.get(access_key).await? {
            (Some(k), _) => Ok(SecretKey::from(k.secret_key.as_str())),
            (None, _) => Err(unknown_key()),
        }
    }
}

/// The operation name of the current request, filled in by the access check and read by the
/// server for metrics (s3s names the operation only after routing).
#[derive(Clone, Default)]
pub struct OperationSlot(pub Arc<Mutex<Option<String>>>);

/// Denies anonymous requests; limits bucket-scoped keys to their buckets.
pub struct CairnAccess {
    root_access_key: String,
    keys: AccessKeys,
}

impl CairnAccess {
    /// An access check for the root key and `keys`.
    pub fn new(root_access_key: String, keys: AccessKeys) -> Self {
        Self {
            root_access_key,
            keys,
        }
    }
}

/// The bucket named by an `x-amz-copy-source` header (`[/]bucket/key[?versionId=...]`,
/// URL-encoded), if it names one.
pub fn copy_source_bucket(header: &str) -> Option<String> {
    let path = header.split('?').next()?;
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = path.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| percent_decode(bucket))?
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether a key scoped to `allowed` may run `op` on `bucket`.
fn in_scope(allowed: &[String], bucket: &str, op: &str) -> bool {
    allowed.iter().any(|b| b == bucket) && op != "CreateBucket"
}

#[async_trait::async_trait]
impl S3Access for CairnAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name().to_string();
        if let Some(slot) = cx.extensions_mut().get::<OperationSlot>() {
            let mut s = slot.0.lock().expect("op slot");
            if s.is_none() {
                *s = Some(op.clone());
            }
        }
        let Some(creds) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Anonymous access is denied"));
        };
        if creds.access_key == self.root_access_key {
            return Ok(());
        }
        let Some(key) = self.keys.get(&creds.access_key).await?.0 else {
            return Err(unknown_key());
        };
        let Some(allowed) = key.buckets.as_deref() else {
            return Ok(());
        };
        // Every bucket the request touches: its own, and a copy's source.
        let mut touched = Vec::new();
        match cx.s3_path() {
            // Listing buckets is filtered by the handler; creating one is an admin's job.
            S3Path::Root => {}
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => {
                touched.push(bucket.to_string())
            }
        }
        if matches!(op.as_str(), "CopyObject" | "UploadPartCopy") {
            let source = cx
                .headers()
                .get("x-amz-copy-source")
                .and_then(|v| v.to_str().ok())
                .and_then(copy_source_bucket);
            match source {
                Some(b) => touched.push(b),
                None => {
                    return Err(s3_error!(
                        AccessDenied,
                        "This key may only copy from a bucket it can access"
                    ));
                }
            }
        }
        for bucket in touched {
            if !in_scope(allowed, &bucket, &op) {
                return Err(s3_error!(
                    AccessDenied,
                    "This key may not access bucket {bucket}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_name_their_bucket() {
        assert_eq!(copy_source_bucket("src/a/b.txt").as_deref(), Some("src"));
        assert_eq!(copy_source_bucket("/src/key").as_deref(), Some("src"));
        assert_eq!(
            copy_source_bucket("src/key?versionId=3").as_deref(),
            Some("src")
        );
        assert_eq!(copy_source_bucket("%73rc/key").as_deref(), Some("src"));
        assert_eq!(copy_source_bucket("src"), None);
        assert_eq!(copy_source_bucket("/key-only/"), None);
        assert_eq!(copy_source_bucket("%zz/key"), None);
        assert!(in_scope(&["a".into()], "a", "GetObject"));
        assert!(!in_scope(&["a".into()], "b", "GetObject"));
        assert!(!in_scope(&["a".into()], "a", "CreateBucket"));
    }
}
