//! The admin API (`/admin/v1`, its own port, `Authorization: Bearer <token>`): buckets, access
//! keys, storage nodes, partitions and health, as JSON. The operator drives the fleet through it.
//! `docs/admin-api.md` documents every call.
//!
//! This module holds the router, the door (admin token or a request signed with it) and the
//! errors; each resource's handlers and wire types live in a module of their own.

mod buckets;
mod config;
mod health;
mod keys;
mod nodes;
mod partitions;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cairn_transport::server::{FleetAuth, check_signed, require_fleet_signature};

use crate::bucket_config::ConfigError;
use crate::data::nodes::NodeRegistry;
use crate::index::records::BucketRecord;
use crate::index::{Index, IndexError};
use crate::metrics::GatewayMetrics;

use buckets::{
    bucket_info, create_bucket, delete_bucket, delete_default_class, delete_quota,
    get_default_class, get_quota, get_versioning, list_buckets, put_default_class, put_quota,
    put_versioning, storage_classes,
};
use config::{
    delete_lifecycle, delete_replication, get_lifecycle, get_replication, lifecycle_status,
    put_lifecycle, put_replication,
};
use health::health;
use keys::{create_key, delete_key, list_keys};
use nodes::{deregister_node, list_nodes, register_node};
use partitions::{index_digest, merge_partition, partitions, put_retiring, split_partition};

pub use buckets::BucketInfo;
pub use buckets::ClassInfo;
pub use buckets::CreateBucket;
pub use buckets::DefaultClass;
pub use buckets::DeleteBucketQuery;
pub use buckets::StorageClassInfo;
pub use buckets::VersioningStatus;
pub use config::LifecycleStatus;
pub use config::RunInfo;
pub use health::Health;
pub use health::repair_backlog;
pub use keys::CreateKey;
pub use keys::CreatedKey;
pub use keys::KeyInfo;
pub use keys::new_key_pair;
pub use nodes::RegisterNode;
pub use partitions::PartitionLoad;
pub use partitions::Partitions;
pub use partitions::SplitRequest;

/// What the admin handlers share.
pub struct AdminState {
    /// The index.
    pub index: Index,
    /// Storage nodes.
    pub nodes: NodeRegistry,
    /// Metrics (also served here).
    pub metrics: Arc<GatewayMetrics>,
    /// Refreshes scrape-time gauges.
    pub refresh_metrics: Arc<dyn Fn() + Send + Sync>,
    /// The bearer token.
    pub token: String,
    /// Owner recorded for buckets created here (the root access key).
    pub owner: String,
    /// Shards needed to accept a write.
    pub write_quorum: usize,
    /// Shards needed to read.
    pub read_quorum: usize,
    /// The fleet's storage classes (lifecycle transitions must name one of them).
    pub storage_classes: Arc<crate::storage_class::StorageClasses>,
    /// The S3 front end's cache of access keys (forgotten when a key changes here).
    pub keys: crate::s3::auth::AccessKeys,
    /// Checks requests signed with the admin token (the operator's).
    pub signed: FleetAuth,
}

/// An admin API error: `{"error": {"code", "message"}}`.
pub struct AdminError(StatusCode, &'static str, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = cairn_admin_api::ErrorBody {
            error: cairn_admin_api::ErrorDetail {
                code: self.1.to_string(),
                message: self.2,
            },
        };
        (self.0, axum::Json(body)).into_response()
    }
}

impl From<IndexError> for AdminError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::NoSuchBucket(_) => {
                AdminError(StatusCode::NOT_FOUND, "NoSuchBucket", e.to_string())
            }
            IndexError::BucketExists { .. } => {
                AdminError(StatusCode::CONFLICT, "BucketAlreadyExists", e.to_string())
            }
            IndexError::BucketNotEmpty(_) => {
                AdminError(StatusCode::CONFLICT, "BucketNotEmpty", e.to_string())
            }
            IndexError::DeletionAborted(_) => {
                AdminError(StatusCode::CONFLICT, "OperationAborted", e.to_string())
            }
            IndexError::VersioningIrreversible(_) => AdminError(
                StatusCode::CONFLICT,
                "VersioningIrreversible",
                e.to_string(),
            ),
            IndexError::ReplicationNeedsVersioning(_) => {
                AdminError(StatusCode::BAD_REQUEST, "InvalidRequest", e.to_string())
            }
            IndexError::ReplicationBlocksSuspend(_) => {
                AdminError(StatusCode::CONFLICT, "InvalidBucketState", e.to_string())
            }
            IndexError::Partition(_) => {
                AdminError(StatusCode::CONFLICT, "PartitionMapConflict", e.to_string())
            }
            IndexError::Engine(cairn_kv::EngineError::Unavailable(_))
            | IndexError::Consensus(_) => AdminError(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                e.to_string(),
            ),
            other => AdminError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                other.to_string(),
            ),
        }
    }
}

