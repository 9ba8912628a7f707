//! A typed client of the gateway admin API (`docs/admin-api.md`), behind the [`AdminApi`] trait so
//! the controllers can be tested against an in-memory fake.

use std::time::Duration;

use async_trait::async_trait;
pub use cairn_admin_api::{
    BucketInfo, CreatedKey, GroupStatus, Health, KeyInfo, NodeReport, ReplicationStatus,
};
use cairn_admin_api::{CreateBucket, CreateKey, DefaultClass, ErrorBody, VersioningStatus};
use reqwest::StatusCode;
use serde::Serialize;

/// Why an admin API call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No answer (connection refused, timeout...).
    #[error("admin API at {endpoint} unreachable: {source}")]
    Unreachable {
        /// Base URL.
        endpoint: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// An error answer of the API.
    #[error("admin API {method} {path}: {status} {code}: {message}")]
    Api {
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The API's error code (`NoSuchBucket`...), empty when the body had none.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The gateway has no such endpoint (404/405 without an API error code): an older gateway.
    #[error("the gateway does not support {method} {path} yet")]
    Unsupported {
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: String,
    },
    /// An answer that is not the documented JSON.
    #[error("admin API {path}: unexpected answer: {detail}")]
    BadAnswer {
        /// Request path.
        path: String,
        /// What was wrong.
        detail: String,
    },
}

impl AdminError {
    /// The API error code, if the API answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AdminError::Api { code, .. } if !code.is_empty() => Some(code),
            _ => None,
        }
    }
}

/// A per-bucket configuration document the gateway stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketConfig {
    /// `.../lifecycle`: the S3 lifecycle configuration as JSON.
    Lifecycle,
    /// `.../replication`: the S3 replication configuration as JSON.
    Replication,
}

impl BucketConfig {
    /// Path segment.
    pub fn segment(self) -> &'static str {
        match self {
            BucketConfig::Lifecycle => "lifecycle",
            BucketConfig::Replication => "replication",
        }
    }
}

/// The admin API, as the controllers use it.
#[async_trait]
pub trait AdminApi: Send + Sync {
    /// Fleet health.
    async fn health(&self) -> Result<Health, AdminError>;
    /// Storage nodes.
    async fn nodes(&self) -> Result<Vec<NodeReport>, AdminError>;
    /// A bucket with its usage, `None` if absent.
    async fn bucket(&self, name: &str) -> Result<Option<BucketInfo>, AdminError>;
    /// Creates a bucket; with `exist_ok`, an existing one is accepted.
    async fn create_bucket(&self, name: &str, exist_ok: bool) -> Result<BucketInfo, AdminError>;
    /// Deletes a bucket (with `force`, its objects and uploads first); `false` if it was absent.
    async fn delete_bucket(&self, name: &str, force: bool) -> Result<bool, AdminError>;
    /// Every access key.
    async fn keys(&self) -> Result<Vec<KeyInfo>, AdminError>;
    /// Creates an access key limited to `buckets`.
    async fn create_key(&self, name: &str, buckets: &[String]) -> Result<CreatedKey, AdminError>;
    /// Deletes an access key; `false` if it was absent.
    async fn delete_key(&self, id: &str) -> Result<bool, AdminError>;
    /// Sets a bucket's versioning state (`Enabled` or `Suspended`; never back to unversioned).
    async fn set_versioning(&self, bucket: &str, status: &str) -> Result<(), AdminError>;
    /// Sets the storage class of a bucket's writes that name none, or resets it with `None`.
    async fn set_default_storage_class(
        &self,
        bucket: &str,
        class: Option<&str>,
    ) -> Result<(), AdminError>;
    /// Sets a bucket's quota (`{"maxBytes": .., "maxObjects": ..}`), or removes it with `None`.
    async fn set_quota(
        &self,
        bucket: &str,
        quota: Option<&serde_json::Value>,
    ) -> Result<(), AdminError>;
    /// Stores a bucket's lifecycle or replication configuration.
    async fn put_bucket_config(
        &self,
        bucket: &str,
        which: BucketConfig,
        doc: &serde_json::Value,
    ) -> Result<(), AdminError>;
    /// Removes a bucket's lifecycle or replication configuration (absent is fine).
    async fn delete_bucket_config(
        &self,
        bucket: &str,
        which: BucketConfig,
    ) -> Result<(), AdminError>;
    /// Tells the gateways which of them are about to be removed (`[]`: none), so they hand
    /// their index votes and leadership to the others; the index membership after.
    async fn retire_gateways(
        &self,
        ids: &std::collections::BTreeSet<u64>,
    ) -> Result<ReplicationStatus, AdminError>;
}

