//! A bucket's lifecycle and replication configurations, and the lifecycle runs' status.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{AdminError, AdminResult, AdminState, json_body};
use crate::bucket_config::lifecycle::LifecycleConfiguration;
use crate::bucket_config::replication::ReplicationConfiguration;
use crate::index::records::{LifecycleCounters, LifecycleRun};

pub(super) async fn put_lifecycle(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<LifecycleConfiguration> {
    let conf: LifecycleConfiguration = json_body(&body)?;
    let classes = state.storage_classes.clone();
    let conf = conf.validate(&|c| classes.contains(c), crate::s3::STANDARD)?;
    state.index.put_lifecycle(&name, &conf).await?;
    tracing::info!(bucket = %name, rules = conf.rules.len(), "lifecycle configuration set through the admin API");
    Ok(axum::Json(conf))
}

pub(super) async fn get_lifecycle(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult<LifecycleConfiguration> {
    match state.index.get_lifecycle(&name).await? {
        Some(c) => Ok(axum::Json(c)),
        None => Err(AdminError(
            StatusCode::NOT_FOUND,
            "NoSuchLifecycleConfiguration",
            format!("bucket {name} has no lifecycle configuration"),
        )),
    }
}

pub(super) async fn delete_lifecycle(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, AdminError> {
    state.index.delete_lifecycle(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A lifecycle run as `GET .../lifecycle/status` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunInfo {
    /// When it began (Unix ms).
    pub started_ms: i64,
    /// When it ended (absent while running).
    pub finished_ms: Option<i64>,
    /// `Current`, `Noncurrent` or `Uploads` while running.
    pub phase: Option<String>,
    /// What it did.
    pub counters: LifecycleCounters,
}

/// Reply of `GET /admin/v1/buckets/{name}/lifecycle/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LifecycleStatus {
    /// The run under way (or interrupted, to be resumed).
    pub running: Option<RunInfo>,
    /// The last finished run.
    pub last: Option<RunInfo>,
    /// Totals over every finished run.
    pub totals: LifecycleCounters,
}

pub(super) fn run_info(r: &LifecycleRun) -> RunInfo {
    RunInfo {
        started_ms: r.started_ms,
        finished_ms: r.finished_ms,
        phase: r.finished_ms.is_none().then(|| format!("{:?}", r.phase)),
        counters: r.counters,
    }
}

pub(super) async fn lifecycle_status(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult<LifecycleStatus> {
    let p = state.index.lifecycle_progress(&name).await?;
    Ok(axum::Json(LifecycleStatus {
        running: p.current.as_ref().map(run_info),
        last: p.last.as_ref().map(run_info),
        totals: p.totals,
    }))
}

pub(super) async fn put_replication(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> AdminResult<ReplicationConfiguration> {
    let conf: ReplicationConfiguration = json_body(&body)?;
    let conf = conf.validate()?;
    state.index.put_replication(&name, &conf).await?;
    tracing::info!(bucket = %name, rules = conf.rules.len(), "replication configuration set through the admin API");
    Ok(axum::Json(conf.redacted()))
}

pub(super) async fn get_replication(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> AdminResult<ReplicationConfiguration> {
    match state.index.get_replication(&name).await? {
        Some(c) => Ok(axum::Json(c.redacted())),
        None => Err(AdminError(
            StatusCode::NOT_FOUND,
            "ReplicationConfigurationNotFoundError",
            format!("bucket {name} has no replication configuration"),
        )),
    }
}

pub(super) async fn delete_replication(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, AdminError> {
    state.index.delete_replication(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