impl From<ConfigError> for AdminError {
    fn from(e: ConfigError) -> Self {
        AdminError(StatusCode::BAD_REQUEST, e.code(), e.to_string())
    }
}

type AdminResult<T> = Result<axum::Json<T>, AdminError>;

/// The admin router; with `consensus`, also the internal endpoints of the replicated index,
/// which answer only requests signed with the fleet credential (`internal_auth`): the admin
/// token opens `/admin/v1` and nothing else.
pub fn router(
    state: Arc<AdminState>,
    consensus: Option<Arc<cairn_raft::Consensus>>,
    internal_auth: FleetAuth,
) -> Router {
    let internal = match consensus {
        Some(c) => cairn_raft::rpc::router(c).layer(middleware::from_fn_with_state(
            internal_auth,
            require_fleet_signature,
        )),
        None => Router::new(),
    };
    let api = Router::new()
        .route("/admin/v1/buckets", get(list_buckets).post(create_bucket))
        .route(
            "/admin/v1/buckets/{name}",
            get(bucket_info).delete(delete_bucket),
        )
        .route(
            "/admin/v1/buckets/{name}/versioning",
            get(get_versioning).put(put_versioning),
        )
        .route(
            "/admin/v1/buckets/{name}/lifecycle",
            get(get_lifecycle)
                .put(put_lifecycle)
                .delete(delete_lifecycle),
        )
        .route(
            "/admin/v1/buckets/{name}/lifecycle/status",
            get(lifecycle_status),
        )
        .route(
            "/admin/v1/buckets/{name}/quota",
            get(get_quota).put(put_quota).delete(delete_quota),
        )
        .route(
            "/admin/v1/buckets/{name}/storage-class",
            get(get_default_class)
                .put(put_default_class)
                .delete(delete_default_class),
        )
        .route("/admin/v1/storage-classes", get(storage_classes))
        .route(
            "/admin/v1/buckets/{name}/replication",
            get(get_replication)
                .put(put_replication)
                .delete(delete_replication),
        )
        .route("/admin/v1/keys", get(list_keys).post(create_key))
        .route("/admin/v1/keys/{id}", axum::routing::delete(delete_key))
        .route("/admin/v1/nodes", get(list_nodes))
        .route(
            "/admin/v1/nodes/{id}",
            axum::routing::put(register_node).delete(deregister_node),
        )
        .route("/admin/v1/partitions", get(partitions))
        .route("/admin/v1/partitions/{id}/split", post(split_partition))
        .route("/admin/v1/partitions/{id}/merge", post(merge_partition))
        .route("/admin/v1/index/retiring", axum::routing::put(put_retiring))
        .route("/admin/v1/index/digest", get(index_digest))
        .route("/admin/v1/health", get(health))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(api)
        .merge(internal)
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// The admin API's door: a request signed with the admin token (`x-cairn-auth`, as the
/// operator sends them: neither forgeable nor replayable), or the token itself as a bearer
/// (convenient for people; anyone who sees one request can repeat it).
async fn require_token(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    if req
        .headers()
        .contains_key(cairn_transport::signing::AUTH_HEADER)
    {
        return match check_signed(&state.signed, req).await {
            Ok(req) => next.run(req).await,
            Err(refusal) => refusal,
        };
    }
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), state.token.as_bytes()));
    if ok {
        next.run(req).await
    } else {
        (state.signed.rejected)("bad_bearer");
        AdminError(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "missing or wrong bearer token".into(),
        )
        .into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    (state.refresh_metrics)();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
        .into_response()
}

/// Parses a JSON body into `T`, answering 400 `MalformedJSON` with serde's reason.
/// The bucket's record, or `NoSuchBucket`.
async fn bucket_record(state: &AdminState, name: String) -> Result<BucketRecord, AdminError> {
    Ok(state
        .index
        .get_bucket(&name)
        .await?
        .ok_or(IndexError::NoSuchBucket(name))?)
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body)
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, "MalformedJSON", e.to_string()))
}