/// The admin API over HTTP.
#[derive(Clone)]
pub struct HttpAdmin {
    http: reqwest::Client,
    endpoint: String,
    token: String,
    /// Signs requests with the admin token instead of sending it as a bearer.
    signer: Option<std::sync::Arc<cairn_transport::Signer>>,
}

impl HttpAdmin {
    /// A client of the admin API at `endpoint` (`http://host:port`) with the bearer `token`.
    pub fn new(endpoint: impl Into<String>, token: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("a reqwest client without TLS settings builds");
        Self {
            http,
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
            token: token.into(),
            signer: None,
        }
    }

    /// The same client, signing every request with `signer` (made from the same admin token)
    /// instead of sending the token: a request seen on the wire can be neither replayed nor
    /// changed.
    pub fn signing_with(mut self, signer: std::sync::Arc<cairn_transport::Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Base URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Vec<u8>), AdminError> {
        let url = format!("{}{path}", self.endpoint);
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("a valid method");
        let mut req = self.http.request(m, &url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |source| AdminError::Unreachable {
            endpoint: self.endpoint.clone(),
            source,
        };
        let resp = match &self.signer {
            None => req.bearer_auth(&self.token).send().await,
            Some(signer) => {
                let mut request = req.build().map_err(unreachable)?;
                let payload = match request.body() {
                    None => Some(cairn_transport::signing::sha256(b"")),
                    Some(b) => b.as_bytes().map(cairn_transport::signing::sha256),
                };
                let url = request.url().clone();
                let method = request.method().clone();
                signer.sign(
                    &method,
                    url.path(),
                    url.query(),
                    "admin",
                    payload,
                    request.headers_mut(),
                );
                self.http.execute(request).await
            }
        }
        .map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| AdminError::Unreachable {
                endpoint: self.endpoint.clone(),
                source,
            })?
            .to_vec();
        if status.is_success() {
            return Ok((status, bytes));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => Err(AdminError::Api {
                method,
                path: path.to_string(),
                status: status.as_u16(),
                code: e.error.code,
                message: e.error.message,
            }),
            // A route the gateway does not know answers without the API's error body.
            Err(_)
                if matches!(
                    status,
                    StatusCode::NOT_FOUND
                        | StatusCode::METHOD_NOT_ALLOWED
                        | StatusCode::NOT_IMPLEMENTED
                ) =>
            {
                Err(AdminError::Unsupported {
                    method,
                    path: path.to_string(),
                })
            }
            Err(_) => Err(AdminError::Api {
                method,
                path: path.to_string(),
                status: status.as_u16(),
                code: String::new(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            }),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, AdminError> {
        let (_, bytes) = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| AdminError::BadAnswer {
            path: path.to_string(),
            detail: e.to_string(),
        })
    }
}

/// A request body of the admin API's wire types.
fn wire(body: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(body).expect("the admin API's wire types serialise")
}

fn is_missing(e: &AdminError, codes: &[&str]) -> bool {
    matches!(e, AdminError::Api { status: 404, code, .. } if codes.contains(&code.as_str()))
}

/// Percent-encodes a path segment (bucket names and key ids are plain, but be safe).
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_trait]
impl AdminApi for HttpAdmin {
    async fn health(&self) -> Result<Health, AdminError> {
        self.json("GET", "/admin/v1/health", None).await
    }

    async fn nodes(&self) -> Result<Vec<NodeReport>, AdminError> {
        self.json("GET", "/admin/v1/nodes", None).await
    }

