//! Credentials and access: the root key from configuration, bucket-scoped keys from the index, and
//! the access check that denies anonymous requests and keeps scoped keys inside their buckets.

use std::sync::{Arc, Mutex};

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{S3Result, s3_error};

use crate::index::Index;

/// A key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootCredentials {
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
}

/// Looks up secrets: the root key, then the index.
pub struct CairnAuth {
    root: RootCredentials,
    index: Index,
}

impl CairnAuth {
    /// An authenticator for `root` and the keys in `index`.
    pub fn new(root: RootCredentials, index: Index) -> Self {
        Self { root, index }
    }
}

#[async_trait::async_trait]
impl S3Auth for CairnAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.root.access_key {
            return Ok(SecretKey::from(self.root.secret_key.as_str()));
        }
        match self.index.get_access_key(access_key).await? {
            Some(k) => Ok(SecretKey::from(k.secret_key)),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
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
    index: Index,
}

impl CairnAccess {
    /// An access check for the root key and the keys in `index`.
    pub fn new(root_access_key: String, index: Index) -> Self {
        Self {
            root_access_key,
            index,
        }
    }
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
        let Some(key) = self.index.get_access_key(&creds.access_key).await? else {
            return Err(s3_error!(InvalidAccessKeyId));
        };
        let Some(allowed) = key.buckets else {
            return Ok(());
        };
        match cx.s3_path() {
            // Listing buckets is filtered by the handler; creating one is an admin's job.
            S3Path::Root => Ok(()),
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => {
                if allowed.iter().any(|b| b.as_str() == &**bucket) && op != "CreateBucket" {
                    Ok(())
                } else {
                    Err(s3_error!(
                        AccessDenied,
                        "This key may not access bucket {bucket}"
                    ))
                }
            }
        }
    }
}