    async fn bucket(&self, name: &str) -> Result<Option<BucketInfo>, AdminError> {
        match self
            .json("GET", &format!("/admin/v1/buckets/{}", seg(name)), None)
            .await
        {
            Ok(b) => Ok(Some(b)),
            Err(e) if is_missing(&e, &["NoSuchBucket"]) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_bucket(&self, name: &str, exist_ok: bool) -> Result<BucketInfo, AdminError> {
        let body = wire(&CreateBucket {
            name: name.to_string(),
            exist_ok,
        });
        self.json("POST", "/admin/v1/buckets", Some(&body)).await
    }

    async fn delete_bucket(&self, name: &str, force: bool) -> Result<bool, AdminError> {
        let path = format!("/admin/v1/buckets/{}?force={force}", seg(name));
        match self.call("DELETE", &path, None).await {
            Ok(_) => Ok(true),
            Err(e) if is_missing(&e, &["NoSuchBucket"]) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn keys(&self) -> Result<Vec<KeyInfo>, AdminError> {
        self.json("GET", "/admin/v1/keys", None).await
    }

    async fn create_key(&self, name: &str, buckets: &[String]) -> Result<CreatedKey, AdminError> {
        let body = wire(&CreateKey {
            name: name.to_string(),
            buckets: Some(buckets.to_vec()),
        });
        self.json("POST", "/admin/v1/keys", Some(&body)).await
    }

    async fn delete_key(&self, id: &str) -> Result<bool, AdminError> {
        match self
            .call("DELETE", &format!("/admin/v1/keys/{}", seg(id)), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_missing(&e, &["NoSuchKey"]) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn set_versioning(&self, bucket: &str, status: &str) -> Result<(), AdminError> {
        let path = format!("/admin/v1/buckets/{}/versioning", seg(bucket));
        let body = wire(&VersioningStatus {
            status: status.to_string(),
        });
        self.call("PUT", &path, Some(&body)).await.map(|_| ())
    }

    async fn set_default_storage_class(
        &self,
        bucket: &str,
        class: Option<&str>,
    ) -> Result<(), AdminError> {
        let path = format!("/admin/v1/buckets/{}/storage-class", seg(bucket));
        match class {
            Some(c) => {
                let body = wire(&DefaultClass {
                    storage_class: Some(c.to_string()),
                });
                self.call("PUT", &path, Some(&body)).await.map(|_| ())
            }
            None => self.call("DELETE", &path, None).await.map(|_| ()),
        }
    }

    async fn set_quota(
        &self,
        bucket: &str,
        quota: Option<&serde_json::Value>,
    ) -> Result<(), AdminError> {
        let path = format!("/admin/v1/buckets/{}/quota", seg(bucket));
        match quota {
            Some(q) => self.call("PUT", &path, Some(q)).await.map(|_| ()),
            None => self.call("DELETE", &path, None).await.map(|_| ()),
        }
    }

    async fn put_bucket_config(
        &self,
        bucket: &str,
        which: BucketConfig,
        doc: &serde_json::Value,
    ) -> Result<(), AdminError> {
        let path = format!("/admin/v1/buckets/{}/{}", seg(bucket), which.segment());
        self.call("PUT", &path, Some(doc)).await.map(|_| ())
    }

    async fn delete_bucket_config(
        &self,
        bucket: &str,
        which: BucketConfig,
    ) -> Result<(), AdminError> {
        let path = format!("/admin/v1/buckets/{}/{}", seg(bucket), which.segment());
        match self.call("DELETE", &path, None).await {
            Ok(_) => Ok(()),
            Err(e)
                if is_missing(
                    &e,
                    &[
                        "NoSuchBucket",
                        "NoSuchLifecycleConfiguration",
                        "ReplicationConfigurationNotFoundError",
                    ],
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn retire_gateways(
        &self,
        ids: &std::collections::BTreeSet<u64>,
    ) -> Result<ReplicationStatus, AdminError> {
        let body = serde_json::json!({ "ids": ids });
        self.json("PUT", "/admin/v1/index/retiring", Some(&body))
            .await
    }
}
